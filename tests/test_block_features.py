"""Tests of building-block features in delpyro.features: attachment markers, block fingerprints, combining them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator

import delpyro
from delpyro import features
from delpyro.data import DELDataError
from delpyro.features import (
    attachment_points_to_dummies,
    block_fingerprints,
    combine_block_fingerprints,
    fingerprints,
    unpack_bits,
)

#: UNC-DEL003 screened against 53BP1: building blocks per cycle with DELi's [Z1]/[R1]-style markers.
UNCDEL003_CSV = Path(delpyro.__file__).parent / "screens" / "uncdel003_53bp1" / "UNCDEL003_53bp1.csv.gz"
CYCLES = ("A", "B", "C")
N_BLOCKS = {"A": 33, "B": 40, "C": 44}
#: The markers in the file, rewritten by hand (independently of the regular expression in features.py).
MARKERS_BY_HAND = {"[Z1]": "[*:1]", "[Z2]": "[*:2]", "[R1]": "[*:1]", "[R2]": "[*:2]"}
#: A005 (a trimethyl-lysine) writes its quaternary ammonium without the charge: C[N](C)(C)CCCC...; RDKit
#: refuses a neutral four-bonded nitrogen, marker or not.  The tests that need every block write the charge.
UNCHARGED_BLOCK = ("A", "A005")


def convert_by_hand(smiles: str) -> str:
    for marker, dummy in MARKERS_BY_HAND.items():
        smiles = smiles.replace(marker, dummy)
    return smiles


def reference_packed(smiles, radius, n_bits, use_chirality=True):
    """Packed fingerprints by RDKit's generator directly, packed with np.packbits."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits, includeChirality=use_chirality)
    rows = [generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(text)).astype(np.uint8) for text in smiles]
    return np.packbits(np.array(rows).reshape(len(smiles), n_bits), axis=1)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    if not UNCDEL003_CSV.is_file():
        pytest.skip(f"the UNC-DEL003 table is not here: {UNCDEL003_CSV}")
    return pd.read_csv(UNCDEL003_CSV)


@pytest.fixture(scope="module")
def raw_blocks(table) -> dict:
    """Per cycle, each block's SMILES by its id, as the file writes them."""
    blocks = {}
    for cycle in CYCLES:
        pairs = table[[f"ID_{cycle}", f"SMILES_{cycle}"]].drop_duplicates()
        assert pairs[f"ID_{cycle}"].is_unique  # one SMILES per block
        blocks[cycle] = dict(zip(pairs[f"ID_{cycle}"], pairs[f"SMILES_{cycle}"], strict=True))
    return blocks


@pytest.fixture(scope="module")
def blocks(raw_blocks) -> dict:
    """The blocks with A005's quaternary nitrogen charged, so that every block parses."""
    fixed = {cycle: dict(by_id) for cycle, by_id in raw_blocks.items()}
    cycle, block_id = UNCHARGED_BLOCK
    assert fixed[cycle][block_id].startswith("C[N](C)(C)")
    fixed[cycle][block_id] = fixed[cycle][block_id].replace("C[N](C)(C)", "C[N+](C)(C)")
    return fixed


@pytest.fixture(scope="module")
def result(blocks) -> dict:
    return block_fingerprints(blocks)


# ----------------------------------------------------------------------------------------------------
# the marker rule


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("CC(=O)[Z1]", "CC(=O)[*:1]"),
        ("[Z2]NCC(=O)[Z1]", "[*:2]NCC(=O)[*:1]"),
        ("O=C([C@H](CCCCN1CCCC1)N[R2])[R1]", "O=C([C@H](CCCCN1CCCC1)N[*:2])[*:1]"),
        ("CC[Z]", "CC[*]"),
        ("CC[R]", "CC[*]"),
        ("CC[Z12]", "CC[*:12]"),
        ("CC[R01]", "CC[*:1]"),
        # already dummy atoms
        ("CC*", "CC*"),
        ("CC[*]", "CC[*]"),
        ("CC[*:1]", "CC[*:1]"),
        ("CC[1*]", "CC[1*]"),
        # elements whose symbols start with Z or R
        ("[Zn]Cl", "[Zn]Cl"),
        ("[Zr]", "[Zr]"),
        ("[Rb+].[Cl-]", "[Rb+].[Cl-]"),
        ("[Ru]C[Re]", "[Ru]C[Re]"),
        ("[Rh].[Rn].[Ra]", "[Rh].[Rn].[Ra]"),
        ("c1ccccc1", "c1ccccc1"),
    ],
)
def test_attachment_markers_become_dummy_atoms(written, expected):
    converted = attachment_points_to_dummies(written)
    assert converted == expected
    assert attachment_points_to_dummies(converted) == converted  # idempotent
    with rdBase.BlockLogs():
        assert Chem.MolFromSmiles(converted) is not None


def test_attachment_points_need_a_string():
    with pytest.raises(TypeError, match="string"):
        attachment_points_to_dummies(None)


def test_dummy_atoms_contribute_bits_and_marker_names_do_not_matter():
    spellings = ["CC(=O)[Z1]", "CC(=O)[R2]", "CC(=O)*", "CC(=O)[*]", "CC(=O)[*:1]", "CC(=O)[Z]"]
    by_id = {f"s{k}": text for k, text in enumerate(spellings)}
    by_id["aldehyde"] = "CC=O"  # the block with its attachment point removed
    ids, packed = block_fingerprints({"A": by_id}, radius=2, n_bits=1024)["A"]
    rows = {block_id: packed[k] for k, block_id in enumerate(ids)}
    for k in range(1, len(spellings)):
        np.testing.assert_array_equal(rows[f"s{k}"], rows["s0"])
    assert not np.array_equal(rows["s0"], rows["aldehyde"])

    # the bits whose environment is centred on the dummy atom (atom 3) are set, by RDKit's own account
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    output = rdFingerprintGenerator.AdditionalOutput()
    output.AllocateBitInfoMap()
    generator.GetFingerprint(Chem.MolFromSmiles("CC(=O)[*:1]"), additionalOutput=output)
    from_dummy = [bit for bit, origins in output.GetBitInfoMap().items() if any(atom == 3 for atom, _ in origins)]
    assert from_dummy
    bits = np.unpackbits(rows["s0"])
    assert all(bits[bit] == 1 for bit in from_dummy)
    aldehyde_bits = np.unpackbits(rows["aldehyde"])
    radius_0_dummy = [b for b, origins in output.GetBitInfoMap().items() if (3, 0) in origins]
    assert len(radius_0_dummy) == 1 and aldehyde_bits[radius_0_dummy[0]] == 0


# ----------------------------------------------------------------------------------------------------
# real building blocks (UNC-DEL003)


def test_every_real_block_parses_after_the_marker_conversion(raw_blocks, blocks):
    assert {cycle: len(by_id) for cycle, by_id in raw_blocks.items()} == N_BLOCKS
    refused, unparseable = 0, []
    with rdBase.BlockLogs():
        for cycle, by_id in raw_blocks.items():
            for block_id, text in by_id.items():
                assert any(marker in text for marker in MARKERS_BY_HAND), (cycle, block_id, text)
                refused += Chem.MolFromSmiles(text) is None
                converted = attachment_points_to_dummies(text)
                assert converted == convert_by_hand(text)
                assert "[Z" not in converted and "[R" not in converted
                if Chem.MolFromSmiles(converted) is None:
                    unparseable.append((cycle, block_id))
        assert refused == sum(N_BLOCKS.values())  # RDKit refuses every block as written
        # only A005 fails, for its uncharged quaternary nitrogen; with the charge written it parses too
        assert unparseable == [UNCHARGED_BLOCK]
        for by_id in blocks.values():
            for text in by_id.values():
                assert Chem.MolFromSmiles(attachment_points_to_dummies(text)) is not None


def test_the_uncharged_real_block_is_an_error_naming_cycle_and_block(raw_blocks):
    with pytest.raises(DELDataError) as caught:
        block_fingerprints(raw_blocks)
    message = str(caught.value)
    assert "cycle 'A'" in message
    assert "block 'A005'" in message
    assert "1 of 33 blocks" in message
    assert "[*:1]" in message  # the converted SMILES is shown next to the one written
    assert "A004" not in message


@pytest.mark.parametrize(("radius", "n_bits", "use_chirality"), [(3, 2048, True), (2, 1024, True), (3, 512, False)])
def test_real_block_fingerprints_equal_rdkit_bit_for_bit(blocks, radius, n_bits, use_chirality):
    result = block_fingerprints(blocks, radius=radius, n_bits=n_bits, use_chirality=use_chirality)
    assert list(result) == list(CYCLES)
    for cycle in CYCLES:
        ids, packed = result[cycle]
        assert ids == sorted(str(block_id) for block_id in blocks[cycle])
        assert packed.dtype == np.uint8
        assert packed.shape == (N_BLOCKS[cycle], n_bits // 8)
        converted = [convert_by_hand(blocks[cycle][block_id]) for block_id in ids]
        expected = reference_packed(converted, radius, n_bits, use_chirality)
        np.testing.assert_array_equal(packed, expected)
        assert (np.unpackbits(packed, axis=1).sum(axis=1) > 0).all()
        if radius >= 3:  # at radius 2 the PEG linkers B006 and B009 (two and four units) set the same bits
            assert len({row.tobytes() for row in packed}) == len(ids)


def test_real_combined_fingerprints_equal_the_concatenation_by_hand(table, result):
    ids = {cycle: result[cycle][0] for cycle in CYCLES}
    tables = [result[cycle][1] for cycle in CYCLES]
    few = table.iloc[[0, 1, 2, 100, 4208]]
    codes = np.array([[ids[cycle].index(row[f"ID_{cycle}"]) for cycle in CYCLES] for _, row in few.iterrows()])
    combined = combine_block_fingerprints(codes, tables)
    assert combined.dtype == np.uint8
    assert combined.shape == (len(few), 3 * 2048 // 8)
    for k, (_, row) in enumerate(few.iterrows()):
        by_hand = np.concatenate([tables[c][ids[cycle].index(row[f"ID_{cycle}"])] for c, cycle in enumerate(CYCLES)])
        np.testing.assert_array_equal(combined[k], by_hand)
        # and each cycle's part is the fingerprint of that block, computed afresh
        for c, cycle in enumerate(CYCLES):
            block_smiles = attachment_points_to_dummies(row[f"SMILES_{cycle}"].replace("C[N](C)(C)", "C[N+](C)(C)"))
            part = combined[k, c * 256 : (c + 1) * 256]
            np.testing.assert_array_equal(part, fingerprints([block_smiles], n_jobs=1)[0])
            np.testing.assert_array_equal(
                unpack_bits(combined[k : k + 1])[0, c * 2048 : (c + 1) * 2048], unpack_bits(part)
            )

    # the whole library, codes from pandas (unknown ids would be -1)
    all_codes = np.stack([pd.Index(ids[cycle]).get_indexer(table[f"ID_{cycle}"]) for cycle in CYCLES], axis=1)
    assert (all_codes >= 0).all()
    everything = combine_block_fingerprints(all_codes, tables)
    np.testing.assert_array_equal(everything[few.index.to_numpy()], combined)


def test_real_block_fingerprints_are_read_from_the_cache(blocks, result, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = block_fingerprints(blocks, cache_dir=cache_dir)
    files = sorted(cache_dir.iterdir())
    assert len(files) == 3
    assert all(path.name.startswith("morgan_r3_2048_chiral_") and path.suffix == ".npy" for path in files)
    stored = sorted(np.load(path).tobytes() for path in files)
    assert stored == sorted(first[cycle][1].tobytes() for cycle in CYCLES)
    stamps = [path.stat().st_mtime_ns for path in files]

    def refuse(*args, **kwargs):
        raise AssertionError("block fingerprints were computed although the cache holds them")

    monkeypatch.setattr(features, "_compute_packed", refuse)
    monkeypatch.setattr(features, "_compute_parallel", refuse)
    second = block_fingerprints(blocks, cache_dir=cache_dir)
    for cycle in CYCLES:
        assert second[cycle][0] == first[cycle][0] == result[cycle][0]
        np.testing.assert_array_equal(second[cycle][1], first[cycle][1])
        np.testing.assert_array_equal(second[cycle][1], result[cycle][1])
    assert sorted(cache_dir.iterdir()) == files
    assert [path.stat().st_mtime_ns for path in files] == stamps


def test_real_codes_of_minus_one_give_zero_bytes_for_that_cycle(result):
    tables = [result[cycle][1] for cycle in CYCLES]
    codes = np.array([[0, 1, 2], [-1, 1, 2], [0, -1, 2], [0, 1, -1], [-1, -1, -1], [33, 40, 44], [-7, 10**6, 43]])
    combined = combine_block_fingerprints(codes, tables)
    for k, row in enumerate(codes):
        for c, code in enumerate(row):
            part = combined[k, c * 256 : (c + 1) * 256]
            if 0 <= code < len(tables[c]):
                np.testing.assert_array_equal(part, tables[c][code])
            else:
                assert not part.any()
    assert combined[0].any() and not combined[4].any() and not combined[5].any()


# ----------------------------------------------------------------------------------------------------
# block_fingerprints: ids, errors


def test_unparseable_block_names_the_cycle_and_block():
    blocks = {"cycle1": {"x1": "CC[Z1]", "x2": "C1CC[Z1]", "x3": "c1ccccc1[R1]"}}
    with pytest.raises(DELDataError) as caught:
        block_fingerprints(blocks)
    message = str(caught.value)
    assert "cycle 'cycle1'" in message
    assert "block 'x2'" in message and "'C1CC[Z1]'" in message and "'C1CC[*:1]'" in message
    assert "x1" not in message and "x3" not in message


@pytest.mark.parametrize("bad", [None, "", "   ", float("nan"), 5])
def test_missing_block_smiles_names_the_cycle_and_block(bad):
    with pytest.raises(DELDataError, match=r"cycle 'B'.*block 'b7'"):
        block_fingerprints({"A": {"a1": "CC[Z1]"}, "B": {"b1": "CC[R1]", "b7": bad}})


def test_block_ids_become_sorted_strings_and_empty_cycles_are_kept():
    result = block_fingerprints({1: {10: "CC[Z1]", 2: "CCC[Z1]", "b": "CO[Z1]"}, "two": {}}, n_bits=64)
    assert list(result) == ["1", "two"]
    ids, packed = result["1"]
    assert ids == ["10", "2", "b"]
    np.testing.assert_array_equal(packed, fingerprints(["CC[*:1]", "CCC[*:1]", "CO[*:1]"], n_bits=64))
    assert result["two"][0] == [] and result["two"][1].shape == (0, 8)
    with pytest.raises(DELDataError, match="'1'"):
        block_fingerprints({"A": {1: "CC[Z1]", "1": "CCC[Z1]"}})
    with pytest.raises(TypeError):
        block_fingerprints([("A", {"a": "C"})])
    with pytest.raises(TypeError):
        block_fingerprints({"A": ["CC[Z1]"]})
    with pytest.raises(ValueError, match="n_bits"):
        block_fingerprints({}, n_bits=12)


# ----------------------------------------------------------------------------------------------------
# combine_block_fingerprints


def test_combine_matches_a_loop_across_chunks_and_code_dtypes(monkeypatch):
    monkeypatch.setattr(features, "_COMBINE_ROWS", 7)
    rng = np.random.default_rng(3)
    tables = [rng.integers(0, 256, size=(n, 4), dtype=np.uint8) for n in (5, 1, 9, 0)]
    codes = np.stack([rng.integers(-2, n + 2, size=100) for n in (5, 1, 9, 0)], axis=1)
    expected = np.zeros((100, 16), dtype=np.uint8)
    for k in range(100):
        for c, table in enumerate(tables):
            if 0 <= codes[k, c] < len(table):
                expected[k, 4 * c : 4 * (c + 1)] = table[codes[k, c]]
    for dtype in (np.int64, np.int32, np.int8):
        np.testing.assert_array_equal(combine_block_fingerprints(codes.astype(dtype), tables), expected)
    unsigned = np.where(codes < 0, np.iinfo(np.uint64).max, codes).astype(np.uint64)
    np.testing.assert_array_equal(combine_block_fingerprints(unsigned, tables), expected)
    assert combine_block_fingerprints(np.zeros((0, 4), dtype=np.int64), tables).shape == (0, 16)
    assert combine_block_fingerprints(np.zeros((3, 0), dtype=np.int64), []).shape == (3, 0)


def test_combine_refuses_mismatched_inputs():
    tables = [np.zeros((2, 4), dtype=np.uint8), np.zeros((3, 4), dtype=np.uint8)]
    codes = np.zeros((5, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="2 cycles"):
        combine_block_fingerprints(codes, tables[:1])
    with pytest.raises(ValueError, match="same number of bytes"):
        combine_block_fingerprints(codes, [tables[0], np.zeros((3, 8), dtype=np.uint8)])
    with pytest.raises(TypeError, match="integers"):
        combine_block_fingerprints(codes.astype(np.float64), tables)
    with pytest.raises(TypeError, match="integers"):
        combine_block_fingerprints(codes.astype(bool), tables)
    with pytest.raises(ValueError, match="two-dimensional"):
        combine_block_fingerprints(codes[:, 0], tables)
    with pytest.raises(TypeError, match="uint8"):
        combine_block_fingerprints(codes, [tables[0], tables[1].astype(np.int64)])
    with pytest.raises(TypeError, match="mapping"):
        combine_block_fingerprints(codes, {"A": tables[0], "B": tables[1]})
