"""DEL screen data: the validated container every other part of delpyro consumes.

A DNA-encoded library (DEL) screen is a table with one row per library member: its structure (SMILES),
its building blocks, and the sequencing read counts of its DNA tag after a selection against the protein
target (several replicates), after a selection against the bare matrix or beads (the control, zero or
more replicates), and optionally before selection (the load).

:class:`DELData` holds those arrays, checked once when it is built, and writes itself to disk
(:meth:`DELData.save`); bad input raises :class:`DELDataError`, naming the column, the rows and what was
expected. The functions ``as_counts``, ``as_strings``, ... check one column each; the reader
(:mod:`delpyro.reading`) uses them too. Counts are int64 and never normalized in place. Nothing is dropped
silently.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from delpyro.files import replacing

__all__ = [
    "COMPRESSIONS",
    "CONTROL_BEAD_SETS",
    "REPLICATE_TARGETS",
    "TARGET_BEAD_SETS",
    "DELData",
    "DELDataError",
    "compression",
    "rows_text",
    "separator",
    "sidecar_paths",
    "table_kind",
]

_MAX_LISTED_ROWS = 10
#: the attrs key of a screen of several targets: each target replicate's target
REPLICATE_TARGETS = "replicate_targets"
#: a screen of several targets on more than one kind of beads: each control replicate's bead set (a list,
#: one name per control replicate) and each target's (a dict, target -> bead set)
CONTROL_BEAD_SETS = "control_bead_sets"
TARGET_BEAD_SETS = "target_bead_sets"


class DELDataError(ValueError):
    """Bad input: the message names the column, the offending rows and what was expected."""


def rows_text(rows: np.ndarray, values: Sequence[Any] | None = None) -> str:
    """'rows 3, 17 and 42 (values -1, -5, 0.5)'; at most ten listed, then how many in all."""
    rows = np.asarray(rows)
    shown = rows[:_MAX_LISTED_ROWS].tolist()
    text = "row " if len(rows) == 1 else "rows "
    text += ", ".join(str(r) for r in shown)
    if values is not None:
        text += " (" + ", ".join(repr(v) for v in list(values)[:_MAX_LISTED_ROWS]) + ")"
    if len(rows) > _MAX_LISTED_ROWS:
        text += f", ... {len(rows)} rows in all"
    return text


# ----------------------------------------------------------------------------------------------------
# the container


@dataclass(eq=False, repr=False)
class DELData:
    """One DEL screen: counts per replicate, structures, building blocks, optional load, poses and truth.

    Arrays (n = ``n_compounds``):

    - ``target_counts``: int64 ``[n_compounds, n_target_replicates]``, reads after the target selection.
    - ``control_counts``: int64 ``[n_compounds, n_control_replicates]``, reads after the bead (matrix)
      selection; may have zero columns.
    - ``smiles``, ``compound_id``: arrays of :data:`STRINGS` (numpy's variable-width text, no Python object per
      compound) ``[n_compounds]``; ids are unique. Lists, object arrays and pandas or Arrow columns are
      converted.
    - ``load``: float64 ``[n_compounds]`` or None: pre-selection counts or relative abundance.
    - ``building_blocks``: DataFrame of str building-block ids, one column per cycle, or None.
    - ``poses``: float32 or float16 ``[n_compounds, n_poses, n_pose_features]`` or None (a memory map is
      fine): docked-pose features such as GNINA CNN features.
    - ``truth``: DataFrame, one row per compound, or None (simulated screens): at least
      ``log_target_enrichment`` and ``log_matrix_enrichment``.
    - ``target_names``, ``control_names``: replicate names (default ``r1``, ``r2``, ...).
    - ``attrs``: JSON-serializable metadata (for a simulated screen its parameters and true effects).
    - ``smiles_as_read``: :data:`STRINGS` ``[n_compounds]`` or None: the SMILES as the file wrote them,
      where reading repaired some (``smiles`` holds the repaired ones, which features use).
    - ``observed``: bool ``[n_compounds]`` or None: True for the members the table listed, False for those
      a library added with zero counts (None: the table is the whole library).
    - ``building_block_smiles``: per cycle, each building block's SMILES by its id, or None (libraries given
      by building blocks: features can be computed from them).

    Building a DELData validates everything; a problem raises :class:`DELDataError`.

    >>> import numpy as np
    >>> d = DELData(np.array([[3, 0], [1, 2]]), np.zeros((2, 1), dtype=np.int64), ["CCO", "CCN"], ["a", "b"])
    >>> d.n_compounds, d.n_target_replicates, d.n_control_replicates
    (2, 2, 1)
    """

    target_counts: np.ndarray
    control_counts: np.ndarray
    smiles: np.ndarray
    compound_id: np.ndarray
    load: np.ndarray | None = None
    building_blocks: pd.DataFrame | None = None
    poses: np.ndarray | None = None
    truth: pd.DataFrame | None = None
    target_names: list[str] | None = None
    control_names: list[str] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    smiles_as_read: np.ndarray | None = None
    observed: np.ndarray | None = None
    building_block_smiles: dict[str, dict[str, str]] | None = None

    def __post_init__(self) -> None:
        self.target_counts = as_counts(self.target_counts, "target_counts")
        n = self.target_counts.shape[0]
        control = self.control_counts
        if control is None:
            control = np.zeros((n, 0), dtype=np.int64)
        self.control_counts = as_counts(control, "control_counts")
        self._check_rows(self.control_counts, "control_counts")
        if self.target_counts.shape[1] == 0:
            raise DELDataError("target_counts: expected at least one target replicate column, got none")

        self.smiles = as_strings(self.smiles, "smiles", n)
        self.compound_id = as_strings(self.compound_id, "compound_id", n)
        check_unique(self.compound_id, "compound_id")

        self.target_names = _replicate_names(self.target_names, self.target_counts.shape[1], "target_names")
        self.control_names = _replicate_names(self.control_names, self.control_counts.shape[1], "control_names")
        if self.load is not None:
            self.load = as_load(self.load, "load")
            self._check_rows(self.load, "load")
        if self.building_blocks is not None:
            self.building_blocks = _as_building_blocks(self.building_blocks, n)
        if self.poses is not None:
            self.poses = _as_poses(self.poses, n)
        if self.truth is not None:
            if not isinstance(self.truth, pd.DataFrame):
                raise DELDataError(f"truth: expected a pandas DataFrame, got {type(self.truth).__name__}")
            if len(self.truth) != n:
                raise DELDataError(f"truth: expected {n} rows (one per compound), got {len(self.truth)}")
            self.truth = self.truth.reset_index(drop=True)
        self.attrs = dict(self.attrs or {})
        try:
            json.dumps(self.attrs)
        except TypeError as err:
            raise DELDataError(f"attrs: expected JSON-serializable metadata ({err})") from None
        self._check_replicate_targets()
        if self.smiles_as_read is not None:
            self.smiles_as_read = as_strings(self.smiles_as_read, "smiles_as_read", n)
        if self.observed is not None:
            observed = np.asarray(self.observed)
            if observed.dtype != bool or observed.shape != (n,):
                raise DELDataError(
                    f"observed: expected a boolean array of {n} values, got {observed.dtype} {observed.shape}"
                )
            self.observed = observed
        if self.building_block_smiles is not None:
            self.building_block_smiles = _as_block_smiles(self.building_block_smiles, self.building_blocks)

    def _check_replicate_targets(self) -> None:
        targets = self.attrs.get(REPLICATE_TARGETS)
        if targets is None:
            return
        if not isinstance(targets, list) or len(targets) != self.n_target_replicates:
            raise DELDataError(
                f"attrs[{REPLICATE_TARGETS!r}]: expected a list of {self.n_target_replicates} target names, one per "
                f"target replicate ({self.target_names}), got {targets!r}"
            )
        bad = [j for j, t in enumerate(targets) if not isinstance(t, str) or not t.strip()]
        if bad:
            raise DELDataError(f"attrs[{REPLICATE_TARGETS!r}]: replicates {bad} have no target name")
        self._check_bead_sets(list(dict.fromkeys(targets)))

    def _check_bead_sets(self, targets: list[str]) -> None:
        controls, per_target = self.attrs.get(CONTROL_BEAD_SETS), self.attrs.get(TARGET_BEAD_SETS)
        if controls is None and per_target is None:
            return
        where = f"attrs[{CONTROL_BEAD_SETS!r}] and attrs[{TARGET_BEAD_SETS!r}]"
        if not isinstance(controls, list) or len(controls) != self.n_control_replicates:
            raise DELDataError(
                f"{where}: expected a list of {self.n_control_replicates} bead-set names, one per control replicate "
                f"({self.control_names}), got {controls!r}"
            )
        if not isinstance(per_target, dict) or sorted(per_target) != sorted(targets):
            raise DELDataError(
                f"{where}: expected a dict of every target ({targets}) to its bead set, got {per_target!r}"
            )
        missing = sorted({str(v) for v in per_target.values()} - set(controls))
        if missing:
            raise DELDataError(f"{where}: bead sets {missing} have targets and no control replicate")

    def _check_rows(self, array: np.ndarray, name: str) -> None:
        if array.shape[0] != self.n_compounds:
            raise DELDataError(f"{name}: expected {self.n_compounds} rows (one per compound), got {array.shape[0]}")

    # sizes ------------------------------------------------------------------------------------------
    @property
    def n_compounds(self) -> int:
        return int(self.target_counts.shape[0])

    @property
    def n_target_replicates(self) -> int:
        return int(self.target_counts.shape[1])

    @property
    def n_control_replicates(self) -> int:
        return int(self.control_counts.shape[1])

    @property
    def replicate_targets(self) -> list[str] | None:
        """The target of each target replicate, for a screen of several targets (None: one target). It
        lives in ``attrs["replicate_targets"]``, so that it is saved and subset with the screen."""
        targets = self.attrs.get(REPLICATE_TARGETS)
        return None if targets is None else list(targets)

    @property
    def targets(self) -> list[str]:
        """The screen's targets in order of first replicate (``["target"]`` for a screen of one target)."""
        return list(dict.fromkeys(self.replicate_targets or ["target"]))

    @property
    def bead_sets(self) -> list[str] | None:
        """A screen of several targets selected on more than one kind of beads: the bead sets, in order of
        first control replicate (None: one set of controls for every target). Each control replicate's set
        is :attr:`control_bead_sets`, each target's :attr:`target_bead_sets` (both kept in attrs)."""
        controls = self.control_bead_sets
        return None if controls is None else list(dict.fromkeys(controls))

    @property
    def control_bead_sets(self) -> list[str] | None:
        """Each control replicate's bead set (see :attr:`bead_sets`)."""
        controls = self.attrs.get(CONTROL_BEAD_SETS)
        return None if controls is None else [str(c) for c in controls]

    @property
    def target_bead_sets(self) -> dict[str, str] | None:
        """Each target's bead set (see :attr:`bead_sets`)."""
        per_target = self.attrs.get(TARGET_BEAD_SETS)
        return None if per_target is None else {str(k): str(v) for k, v in per_target.items()}

    @property
    def n_poses(self) -> int:
        return 0 if self.poses is None else int(self.poses.shape[1])

    @property
    def n_pose_features(self) -> int:
        return 0 if self.poses is None else int(self.poses.shape[2])

    @property
    def cycles(self) -> list[str]:
        """Building-block cycle column names (empty when the screen has none)."""
        return [] if self.building_blocks is None else list(self.building_blocks.columns)

    def __len__(self) -> int:
        return self.n_compounds

    # views ------------------------------------------------------------------------------------------
    def subset(self, index: Sequence[int] | np.ndarray) -> DELData:
        """A new DELData holding the rows ``index`` (positions or a boolean mask), in that order."""
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (self.n_compounds,):
                raise DELDataError(f"subset: boolean mask of shape {index.shape}, expected ({self.n_compounds},)")
            index = np.flatnonzero(index)
        index = index.astype(np.int64, copy=False).reshape(-1)
        if index.size and (index.min() < -self.n_compounds or index.max() >= self.n_compounds):
            raise DELDataError(f"subset: row positions must lie in [0, {self.n_compounds}), got {index.max()}")

        def take_frame(frame: pd.DataFrame | None) -> pd.DataFrame | None:
            return None if frame is None else frame.iloc[index].reset_index(drop=True)

        return DELData(
            target_counts=self.target_counts[index],
            control_counts=self.control_counts[index],
            smiles=self.smiles[index],
            compound_id=self.compound_id[index],
            load=None if self.load is None else self.load[index],
            building_blocks=take_frame(self.building_blocks),
            poses=None if self.poses is None else np.asarray(self.poses[index]),
            truth=take_frame(self.truth),
            target_names=list(self.target_names),
            control_names=list(self.control_names),
            attrs=dict(self.attrs),
            smiles_as_read=None if self.smiles_as_read is None else self.smiles_as_read[index],
            observed=None if self.observed is None else self.observed[index],
            building_block_smiles=self.building_block_smiles,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per compound in the ``"delpyro"`` layout (what :meth:`save` writes; poses excluded).

        Columns: ``compound_id``, ``smiles``, ``smiles_as_read``, ``observed``, ``target:<replicate>``,
        ``control:<replicate>``, ``load``, ``bb:<cycle>``, ``bb_smiles:<cycle>``, ``truth:<column>`` (the
        optional ones only when the screen has them).
        """
        columns: dict[str, Any] = {"compound_id": self.compound_id, "smiles": self.smiles}
        if self.smiles_as_read is not None:
            columns["smiles_as_read"] = self.smiles_as_read
        if self.observed is not None:
            columns["observed"] = self.observed
        for j, name in enumerate(self.target_names):
            columns[f"target:{name}"] = self.target_counts[:, j]
        for j, name in enumerate(self.control_names):
            columns[f"control:{name}"] = self.control_counts[:, j]
        if self.load is not None:
            columns["load"] = self.load
        if self.building_blocks is not None:
            for cycle in self.building_blocks.columns:
                columns[f"bb:{cycle}"] = self.building_blocks[cycle].to_numpy()
        for cycle, smiles in (self.building_block_smiles or {}).items():
            columns[f"bb_smiles:{cycle}"] = self.building_blocks[cycle].map(smiles).to_numpy()
        if self.truth is not None:
            for name in self.truth.columns:
                columns[f"truth:{name}"] = self.truth[name].to_numpy()
        return pd.DataFrame(columns)

    def save(self, path: str | Path) -> Path:
        """Write the screen: a CSV/TSV or parquet table by suffix; poses and attrs beside it.

        ``screen.parquet`` also writes ``screen.poses.npy`` (when there are poses) and ``screen.attrs.json``
        (when attrs is not empty). ``read_counts(path, preset="delpyro")`` reads it back exactly.
        """
        path = Path(path)
        kind = table_kind(path)
        frame = self.to_frame()
        poses_path, attrs_path = sidecar_paths(path)
        # every file to a temporary one first, and renamed into place only once all are written: a save
        # that fails leaves the screen on disk as it was, and the old files are read (memory-mapped
        # poses) while the new ones are written beside them
        with contextlib.ExitStack() as files:
            table = files.enter_context(replacing(path))
            if kind == "parquet":
                frame.to_parquet(table, index=False)
            else:
                frame.to_csv(table, index=False, sep=separator(kind), compression=compression(path))
            if self.poses is not None:
                with open(files.enter_context(replacing(poses_path)), "wb") as handle:
                    np.save(handle, np.asarray(self.poses))
            if self.attrs:
                files.enter_context(replacing(attrs_path)).write_text(json.dumps(self.attrs, indent=1, sort_keys=True))
        for stale, kept in ((poses_path, self.poses is not None), (attrs_path, bool(self.attrs))):
            if not kept and stale.exists():
                stale.unlink()
        return path

    # summaries --------------------------------------------------------------------------------------
    def replicate_summary(self) -> pd.DataFrame:
        """One row per replicate: arm, name, total reads, mean, zero fraction, maximum."""
        rows = []
        arms = [("target", self.target_names, self.target_counts)]
        arms.append(("control", self.control_names, self.control_counts))
        for arm, names, counts in arms:
            for j, name in enumerate(names):
                column = counts[:, j]
                rows.append(
                    {
                        "arm": arm,
                        "replicate": name,
                        "total_reads": int(column.sum()),
                        "mean": float(column.mean()) if column.size else math.nan,
                        "zero_fraction": float((column == 0).mean()) if column.size else math.nan,
                        "max": int(column.max()) if column.size else 0,
                    }
                )
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """A few lines a person reads: sizes, what is present, and the per-replicate table."""
        lines = [
            f"DELData: {self.n_compounds:,} compounds, {self.n_target_replicates} target and "
            f"{self.n_control_replicates} control replicates",
        ]
        if self.replicate_targets is not None:
            lines.append(f"targets: {', '.join(self.targets)} (several targets, one library)")
        if self.bead_sets is not None:
            sets = "; ".join(
                f"{b}: {', '.join(t for t, s in self.target_bead_sets.items() if s == b)}" for b in self.bead_sets
            )
            lines.append(f"bead sets, each with its own controls: {sets}")
        if self.building_blocks is not None:
            sizes = ", ".join(f"{c}: {self.building_blocks[c].nunique()}" for c in self.cycles)
            lines.append(f"building blocks per cycle: {sizes}")
        if self.load is not None:
            lines.append(f"load: mean {self.load.mean():.3g}, zero fraction {(self.load == 0).mean():.3f}")
        if self.poses is not None:
            lines.append(f"poses: {self.n_poses} per compound x {self.n_pose_features} features")
        if self.truth is not None:
            lines.append(f"truth: {', '.join(self.truth.columns)}")
        if self.observed is not None:
            lines.append(
                f"observed: {int(self.observed.sum()):,} members listed by the table, "
                f"{int((~self.observed).sum()):,} added from the library with zero counts"
            )
        if self.smiles_as_read is not None:
            repaired = int((self.smiles_as_read != self.smiles).sum())
            lines.append(f"SMILES repaired on reading: {repaired:,} (as read: smiles_as_read)")
        table = self.replicate_summary()
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = [
            f"n_compounds={self.n_compounds}",
            f"target_replicates={self.target_names}",
            f"control_replicates={self.control_names}",
            f"load={'yes' if self.load is not None else 'no'}",
            f"cycles={self.cycles}",
            f"poses={(self.n_poses, self.n_pose_features) if self.poses is not None else None}",
            f"truth={'yes' if self.truth is not None else 'no'}",
        ]
        return "DELData(" + ", ".join(parts) + ")"

    def equals(self, other: DELData) -> bool:
        """True when every array, name, table and attribute is identical (NaNs equal)."""
        if not isinstance(other, DELData):
            return False

        def same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
            if a is None or b is None:
                return a is None and b is None
            return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")

        def same_frame(a: pd.DataFrame | None, b: pd.DataFrame | None) -> bool:
            if a is None or b is None:
                return a is None and b is None
            return a.equals(b) and list(a.dtypes) == list(b.dtypes)

        return (
            same_array(self.target_counts, other.target_counts)
            and same_array(self.control_counts, other.control_counts)
            and same_array(self.smiles, other.smiles)
            and same_array(self.compound_id, other.compound_id)
            and same_array(self.load, other.load)
            and same_array(
                None if self.poses is None else np.asarray(self.poses),
                None if other.poses is None else np.asarray(other.poses),
            )
            and same_frame(self.building_blocks, other.building_blocks)
            and same_frame(self.truth, other.truth)
            and self.target_names == other.target_names
            and self.control_names == other.control_names
            and self.attrs == other.attrs
            and same_array(self.smiles_as_read, other.smiles_as_read)
            and same_array(self.observed, other.observed)
            and self.building_block_smiles == other.building_block_smiles
        )


# ----------------------------------------------------------------------------------------------------
# validation of single columns


def as_counts(values: Any, name: str, columns: Sequence[str] | None = None) -> np.ndarray:
    """int64 [n, k] from an array-like; negative, NaN, infinite or fractional values are errors.

    ``columns`` names the source column of each of the k columns, for the message.
    """
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DELDataError(f"{name}: expected a 2-D array [n_compounds, n_replicates], got shape {array.shape}")
    labels = list(columns) if columns is not None else [f"{name}[:, {j}]" for j in range(array.shape[1])]
    if array.dtype.kind in "iu":
        for j in range(array.shape[1]):
            bad = np.flatnonzero(array[:, j] < 0)
            if bad.size:
                raise DELDataError(
                    f"column {labels[j]!r}: counts must be non-negative integers; "
                    f"{rows_text(bad, array[bad, j].tolist())} are negative"
                )
        if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
            raise DELDataError(f"column {labels[0]!r}: counts exceed the int64 range")
        return np.ascontiguousarray(array, dtype=np.int64)
    if array.dtype.kind == "b":
        raise DELDataError(f"column {labels[0]!r}: counts must be non-negative integers, got booleans")
    if array.dtype.kind == "c":
        raise DELDataError(f"column {labels[0]!r}: counts must be non-negative integers, got complex numbers")
    if array.dtype.kind not in "f":
        converted = np.empty(array.shape, dtype=np.float64)
        for j in range(array.shape[1]):
            column = pd.to_numeric(pd.Series(array[:, j], dtype=object), errors="coerce")
            # booleans and complex numbers are not counts, though pandas would take True for 1
            foreign = np.flatnonzero(
                [isinstance(v, (bool, np.bool_, complex, np.complexfloating)) for v in array[:, j]]
            )
            if foreign.size:
                raise DELDataError(
                    f"column {labels[j]!r}: counts must be non-negative integers; "
                    f"{rows_text(foreign, array[foreign, j].tolist())} are booleans or complex numbers"
                )
            unparsed = np.flatnonzero(column.isna().to_numpy() & ~pd.isna(array[:, j]))
            if unparsed.size:
                raise DELDataError(
                    f"column {labels[j]!r}: counts must be non-negative integers; "
                    f"{rows_text(unparsed, array[unparsed, j].tolist())} are not numbers"
                )
            converted[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        array = converted
    array = array.astype(np.float64, copy=False)
    for j in range(array.shape[1]):
        column = array[:, j]
        problems = [
            (np.isnan(column), "are missing (NaN)"),
            (np.isinf(column), "are infinite"),
            (column < 0, "are negative"),
            (np.isfinite(column) & (column != np.round(column)), "are not whole numbers"),
            (
                np.isfinite(column) & (column > 2.0**53),
                "exceed 2**53, above which a column of floats cannot hold "
                "every whole number exactly (write the column as integers)",
            ),
        ]
        for mask, what in problems:
            bad = np.flatnonzero(mask)
            if bad.size:
                raise DELDataError(
                    f"column {labels[j]!r}: counts must be non-negative integers "
                    f"(whole-number floats are accepted); {rows_text(bad, column[bad].tolist())} {what}"
                )
    return np.ascontiguousarray(array, dtype=np.int64)


def as_load(values: Any, column: str) -> np.ndarray:
    """float64 [n]: finite, non-negative (pre-selection counts or relative abundance)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DELDataError(f"column {column!r}: load must be one value per compound, got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        numeric = pd.to_numeric(pd.Series(array, dtype=object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        unparsed = np.flatnonzero(np.isnan(numeric) & ~pd.isna(array))
        if unparsed.size:
            raise DELDataError(
                f"column {column!r}: load must be a non-negative number; "
                f"{rows_text(unparsed, array[unparsed].tolist())} are not numbers"
            )
        array = numeric
    array = array.astype(np.float64)
    for mask, what in [
        (np.isnan(array), "are missing (NaN)"),
        (np.isinf(array), "are infinite"),
        (array < 0, "are negative"),
    ]:
        bad = np.flatnonzero(mask)
        if bad.size:
            raise DELDataError(
                f"column {column!r}: load must be a finite non-negative number; "
                f"{rows_text(bad, array[bad].tolist())} {what}"
            )
    return np.ascontiguousarray(array)


#: the dtype of a screen's per-compound text (SMILES, ids): numpy's variable-width UTF-8 strings, 16
#: bytes a value with the text beyond 15 bytes stored once beside them, where a Python string costs 50
#: bytes and more (a screen of 10^7 compounds held its ids and SMILES in 4.5 GB of them)
STRINGS = np.dtypes.StringDType()
_CHUNK = 1 << 17  # rows converted at a time


def is_missing_string(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def as_text(values: Any, column: str, n: int) -> np.ndarray:
    """:data:`STRINGS` array ``[n]`` of a per-compound text column (SMILES, ids), missing entries as "".
    Converted a chunk of rows at a time, so a column held by pandas or Arrow never becomes one Python
    string per row all at once; an array already of :data:`STRINGS` is kept as it is."""
    source = _rows(values, column, n)
    if isinstance(source, np.ndarray) and source.dtype == STRINGS:
        return source
    out = np.empty(n, dtype=STRINGS)
    for start in range(0, n, _CHUNK):
        part = np.asarray(source[start : start + _CHUNK], dtype=object)
        out[start : start + _CHUNK] = [
            "" if is_missing_string(v) else v if isinstance(v, str) else str(v) for v in part
        ]
    return out


def as_strings(values: Any, column: str, n: int) -> np.ndarray:
    """:func:`as_text`, with missing or empty entries an error naming their rows."""
    out = as_text(values, column, n)
    bad = [
        start + np.flatnonzero(np.strings.str_len(np.strings.strip(out[start : start + _CHUNK])) == 0)
        for start in range(0, n, _CHUNK)
    ]
    _refuse_empty(np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64), column)
    return out


def _refuse_empty(rows: np.ndarray, column: str) -> None:
    """Raise naming ``rows`` of ``column`` that hold no text (nothing when there are none)."""
    if rows.size:
        verb = "is" if rows.size == 1 else "are"
        raise DELDataError(
            f"column {column!r}: expected a non-empty string in every row; {rows_text(rows)} {verb} empty"
        )


def _rows(values: Any, column: str, n: int) -> Any:
    """``values`` as something sliced by rows without copying it whole: a 1-d numpy array, or the
    column's own array for pandas (an Arrow-backed one stays Arrow)."""
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.array
    elif not hasattr(values, "__array__"):  # a list or other sequence (numpy and Arrow arrays have it)
        values = np.asarray(values, dtype=object)
    if (isinstance(values, np.ndarray) and values.ndim != 1) or len(values) != n:
        shape = values.shape if isinstance(values, np.ndarray) else (len(values),)
        raise DELDataError(f"column {column!r}: expected {n} values (one per compound), got shape {shape}")
    return values


def as_block_ids(values: Any, column: str, n: int) -> np.ndarray:
    """object array of str ``[n]`` of a building-block column in which equal ids are one object: a column
    repeats a few hundred ids over every compound, and one Python string per row would cost about 50
    bytes a compound a cycle. Missing or empty ids are errors."""
    codes, uniques = pd.factorize(pd.Series(_rows(values, column, n), copy=False))
    ids = np.array(["" if is_missing_string(v) else str(v) for v in uniques], dtype=object)  # a few hundred
    empty = np.flatnonzero([not v.strip() for v in ids])
    _refuse_empty(np.flatnonzero((codes < 0) | np.isin(codes, empty)), column)
    return ids[codes]


def check_unique(values: np.ndarray, column: str) -> None:
    """Raise naming the rows whose ids repeat. Sorts rather than hashing Python objects (10^7 ids)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if same.size:
        bad = np.unique(np.concatenate([order[same], order[same + 1]]))
        raise DELDataError(
            f"column {column!r}: compound ids must be unique; {rows_text(bad, values[bad].tolist())} repeat"
        )


def _replicate_names(names: Sequence[str] | None, k: int, what: str) -> list[str]:
    if names is None:
        return [f"r{j + 1}" for j in range(k)]
    names = [str(name) for name in names]
    if len(names) != k:
        raise DELDataError(f"{what}: expected {k} names (one per replicate column), got {len(names)}")
    if len(set(names)) != k:
        raise DELDataError(f"{what}: replicate names must be unique, got {names}")
    return names


def _as_building_blocks(frame: Any, n: int) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    if len(frame) != n:
        raise DELDataError(f"building_blocks: expected {n} rows (one per compound), got {len(frame)}")
    if frame.shape[1] == 0:
        raise DELDataError("building_blocks: expected at least one cycle column, got none")
    columns = {}
    for cycle in frame.columns:
        columns[str(cycle)] = as_block_ids(frame[cycle], str(cycle), n)
    return pd.DataFrame(columns)


def _as_block_smiles(values: Any, building_blocks: pd.DataFrame | None) -> dict[str, dict[str, str]]:
    """Each cycle's block SMILES by block id: a SMILES for every block the screen's compounds use."""
    if building_blocks is None:
        raise DELDataError("building_block_smiles: given for a screen without building-block id columns")
    out = {}
    for cycle in building_blocks.columns:
        if cycle not in values:
            raise DELDataError(f"building_block_smiles: no SMILES for the blocks of cycle {cycle!r}")
        table = {str(k): str(v) for k, v in dict(values[cycle]).items()}
        missing = sorted(set(building_blocks[cycle]) - set(table))
        if missing:
            raise DELDataError(
                f"building_block_smiles: cycle {cycle!r} has no SMILES for blocks {missing[:10]}"
                + (f", ... {len(missing)} in all" if len(missing) > 10 else "")
            )
        out[str(cycle)] = table
    return out


def _as_poses(poses: Any, n: int) -> np.ndarray:
    if not isinstance(poses, np.ndarray):
        poses = np.asarray(poses, dtype=np.float32)
    if poses.ndim != 3:
        raise DELDataError(f"poses: expected an array [n_compounds, n_poses, n_pose_features], got shape {poses.shape}")
    if poses.shape[0] != n:
        raise DELDataError(f"poses: the pose array has {poses.shape[0]} rows but the table has {n} compounds")
    if poses.dtype not in (np.float32, np.float16):
        poses = poses.astype(np.float32)
    bad_rows: list[np.ndarray] = []
    chunk = max(1, 2**24 // max(1, poses.shape[1] * poses.shape[2]))
    for start in range(0, n, chunk):
        block = np.asarray(poses[start : start + chunk])
        finite = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
        bad_rows.append(start + np.flatnonzero(~finite))
    bad = np.concatenate(bad_rows) if bad_rows else np.zeros(0, dtype=np.int64)
    if bad.size:
        raise DELDataError(f"poses: pose features must be finite; {rows_text(bad)} hold NaN or infinite values")
    return poses


# ----------------------------------------------------------------------------------------------------
# files


#: compressed tables by suffix, as pandas names the compression
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip", ".zst": "zstd"}


def compression(path: Path) -> str | None:
    """The compression of a table's file by its last suffix (None: uncompressed)."""
    return COMPRESSIONS.get(path.suffix.lower())


def table_kind(path: Path) -> str:
    """The kind of table a path names by its suffix, compression suffixes skipped: "parquet", "tsv" or "csv"."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        return "parquet"
    if last in (".tsv", ".tab"):
        return "tsv"
    if last in (".csv", ".txt"):
        return "csv"
    raise DELDataError(f"{path}: unknown table format {last or '(no suffix)'!r}; expected .csv, .tsv or .parquet")


def separator(kind: str) -> str:
    """The field separator of a text table of ``kind`` (:func:`table_kind`): a tab for "tsv", else a comma."""
    return "\t" if kind == "tsv" else ","


def sidecar_paths(path: Path) -> tuple[Path, Path]:
    """``screen.poses.npy`` and ``screen.attrs.json`` beside ``screen.csv`` (or ``screen.csv.gz``)."""
    stem = path.name
    for suffix in reversed(path.suffixes):
        stem = stem[: -len(suffix)]
    return path.with_name(stem + ".poses.npy"), path.with_name(stem + ".attrs.json")
