"""The encoding of a screen: depth and load offsets, building-block codes, and arrays by batch key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import delpyro
from delpyro import DELDataError, Encoding, ModelConfig, split
from delpyro.batches import Minibatches
from delpyro.encoding import load_offset, log_depth_offsets

# ---------------------------------------------------------------------------------------------------
# depth and load offsets


def test_log_depth_offsets_are_log_column_totals_over_n() -> None:
    counts = np.array([[1, 0, 30], [2, 5, 0], [0, 7, 10], [5, 0, 0]])
    got = log_depth_offsets(counts, ["r1", "r2", "r3"], "target")
    np.testing.assert_allclose(got, np.log(np.array([8.0, 12.0, 40.0]) / 4.0), rtol=1e-15)
    assert got.dtype == np.float64


def test_log_depth_offsets_without_replicates_is_empty() -> None:
    got = log_depth_offsets(np.zeros((5, 0), dtype=np.int64), [], "control")
    assert got.shape == (0,)


def test_log_depth_offsets_name_the_empty_replicate() -> None:
    counts = np.array([[1, 0, 3], [2, 0, 0]])
    with pytest.raises(DELDataError, match="control") as info:
        log_depth_offsets(counts, ["beads_a", "beads_b", "beads_c"], "control")
    message = str(info.value)
    assert "beads_b" in message
    assert "beads_a" not in message and "beads_c" not in message


def test_load_offset_whole_numbers_take_half_a_read() -> None:
    load = np.array([0, 3, 10, 1])
    pseudocount, log_mean = load_offset(load)
    assert pseudocount == 0.5
    assert log_mean == pytest.approx(np.log((0.5 + 3.5 + 10.5 + 1.5) / 4), rel=1e-14)
    # whole numbers stored as floats are still counts
    assert load_offset(load.astype(np.float64)) == (pseudocount, log_mean)
    assert load_offset(np.zeros(3))[0] == 0.5


def test_load_offset_fractions_take_half_the_smallest_positive_value() -> None:
    load = np.array([0.0, 0.02, 0.5, 0.1, 0.02])
    pseudocount, log_mean = load_offset(load)
    assert pseudocount == pytest.approx(0.01, rel=1e-14)
    assert log_mean == pytest.approx(np.log(np.mean(load + 0.01)), rel=1e-14)
    # centred: the mean of (load + pseudocount) / exp(log_mean) is one
    assert np.mean((load + pseudocount) / np.exp(log_mean)) == pytest.approx(1.0, rel=1e-14)


# ---------------------------------------------------------------------------------------------------
# building-block codes and the arrays of a screen


@pytest.fixture(scope="module")
def screen() -> delpyro.DELData:
    return delpyro.simulate_del(seed=6, n_per_cycle=(10, 10, 8))


def test_unseen_blocks_and_pairs_map_to_the_unseen_slot(screen) -> None:
    train, _, test = split(screen, "building_block", seed=0, cycle="cycle1")
    encoding = Encoding.fit(train, ModelConfig(terms=("building_blocks",)))
    codes = encoding.block_codes(test)
    n_cycle1 = len(encoding.bb_vocabulary["cycle1"])
    assert (codes[:, 0] == n_cycle1).all()  # every cycle-1 block of the test set is new
    n_pairs_12 = len(encoding.pair_keys["cycle1+cycle2"])
    assert (codes[:, 3] == n_pairs_12).all()  # and so is every pair that holds one
    train_codes = encoding.block_codes(train)
    assert (train_codes[:, 0] < n_cycle1).all()
    assert (train_codes[:, 5] < len(encoding.pair_keys["cycle2+cycle3"])).all()
    # a pair's code decodes to its two blocks
    families = dict(encoding.families)
    assert families["cycle1"] == n_cycle1 + 1 and families["cycle1+cycle2"] == n_pairs_12 + 1
    rows, columns = encoding.pair_blocks("cycle1+cycle2")
    labels = encoding.family_labels()["cycle1+cycle2"]
    for slot in (0, len(rows) // 2, len(rows) - 1):
        a, b = rows[slot], columns[slot]
        assert labels[slot] == f"{encoding.bb_vocabulary['cycle1'][a]}+{encoding.bb_vocabulary['cycle2'][b]}"
        seen = (train_codes[:, 3] == slot).nonzero()[0]
        assert (train_codes[seen, 0] == a).all() and (train_codes[seen, 1] == b).all() and len(seen) > 0


def test_encode_gives_every_array_by_batch_key_and_round_trips(screen) -> None:
    from delpyro import keys

    train, _, test = split(screen, "random", seed=1)
    config = ModelConfig(fingerprint_bits=128)
    encoding = Encoding.fit(train, config)
    assert encoding.terms == ("fingerprint", "building_blocks", "compound")
    arrays = encoding.encode(test)
    expected = {keys.FINGERPRINTS, keys.BLOCK_CODES, keys.TRAINING_POSITION, keys.LOG_LOAD}
    assert set(arrays) == expected | {keys.TARGET_COUNTS, keys.CONTROL_COUNTS}
    assert arrays[keys.FINGERPRINTS].shape == (test.n_compounds, 16)
    assert (arrays[keys.TRAINING_POSITION] == -1).all()  # no test compound was screened in training
    positions = encoding.encode(train)[keys.TRAINING_POSITION]
    np.testing.assert_array_equal(positions, np.arange(train.n_compounds))
    np.testing.assert_allclose(arrays[keys.LOG_LOAD], np.log(test.load + 0.5) - encoding.load_log_mean, rtol=1e-6)
    np.testing.assert_array_equal(arrays[keys.TARGET_COUNTS], test.target_counts)
    # the arrays are compact: the counts are the screen's own array, the codes int32; batches hold the
    # dtypes keys.py names, with the same values
    assert np.shares_memory(arrays[keys.TARGET_COUNTS], test.target_counts)
    assert arrays[keys.BLOCK_CODES].dtype == np.int32
    for shuffle in (False, True):
        batch = next(iter(Minibatches(arrays, 7, shuffle=shuffle, seed=1)))
        rows = batch[keys.INDEX].numpy()
        assert batch[keys.INDEX].dtype == torch.int64 and batch[keys.BLOCK_CODES].dtype == torch.int64
        assert batch[keys.TARGET_COUNTS].dtype == batch[keys.CONTROL_COUNTS].dtype == torch.float32
        np.testing.assert_array_equal(batch[keys.TARGET_COUNTS].numpy(), test.target_counts[rows])
        np.testing.assert_array_equal(batch[keys.BLOCK_CODES].numpy(), arrays[keys.BLOCK_CODES][rows])
    again = Encoding.from_dict(encoding.to_dict())
    assert again == encoding
    np.testing.assert_array_equal(again.training_structures, encoding.training_structures)
    assert again.training_digest == encoding.training_digest and len(encoding.training_digest) == 64
    # a screen with other replicates cannot be scored: its counts are refused, naming both sets
    other = test.subset(np.arange(test.n_compounds))
    other.target_names = [f"x{j}" for j in range(test.n_target_replicates)]
    with pytest.raises(DELDataError, match=r"\['x0', 'x1', 'x2'\].*differ from the training screen's \['r1'"):
        encoding.encode(other)
    assert keys.TARGET_COUNTS not in encoding.encode(other, counts=False)


def test_an_encoding_names_what_the_screen_lacks(screen) -> None:
    no_blocks = screen.subset(np.arange(20))
    no_blocks.building_blocks = None
    with pytest.raises(DELDataError, match="'building_blocks' term needs building-block id columns"):
        Encoding.fit(no_blocks, ModelConfig(terms=("building_blocks",)))
    with pytest.raises(DELDataError, match="poses"):
        Encoding.fit(screen, ModelConfig(terms=("fingerprint", "poses")))
    encoding = Encoding.fit(screen, ModelConfig(terms=("building_blocks",)))
    with pytest.raises(DELDataError, match="no block ids"):
        encoding.encode(no_blocks)


def test_training_ids_travel_as_text_and_offsets_and_are_found_by_sorted_lookup(screen, monkeypatch) -> None:
    """The training ids are numpy strings in memory and two tensors in a checkpoint (no Python string per
    compound); a shuffled screen with a new compound and one whose SMILES changed finds each training
    compound's row, and -1 for the other two."""
    from delpyro.data import STRINGS
    from delpyro.encoding import from_text_tensors, screen_digest, text_tensors

    values = np.array(["a", "", "ü-7", "b" * 40], dtype=STRINGS)
    tensors = text_tensors(values)
    assert tensors["text"].dtype == torch.uint8 and tensors["offsets"].tolist() == [0, 1, 1, 5, 45]
    assert from_text_tensors(tensors).tolist() == ["a", "", "ü-7", "b" * 40]

    train, _, test = split(screen, "random", seed=1)
    encoding = Encoding.fit(train, ModelConfig(fingerprint_bits=128))
    assert encoding.training_ids.dtype == STRINGS
    order = np.random.default_rng(0).permutation(train.n_compounds)[:50]
    shuffled = train.subset(order)
    shuffled.smiles[3] = "CCO"
    assert encoding.training_positions(shuffled).tolist() == [*order[:3], -1, *order[4:]]
    assert encoding.training_positions(test).tolist() == [-1] * test.n_compounds
    # the digest is hashed chunk by chunk (7 rows here) and equals the whole columns' joined text
    import hashlib

    monkeypatch.setattr(delpyro.encoding, "_DIGEST_CHUNK", 7)

    whole = hashlib.sha256()
    for column in (train.compound_id, train.smiles):
        whole.update("\x00".join(column.tolist()).encode() + b"\x01")
    assert screen_digest(train) == whole.hexdigest() == encoding.training_digest
