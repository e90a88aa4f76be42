"""Hostile inputs: nothing run from a file, nothing lost by a save, nothing silently wrong, and a clear error
(naming the file, the column, the rows) for everything a user can get wrong."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import params_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import delpyro
from delpyro import DELDataError, ModelConfig, checkpoint, fit, load, read_counts
from delpyro.cli import main
from delpyro.train import CallbackError

TINY = {"hidden_size": 8, "n_layers": 1, "fingerprint_bits": 64, "epochs": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def screen() -> delpyro.DELData:
    return delpyro.simulate_del(seed=4, n_per_cycle=(4, 4, 3))


@pytest.fixture(scope="module")
def fitted(screen):
    return fit(screen, None, ModelConfig(**TINY), seed=0, progress="none")


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory) -> Path:
    return fitted.save(tmp_path_factory.mktemp("checkpoint") / "fit.pt")


# ---------------------------------------------------------------------------------------------------
# checkpoints: nothing is run, nothing damaged is read


class _Payload:
    """Unpickling this would create a file: the proof that a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_payload_is_refused_and_never_runs(fitted, tmp_path) -> None:
    marker = tmp_path / "ran"
    bare = tmp_path / "bare.pt"  # a bare torch file, as format 2 was
    torch.save({"format": 2, "config": _Payload(marker)}, bare)
    with pytest.raises(ValueError, match="refused: this file holds objects other than tensors"):
        load(bare)
    state = fitted.state()
    state["records"] = [_Payload(marker)]
    framed = tmp_path / "framed.pt"  # inside a well-formed checkpoint, with a correct checksum
    checkpoint.write(state, framed)
    with pytest.raises(ValueError, match="refused"):
        load(framed)
    with pytest.raises(ValueError, match="refused"):
        fit(delpyro.simulate_del(seed=4, n_per_cycle=(4, 4, 3)), None, resume=framed, progress="none")
    assert not marker.exists()


def test_a_damaged_or_foreign_checkpoint_is_refused_saying_so(saved, tmp_path) -> None:
    data = saved.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    cases = {
        "flipped.pt": (bytes(flipped), "do not match their checksum"),
        "cut.pt": (data[: len(data) // 3], "do not match their checksum"),
        "header.pt": (data[:25], "header is cut or garbled"),
        "noise.pt": (os.urandom(2000), "not a delpyro checkpoint"),
        "empty.pt": (b"", "not a delpyro checkpoint"),
        "text.pt": (b"epoch,loss\n1,2\n", "not a delpyro checkpoint"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message):
            load(tmp_path / name)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a delpyro checkpoint of format"):
        load(tmp_path / "list.pt")


def test_a_checkpoint_keeps_exact_values_and_normal_permissions(fitted, screen, tmp_path) -> None:
    previous = os.umask(0o022)
    try:
        path = fitted.save(tmp_path / "fit.pt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not a private temporary file's 0600
    loaded = load(path)
    a, b = params_of(fitted), params_of(loaded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.predict(screen).equals(fitted.predict(screen))


# ---------------------------------------------------------------------------------------------------
# saves: nothing lost


def test_saving_a_screen_over_the_file_it_was_read_from_keeps_its_poses(tmp_path) -> None:
    original = delpyro.simulate_del(seed=1, n_per_cycle=(3, 3, 2), n_poses=3, n_pose_features=5)
    path = original.save(tmp_path / "screen.parquet")
    again = read_counts(path, preset="delpyro")
    assert isinstance(again.poses.base, np.memmap) or isinstance(again.poses, np.memmap)  # read from disk
    again.save(path)  # over the very files whose poses it maps
    assert read_counts(path, preset="delpyro").equals(original)


def test_a_save_that_fails_leaves_the_screen_on_disk_as_it_was(tmp_path, monkeypatch) -> None:
    first = delpyro.simulate_del(seed=1, n_per_cycle=(3, 3, 2), n_poses=2, n_pose_features=4)
    path = first.save(tmp_path / "screen.parquet")
    second = delpyro.simulate_del(seed=2, n_per_cycle=(3, 3, 2), n_poses=2, n_pose_features=4)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)  # the table is written first, then the poses fail
    with pytest.raises(OSError, match="No space left"):
        second.save(path)
    monkeypatch.undo()
    assert read_counts(path, preset="delpyro").equals(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["screen.attrs.json", "screen.parquet", "screen.poses.npy"]


def test_temporary_files_of_an_interrupted_save_are_cleaned_by_the_next(tmp_path) -> None:
    target = tmp_path / "screen.parquet"
    gone = tmp_path / ".screen.parquet.999999999.abcd1234.delpyro-tmp"  # a process that no longer runs
    mine = tmp_path / f".screen.parquet.{os.getpid()}.abcd1234.delpyro-tmp"  # this one, interrupted before
    other = tmp_path / ".other.parquet.999999999.abcd1234.delpyro-tmp"  # another file's: left alone
    for leftover in (gone, mine, other):
        leftover.write_bytes(b"half a table")
    delpyro.simulate_del(seed=1, n_per_cycle=(2, 2, 2)).save(target)
    assert not gone.exists() and not mine.exists() and other.exists()


def test_files_are_flushed_to_disk_before_they_replace_the_old_ones(tmp_path, monkeypatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def record(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", record)
    delpyro.files.write_text(tmp_path / "a.json", "{}")
    assert any(name.endswith(".delpyro-tmp") for name in synced)  # the new contents, before the rename
    assert str(tmp_path) in synced  # and the folder, after it


def test_a_cache_that_cannot_be_written_is_skipped_with_a_warning(tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    smiles = ["CCO", "c1ccccc1"]
    with pytest.warns(UserWarning, match="fingerprint cache not written"):
        cached = delpyro.fingerprints(smiles, n_bits=64, cache_dir=blocker / "cache")
    np.testing.assert_array_equal(cached, delpyro.fingerprints(smiles, n_bits=64))


def test_caches_get_normal_permissions(tmp_path) -> None:
    previous = os.umask(0o002)
    try:
        delpyro.fingerprints(["CCO"], n_bits=64, cache_dir=tmp_path)
    finally:
        os.umask(previous)
    (cache,) = tmp_path.glob("*.npy")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o664  # a shared cache stays shared


# ---------------------------------------------------------------------------------------------------
# nothing silently wrong


def test_compounds_match_fitted_effects_only_when_id_and_structure_agree(tmp_path) -> None:
    first = delpyro.simulate_del(seed=1, n_per_cycle=(3, 3, 3))
    second = delpyro.simulate_del(seed=2, n_per_cycle=(3, 3, 3))
    columns = {"target": "target:*", "control": "control:*", "building_blocks": "bb:*"}
    # two tables without an id column: both get ids row00, row01, ...
    a = read_counts(first.to_frame().drop(columns="compound_id"), **columns)
    b = read_counts(second.to_frame().drop(columns="compound_id"), **columns)
    assert list(a.compound_id) == list(b.compound_id)
    config = ModelConfig(terms=("building_blocks", "compound"), epochs=30, batch_size=27, guide_lr=0.05)
    result = fit(a, None, config, seed=0, progress="none")
    encoding = result.model.encoding
    np.testing.assert_array_equal(encoding.training_positions(a), np.arange(a.n_compounds))
    assert (encoding.training_positions(b) == -1).all()  # the same ids, other compounds: all new
    # so the new library gets the prior of its effects, not the training compounds' posteriors
    renamed = b.subset(np.arange(b.n_compounds))
    renamed.compound_id = np.array([f"new{i}" for i in range(b.n_compounds)], dtype=object)
    assert result.predict(b).drop(columns="compound_id").equals(result.predict(renamed).drop(columns="compound_id"))
    # while the training screen, read again, gets its own posteriors back: not those of new compounds
    unmatched = a.subset(np.arange(a.n_compounds))
    unmatched.compound_id = np.array([f"new{i}" for i in range(a.n_compounds)], dtype=object)
    own, prior = result.predict(a), result.predict(unmatched)
    assert not np.allclose(own["log_enrichment_mean"], prior["log_enrichment_mean"], atol=1e-3)


def test_screens_with_other_replicates_are_not_scored_without_their_counts(screen, fitted) -> None:
    others = []
    renamed = screen.subset(np.arange(screen.n_compounds))
    renamed.target_names = ["a", "b", "c"]
    others.append(renamed)
    fewer = screen.subset(np.arange(screen.n_compounds))
    fewer.target_counts, fewer.target_names = fewer.target_counts[:, :2], fewer.target_names[:2]
    others.append(fewer)
    no_control = screen.subset(np.arange(screen.n_compounds))
    no_control.control_counts, no_control.control_names = no_control.control_counts[:, :0], []
    others.append(no_control)
    for other in others:
        with pytest.raises(DELDataError, match=r"replicates: this screen's target replicates .* differ from"):
            fitted.evaluate(other)
        with pytest.raises(DELDataError, match="differ from the training screen's"):
            fit(screen, other, ModelConfig(**TINY), progress="none")
    assert len(fitted.predict(renamed)) == screen.n_compounds  # predictions need no counts


def test_resume_refuses_other_settings_and_another_screen(screen, saved) -> None:
    with pytest.raises(ValueError, match=r"config differs from the run's in lr \(0.0002 -> 0.01\)"):
        fit(screen, None, ModelConfig(**{**TINY, "lr": 0.01}), resume=saved, progress="none")
    other = delpyro.simulate_del(seed=5, n_per_cycle=(4, 4, 3))
    with pytest.raises(ValueError, match="train is not the screen this run was trained on"):
        fit(other, None, resume=saved, epochs=3, progress="none")
    same = fit(screen, None, ModelConfig(**TINY), resume=saved, epochs=3, progress="none")  # the same config
    assert same.epoch == 3


# ---------------------------------------------------------------------------------------------------
# fit checks its arguments, and keeps the result when training ends early


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer of at least 1"),
        ({"batch_size": 0}, "batch_size must be an integer of at least 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"early_stopping_patience": 0}, "early_stopping_patience must be an integer of at least 1"),
        ({"progress": "loud"}, "progress must be"),
    ],
)
def test_fit_refuses_bad_arguments_before_building_anything(screen, arguments, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit(screen, None, ModelConfig(**TINY), **arguments)


def test_fit_refuses_empty_screens_and_a_missing_gpu(screen, monkeypatch) -> None:
    empty = screen.subset(np.arange(0))
    with pytest.raises(ValueError, match="val: the validation screen holds no compounds"):
        fit(screen, empty, ModelConfig(**TINY), progress="none")
    with pytest.raises(ValueError, match="train: the training screen holds no compounds"):
        fit(empty, None, ModelConfig(**TINY), progress="none")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        fit(screen, None, ModelConfig(**TINY), device="cuda", progress="none")


def test_a_linear_algebra_divergence_is_caught_like_a_nan(screen, monkeypatch) -> None:
    from delpyro import effects

    calls = {"n": 0}
    real = effects.compound_prior

    def breaking(*args):
        calls["n"] += 1  # the first call builds the guide; then one a step
        if calls["n"] == 3:
            raise torch.linalg.LinAlgError("cholesky: the input is not positive-definite")
        return real(*args)

    monkeypatch.setattr("delpyro.model.compound_prior", breaking)
    with pytest.raises(delpyro.NonFiniteLossError, match="diverged") as caught:
        fit(screen, None, ModelConfig(**TINY), progress="none")
    result = caught.value.result
    assert caught.value.step == 2 and result.step == 1
    assert all(torch.isfinite(v).all() for v in params_of(result).values())


def test_an_error_in_a_callback_ends_training_and_keeps_the_result(screen) -> None:
    def failing(event: str, info: dict) -> None:
        if event == "step" and info["step"] == 3:
            raise KeyError("missing")

    with pytest.raises(CallbackError, match="failing raised KeyError on the 'step' event") as caught:
        fit(screen, None, ModelConfig(**TINY), callbacks=[failing], progress="none")
    assert caught.value.result.step == 3
    assert np.isfinite(caught.value.result.predict(screen)["log_enrichment_mean"]).all()


def test_an_interrupt_returns_the_partial_fit_with_a_warning(screen, monkeypatch, capsys) -> None:
    """The notebook's interrupt keeps the steps taken, warns, and the display's last line says what
    happened and how to go on."""
    import delpyro.train

    real = delpyro.train.train_step
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(delpyro.train, "train_step", interrupted)
    with pytest.warns(UserWarning, match="training interrupted at step 3"):
        result = fit(screen, None, ModelConfig(**TINY), batch_size=8, progress="text")
    assert result.step == 3 and result.epoch == 1 and result.stopped_by_user
    assert capsys.readouterr().out.splitlines()[-1] == (
        "interrupted after step 3 (epoch 1): the result keeps every step taken; fit(..., resume=result) "
        "continues from the next epoch"
    )
    monkeypatch.setattr(delpyro.train, "train_step", real)
    more = fit(screen, None, resume=result, progress="none")
    assert more.epoch == 2


# ---------------------------------------------------------------------------------------------------
# read_counts: every failure names the file


def _table() -> pd.DataFrame:
    return pd.DataFrame({"smiles": ["CCO", "CCN", "CCC"], "t1": [1, 0, 3], "t2": [0, 2, 5], "c1": [1, 1, 0]})


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 20, "cannot be decoded as UTF-8"),
        ("cut.csv.gz", gzip.compress(_table().to_csv(index=False).encode())[:40], "cut short or damaged"),
        ("text.parquet", _table().to_csv(index=False).encode(), "is it really a parquet file"),
        ("twice.csv", b"smiles,t1,t1,c1\nCCO,1,2,3\n", r"columns \['t1'\] appear more than once"),
        ("header.csv", b"smiles,t1,t2,c1\n", "the table is empty"),
    ],
)
def test_a_broken_file_is_named_in_one_clear_error(tmp_path, name, content, message) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DELDataError, match=message) as caught:
        read_counts(path, target=["t1", "t2"], control=["c1"])
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([True, False, True], "booleans"),  # beside an integer column: read as objects
        (np.array([1 + 0j, 2 + 0j, 0j]), "complex numbers"),
        (np.array([1, True, 2], dtype=object), r"row 1 \(True\) are booleans or complex numbers"),
        ([2.0**53 + 2, 1.5e3, 0.0], r"exceed 2\*\*53"),
    ],
)
def test_counts_that_are_not_whole_reads_are_refused(values, message) -> None:
    table = _table().assign(t1=values)
    with pytest.raises(DELDataError, match=f"column 't1'.*{message}"):
        read_counts(table, target=["t1", "t2"], control=["c1"])


def test_smiles_with_whitespace_inside_are_refused() -> None:
    table = _table().assign(smiles=["CCO", "CC O", " CCC "])  # edges are fine; inside is not
    with pytest.raises(DELDataError, match=r"row 1 \('CC O'\) cannot be parsed; 1 hold whitespace inside"):
        read_counts(table, target=["t1", "t2"], control=["c1"])
    with pytest.raises(DELDataError, match="not SMILES that RDKit can parse"):
        delpyro.fingerprints(["CC O"], n_bits=64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".csv.gz", ".parquet"]))
def test_random_bytes_give_a_screen_or_a_clear_error(tmp_path, content, suffix) -> None:
    path = tmp_path / f"screen{suffix}"
    path.write_bytes(content)
    try:
        data = read_counts(path, target=["t1"], control=[])
    except DELDataError as err:
        assert str(path) in str(err) or "column" in str(err) or "row" in str(err)
    else:
        assert data.n_compounds >= 1


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=300))
def test_random_bytes_are_never_loaded_as_a_checkpoint(content) -> None:
    stream = Path(os.environ.get("TMPDIR", "/tmp")) / f"delpyro-fuzz-{os.getpid()}.pt"
    stream.write_bytes(content)
    try:
        with pytest.raises(ValueError):
            load(stream)
    finally:
        stream.unlink()


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.integers(-5, 2**62), st.floats(allow_nan=True), st.text(max_size=4), st.booleans(), st.none()),
        min_size=1,
        max_size=6,
    )
)
def test_random_count_columns_give_a_screen_or_a_clear_error(values) -> None:
    table = pd.DataFrame({"smiles": ["C"] * len(values), "t1": pd.Series(values, dtype=object)})
    try:
        read_counts(table, target="t1", control=[])
    except DELDataError as err:
        assert "column 't1'" in str(err) or "smiles" in str(err)


# ---------------------------------------------------------------------------------------------------
# the command line: one line and status 2 for every user-side failure


def _cli(capsys, *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    err = capsys.readouterr().err
    return status, err


@pytest.fixture(scope="module")
def screen_file(tmp_path_factory) -> Path:
    return delpyro.simulate_del(seed=3, n_per_cycle=(3, 3, 2)).save(tmp_path_factory.mktemp("screen") / "s.csv")


def test_the_cli_refuses_bad_places_and_settings_before_writing(capsys, tmp_path, screen_file) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    status, err = _cli(capsys, "fit", str(screen_file), "--out", str(a_file / "run"), "--epochs", "1")
    assert status == 2 and err.count("\n") == 1 and "error:" in err
    status, err = _cli(capsys, "fit", str(screen_file), "--out", str(tmp_path / "neg"), "--epochs", "-1")
    assert status == 2 and "epochs must be an integer of at least 1" in err
    assert not (tmp_path / "neg").exists()  # refused before anything was written
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(screen_file.read_bytes())[:100])
    status, err = _cli(capsys, "fit", str(cut), "--out", str(tmp_path / "cut"), "--epochs", "1")
    assert status == 2 and "cut short or damaged" in err
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    status, err = _cli(capsys, "summary", str(binary))
    assert status == 2 and "cannot be decoded as UTF-8" in err


def test_the_cli_keeps_an_existing_run_unless_asked_and_then_clears_it(
    capsys, tmp_path, screen_file, monkeypatch
) -> None:
    run = tmp_path / "run"
    arguments = ("fit", str(screen_file), "--out", str(run), "--epochs", "1", "--batch-size", "64")
    assert _cli(capsys, *arguments)[0] == 0
    (run / "figures" / "stale.png").write_bytes(b"an old run's figure")
    before = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "report.md", "predictions.csv")}
    status, err = _cli(capsys, *arguments)
    assert status == 2 and "holds a run already" in err and "--overwrite" in err
    assert (run / "checkpoint.pt").read_bytes() == before["checkpoint.pt"]  # untouched
    # a replacing run that fails after its fit (a full disk while writing) leaves the old run as it was
    with monkeypatch.context() as patched:
        patched.setattr("delpyro.cli.write_run", lambda *a, **k: (_ for _ in ()).throw(OSError("No space left")))
        status, err = _cli(capsys, *arguments, "--overwrite", "--epochs", "2")
    assert status == 2 and "No space left" in err
    assert {name: (run / name).read_bytes() for name in before} == before
    assert (run / "figures" / "stale.png").exists()
    assert _cli(capsys, *arguments, "--overwrite")[0] == 0
    assert not (run / "figures" / "stale.png").exists()
    assert "stale.png" not in (run / "report.md").read_text()
    assert (run / "checkpoint.pt").read_bytes() != before["checkpoint.pt"]
    assert not (run / ".delpyro-new-run").exists() and (run / "cache").is_dir()


def test_the_cli_report_refuses_damaged_runs_in_one_line(capsys, tmp_path, screen_file) -> None:
    run = tmp_path / "run"
    assert _cli(capsys, "fit", str(screen_file), "--out", str(run), "--epochs", "1", "--batch-size", "64")[0] == 0
    predictions = (run / "predictions.csv").read_bytes()
    (run / "predictions.csv").write_bytes(b"\x00\x01garbage,,,\n\xff")
    status, err = _cli(capsys, "report", str(run))
    assert status == 2 and "predictions.csv" in err and err.count("\n") == 1
    (run / "predictions.csv").write_bytes(predictions)
    whole = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(whole[: len(whole) // 2])
    status, err = _cli(capsys, "report", str(run))
    assert status == 2 and "checkpoint.pt" in err and "checksum" in err
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 a zip that is not one")
    status, err = _cli(capsys, "report", str(run))
    assert status == 2 and "not a delpyro checkpoint" in err
