"""A screen becomes the arrays a model consumes, in one place, before the model.

:meth:`Encoding.fit` reads what a model needs to remember of its training screen: replicate names and
library-size depth offsets, the load offset's constants, the building-block vocabulary per cycle and the
pairs of blocks (disynthons) seen together, the training compounds' ids, pose shapes, the fingerprint
settings and the terms the model will have. :meth:`Encoding.encode` then turns any screen into named arrays
(:mod:`delpyro.keys`): packed fingerprints, block and pair codes in the training vocabulary, the load
offset, positions in the training screen, and counts. A model is built from an encoding and never reads a
screen's columns itself::

    screen -> Encoding.fit(train, config) -> encoding.encode(screen) -> Minibatches -> DELModel(batch)

Building-block families: one per cycle, then (with ``bb_pairs``; "auto" keeps the pairs of cycles whose
pairs of blocks hold at least ``PAIR_MIN_COMPOUNDS`` training compounds each on average) one per pair of
cycles. Each family has a slot per block (or per pair seen in training) and a last slot for every block or
pair never seen in training. A compound's code in a family is its slot there. The encoding also keeps how
many training compounds each pair holds (``pair_counts``), which weighs a pair's prior in a minibatch.

Depth and load offsets (natural logs):

- ``log depth_r = log(total reads of replicate r / n_compounds)`` of the training screen, per replicate
  (zeros without ``normalize_depth``);
- ``log load_i = log(load_i + c) - log mean(load + c)``, with c = 0.5 for whole-number loads
  (pre-selection counts) and half the smallest positive value for relative abundances.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import torch

from delpyro.config import PAIR_MIN_COMPOUNDS, ModelConfig, resolve_terms
from delpyro.data import DELData, DELDataError, as_text
from delpyro.features import (
    attachment_points_to_dummies,
    block_fingerprints,
    combine_block_fingerprints,
    fingerprints,
)
from delpyro.keys import (
    BLOCK_CODES,
    CONTROL_COUNTS,
    FINGERPRINTS,
    INDEX,
    LOG_LOAD,
    POSES,
    SCREEN_SIZE,
    TARGET_COUNTS,
    TRAINING_POSITION,
)
from delpyro.repair import repair_smiles

__all__ = ["UNSEEN", "Encoding", "load_offset", "log_depth_offsets", "screen_digest", "structure_keys"]

#: The label of every family's last slot: blocks and pairs never seen in training.
UNSEEN = "(unseen)"


def log_depth_offsets(counts: np.ndarray, names: list[str], arm: str) -> np.ndarray:
    """float64 ``[n_replicates]``: log(column total / n_compounds), library-size normalization.

    A replicate without reads cannot be normalized: a DELDataError names it.
    """
    counts = np.asarray(counts)
    if counts.shape[1] == 0:
        return np.zeros(0)
    totals = counts.sum(axis=0).astype(np.float64)
    empty = [names[j] for j in np.flatnonzero(totals == 0)]
    if empty:
        raise DELDataError(f"{arm} replicates {empty} hold no reads: their depth cannot be normalized")
    return np.log(totals / counts.shape[0])


def load_offset(load: np.ndarray) -> tuple[float, float]:
    """``(pseudocount, log_mean)`` so that the offset is log(load + pseudocount) - log_mean.

    Whole-number loads (pre-selection counts) get a pseudocount of 0.5; relative abundances half their
    smallest positive value. ``log_mean`` centres the offset: log of the mean of load + pseudocount.
    """
    load = np.asarray(load, dtype=np.float64)
    if np.all(load == np.round(load)):
        pseudocount = 0.5
    else:
        positive = load[load > 0]
        pseudocount = 0.5 * float(positive.min()) if positive.size else 1.0
    return pseudocount, float(np.log(np.mean(load + pseudocount)))


@dataclass
class Encoding:
    """What a model takes from its training screen, and how it turns any screen into arrays.

    Build it with :meth:`fit`; it is saved with a checkpoint (:meth:`to_dict`, :meth:`from_dict`).
    """

    #: the model's terms, resolved against the training screen (see :func:`delpyro.config.resolve_terms`)
    terms: tuple[str, ...]
    target_names: list[str]
    control_names: list[str]
    #: per-replicate log depth offsets ``[n_replicates]`` of each arm
    log_depth_target: list[float]
    log_depth_control: list[float]
    fingerprint_radius: int = 3
    fingerprint_bits: int = 2048
    fingerprint_chirality: bool = True
    #: what the fingerprint network reads ("products" | "building_blocks"), and with building blocks the
    #: cycles whose blocks' fingerprints stand side by side
    features: str = "products"
    feature_cycles: list[str] | None = None
    n_poses: int = 0
    n_pose_features: int = 0
    #: the load offset's constants (None: the model uses no load)
    load_pseudocount: float | None = None
    load_log_mean: float | None = None
    #: building-block ids per cycle, and the observed pair keys per pair of cycles (the building_blocks term)
    bb_vocabulary: dict[str, list[str]] | None = None
    pair_keys: dict[str, list[int]] | None = None
    #: training compounds of every observed pair, in the order of ``pair_keys`` (None: as ``pair_keys``)
    pair_counts: dict[str, list[int]] | None = None
    #: compound ids of the training screen, in order (the compound term's effects are indexed so), and a
    #: key of each one's structure (its SMILES): a compound of another screen is the same one only when
    #: both agree (None: ids alone, as checkpoints of format 2 kept them)
    training_ids: np.ndarray | None = field(default=None, compare=False)
    training_structures: np.ndarray | None = field(default=None, compare=False)
    #: a digest of the training screen's compound ids and SMILES (what a resumed fit must train on again)
    training_digest: str | None = None
    #: a screen of several targets: the targets, and each target replicate's target (its position in
    #: ``targets``); None for one target
    targets: list[str] | None = None
    replicate_target: list[int] | None = None
    #: several targets on more than one kind of beads: the bead sets, each control replicate's set and
    #: each target's (positions in ``bead_sets``); None for one set of controls
    bead_sets: list[str] | None = None
    control_bead_set: list[int] | None = None
    target_bead_set: list[int] | None = None

    # ---- built from the training screen ----------------------------------------------------------------
    @classmethod
    def fit(cls, data: DELData, config: ModelConfig) -> Encoding:
        """The encoding of a model with ``config`` trained on ``data``."""
        terms = resolve_terms(config, data.n_poses, data.building_blocks is not None)
        if "poses" in terms and data.n_poses == 0:
            raise DELDataError("poses: the 'poses' term needs docked-pose features, and the screen has none")
        if config.gates == "per_compound" and "fingerprint" not in terms:
            raise ValueError("gates='per_compound' needs the 'fingerprint' term, whose network gives the gates")
        targets = replicate_target = None
        if data.replicate_targets is not None:
            targets = data.targets
            replicate_target = [targets.index(t) for t in data.replicate_targets]
            unsupported = {
                "the 'poses' term": "poses" in terms,
                "gates='per_compound'": config.gates == "per_compound",
                f"observed_only={config.observed_only!r}": config.observed_only != "none",
            }
            named = [what for what, present in unsupported.items() if present]
            if named:
                raise ValueError(f"a model of several targets ({', '.join(targets)}) does not take {', '.join(named)}")
        bead_sets = control_bead_set = target_bead_set = None
        if targets is not None and data.bead_sets is not None:
            bead_sets = data.bead_sets
            control_bead_set = [bead_sets.index(b) for b in data.control_bead_sets]
            target_bead_set = [bead_sets.index(data.target_bead_sets[t]) for t in targets]
        if config.normalize_depth:
            log_depth_target = log_depth_offsets(data.target_counts, data.target_names, "target")
            log_depth_control = log_depth_offsets(data.control_counts, data.control_names, "control")
        else:
            log_depth_target = np.zeros(data.n_target_replicates)
            log_depth_control = np.zeros(data.n_control_replicates)
        feature_cycles = None
        if "fingerprint" in terms and config.features == "building_blocks":
            if data.building_blocks is None or data.building_block_smiles is None:
                raise DELDataError(
                    "building_block_smiles: features='building_blocks' needs building-block ids and each block's "
                    "SMILES (read_counts(..., building_blocks=[...], block_smiles=[...]))"
                )
            feature_cycles = list(data.building_blocks.columns)
        pseudocount = log_mean = None
        if config.use_load and data.load is not None:
            pseudocount, log_mean = load_offset(data.load)
        vocabulary = pair_keys = pair_counts = None
        if "building_blocks" in terms:
            if data.building_blocks is None:
                raise DELDataError(
                    "building_blocks: the 'building_blocks' term needs building-block id columns, and this screen "
                    "has none; read it with read_counts(..., building_blocks=[...]) or drop the term"
                )
            vocabulary = {c: sorted(set(data.building_blocks[c])) for c in data.building_blocks.columns}
            codes = _block_codes(data.building_blocks, vocabulary)
            pair_keys, pair_counts = {}, {}
            if config.bb_pairs:
                for name, keys, _ in _pair_keys(codes, vocabulary):
                    seen, counts = np.unique(keys, return_counts=True)
                    if config.bb_pairs == "auto" and len(keys) < PAIR_MIN_COMPOUNDS * len(seen):
                        continue  # about one compound a pair: the per-compound effect's job
                    pair_keys[name] = seen.tolist()
                    pair_counts[name] = counts.tolist()
        return cls(
            terms=tuple(terms),
            target_names=list(data.target_names),
            control_names=list(data.control_names),
            log_depth_target=[float(v) for v in log_depth_target],
            log_depth_control=[float(v) for v in log_depth_control],
            fingerprint_radius=config.fingerprint_radius,
            fingerprint_bits=config.fingerprint_bits,
            fingerprint_chirality=config.fingerprint_chirality,
            features=config.features,
            feature_cycles=feature_cycles,
            n_poses=data.n_poses,
            n_pose_features=data.n_pose_features,
            load_pseudocount=pseudocount,
            load_log_mean=log_mean,
            bb_vocabulary=vocabulary,
            pair_keys=pair_keys,
            pair_counts=pair_counts,
            training_ids=data.compound_id if "compound" in terms else None,
            training_structures=structure_keys(data.smiles) if "compound" in terms else None,
            training_digest=screen_digest(data),
            targets=targets,
            replicate_target=replicate_target,
            bead_sets=bead_sets,
            control_bead_set=control_bead_set,
            target_bead_set=target_bead_set,
        )

    def __post_init__(self) -> None:
        if self.training_ids is not None:
            self.training_ids = as_text(self.training_ids, "training_ids", len(self.training_ids))

    def to_dict(self) -> dict[str, Any]:
        """Plain values and tensors (what a checkpoint holds); the training ids as their UTF-8 text and
        offsets (:func:`text_tensors`), not one Python string each."""
        values = dataclasses.asdict(dataclasses.replace(self, training_ids=None, training_structures=None))
        values["training_ids"] = None if self.training_ids is None else text_tensors(self.training_ids)
        values["training_structures"] = (
            None if self.training_structures is None else torch.from_numpy(self.training_structures)
        )
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Encoding:
        """Read :meth:`to_dict`'s values; training ids as text tensors or (checkpoints of format 5 and
        earlier) a list of strings."""
        values = dict(values)
        values["terms"] = tuple(values["terms"])
        if values.get("training_structures") is not None:
            values["training_structures"] = np.asarray(values["training_structures"], dtype=np.int64)
        if isinstance(values.get("training_ids"), dict):
            values["training_ids"] = from_text_tensors(values["training_ids"])
        return cls(**values)

    # ---- sizes --------------------------------------------------------------------------------------------
    @property
    def has_control(self) -> bool:
        """Whether the screen has bead (control) replicates, and so a matrix arm."""
        return len(self.control_names) > 0

    @property
    def n_targets(self) -> int:
        """Targets the model fits together (1: a screen of one target)."""
        return len(self.targets or ["target"])

    @property
    def uses_load(self) -> bool:
        return self.load_pseudocount is not None

    @property
    def n_feature_bits(self) -> int:
        """Bits the fingerprint network reads per compound: one fingerprint, or one per cycle side by side."""
        return self.fingerprint_bits * (len(self.feature_cycles) if self.features == "building_blocks" else 1)

    @property
    def n_screened(self) -> int:
        """Compounds of the training screen (the per-compound effects' plate)."""
        return 0 if self.training_ids is None else len(self.training_ids)

    @property
    def n_cycles(self) -> int:
        """Cycle families (the first of :attr:`families`; the pair families follow)."""
        return len(self.bb_vocabulary or {})

    @property
    def families(self) -> list[tuple[str, int]]:
        """Building-block families in code order, each with its number of slots (the unseen one included):
        every cycle, then every pair of cycles (named "cycle1+cycle2")."""
        vocabulary = self.bb_vocabulary or {}
        return [(c, len(ids) + 1) for c, ids in vocabulary.items()] + [
            (name, len(keys) + 1) for name, keys in (self.pair_keys or {}).items()
        ]

    def pair_blocks(self, family: str) -> tuple[np.ndarray, np.ndarray]:
        """The block codes (int64 ``[n_pairs]``) in either cycle of every pair a pair family saw in training."""
        second = family.split("+")[1]
        width = len(self.bb_vocabulary[second]) + 1
        keys = np.asarray(self.pair_keys[family], dtype=np.int64)
        return keys // width, keys % width

    def family_labels(self) -> dict[str, list[str]]:
        """Labels of every family's slots: block ids per cycle, "a+b" per pair, and ``UNSEEN`` last."""
        vocabulary = self.bb_vocabulary or {}
        labels = {cycle: [*map(str, ids), UNSEEN] for cycle, ids in vocabulary.items()}
        for family in self.pair_keys or {}:
            first, second = family.split("+")
            rows, columns = self.pair_blocks(family)
            pairs = [f"{labels[first][a]}+{labels[second][b]}" for a, b in zip(rows, columns, strict=True)]
            labels[family] = [*pairs, UNSEEN]
        return labels

    def log_load_offset(self, load: np.ndarray) -> np.ndarray:
        """The load offset ``[n]`` of a screen's loads, with the training screen's constants."""
        return np.log(np.asarray(load, dtype=np.float64) + self.load_pseudocount) - self.load_log_mean

    # ---- any screen -> arrays ----------------------------------------------------------------------------
    def encode(self, data: DELData, *, cache_dir: str | None = None, counts: bool = True) -> dict[str, np.ndarray]:
        """The arrays a batch is sliced from (keys of :mod:`delpyro.keys`), assembled once: packed
        fingerprints, poses, block codes and training positions (int32), the load offset, and (with
        ``counts``) the counts, the screen's own int64 arrays (batches hold both in the dtypes of
        :data:`~delpyro.batches.BATCH_DTYPES`). Counts need the training screen's replicates: other
        replicates raise a :class:`~delpyro.data.DELDataError` naming both sets (a loss scored without the
        counts would mean nothing). A compound takes its training position only when its id and its
        SMILES both match a training compound's; any other compound is new (-1)."""
        arrays: dict[str, np.ndarray] = {}
        if "fingerprint" in self.terms and self.features == "building_blocks":
            arrays[FINGERPRINTS] = self.block_features(data, cache_dir=cache_dir)
        elif "fingerprint" in self.terms:
            arrays[FINGERPRINTS] = fingerprints(
                data.smiles,
                radius=self.fingerprint_radius,
                n_bits=self.fingerprint_bits,
                use_chirality=self.fingerprint_chirality,
                cache_dir=cache_dir,
            )
        if "poses" in self.terms:
            if data.poses is None or data.poses.shape[1:] != (self.n_poses, self.n_pose_features):
                raise DELDataError(
                    f"poses: the model needs [n, {self.n_poses}, {self.n_pose_features}] pose features, "
                    f"got {None if data.poses is None else data.poses.shape}"
                )
            arrays[POSES] = data.poses
        if "building_blocks" in self.terms:
            arrays[BLOCK_CODES] = self.block_codes(data)
        if "compound" in self.terms:
            positions = self.training_positions(data)
            # int32 where it fits (batches hold int64: BATCH_DTYPES)
            arrays[TRAINING_POSITION] = positions.astype(np.int32) if len(self.training_ids) < 2**31 else positions
        if counts:
            if data.target_names != self.target_names or data.control_names != self.control_names:
                raise DELDataError(
                    f"replicates: this screen's target replicates {data.target_names} and control replicates "
                    f"{data.control_names} differ from the training screen's {self.target_names} and "
                    f"{self.control_names}; a loss needs the same replicates (rename or select its columns)"
                )
            arrays[TARGET_COUNTS] = data.target_counts  # the screen's own int64 array: batches cast their rows
            if data.n_control_replicates:
                arrays[CONTROL_COUNTS] = data.control_counts
        if self.uses_load:
            if data.load is None:
                raise DELDataError("load: the model was trained with a load offset, and this screen has no load")
            arrays[LOG_LOAD] = self.log_load_offset(data.load).astype(np.float32)
        return arrays

    def block_features(self, data: DELData, *, cache_dir: str | None = None) -> np.ndarray:
        """uint8 ``[n_compounds, n_cycles * fingerprint_bits // 8]``: each compound's building blocks'
        packed fingerprints side by side, in the training cycles' order. A block's SMILES has its attachment
        points as dummy atoms, and a charged atom written without its charge repaired (as read_counts does
        for products); every block is fingerprinted once, and the compounds' rows are gathered from that."""
        if data.building_blocks is None or data.building_block_smiles is None:
            raise DELDataError(
                "building_block_smiles: this screen has no building-block SMILES to compute features from"
            )
        missing = [c for c in self.feature_cycles if c not in data.building_blocks.columns]
        if missing:
            raise DELDataError(f"building_blocks: columns {missing} of the training screen are missing")
        readable = {}
        for cycle in self.feature_cycles:
            ids = list(data.building_block_smiles[cycle])
            converted = [attachment_points_to_dummies(s) for s in data.building_block_smiles[cycle].values()]
            readable[cycle] = dict(zip(ids, repair_smiles(converted).smiles, strict=True))
        tables = block_fingerprints(
            readable, self.fingerprint_radius, self.fingerprint_bits, self.fingerprint_chirality, cache_dir
        )
        codes = np.stack(
            [pd.Index(tables[c][0]).get_indexer(data.building_blocks[c].astype(str)) for c in self.feature_cycles],
            axis=1,
        )
        return combine_block_fingerprints(codes, [tables[c][1] for c in self.feature_cycles])

    def training_positions(self, data: DELData) -> np.ndarray:
        """int64 ``[n_compounds]``: each compound's row in the training screen, -1 for a compound never
        screened (same id and same SMILES, or it is another compound)."""
        ids = self.training_ids
        if len(data.compound_id) == len(ids) and np.array_equal(data.compound_id, ids):
            positions = np.arange(len(ids), dtype=np.int64)  # the training screen itself, or a copy of it
        else:  # sorted lookup, no Python object per id (a screen of 10^7 ids)
            order = np.argsort(ids, kind="stable")
            ordered = ids[order]
            at = np.minimum(np.searchsorted(ordered, data.compound_id), len(ids) - 1)
            positions = np.where(ordered[at] == data.compound_id, order[at], -1).astype(np.int64)
        if self.training_structures is not None:  # None: ids alone, as format-2 checkpoints kept them
            found = positions >= 0
            same = self.training_structures[positions[found]] == structure_keys(data.smiles[found])
            positions[np.flatnonzero(found)[~same]] = -1
        return positions

    def block_codes(self, data: DELData) -> np.ndarray:
        """int32 ``[n_compounds, n_families]``: each compound's slot in every family, in the training
        vocabulary; blocks and pairs not seen in training get their family's last (unseen) slot."""
        if data.building_blocks is None:
            raise DELDataError(
                "building_blocks: the model uses building-block effects, and this screen has no block ids"
            )
        missing = [c for c in self.bb_vocabulary if c not in data.building_blocks.columns]
        if missing:
            raise DELDataError(f"building_blocks: columns {missing} of the training screen are missing")
        codes = _block_codes(data.building_blocks, self.bb_vocabulary)
        columns = [codes]
        for name, keys, unseen in _pair_keys(codes, self.bb_vocabulary):
            if name not in self.pair_keys:  # a model without disynthon families
                continue
            known = np.asarray(self.pair_keys[name], dtype=np.int64)
            position = np.searchsorted(known, keys).clip(max=max(len(known) - 1, 0))
            found = known[position] == keys if known.size else np.zeros(len(keys), bool)
            columns.append(np.where(found & ~unseen, position, len(known)).astype(np.int32)[:, None])
        return np.concatenate(columns, axis=1)

    def example_batch(self, size: int = 1, device: str | torch.device = "cpu") -> dict[str, Any]:
        """A batch of ``size`` all-zero compounds of the right shapes (to build a guide without data)."""
        with torch.device(device):
            batch: dict[str, Any] = {INDEX: torch.arange(size), SCREEN_SIZE: size}
            if "fingerprint" in self.terms:
                batch[FINGERPRINTS] = torch.zeros(size, self.n_feature_bits // 8, dtype=torch.uint8)
            if "building_blocks" in self.terms:
                batch[BLOCK_CODES] = torch.zeros(size, len(self.families), dtype=torch.long)
            if "poses" in self.terms:
                batch[POSES] = torch.zeros(size, self.n_poses, self.n_pose_features)
            batch[TARGET_COUNTS] = torch.zeros(size, len(self.target_names))
            if self.has_control:
                batch[CONTROL_COUNTS] = torch.zeros(size, len(self.control_names))
            if self.uses_load:
                batch[LOG_LOAD] = torch.zeros(size)
            if "compound" in self.terms:
                batch[TRAINING_POSITION] = torch.arange(size) % self.n_screened
        return batch


def structure_keys(smiles: Any) -> np.ndarray:
    """int64 ``[n]``: a 64-bit key of each SMILES string (BLAKE2b), the same in every process and machine."""
    keys = (int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big", signed=True) for s in smiles)
    return np.fromiter(keys, dtype=np.int64, count=len(smiles))


def screen_digest(data: DELData) -> str:
    """The SHA-256 of a screen's compound ids and SMILES, in order: each column's values joined by NUL,
    then 0x01; hashed a chunk of rows at a time."""
    digest = hashlib.sha256()
    for column in (data.compound_id, data.smiles):
        for start in range(0, len(column), _DIGEST_CHUNK):
            if start:
                digest.update(b"\x00")
            digest.update("\x00".join(column[start : start + _DIGEST_CHUNK].tolist()).encode())
        digest.update(b"\x01")
    return digest.hexdigest()


_DIGEST_CHUNK = 1 << 16


def text_tensors(values: np.ndarray) -> dict[str, torch.Tensor]:
    """Strings as two tensors (what a weights-only checkpoint can hold without a Python object per
    value): ``text``, uint8, every value's UTF-8 bytes end to end, and ``offsets``, int64 ``[n + 1]``,
    where each value starts (the last: the end)."""
    arrow = pyarrow.array(values, type=pyarrow.large_string())  # a new array: its buffers start at 0
    offsets = np.frombuffer(arrow.buffers()[1], dtype=np.int64, count=len(values) + 1)
    end = int(offsets[-1])
    text = np.frombuffer(arrow.buffers()[2], dtype=np.uint8, count=end) if end else np.zeros(0, dtype=np.uint8)
    return {"text": torch.tensor(text), "offsets": torch.tensor(offsets)}


def from_text_tensors(values: dict[str, torch.Tensor]) -> np.ndarray:
    """:func:`text_tensors`' strings back, as a :data:`~delpyro.data.STRINGS` array."""
    text, offsets = values["text"].numpy(), values["offsets"].numpy()
    n = len(offsets) - 1
    arrow = pyarrow.Array.from_buffers(
        pyarrow.large_string(), n, [None, pyarrow.py_buffer(offsets.astype(np.int64)), pyarrow.py_buffer(text)]
    )
    return as_text(pd.Series(arrow, dtype=pd.ArrowDtype(pyarrow.large_string()), copy=False), "training_ids", n)


def _block_codes(frame: Any, vocabulary: dict[str, list[str]]) -> np.ndarray:
    """int32 [n, n_cycles]: each block's position in its cycle's vocabulary; unseen blocks get len(vocabulary)."""
    codes = np.empty((len(frame), len(vocabulary)), dtype=np.int32)
    for k, (cycle, ids) in enumerate(vocabulary.items()):
        found = pd.Index(ids, dtype=object).get_indexer(frame[cycle])  # a C hash table, no int per row
        codes[:, k] = np.where(found < 0, len(ids), found)
    return codes


def _pair_keys(codes: np.ndarray, vocabulary: dict[str, list[str]]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """For every pair of cycles: its name, one int64 key per compound for its pair of blocks (decoded by
    :meth:`Encoding.pair_blocks`), and whether either block is unseen (the unseen slot of its cycle)."""
    cycles = list(vocabulary)
    for k in range(len(cycles)):
        for m in range(k + 1, len(cycles)):
            width = len(vocabulary[cycles[m]]) + 1
            unseen = (codes[:, k] == len(vocabulary[cycles[k]])) | (codes[:, m] == width - 1)
            yield f"{cycles[k]}+{cycles[m]}", codes[:, k].astype(np.int64) * width + codes[:, m], unseen
