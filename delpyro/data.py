"""DEL screen data: the validated container every other part of delpyro consumes.

A DNA-encoded library (DEL) screen is a table with one row per library member: its structure (SMILES),
its building blocks, and the sequencing read counts of its DNA tag after a selection against the protein
target (several replicates), after a selection against the bare matrix or beads (the control, zero or
more replicates), and optionally before selection (the load).

- :class:`DELData` holds those arrays, checked once when it is built.
- :func:`read_counts` reads a CSV, TSV or parquet file (or a DataFrame) with a column map or a preset for a
  public layout, and says exactly what is wrong with bad input (:class:`DELDataError`).
- :func:`split` makes train / validation / test sets, at random or with whole building blocks held out.
- :class:`Minibatches` slices tensors from arrays assembled once, for training loops.

Counts are int64 and never normalized in place. Nothing is dropped silently.
"""

from __future__ import annotations

import fnmatch
import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "PRESETS",
    "DELData",
    "DELDataError",
    "Minibatches",
    "read_counts",
    "split",
]

_MAX_LISTED_ROWS = 10


class DELDataError(ValueError):
    """Bad input: the message names the column, the offending rows and what was expected."""


def _rows_text(rows: np.ndarray, values: Sequence[Any] | None = None) -> str:
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
    - ``smiles``, ``compound_id``: object arrays of str ``[n_compounds]``; ids are unique.
    - ``load``: float64 ``[n_compounds]`` or None: pre-selection counts or relative abundance.
    - ``building_blocks``: DataFrame of str building-block ids, one column per cycle, or None.
    - ``poses``: float32 or float16 ``[n_compounds, n_poses, n_pose_features]`` or None (a memory map is
      fine): docked-pose features such as GNINA CNN features.
    - ``truth``: DataFrame, one row per compound, or None (simulated screens): at least
      ``log_target_enrichment`` and ``log_matrix_enrichment``.
    - ``target_names``, ``control_names``: replicate names (default ``r1``, ``r2``, ...).
    - ``attrs``: JSON-serializable metadata (for a simulated screen its parameters and true effects).

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

    def __post_init__(self) -> None:
        self.target_counts = _as_counts(self.target_counts, "target_counts")
        n = self.target_counts.shape[0]
        control = self.control_counts
        if control is None:
            control = np.zeros((n, 0), dtype=np.int64)
        self.control_counts = _as_counts(control, "control_counts")
        self._check_rows(self.control_counts, "control_counts")
        if self.target_counts.shape[1] == 0:
            raise DELDataError("target_counts: expected at least one target replicate column, got none")

        self.smiles = _as_strings(self.smiles, "smiles", n)
        self.compound_id = _as_strings(self.compound_id, "compound_id", n)
        _check_unique(self.compound_id, "compound_id")

        self.target_names = _replicate_names(self.target_names, self.target_counts.shape[1], "target_names")
        self.control_names = _replicate_names(self.control_names, self.control_counts.shape[1], "control_names")
        if self.load is not None:
            self.load = _as_load(self.load, "load")
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
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per compound in the ``"delpyro"`` layout (what :meth:`save` writes; poses excluded).

        Columns: ``compound_id``, ``smiles``, ``target:<replicate>``, ``control:<replicate>``, ``load``,
        ``bb:<cycle>``, ``truth:<column>``.
        """
        columns: dict[str, Any] = {"compound_id": self.compound_id, "smiles": self.smiles}
        for j, name in enumerate(self.target_names):
            columns[f"target:{name}"] = self.target_counts[:, j]
        for j, name in enumerate(self.control_names):
            columns[f"control:{name}"] = self.control_counts[:, j]
        if self.load is not None:
            columns["load"] = self.load
        if self.building_blocks is not None:
            for cycle in self.building_blocks.columns:
                columns[f"bb:{cycle}"] = self.building_blocks[cycle].to_numpy()
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
        kind = _table_kind(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = self.to_frame()
        if kind == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, sep="\t" if kind == "tsv" else ",")
        poses_path, attrs_path = _sidecar_paths(path)
        if self.poses is not None:
            np.save(poses_path, np.asarray(self.poses))
        elif poses_path.exists():
            poses_path.unlink()
        if self.attrs:
            attrs_path.write_text(json.dumps(self.attrs, indent=1, sort_keys=True))
        elif attrs_path.exists():
            attrs_path.unlink()
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
        if self.building_blocks is not None:
            sizes = ", ".join(f"{c}: {self.building_blocks[c].nunique()}" for c in self.cycles)
            lines.append(f"building blocks per cycle: {sizes}")
        if self.load is not None:
            lines.append(f"load: mean {self.load.mean():.3g}, zero fraction {(self.load == 0).mean():.3f}")
        if self.poses is not None:
            lines.append(f"poses: {self.n_poses} per compound x {self.n_pose_features} features")
        if self.truth is not None:
            lines.append(f"truth: {', '.join(self.truth.columns)}")
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
        )


# ----------------------------------------------------------------------------------------------------
# validation of single columns


def _as_counts(values: Any, name: str, columns: Sequence[str] | None = None) -> np.ndarray:
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
                    f"{_rows_text(bad, array[bad, j].tolist())} are negative"
                )
        if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
            raise DELDataError(f"column {labels[0]!r}: counts exceed the int64 range")
        return np.ascontiguousarray(array, dtype=np.int64)
    if array.dtype.kind == "b":
        raise DELDataError(f"column {labels[0]!r}: counts must be non-negative integers, got booleans")
    if array.dtype.kind not in "f":
        converted = np.empty(array.shape, dtype=np.float64)
        for j in range(array.shape[1]):
            column = pd.to_numeric(pd.Series(array[:, j], dtype=object), errors="coerce")
            unparsed = np.flatnonzero(column.isna().to_numpy() & ~pd.isna(array[:, j]))
            if unparsed.size:
                raise DELDataError(
                    f"column {labels[j]!r}: counts must be non-negative integers; "
                    f"{_rows_text(unparsed, array[unparsed, j].tolist())} are not numbers"
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
            (np.isfinite(column) & (column >= 2.0**63), "exceed the int64 range"),
        ]
        for mask, what in problems:
            bad = np.flatnonzero(mask)
            if bad.size:
                raise DELDataError(
                    f"column {labels[j]!r}: counts must be non-negative integers "
                    f"(whole-number floats are accepted); {_rows_text(bad, column[bad].tolist())} {what}"
                )
    return np.ascontiguousarray(array, dtype=np.int64)


def _as_load(values: Any, column: str) -> np.ndarray:
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
                f"{_rows_text(unparsed, array[unparsed].tolist())} are not numbers"
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
                f"{_rows_text(bad, array[bad].tolist())} {what}"
            )
    return np.ascontiguousarray(array)


def _is_missing_string(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _as_strings(values: Any, column: str, n: int) -> np.ndarray:
    """object array of str [n]; missing or empty entries are errors."""
    array = np.asarray(values, dtype=object)
    if array.ndim != 1 or array.shape[0] != n:
        raise DELDataError(f"column {column!r}: expected {n} values (one per compound), got shape {array.shape}")
    missing = np.fromiter(
        (_is_missing_string(v) or (isinstance(v, str) and not v.strip()) for v in array), bool, count=n
    )
    bad = np.flatnonzero(missing)
    if bad.size:
        verb = "is" if bad.size == 1 else "are"
        raise DELDataError(
            f"column {column!r}: expected a non-empty string in every row; {_rows_text(bad)} {verb} empty"
        )
    if not all(isinstance(v, str) for v in array):
        array = np.array([str(v) for v in array], dtype=object)
    return array


def _check_unique(values: np.ndarray, column: str) -> None:
    duplicated = pd.Series(values).duplicated(keep=False).to_numpy()
    bad = np.flatnonzero(duplicated)
    if bad.size:
        raise DELDataError(
            f"column {column!r}: compound ids must be unique; {_rows_text(bad, values[bad].tolist())} repeat"
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
        columns[str(cycle)] = _as_strings(frame[cycle].to_numpy(dtype=object), str(cycle), n)
    return pd.DataFrame(columns)


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
        raise DELDataError(f"poses: pose features must be finite; {_rows_text(bad)} hold NaN or infinite values")
    return poses


# ----------------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class _Preset:
    """Column map for a public table layout; roles in ``optional`` may match no column."""

    description: str
    target: tuple[str, ...]
    control: tuple[str, ...] = ()
    smiles: str = "smiles"
    compound_id: str | None = None
    load: str | None = None
    building_blocks: tuple[str, ...] | None = None
    optional: tuple[str, ...] = ()


PRESETS: dict[str, _Preset] = {
    "kindel": _Preset(
        "KinDEL parquet (DDR1 / MAPK14): three target and three matrix replicates, load, three cycles",
        target=("seq_target_*",),
        control=("seq_matrix_*",),
        load="seq_load",
        building_blocks=("smiles_a", "smiles_b", "smiles_c"),
    ),
    "del-dock": _Preset(
        "DEL-Dock CA-IX table: four target replicates, two bead replicates (TPM-normalized counts)",
        target=("ca9_exp_r*_tpm_normalized",),
        control=("ca9_beads_r*_tpm_normalized",),
    ),
    "del-qsar": _Preset(
        "DEL-QSAR DD1S table: summed target and bead counts, three cycles",
        target=("exp_tot",),
        control=("beads_tot",),
        building_blocks=("cycle1", "cycle2", "cycle3"),
    ),
    "delpyro": _Preset(
        "what DELData.save writes (exact round trip)",
        target=("target:*",),
        control=("control:*",),
        compound_id="compound_id",
        load="load",
        building_blocks=("bb:*",),
        optional=("control", "load", "building_blocks"),
    ),
}


def _table_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    compression = {".gz", ".bz2", ".xz", ".zip", ".zst"}
    while suffixes and suffixes[-1] in compression:
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        return "parquet"
    if last in (".tsv", ".tab"):
        return "tsv"
    if last in (".csv", ".txt"):
        return "csv"
    raise DELDataError(f"{path}: unknown table format {last or '(no suffix)'!r}; expected .csv, .tsv or .parquet")


def _sidecar_paths(path: Path) -> tuple[Path, Path]:
    """``screen.poses.npy`` and ``screen.attrs.json`` beside ``screen.csv`` (or ``screen.csv.gz``)."""
    stem = path.name
    for suffix in reversed(path.suffixes):
        stem = stem[: -len(suffix)]
    return path.with_name(stem + ".poses.npy"), path.with_name(stem + ".attrs.json")


def _resolve(
    columns: Sequence[str],
    patterns: str | Sequence[str] | None,
    role: str,
    preset: str | None,
    optional: bool = False,
) -> list[str]:
    """Column names for ``patterns`` (exact names or globs), in table order; missing ones are errors."""
    if patterns is None:
        return []
    found: list[str] = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if pattern in columns:
            matches = [pattern]
        elif any(ch in pattern for ch in "*?["):
            matches = [c for c in columns if fnmatch.fnmatchcase(c, pattern)]
        else:
            matches = []
        if not matches and not optional:
            where = f" (preset {preset!r})" if preset else ""
            listed = ", ".join(repr(c) for c in list(columns)[:20]) + (", ..." if len(columns) > 20 else "")
            raise DELDataError(
                f"column {pattern!r} for {role}{where} is missing from the table; its columns are {listed}"
            )
        found.extend(m for m in matches if m not in found)
    return found


def invalid_smiles(smiles: Sequence[str]) -> np.ndarray:
    """Positions of entries RDKit cannot parse (missing and empty strings included)."""
    from rdkit import Chem, rdBase

    bad = []
    with rdBase.BlockLogs():  # RDKit's own complaints, one per bad SMILES, are summarized in our error
        for i, s in enumerate(smiles):
            if not isinstance(s, str) or not s.strip() or Chem.MolFromSmiles(s) is None:
                bad.append(i)
    return np.asarray(bad, dtype=np.int64)


def read_counts(
    source: str | Path | pd.DataFrame,
    *,
    target: str | Sequence[str] | None = None,
    control: str | Sequence[str] | None = (),
    smiles: str = "smiles",
    compound_id: str | None = None,
    load: str | None = None,
    building_blocks: str | Sequence[str] | None = None,
    poses: np.ndarray | str | Path | None = None,
    preset: str | None = None,
    on_invalid_smiles: str = "error",
    report: list[str] | None = None,
) -> DELData:
    """Read a screen from a CSV, TSV or parquet path, or a DataFrame, into a validated :class:`DELData`.

    Args:
        source: a path (``.csv``, ``.tsv``, ``.parquet``; compressed CSV such as ``.csv.gz`` works) or a
            DataFrame.
        target: target replicate count columns: a list of names, or a glob such as ``"seq_target_*"``.
        control: control (bead / matrix) replicate count columns, likewise; may be empty.
        smiles: the SMILES column.
        compound_id: a column of unique ids; by default ids are made from the row positions
            (``row0``, ``row1``, ... zero-padded).
        load: a column of pre-selection counts or relative abundance.
        building_blocks: building-block id columns, one per cycle (names or a glob).
        poses: docked-pose features ``[n_rows, n_poses, n_pose_features]``: an array or a ``.npy`` path
            (memory-mapped). With ``preset="delpyro"`` the ``.poses.npy`` beside the table is read.
        preset: fills the column map for a public layout: ``"kindel"``, ``"del-dock"``, ``"del-qsar"`` or
            ``"delpyro"`` (see ``PRESETS``). Arguments given explicitly win over the preset.
        on_invalid_smiles: ``"error"`` raises naming the rows; ``"drop"`` drops those rows and reports
            how many and which (a warning, and a line appended to ``report`` when given).
        report: a list that collects notes on what was done (rows dropped).

    Raises:
        DELDataError: naming the column, the first offending rows, and what was expected.

    >>> import pandas as pd
    >>> table = pd.DataFrame({"smiles": ["CCO", "c1ccccc1"], "t1": [0, 4], "t2": [1, 3], "beads": [0, 0]})
    >>> read_counts(table, target="t*", control=["beads"]).target_counts.tolist()
    [[0, 1], [4, 3]]
    """
    if on_invalid_smiles not in ("error", "drop"):
        raise ValueError(f"on_invalid_smiles must be 'error' or 'drop', got {on_invalid_smiles!r}")
    optional: tuple[str, ...] = ()
    if preset is not None:
        if preset not in PRESETS:
            raise DELDataError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        spec = PRESETS[preset]
        target = spec.target if target is None else target
        control = spec.control if not control else control
        compound_id = compound_id or spec.compound_id
        load = load or spec.load
        building_blocks = building_blocks or spec.building_blocks
        optional = spec.optional
    if target is None:
        raise DELDataError("read_counts: name the target replicate columns (target=...) or give a preset")

    # the header first, so that string columns can be read as strings
    table: pd.DataFrame | None = None
    if isinstance(source, pd.DataFrame):
        table = source.rename(columns=str)
        columns = list(table.columns)
    else:
        path = Path(source)
        if not path.exists():
            raise DELDataError(f"{path}: no such file")
        kind = _table_kind(path)
        if kind == "parquet":
            table = pd.read_parquet(path).rename(columns=str)
            columns = list(table.columns)
        else:
            sep = "\t" if kind == "tsv" else ","
            columns = [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]

    def resolve(patterns: Any, role: str, key: str) -> list[str]:
        return _resolve(columns, patterns, role, preset, optional=key in optional)

    target_columns = resolve(target, "target counts", "target")
    control_columns = resolve(control, "control counts", "control")
    smiles_column = resolve(smiles, "smiles", "smiles")[0]
    id_column = (resolve(compound_id, "compound ids", "compound_id") or [None])[0]
    load_column = (resolve(load, "load", "load") or [None])[0]
    bb_columns = resolve(building_blocks, "building blocks", "building_blocks")
    overlap = set(target_columns) & set(control_columns)
    if overlap:
        raise DELDataError(f"columns {sorted(overlap)} are named both as target and as control counts")
    truth_columns = [c for c in columns if c.startswith("truth:")] if preset == "delpyro" else []

    if table is None:
        strings = {c: str for c in [smiles_column, id_column, *bb_columns] if c}
        # pandas 3 parses floats exactly by default; pandas 2 needs to be asked
        exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
        table = pd.read_csv(path, sep=sep, dtype=strings, keep_default_na=False, na_values=[""], **exact)
    n_rows = len(table)
    if n_rows == 0:
        raise DELDataError("the table is empty: expected at least one compound row")

    smiles_values = np.array(
        ["" if _is_missing_string(v) else str(v) for v in table[smiles_column].to_numpy(dtype=object)],
        dtype=object,
    )
    pose_array = _load_poses(poses, source, preset)
    if pose_array is not None and pose_array.shape[0] != n_rows:
        raise DELDataError(f"poses: the pose array has {pose_array.shape[0]} rows but the table has {n_rows} rows")

    keep = np.arange(n_rows)
    bad_smiles = invalid_smiles(smiles_values)
    if bad_smiles.size:
        shown = smiles_values[bad_smiles].tolist()
        if on_invalid_smiles == "error":
            raise DELDataError(
                f"column {smiles_column!r}: expected SMILES that RDKit can parse; "
                f"{_rows_text(bad_smiles, shown)} cannot be parsed (on_invalid_smiles='drop' drops them)"
            )
        note = (
            f"dropped {bad_smiles.size} of {n_rows} rows whose {smiles_column!r} RDKit cannot parse: "
            f"{_rows_text(bad_smiles, shown)}"
        )
        warnings.warn(note, stacklevel=2)
        if report is not None:
            report.append(note)
        keep = np.setdiff1d(keep, bad_smiles)
        if keep.size == 0:
            raise DELDataError(f"column {smiles_column!r}: no row has a SMILES that RDKit can parse")
        # the rows are dropped after the screen is assembled (so that any other error names the table's
        # own row numbers); until then an empty or missing SMILES must not fail the string check
        smiles_values[bad_smiles] = "*"

    if id_column:
        ids = _as_strings(table[id_column].to_numpy(dtype=object), id_column, n_rows)
        _check_unique(ids, id_column)
    else:
        width = len(str(n_rows - 1))
        ids = np.array([f"row{i:0{width}d}" for i in range(n_rows)], dtype=object)

    def strip(names: list[str], prefix: str) -> list[str]:
        if preset != "delpyro":
            return names
        return [c[len(prefix) :] if c.startswith(prefix) else c for c in names]

    attrs: dict[str, Any] = {}
    if preset == "delpyro" and not isinstance(source, pd.DataFrame):
        attrs_path = _sidecar_paths(Path(source))[1]
        if attrs_path.exists():
            attrs = json.loads(attrs_path.read_text())

    data = DELData(
        target_counts=_as_counts(table[target_columns].to_numpy(), "target_counts", target_columns),
        control_counts=(
            _as_counts(table[control_columns].to_numpy(), "control_counts", control_columns)
            if control_columns
            else np.zeros((n_rows, 0), dtype=np.int64)
        ),
        smiles=smiles_values,
        compound_id=ids,
        load=_as_load(table[load_column].to_numpy(), load_column) if load_column else None,
        building_blocks=(
            pd.DataFrame(
                {
                    name: _as_strings(table[c].to_numpy(dtype=object), c, n_rows)
                    for name, c in zip(strip(bb_columns, "bb:"), bb_columns, strict=True)
                }
            )
            if bb_columns
            else None
        ),
        poses=pose_array,
        truth=(
            pd.DataFrame({c[len("truth:") :]: table[c].to_numpy() for c in truth_columns}) if truth_columns else None
        ),
        target_names=strip(target_columns, "target:"),
        control_names=strip(control_columns, "control:"),
        attrs=attrs,
    )
    del table  # the pandas copy of the table; pyarrow keeps the memory of what it read in its pool
    _release_arrow_memory()
    return data if keep.size == n_rows else data.subset(keep)


def _release_arrow_memory() -> None:
    """Give pyarrow's pooled memory back to the system: after a parquet read its allocator holds on to
    the freed buffers, about as much again as the table (hundreds of MB for a million compounds)."""
    try:
        import pyarrow
    except ImportError:
        return
    pyarrow.default_memory_pool().release_unused()


def _load_poses(poses: Any, source: Any, preset: str | None) -> np.ndarray | None:
    """The pose array from an array or a .npy path (memory-mapped); the delpyro sidecar by default."""
    if poses is None and preset == "delpyro" and not isinstance(source, pd.DataFrame):
        beside = _sidecar_paths(Path(source))[0]
        poses = beside if beside.exists() else None
    if poses is None:
        return None
    if isinstance(poses, (str, Path)):
        path = Path(poses)
        if not path.exists():
            raise DELDataError(f"poses: {path}: no such file")
        poses = np.load(path, mmap_mode="r")
    array = poses if isinstance(poses, np.ndarray) else np.asarray(poses, dtype=np.float32)
    if array.ndim != 3:
        raise DELDataError(f"poses: expected an array [n_compounds, n_poses, n_pose_features], got shape {array.shape}")
    return array


# ----------------------------------------------------------------------------------------------------
# splits


def split(
    data: DELData,
    how: str = "random",
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    cycle: str | None = None,
) -> tuple[DELData, DELData, DELData]:
    """Split a screen into train, validation and test sets.

    Args:
        how: ``"random"`` assigns compounds at random; ``"building_block"`` holds out whole building
            blocks of one cycle, so validation and test compounds share no building block of that cycle
            with training compounds (the generalization test DEL papers use).
        fractions: shares of compounds for train, validation and test (they sum to 1). With
            ``"building_block"`` the shares are met as closely as whole building blocks allow.
        seed: the same seed gives the same split.
        cycle: the cycle whose building blocks are held out; by default the one with the most blocks.

    Returns:
        ``(train, val, test)`` DELData; together they hold every compound exactly once.
    """
    fractions = tuple(float(f) for f in fractions)  # type: ignore[assignment]
    if len(fractions) != 3 or any(f < 0 or not math.isfinite(f) for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    n = data.n_compounds
    if how == "random":
        order = rng.permutation(n)
        n_train = round(fractions[0] * n)
        n_val = min(n - n_train, round(fractions[1] * n))
        parts = [order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]]
    elif how == "building_block":
        if data.building_blocks is None:
            raise DELDataError("split(how='building_block'): the screen has no building-block columns")
        frame = data.building_blocks
        if cycle is None:
            cycle = max(frame.columns, key=lambda c: frame[c].nunique())
        if cycle not in frame.columns:
            raise DELDataError(f"split: cycle {cycle!r} is not a building-block column; have {list(frame.columns)}")
        codes, blocks = pd.factorize(frame[cycle])
        if len(blocks) < 3 and min(fractions) > 0:
            raise DELDataError(
                f"split: cycle {cycle!r} has {len(blocks)} building blocks; at least 3 are needed to hold out"
            )
        sizes = np.bincount(codes, minlength=len(blocks))
        order = rng.permutation(len(blocks))
        targets = np.cumsum(fractions)[:2] * n
        assignment = np.empty(len(blocks), dtype=np.int64)
        cumulative = 0
        for block in order:
            # place the block in the set whose cumulative boundary its midpoint falls before
            midpoint = cumulative + sizes[block] / 2
            assignment[block] = int(np.searchsorted(targets, midpoint, side="right"))
            cumulative += sizes[block]
        # every set asked for gets at least one block when there are enough blocks
        for which in range(3):
            if fractions[which] > 0 and not (assignment == which).any():
                donor = np.bincount(assignment, weights=sizes, minlength=3).argmax()
                candidates = np.flatnonzero(assignment == donor)
                assignment[candidates[np.argmin(sizes[candidates])]] = which
        compound_set = assignment[codes]
        parts = [np.flatnonzero(compound_set == k) for k in range(3)]
        parts = [rng.permutation(p) for p in parts]
    else:
        raise ValueError(f"how must be 'random' or 'building_block', got {how!r}")
    return tuple(data.subset(np.sort(p)) for p in parts)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------
# minibatches


class Minibatches:
    """Minibatches of tensors sliced from arrays assembled once (no per-compound Python objects).

    Args:
        arrays: named arrays with the same first dimension (numpy arrays or torch tensors); each is turned
            into a tensor once (without a copy where the dtype allows) and moved to ``device``.
        batch_size: compounds per batch.
        shuffle: a new permutation every epoch, from ``seed`` and the epoch number.
        drop_last: drop the final short batch (fixed shapes, as traced models want).
        device: where batches live.

    A memory-mapped array (``np.load(path, mmap_mode="r")``, as ``read_counts`` opens a ``.npy`` of pose
    features) is not loaded: each batch reads its rows from the file, so a screen's poses need not fit
    in memory. Every other array is turned into one tensor up front.

    Each batch is a dict of tensors with the same keys plus ``"index"`` (int64 row positions) and
    ``"size"`` (the number of rows in all, a Python int: what a subsampled plate scales to).

    >>> import numpy as np
    >>> batches = Minibatches({"counts": np.arange(10).reshape(5, 2)}, batch_size=2, shuffle=False)
    >>> [b["index"].tolist() for b in batches]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        arrays: Mapping[str, Any],
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: str | Any = "cpu",
    ) -> None:
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.tensors: dict[str, torch.Tensor] = {}
        self.mapped: dict[str, np.ndarray] = {}  # memory-mapped arrays stay on disk; batches are read from them
        lengths = set()
        for name, array in arrays.items():
            if array is None:
                continue
            if isinstance(array, np.memmap) or (isinstance(array, np.ndarray) and isinstance(array.base, np.memmap)):
                self.mapped[name] = array
                lengths.add(int(array.shape[0]))
                continue
            if not isinstance(array, torch.Tensor):
                array = np.asarray(array)
                if not array.flags.writeable:  # torch needs writable memory
                    array = np.array(array)
                array = np.ascontiguousarray(array)
                array = torch.from_numpy(array)
            self.tensors[name] = array.to(device)
            lengths.add(int(array.shape[0]))
        if len(lengths) != 1:
            raise ValueError(f"arrays must share their first dimension, got lengths {sorted(lengths)}")
        self.n = lengths.pop()
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.device = device
        self.epoch = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.batch_size
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import torch

        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=generator).to(self.device)
        else:
            order = None
        self.epoch += 1
        stop = (self.n // self.batch_size) * self.batch_size if self.drop_last else self.n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, stop)
            if order is None:
                batch = {name: t[start:end] for name, t in self.tensors.items()}
                batch["index"] = torch.arange(start, end, device=self.device)
                for name, array in self.mapped.items():
                    batch[name] = torch.from_numpy(np.array(array[start:end])).to(self.device)
            else:
                index = order[start:end]
                batch = {name: t.index_select(0, index) for name, t in self.tensors.items()}
                batch["index"] = index
                if self.mapped:  # rows in file order read faster; put them back in batch order after
                    rows = index.cpu().numpy()
                    ascending = np.argsort(rows, kind="stable")
                    for name, array in self.mapped.items():
                        block = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
                        block[ascending] = array[rows[ascending]]
                        batch[name] = torch.from_numpy(block).to(self.device)
            batch["size"] = self.n
            yield batch
