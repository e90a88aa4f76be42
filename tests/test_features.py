"""Tests of delpyro.features: Morgan fingerprints, packed bits, the on-disk cache, molecular weight."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import AllChem, rdFingerprintGenerator

from delpyro import features, workers
from delpyro.data import DELDataError
from delpyro.features import fingerprints, molecular_weight, unpack_bits

# Drug-like and DEL-like molecules, many with stereocentres, two enantiomer pairs among them.
DRUG_SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    "CC(C)Cc1ccc(cc1)[C@H](C)C(=O)O",  # (S)-ibuprofen
    "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O",  # (R)-ibuprofen
    "C[C@H](N)C(=O)O",  # alanine
    "C[C@@H](N)C(=O)O",  # its enantiomer
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",  # caffeine
    "CC(=O)Nc1ccc(O)cc1",  # paracetamol
    "CN1CCC[C@H]1c1cccnc1",  # nicotine
    "O=C1CC[C@H](N2C(=O)c3ccccc3C2=O)C(=O)N1",  # thalidomide
    "C[C@H](C(=O)O)c1ccc2cc(OC)ccc2c1",  # naproxen
    "CC(C)NC[C@H](O)COc1cccc2ccccc12",  # propranolol
    "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",  # imatinib
    "CN(C)C(=N)N=C(N)N",  # metformin
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",  # diazepam
    "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1",  # celecoxib
    "CC1(C)S[C@@H]2[C@H](NC(=O)Cc3ccccc3)C(=O)N2[C@H]1C(=O)O",  # penicillin G
    "CC(C)[C@@H]1CC[C@@H](C)C[C@H]1O",  # menthol
    "CN[C@H]1CC[C@@H](c2ccc(Cl)c(Cl)c2)c2ccccc21",  # sertraline
    "CNCCC(Oc1ccc(C(F)(F)F)cc1)c1ccccc1",  # fluoxetine
    "O=C(N[C@@H](Cc1ccccc1)C(=O)NCc1cccs1)c1ccc2[nH]ncc2c1",  # DEL-like
    "CC(C)C[C@H](NC(=O)c1ccc(Cl)cc1)C(=O)N1CCN(c2ncccn2)CC1",  # DEL-like
    "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O",  # glucose
    "C[C@]12CC[C@H]3[C@@H](CCC4=CC(=O)CC[C@@]34C)[C@@H]1CC[C@@H]2O",  # testosterone
    "N[C@@H](CC(=O)N1CCn2c(nnc2C(F)(F)F)C1)Cc1cc(F)c(F)cc1F",  # sitagliptin
    "CCOC(=O)C1=C[C@@H](OC(CC)CC)[C@H](NC(C)=O)[C@@H](N)C1",  # oseltamivir
    "c1ccccc1",  # benzene
    "C[N+](C)(C)CC(=O)[O-]",  # a zwitterion
    "NCCCC[C@H](N[C@@H](CCc1ccccc1)C(=O)O)C(=O)N1CCC[C@H]1C(=O)O",  # lisinopril
    "CC(=O)C[C@H](c1ccccc1)c1c(O)c2ccccc2oc1=O",  # warfarin
    "C(=C/c1ccccc1)\\c1ccccc1",  # stilbene
]
ENANTIOMER_PAIRS = [(1, 2), (3, 4)]


def reference_bits(smiles, radius, n_bits, use_chirality=True):
    """0/1 uint8 [n, n_bits] from RDKit by a different route than the one features.py takes."""
    rows = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    with rdBase.BlockLogs():  # the legacy call logs a deprecation notice
        for row, text in enumerate(smiles):
            mol = Chem.MolFromSmiles(text)
            if hasattr(AllChem, "GetMorganFingerprintAsBitVect"):
                legacy = AllChem.GetMorganFingerprintAsBitVect
                vector = legacy(mol, radius, nBits=n_bits, useChirality=use_chirality)
            else:
                generator = rdFingerprintGenerator.GetMorganGenerator(
                    radius=radius, fpSize=n_bits, includeChirality=use_chirality
                )
                vector = generator.GetFingerprint(mol)
            DataStructs.ConvertToNumpyArray(vector, rows[row])
    return rows


# ----------------------------------------------------------------------------------------------------
# agreement with RDKit


@pytest.mark.parametrize(("radius", "n_bits"), [(3, 2048), (2, 1024), (1, 64)])
def test_fingerprints_match_rdkit_bit_vectors(radius, n_bits):
    packed = fingerprints(DRUG_SMILES, radius=radius, n_bits=n_bits, n_jobs=1)
    assert packed.dtype == np.uint8
    assert packed.shape == (len(DRUG_SMILES), n_bits // 8)
    expected = reference_bits(DRUG_SMILES, radius, n_bits)
    np.testing.assert_array_equal(unpack_bits(packed), expected.astype(np.float32))
    np.testing.assert_array_equal(np.unpackbits(packed, axis=1), expected)
    assert expected.sum(axis=1).min() > 0


def test_on_bits_sit_where_packbits_puts_them():
    # bit j is bit 7 - j % 8 of byte j // 8
    packed = fingerprints(["C[C@H](N)C(=O)O"], radius=2, n_bits=512)[0]
    on_bits = set(reference_bits(["C[C@H](N)C(=O)O"], 2, 512)[0].nonzero()[0].tolist())
    found = {j for j in range(512) if (packed[j // 8] >> (7 - j % 8)) & 1}
    assert found == on_bits


def test_chirality_separates_enantiomers_only_when_asked():
    chiral = fingerprints(DRUG_SMILES, use_chirality=True)
    flat = fingerprints(DRUG_SMILES, use_chirality=False)
    differ = [not np.array_equal(chiral[a], chiral[b]) for a, b in ENANTIOMER_PAIRS]
    assert any(differ)
    for a, b in ENANTIOMER_PAIRS:
        np.testing.assert_array_equal(flat[a], flat[b])
    expected = reference_bits(DRUG_SMILES, 3, 2048, use_chirality=False)
    np.testing.assert_array_equal(unpack_bits(flat), expected)


def test_accepts_lists_tuples_arrays_and_series():
    expected = fingerprints(DRUG_SMILES[:5])
    for variant in (
        tuple(DRUG_SMILES[:5]),
        np.array(DRUG_SMILES[:5]),
        np.array(DRUG_SMILES[:5], dtype=object),
        pd.Series(DRUG_SMILES[:5], index=[10, 3, 7, 1, 0]),
        (s for s in DRUG_SMILES[:5]),
    ):
        np.testing.assert_array_equal(fingerprints(variant), expected)


def test_empty_input_gives_an_empty_array():
    for n_bits in (2048, 8):
        empty = fingerprints([], n_bits=n_bits)
        assert empty.shape == (0, n_bits // 8)
        assert empty.dtype == np.uint8
    assert molecular_weight([]).shape == (0,)


@pytest.mark.parametrize("n_bits", [0, -8, 12, 2047, 8.0])
def test_n_bits_must_be_a_positive_multiple_of_eight(n_bits):
    with pytest.raises(ValueError, match="n_bits"):
        fingerprints(["CCO"], n_bits=n_bits)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        fingerprints(["CCO"], radius=-1)
    with pytest.raises(ValueError, match="n_jobs"):
        fingerprints(["CCO"], n_jobs=0)
    with pytest.raises(TypeError, match="single string"):
        fingerprints("CCO")
    with pytest.raises(DELDataError, match="one-dimensional"):
        fingerprints(np.array([["CCO", "CCN"]]))


# ----------------------------------------------------------------------------------------------------
# bad SMILES


def test_unparseable_smiles_name_the_column_rows_and_strings(capfd):
    smiles = list(DRUG_SMILES[:8])
    smiles[2] = "C1CC"  # unclosed ring
    smiles[5] = "not a molecule"
    with pytest.raises(DELDataError) as caught:
        fingerprints(smiles)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "'smiles'" in message
    assert "2 of 8 rows" in message
    assert "2: 'C1CC'" in message
    assert "5: 'not a molecule'" in message
    assert "expected" in message
    # RDKit's own parse errors are kept off stderr, and logging works again afterwards
    assert "SMILES Parse Error" not in capfd.readouterr().err
    with pytest.raises(DELDataError, match="2: 'C1CC'"):
        molecular_weight(smiles)
    assert "SMILES Parse Error" not in capfd.readouterr().err


def test_many_bad_rows_are_counted_and_the_first_ones_shown():
    smiles = ["CCO"] * 40
    bad = list(range(3, 40, 3))  # 13 rows
    for position in bad:
        smiles[position] = f"X{position}"
    with pytest.raises(DELDataError) as caught:
        fingerprints(smiles)
    message = str(caught.value)
    assert "13 of 40 rows" in message
    assert "first 10 shown" in message
    assert "30: 'X30'" in message
    assert "33: 'X33'" not in message


@pytest.mark.parametrize("missing", [None, float("nan"), "", "   ", 5])
def test_missing_or_empty_smiles_are_errors(missing):
    smiles = pd.Series(["CCO", "c1ccccc1", missing, "CCN"], dtype=object)
    with pytest.raises(DELDataError, match=r"'smiles'.*1 of 4 rows.*2: "):
        fingerprints(smiles)
    with pytest.raises(DELDataError, match=r"2: "):
        molecular_weight(smiles)


def test_smiles_without_atoms_are_errors():
    with pytest.raises(DELDataError, match=r"1: '\.'"):
        fingerprints(["CCO", "."])


# ----------------------------------------------------------------------------------------------------
# unpacking


def test_unpack_numpy_and_torch_agree_and_round_trip():
    packed = fingerprints(DRUG_SMILES, radius=2, n_bits=256)
    from_numpy = unpack_bits(packed)
    from_torch = unpack_bits(torch.from_numpy(packed))
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.float32
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float32
    assert from_numpy.shape == (len(DRUG_SMILES), 256) == tuple(from_torch.shape)
    np.testing.assert_array_equal(from_torch.numpy(), from_numpy)
    assert set(np.unique(from_numpy).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.packbits(from_numpy.astype(np.uint8), axis=1), packed)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=3),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    drop=st.integers(min_value=0, max_value=7),
)
def test_unpack_inverts_packbits_for_any_bytes(shape, seed, drop):
    packed = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    n_bits = max(packed.shape[-1] * 8 - drop, 0)
    expected = np.unpackbits(packed, axis=-1, count=n_bits).astype(np.float32)
    np.testing.assert_array_equal(unpack_bits(packed, n_bits), expected)
    np.testing.assert_array_equal(unpack_bits(torch.from_numpy(packed), n_bits).numpy(), expected)
    full = unpack_bits(packed)
    assert full.shape == (*packed.shape[:-1], packed.shape[-1] * 8)
    np.testing.assert_array_equal(np.packbits(full.astype(np.uint8), axis=-1), packed)


def test_unpack_keeps_the_device_and_checks_its_input():
    packed = torch.tensor([[0b10000001, 0b01000000]], dtype=torch.uint8)
    bits = unpack_bits(packed, n_bits=10)
    assert bits.device == packed.device
    assert bits.tolist() == [[1, 0, 0, 0, 0, 0, 0, 1, 0, 1]]
    with pytest.raises(TypeError, match="uint8"):
        unpack_bits(packed.to(torch.int32))
    with pytest.raises(TypeError, match="uint8"):
        unpack_bits(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(TypeError):
        unpack_bits([[1, 2]])
    with pytest.raises(ValueError, match="n_bits"):
        unpack_bits(packed, n_bits=17)


# ----------------------------------------------------------------------------------------------------
# the on-disk cache


def _no_compute(*args, **kwargs):
    raise AssertionError("fingerprints were computed although a cached file should have been read")


def test_cache_returns_the_same_array_without_recomputing(tmp_path, monkeypatch):
    cache_dir = tmp_path / "nested" / "cache"  # created on demand
    first = fingerprints(DRUG_SMILES, cache_dir=cache_dir)
    files = sorted(cache_dir.iterdir())
    assert len(files) == 1
    assert re.fullmatch(r"morgan_r3_2048_chiral_[0-9a-f]{20}\.npy", files[0].name)
    np.testing.assert_array_equal(np.load(files[0]), first)

    monkeypatch.setattr(features, "_compute_packed", _no_compute)
    monkeypatch.setattr(features, "_compute_parallel", _no_compute)
    second = fingerprints(pd.Series(DRUG_SMILES), cache_dir=str(cache_dir))
    assert second.dtype == np.uint8 and second.shape == (len(DRUG_SMILES), 256)
    np.testing.assert_array_equal(second, first)


def test_cache_file_depends_on_parameters_and_every_smiles(tmp_path):
    def cache_file(smiles, **kwargs):
        before = set(tmp_path.iterdir())
        fingerprints(smiles, cache_dir=tmp_path, **kwargs)
        added = set(tmp_path.iterdir()) - before
        assert len(added) == 1, "each new input should add exactly one file"
        return added.pop().name

    names = [
        cache_file(DRUG_SMILES),
        cache_file(DRUG_SMILES, radius=2),
        cache_file(DRUG_SMILES, n_bits=1024),
        cache_file(DRUG_SMILES, use_chirality=False),
        cache_file(DRUG_SMILES[::-1]),
        cache_file(DRUG_SMILES[:-1]),
        cache_file([*DRUG_SMILES[:-1], "CCO"]),
        cache_file(["CC", "CO"]),
        cache_file(["CCC", "O"]),  # the same characters joined, split differently
    ]
    assert len(set(names)) == len(names)
    assert names[1].startswith("morgan_r2_2048_chiral_")
    assert names[2].startswith("morgan_r3_1024_chiral_")
    assert re.fullmatch(r"morgan_r3_2048_[0-9a-f]{20}\.npy", names[3])
    assert not list(tmp_path.glob("*.tmp")), "no temporary files are left behind"


def test_a_damaged_cache_file_is_recomputed(tmp_path):
    first = np.array(fingerprints(DRUG_SMILES[:4], cache_dir=tmp_path))  # a copy: the result maps the file
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not an array")
    np.testing.assert_array_equal(fingerprints(DRUG_SMILES[:4], cache_dir=tmp_path), first)
    np.testing.assert_array_equal(np.load(path), first)


def test_a_cached_result_maps_the_file_and_a_new_cache_leaves_old_maps_whole(tmp_path):
    """With a cache the fingerprints are the file, memory-mapped read-only (computed chunk by chunk into it,
    several chunks here); rewriting the cache replaces the file, so an array mapped before keeps its rows."""

    smiles = DRUG_SMILES * 3
    old_chunk, workers.MAX_CHUNK_SIZE = workers.MAX_CHUNK_SIZE, 4  # several chunks of a small input
    try:
        mapped = fingerprints(smiles, cache_dir=tmp_path, n_jobs=1)
    finally:
        workers.MAX_CHUNK_SIZE = old_chunk
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, fingerprints(smiles))
    (path,) = tmp_path.glob("*.npy")
    path.unlink()
    again = fingerprints(smiles, cache_dir=tmp_path)
    np.testing.assert_array_equal(mapped, again)  # the old map still reads the old (removed) file


def test_invalid_smiles_are_not_cached(tmp_path):
    with pytest.raises(DELDataError):
        fingerprints(["CCO", "C1CC"], cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------------
# worker processes


@pytest.fixture
def low_threshold(monkeypatch):
    """Send anything above 10 SMILES to worker processes, 8 SMILES to a chunk."""
    monkeypatch.setattr(workers, "PARALLEL_THRESHOLD", 10)
    monkeypatch.setattr(workers, "MIN_CHUNK_SIZE", 8)
    calls = []
    original = features._compute_parallel

    def spy(*args, **kwargs):
        calls.append(args[-1])
        return original(*args, **kwargs)

    monkeypatch.setattr(features, "_compute_parallel", spy)
    return calls


def test_parallel_equals_serial_byte_for_byte(low_threshold):
    smiles = DRUG_SMILES * 3
    serial = fingerprints(smiles, n_jobs=1)
    assert low_threshold == []
    parallel = fingerprints(smiles, n_jobs=3)
    assert low_threshold == [3]
    assert parallel.dtype == serial.dtype and parallel.shape == serial.shape
    assert parallel.tobytes() == serial.tobytes()


def test_parallel_reports_bad_rows_at_their_global_positions(low_threshold):
    smiles = DRUG_SMILES * 2
    smiles[3] = "C1CC"
    smiles[47] = "Q"
    with pytest.raises(DELDataError, match=r"2 of 60 rows.*3: 'C1CC', 47: 'Q'"):
        fingerprints(smiles, n_jobs=2)
    assert low_threshold == [2]


def test_spawned_workers_give_the_same_bytes(low_threshold, monkeypatch):
    # where fork is unavailable the workers are spawned: fresh interpreters that import delpyro
    import multiprocessing

    monkeypatch.setattr(workers, "pool_context", lambda: multiprocessing.get_context("spawn"))
    smiles = DRUG_SMILES[:20]
    assert fingerprints(smiles, n_jobs=2).tobytes() == fingerprints(smiles, n_jobs=1).tobytes()
    assert low_threshold == [2]


def test_a_screens_string_column_is_fingerprinted_without_a_python_list(tmp_path, monkeypatch) -> None:
    """A column of numpy strings is kept as it is (a list of 10^7 Python strings would be a gigabyte):
    the same fingerprints, and the same cache file, its name hashed a chunk of SMILES at a time."""
    from delpyro.data import STRINGS

    monkeypatch.setattr(features, "_HASH_CHUNK", 3)  # several chunks of a small input
    smiles = DRUG_SMILES[:10]
    column = np.array(smiles, dtype=STRINGS)
    assert features._smiles_sequence(column) is column
    named = features._cache_path(tmp_path, column, 2, 64, False)
    monkeypatch.setattr(features, "_HASH_CHUNK", 1 << 16)
    assert named == features._cache_path(tmp_path, smiles, 2, 64, False)
    mapped = fingerprints(column, radius=2, n_bits=64, use_chirality=False, cache_dir=tmp_path, n_jobs=1)
    assert [p.name for p in tmp_path.iterdir()] == [named.name]
    np.testing.assert_array_equal(mapped, fingerprints(smiles, radius=2, n_bits=64, use_chirality=False))
