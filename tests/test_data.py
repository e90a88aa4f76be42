"""The data layer: round trips, presets, validation errors, splits and minibatches."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delpyro import DELData, DELDataError, Minibatches, read_counts, simulate_del, split

SMILES = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "NS(=O)(=O)c1ccc(C(=O)O)cc1", "C[C@H](N)C(=O)O", "CCN(CC)CC"]


@pytest.fixture(scope="module")
def screen() -> DELData:
    return simulate_del(seed=3, n_per_cycle=(6, 5, 4), n_poses=3, n_pose_features=8)


def small_table(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "smiles": [SMILES[i % len(SMILES)] for i in range(n)],
            "t1": rng.poisson(2, n),
            "t2": rng.poisson(2, n),
            "beads": rng.poisson(1, n),
        }
    )


# ---------------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("suffix", ["csv", "tsv", "parquet", "csv.gz"])
def test_simulate_save_read_round_trip_is_exact(screen: DELData, tmp_path, suffix: str) -> None:
    path = screen.save(tmp_path / f"screen.{suffix}")
    assert (tmp_path / "screen.poses.npy").exists() and (tmp_path / "screen.attrs.json").exists()
    again = read_counts(path, preset="delpyro")
    assert again.equals(screen)
    # equals is not vacuous: one changed count, id or pose breaks it
    assert np.array_equal(again.target_counts, screen.target_counts)
    assert again.target_counts.dtype == np.int64 and again.load.dtype == np.float64
    assert list(again.truth.columns) == list(screen.truth.columns)
    assert again.building_blocks.equals(screen.building_blocks)
    assert again.attrs == screen.attrs
    changed = again.subset(np.arange(again.n_compounds))
    changed.target_counts[0, 0] += 1
    assert not changed.equals(screen)


def test_round_trip_keeps_string_ids_that_look_like_numbers(tmp_path) -> None:
    data = DELData(
        np.array([[1], [2], [0]]),
        None,
        ["CCO", "CCN", "CCC"],
        ["001", "NA", "1e3"],
        building_blocks=pd.DataFrame({"cycle1": ["7", "07", "nan"]}),
        load=np.array([0.1, 1 / 3, 2.0]),
    )
    again = read_counts(data.save(tmp_path / "x.csv"), preset="delpyro")
    assert again.compound_id.tolist() == ["001", "NA", "1e3"]
    assert again.building_blocks["cycle1"].tolist() == ["7", "07", "nan"]
    assert again.load[1] == 1 / 3
    assert again.n_control_replicates == 0
    assert again.equals(data)


def test_subset_and_frame(screen: DELData) -> None:
    index = np.array([5, 0, 7])
    part = screen.subset(index)
    assert part.compound_id.tolist() == screen.compound_id[index].tolist()
    assert np.array_equal(part.poses, screen.poses[index])
    assert np.array_equal(part.truth["log_target_enrichment"], screen.truth["log_target_enrichment"].to_numpy()[index])
    mask = np.zeros(screen.n_compounds, bool)
    mask[[2, 4]] = True
    assert screen.subset(mask).compound_id.tolist() == screen.compound_id[[2, 4]].tolist()
    frame = screen.to_frame()
    assert len(frame) == screen.n_compounds
    assert [c for c in frame.columns if c.startswith("target:")] == [f"target:{n}" for n in screen.target_names]
    summary = screen.replicate_summary()
    assert summary["total_reads"].tolist() == [
        *screen.target_counts.sum(0).tolist(),
        *screen.control_counts.sum(0).tolist(),
    ]
    assert np.allclose(summary["zero_fraction"].iloc[0], (screen.target_counts[:, 0] == 0).mean())


# ---------------------------------------------------------------------------------------------------
# presets


def test_preset_kindel_parquet(tmp_path) -> None:
    n = 5
    table = pd.DataFrame(
        {
            "smiles": SMILES[:n],
            "smiles_a": ["NCC(=O)O"] * n,
            "smiles_b": ["Nc1ccccc1"] * 2 + ["NCCO"] * 3,
            "smiles_c": [f"C{'C' * i}(=O)O" for i in range(n)],
            "seq_target_1": [0, 1, 2, 3, 4],
            "seq_target_2": [1, 0, 0, 9, 2],
            "seq_target_3": [0, 0, 5, 1, 1],
            "seq_matrix_1": [2, 0, 0, 0, 1],
            "seq_matrix_2": [0, 3, 0, 0, 1],
            "seq_matrix_3": [0, 0, 0, 7, 1],
            "seq_load": [10, 20, 30, 0, 5],
        }
    )
    table.to_parquet(tmp_path / "ddr1.parquet")
    data = read_counts(tmp_path / "ddr1.parquet", preset="kindel")
    assert data.target_names == ["seq_target_1", "seq_target_2", "seq_target_3"]
    assert data.control_names == ["seq_matrix_1", "seq_matrix_2", "seq_matrix_3"]
    assert data.target_counts[:, 1].tolist() == [1, 0, 0, 9, 2]
    assert data.control_counts[3].tolist() == [0, 0, 7]
    assert data.load.tolist() == [10.0, 20.0, 30.0, 0.0, 5.0]
    assert data.cycles == ["smiles_a", "smiles_b", "smiles_c"]
    assert data.building_blocks["smiles_b"].nunique() == 2


def test_preset_del_dock_accepts_whole_number_floats(tmp_path) -> None:
    table = pd.DataFrame({"smiles": SMILES[:4]})
    for r in range(1, 5):
        table[f"ca9_exp_r{r}_tpm_normalized"] = [float(r), 0.0, 2.0, 11.0]
    for r in range(1, 3):
        table[f"ca9_beads_r{r}_tpm_normalized"] = [0.0, 1.0, 0.0, 3.0]
    table["other"] = ["x"] * 4
    table.to_csv(tmp_path / "ca9.csv", index=False)
    data = read_counts(tmp_path / "ca9.csv", preset="del-dock")
    assert data.n_target_replicates == 4 and data.n_control_replicates == 2
    assert data.target_counts.dtype == np.int64
    assert data.target_counts[:, 3].tolist() == [4, 0, 2, 11]
    assert data.control_counts.sum() == 8


def test_preset_del_qsar_tsv(tmp_path) -> None:
    table = pd.DataFrame(
        {
            "smiles": SMILES[:3],
            "exp_tot": [5, 0, 12],
            "beads_tot": [0, 1, 2],
            "cycle1": [1, 1, 2],
            "cycle2": [7, 8, 9],
            "cycle3": [3, 3, 3],
        }
    )
    table.to_csv(tmp_path / "dd1s.tsv", sep="\t", index=False)
    data = read_counts(tmp_path / "dd1s.tsv", preset="del-qsar")
    assert data.target_counts[:, 0].tolist() == [5, 0, 12]
    assert data.control_counts[:, 0].tolist() == [0, 1, 2]
    assert data.building_blocks["cycle2"].tolist() == ["7", "8", "9"]


def test_explicit_arguments_and_globs() -> None:
    table = small_table()
    table["id"] = [f"m{i}" for i in range(len(table))]
    table["pre"] = np.arange(len(table), dtype=float)
    data = read_counts(table, target=["t*"], control="beads", compound_id="id", load="pre")
    assert data.target_names == ["t1", "t2"] and data.control_names == ["beads"]
    assert data.compound_id[2] == "m2" and data.load[3] == 3.0
    default_ids = read_counts(table, target="t1").compound_id.tolist()
    assert default_ids[:2] == ["row0", "row1"]
    no_control = read_counts(table, target="t1")
    assert no_control.control_counts.shape == (len(table), 0)


# ---------------------------------------------------------------------------------------------------
# validation: every failure names its column


@pytest.mark.parametrize(
    ("values", "what"),
    [
        ([1, -2, 0, 3, 0, 1], "negative"),
        ([1.0, np.nan, 0, 3, 0, 1], "missing"),
        ([1.0, np.inf, 0, 3, 0, 1], "infinite"),
        ([1.0, 2.5, 0, 3, 0, 1], "not whole"),
        (["1", "two", "0", "3", "0", "1"], "not numbers"),
    ],
)
def test_bad_counts_name_the_column_and_rows(values, what) -> None:
    table = small_table()
    table["t2"] = values
    with pytest.raises(DELDataError, match=rf"'t2'.*row 1 .*{what}"):
        read_counts(table, target=["t1", "t2"])


def test_bad_counts_in_a_file_name_the_column(tmp_path) -> None:
    table = small_table()
    table["t1"] = table["t1"].astype(object)
    table.loc[4, "t1"] = ""
    table.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DELDataError, match=r"'t1'.*row 4.*missing"):
        read_counts(tmp_path / "s.csv", target="t*")


def test_missing_column_names_preset_and_column() -> None:
    with pytest.raises(DELDataError, match=r"'seq_matrix_\*'.*preset 'kindel'"):
        read_counts(small_table().rename(columns={"t1": "seq_target_1"}), preset="kindel")
    with pytest.raises(DELDataError, match=r"'nope' for target counts"):
        read_counts(small_table(), target=["t1", "nope"])
    with pytest.raises(DELDataError, match=r"'mol' for smiles"):
        read_counts(small_table(), target="t1", smiles="mol")


def test_empty_table_duplicate_ids_and_load() -> None:
    with pytest.raises(DELDataError, match="empty"):
        read_counts(small_table().iloc[:0], target="t1")
    table = small_table()
    table["id"] = ["a", "b", "c", "b", "e", "a"]
    with pytest.raises(DELDataError, match=r"'id'.*rows 0, 1, 3, 5"):
        read_counts(table, target="t1", compound_id="id")
    table["pre"] = [1.0, 2.0, -1.0, 0.0, 1.0, 1.0]
    with pytest.raises(DELDataError, match=r"'pre'.*row 2 .*negative"):
        read_counts(table, target="t1", load="pre")


def test_poses_of_the_wrong_length_or_shape() -> None:
    table = small_table()
    with pytest.raises(DELDataError, match=r"poses.*5 rows but the table has 6"):
        read_counts(table, target="t1", poses=np.zeros((5, 2, 3), np.float32))
    with pytest.raises(DELDataError, match=r"poses.*\[n_compounds, n_poses, n_pose_features\]"):
        read_counts(table, target="t1", poses=np.zeros((6, 3), np.float32))
    bad = np.zeros((6, 2, 3), np.float32)
    bad[4, 1, 2] = np.nan
    with pytest.raises(DELDataError, match=r"poses.*row 4"):
        read_counts(table, target="t1", poses=bad)


def test_poses_from_a_memory_mapped_file(tmp_path) -> None:
    poses = np.random.default_rng(0).normal(size=(6, 2, 3)).astype(np.float16)
    np.save(tmp_path / "p.npy", poses)
    data = read_counts(small_table(), target="t1", poses=tmp_path / "p.npy")
    assert data.poses.dtype == np.float16
    assert np.array_equal(np.asarray(data.poses), poses)


def test_invalid_smiles_error_or_drop_with_report() -> None:
    table = small_table()
    table.loc[[1, 4], "smiles"] = ["C1CC", "not a molecule"]
    with pytest.raises(DELDataError, match=r"'smiles'.*rows 1, 4 \('C1CC', 'not a molecule'\)"):
        read_counts(table, target="t1")
    report: list[str] = []
    with pytest.warns(UserWarning, match="dropped 2 of 6"):
        data = read_counts(table, target="t1", on_invalid_smiles="drop", report=report)
    assert data.n_compounds == 4
    assert data.compound_id.tolist() == ["row0", "row2", "row3", "row5"]
    assert data.target_counts[:, 0].tolist() == table["t1"].to_numpy()[[0, 2, 3, 5]].tolist()
    assert len(report) == 1 and "rows 1, 4" in report[0]


def test_unknown_preset_and_format(tmp_path) -> None:
    with pytest.raises(DELDataError, match="unknown preset"):
        read_counts(small_table(), preset="nope")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(DELDataError, match="unknown table format"):
        read_counts(tmp_path / "x.xlsx", target="t1")
    with pytest.raises(DELDataError, match="no such file"):
        read_counts(tmp_path / "missing.csv", target="t1")


_CELLS = st.one_of(
    st.integers(-3, 50),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from(["", "x", "3", "1.0"]),
    st.none(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([*SMILES, "C1CC", "", "xyz"]),
            _CELLS,
            _CELLS,
            st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]),
        ),
        min_size=0,
        max_size=8,
    ),
    drop=st.booleans(),
)
def test_random_tables_give_data_or_a_clear_error(rows, drop) -> None:
    table = pd.DataFrame(rows, columns=["smiles", "t1", "c1", "id"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            data = read_counts(
                table, target="t1", control="c1", compound_id="id", on_invalid_smiles="drop" if drop else "error"
            )
    except DELDataError as err:
        assert str(err)
        return
    # a valid result: the counts are exactly the input's, as int64
    assert data.target_counts.dtype == np.int64 and (data.target_counts >= 0).all()
    kept = table.set_index("id").loc[data.compound_id.tolist()]
    assert np.array_equal(data.target_counts[:, 0], kept["t1"].astype(float).to_numpy())
    assert np.array_equal(data.control_counts[:, 0], kept["c1"].astype(float).to_numpy())


# ---------------------------------------------------------------------------------------------------
# splits and minibatches


def test_random_split_is_disjoint_complete_and_seeded(screen: DELData) -> None:
    train, val, test = split(screen, "random", (0.6, 0.2, 0.2), seed=4)
    ids = [set(part.compound_id) for part in (train, val, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set.union(*ids) == set(screen.compound_id)
    assert len(train) == round(0.6 * screen.n_compounds)
    again = split(screen, "random", (0.6, 0.2, 0.2), seed=4)[2]
    assert again.compound_id.tolist() == test.compound_id.tolist()
    assert split(screen, "random", (0.6, 0.2, 0.2), seed=5)[2].compound_id.tolist() != test.compound_id.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_building_block_split_holds_out_whole_blocks(screen: DELData, seed: int) -> None:
    train, val, test = split(screen, "building_block", (0.6, 0.2, 0.2), seed=seed, cycle="cycle1")
    blocks = [set(part.building_blocks["cycle1"]) for part in (train, val, test)]
    assert blocks[1] and blocks[2]
    assert not (blocks[0] & blocks[2]) and not (blocks[0] & blocks[1]) and not (blocks[1] & blocks[2])
    assert sum(len(p) for p in (train, val, test)) == screen.n_compounds
    assert set(train.compound_id) | set(val.compound_id) | set(test.compound_id) == set(screen.compound_id)
    # the default cycle is the one with the most building blocks
    default = split(screen, "building_block", seed=seed)
    assert not set(default[0].building_blocks["cycle1"]) & set(default[2].building_blocks["cycle1"])


def test_building_block_split_needs_blocks() -> None:
    data = read_counts(small_table(), target="t1")
    with pytest.raises(DELDataError, match="no building-block columns"):
        split(data, "building_block")
    with pytest.raises(ValueError, match="sum"):
        split(data, "random", (0.5, 0.2, 0.2))


def test_minibatches_cover_every_row_once_and_are_seeded(screen: DELData) -> None:
    batches = Minibatches({"target": screen.target_counts, "poses": screen.poses}, batch_size=32, seed=7)
    assert len(batches) == int(np.ceil(screen.n_compounds / 32))
    first = list(batches)
    index = np.concatenate([b["index"].numpy() for b in first])
    assert sorted(index.tolist()) == list(range(screen.n_compounds))
    assert np.array_equal(first[0]["target"].numpy(), screen.target_counts[first[0]["index"].numpy()])
    assert np.array_equal(first[1]["poses"].numpy(), screen.poses[first[1]["index"].numpy()])
    second = [b["index"].numpy() for b in batches]
    assert not np.array_equal(second[0], first[0]["index"].numpy())  # a new order each epoch
    replay = Minibatches({"target": screen.target_counts}, batch_size=32, seed=7)
    assert np.array_equal(next(iter(replay))["index"].numpy(), first[0]["index"].numpy())
    fixed = Minibatches({"target": screen.target_counts}, batch_size=32, drop_last=True, shuffle=False)
    assert all(b["target"].shape[0] == 32 for b in fixed)
    assert len(fixed) == screen.n_compounds // 32


def test_drop_invalid_smiles_also_drops_empty_and_missing_ones() -> None:
    table = pd.DataFrame({"smiles": ["CCO", "", "c1ccccc1", None, "C1CC"], "t1": [0, 1, 2, 3, 4]})
    report: list[str] = []
    with pytest.warns(UserWarning, match="dropped 3 of 5 rows"):
        data = read_counts(table, target="t1", on_invalid_smiles="drop", report=report)
    assert data.smiles.tolist() == ["CCO", "c1ccccc1"]
    assert data.target_counts[:, 0].tolist() == [0, 2]
    assert data.compound_id.tolist() == ["row0", "row2"]
    assert "rows 1, 3, 4" in report[0]
    with pytest.raises(DELDataError, match=r"column 'id': expected a non-empty string in every row; row 1 is empty"):
        read_counts(table.assign(id=["a", "", "c", "d", "e"]), target="t1", compound_id="id", on_invalid_smiles="drop")


def test_minibatches_read_memory_mapped_poses_from_the_file(tmp_path) -> None:
    poses = np.random.default_rng(0).standard_normal((50, 3, 4)).astype(np.float16)
    np.save(tmp_path / "poses.npy", poses)
    mapped = np.load(tmp_path / "poses.npy", mmap_mode="r")
    for shuffle in (True, False):
        batches = Minibatches({"poses": mapped, "row": np.arange(50)}, batch_size=16, shuffle=shuffle, seed=3)
        assert "poses" in batches.mapped and "poses" not in batches.tensors  # not loaded into memory
        seen = []
        for batch in batches:
            index = batch["index"].numpy()
            assert batch["poses"].dtype == torch.float16
            assert np.array_equal(batch["poses"].numpy(), poses[index])
            assert np.array_equal(batch["row"].numpy(), index)
            seen.extend(index.tolist())
        assert sorted(seen) == list(range(50))


def test_block_ids_are_one_object_per_distinct_value() -> None:
    """Block ids repeat over every compound; read as one string object per distinct id (not per row), a
    million-compound screen's read peaks about 150 MB lower. Missing and empty ids name their rows."""
    from delpyro.data import as_block_ids

    values = pd.Series(["A1", "A2", "B", "A1", "A2", 7], dtype=object)
    shared = as_block_ids(values, "bb1", 6)
    assert shared.dtype == object and shared.tolist() == ["A1", "A2", "B", "A1", "A2", "7"]
    assert shared[0] is shared[3] and shared[1] is shared[4]
    arrow = pd.Series(["x", "y", "x"], dtype="string[pyarrow]")
    assert as_block_ids(arrow, "bb1", 3).tolist() == ["x", "y", "x"]
    with pytest.raises(DELDataError, match=r"column 'bb2'.*rows 1, 3 are empty"):
        as_block_ids(pd.Series(["x", None, "y", " "], dtype=object), "bb2", 4)


def test_text_columns_are_numpy_strings_checked_chunk_by_chunk() -> None:
    """SMILES and ids become numpy's variable-width strings (no Python object per row), from lists, object
    arrays and Arrow-backed pandas columns alike; an empty entry past the first chunk names its row."""
    from delpyro.data import _CHUNK, STRINGS, as_strings

    n = _CHUNK + 5
    ids = [f"c{i}" for i in range(n)]
    for values in (ids, np.array(ids, dtype=object), pd.Series(ids, dtype="string[pyarrow]")):
        out = as_strings(values, "compound_id", n)
        assert out.dtype == STRINGS and out[0] == "c0" and out[-1] == f"c{n - 1}" and len(out) == n
    kept = np.array(ids, dtype=STRINGS)
    assert as_strings(kept, "compound_id", n) is kept
    broken = pd.Series(ids, dtype="string[pyarrow]")
    broken[_CHUNK + 2] = None
    with pytest.raises(DELDataError, match=rf"column 'compound_id'.*row {_CHUNK + 2} is empty"):
        as_strings(broken, "compound_id", n)
    with pytest.raises(DELDataError, match="expected 4 values"):
        as_strings(ids[:3], "smiles", 4)
