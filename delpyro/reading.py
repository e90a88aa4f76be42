"""Reading a screen from a table: :func:`read_counts`, the column maps of public layouts (``LAYOUTS``).

A table (CSV, TSV, parquet, or a DataFrame) becomes a validated :class:`~delpyro.data.DELData`. Columns are
named explicitly, by globs, or by a layout preset (``read_counts(path, preset="kindel")``); whatever is wrong
raises :class:`~delpyro.data.DELDataError` naming the column, the first offending rows and what was
expected. Nothing is dropped silently: rows dropped on request are counted and reported.
"""

from __future__ import annotations

import ctypes
import fnmatch
import gzip
import json
import lzma
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow

from delpyro.data import (
    STRINGS,
    DELData,
    DELDataError,
    as_block_ids,
    as_counts,
    as_load,
    as_strings,
    as_text,
    check_unique,
    rows_text,
    separator,
    sidecar_paths,
    table_kind,
)
from delpyro.library import complete
from delpyro.repair import has_inner_space, invalid_smiles, repair_smiles

__all__ = ["LAYOUTS", "Layout", "read_counts", "read_file", "read_header"]


@dataclass(frozen=True)
class Layout:
    """The column map of a public table layout, chosen by ``read_counts(..., preset=name)``; roles in
    ``optional`` may match no column."""

    description: str
    target: tuple[str, ...]
    control: tuple[str, ...] = ()
    smiles: str = "smiles"
    compound_id: str | None = None
    load: str | None = None
    building_blocks: tuple[str, ...] | None = None
    block_smiles: tuple[str, ...] | None = None
    optional: tuple[str, ...] = ()


LAYOUTS: dict[str, Layout] = {
    "kindel": Layout(
        "KinDEL parquet (DDR1 / MAPK14): three target and three matrix replicates, load, three cycles",
        target=("seq_target_*",),
        control=("seq_matrix_*",),
        load="seq_load",
        building_blocks=("smiles_a", "smiles_b", "smiles_c"),
    ),
    "del-dock": Layout(
        "DEL-Dock CA-IX table: four target replicates, two bead replicates (TPM-normalized counts)",
        target=("ca9_exp_r*_tpm_normalized",),
        control=("ca9_beads_r*_tpm_normalized",),
    ),
    "del-qsar": Layout(
        "DEL-QSAR DD1S table: summed target and bead counts, three cycles",
        target=("exp_tot",),
        control=("beads_tot",),
        building_blocks=("cycle1", "cycle2", "cycle3"),
    ),
    "deli": Layout(
        "DELi cube (UNC): DEL_ID ids, product SMILES, blocks ID_A/B/C with their SMILES_A/B/C, UMI-corrected "
        "counts corrected_* (raw reads: target='raw_*'); no control unless named (control=[...])",
        target=("corrected_*",),
        smiles="SMILES",
        compound_id="DEL_ID",
        building_blocks=("ID_?",),
        block_smiles=("SMILES_?",),
    ),
    "delpyro": Layout(
        "what DELData.save writes (exact round trip)",
        target=("target:*",),
        control=("control:*",),
        compound_id="compound_id",
        load="load",
        building_blocks=("bb:*",),
        block_smiles=("bb_smiles:*",),
        optional=("control", "load", "building_blocks", "block_smiles"),
    ),
}


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


def read_file(path: Path, kind: str, read: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """``read()`` (a pandas reader of ``path``, a table of ``kind``), with whatever goes wrong in the file
    turned into a DELDataError naming it."""
    try:
        return read()
    except pd.errors.EmptyDataError:
        raise DELDataError(f"{path}: the file is empty: expected a header and one row per compound") from None
    except UnicodeDecodeError as err:
        raise DELDataError(
            f"{path}: not a text table: byte {err.start} cannot be decoded as UTF-8 (a binary file, or another "
            "encoding: save it as UTF-8 CSV)"
        ) from None
    except (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as err:
        raise DELDataError(f"{path}: the compressed file is cut short or damaged ({err})") from None
    except (ValueError, OSError, pyarrow.ArrowException) as err:
        hint = "; is it really a parquet file?" if kind == "parquet" else ""
        raise DELDataError(f"{path}: cannot be read as a {kind} table ({type(err).__name__}: {err}){hint}") from None


def read_header(path: Path, kind: str) -> list[str]:
    """The column names of a table file of ``kind`` as written (a repeated name stays repeated, so that
    it can be refused), read from its header alone: the first line, or a parquet file's schema."""
    if kind == "parquet":
        import pyarrow.parquet

        return [str(c) for c in read_file(path, kind, lambda: pyarrow.parquet.read_schema(path)).names]
    header = read_file(path, kind, lambda: pd.read_csv(path, sep=separator(kind), header=None, nrows=1, dtype=str))
    return [str(c) for c in header.iloc[0]] if len(header) else []


def _check_column_names(columns: list[str], source: Any) -> None:
    where = "the table" if isinstance(source, pd.DataFrame) else str(source)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DELDataError(
            f"{where}: columns {repeated} appear more than once in the header; give each column its own name "
            "(pandas would read the second one as a renamed copy)"
        )


def _tell(note: str, report: list[str] | None) -> None:
    """A note on what reading did: a warning (at ``read_counts``' caller) and, when given, a line of ``report``."""
    warnings.warn(note, stacklevel=3)
    if report is not None:
        report.append(note)


def read_counts(
    source: str | Path | pd.DataFrame,
    *,
    target: str | Sequence[str] | None = None,
    control: str | Sequence[str] | None = (),
    smiles: str | None = None,
    compound_id: str | None = None,
    load: str | None = None,
    building_blocks: str | Sequence[str] | None = None,
    block_smiles: str | Sequence[str] | None = None,
    poses: np.ndarray | str | Path | None = None,
    preset: str | None = None,
    on_invalid_smiles: str = "repair",
    report: list[str] | None = None,
    library: str | Path | pd.DataFrame | None = None,
) -> DELData:
    """Read a screen from a CSV, TSV or parquet path, or a DataFrame, into a validated :class:`DELData`.

    Args:
        source: a path (``.csv``, ``.tsv``, ``.parquet``; compressed CSV such as ``.csv.gz`` works) or a
            DataFrame.
        target: target replicate count columns: a list of names, or a glob such as ``"seq_target_*"``.
        control: control (bead / matrix) replicate count columns, likewise; may be empty.
        smiles: the SMILES column (default ``"smiles"``, or the preset's).
        compound_id: a column of unique ids; by default ids are made from the row positions
            (``row0``, ``row1``, ... zero-padded).
        load: a column of pre-selection counts or relative abundance.
        building_blocks: building-block id columns, one per cycle (names or a glob).
        block_smiles: building-block SMILES columns, one per cycle in the order of ``building_blocks``
            (DELi's ``SMILES_A``...): each block's SMILES goes to ``building_block_smiles`` (features can be
            computed from the blocks); a block written with two different SMILES is an error.
        poses: docked-pose features ``[n_rows, n_poses, n_pose_features]``: an array or a ``.npy`` path
            (memory-mapped). With ``preset="delpyro"`` the ``.poses.npy`` beside the table is read.
        preset: fills the column map for a public layout: ``"kindel"``, ``"del-dock"``, ``"del-qsar"`` or
            ``"delpyro"`` (see ``LAYOUTS``). Arguments given explicitly win over the preset.
        on_invalid_smiles: what to do with SMILES RDKit cannot parse. ``"repair"`` (the default) repairs
            those that only write a charged atom without its charge, such as a quaternary ammonium written
            ``C[N](C)(C)C`` (see :func:`delpyro.repair.repair_smiles`: a neutral N with four bonds becomes
            ``[N+]``, O with three ``[O+]``, B with four ``[B-]``; nothing else), and raises naming the rows
            it cannot repair. A repaired row holds RDKit's SMILES of the repaired molecule in ``smiles``;
            the column as the file wrote it is kept in ``smiles_as_read``, and the repairs are reported (a
            warning, and a note appended to ``report`` when given: how many, which rows, before -> after
            for the first few). ``"drop"`` repairs likewise, then drops the rows it cannot repair and
            reports how many and which. ``"error"`` repairs nothing and raises on any SMILES RDKit cannot
            parse. Missing and empty SMILES, and SMILES with whitespace inside them, are never repaired.
        report: a list that collects notes on what was done (SMILES repaired, rows dropped, members added).
        library: for a table that lists only the members with reads, the whole library: a table (path or
            DataFrame) of its members with the table's id, SMILES and building-block columns, such as an
            enumerated library file. Every member the table does not list is added with zero counts (and a
            zero load), in the library's order, and ``observed`` marks the rows the table listed (see
            :mod:`delpyro.library`; reported like a repair). Needs ``compound_id``. Without the library,
            fit the table as it is with ``ModelConfig(observed_only=...)``.

    Raises:
        DELDataError: naming the column, the first offending rows, and what was expected.

    >>> import pandas as pd
    >>> table = pd.DataFrame({"smiles": ["CCO", "c1ccccc1"], "t1": [0, 4], "t2": [1, 3], "beads": [0, 0]})
    >>> read_counts(table, target="t*", control=["beads"]).target_counts.tolist()
    [[0, 1], [4, 3]]
    """
    if preset == "delt" or (not isinstance(source, pd.DataFrame) and Path(source).is_dir()):
        raise DELDataError(
            f"{source}: per-selection count folders (DELT-Hit) hold one screen per target: read them with "
            "delpyro.selections.read_delt, which pairs each target with its no-protein control"
        )
    if on_invalid_smiles not in ("repair", "error", "drop"):
        raise ValueError(f"on_invalid_smiles must be 'repair', 'error' or 'drop', got {on_invalid_smiles!r}")
    optional: tuple[str, ...] = ()
    if preset is not None:
        if preset not in LAYOUTS:
            raise DELDataError(f"unknown preset {preset!r}; expected one of {sorted(LAYOUTS)}")
        layout = LAYOUTS[preset]
        target = layout.target if target is None else target
        control = layout.control if not control else control
        smiles = smiles or layout.smiles
        compound_id = compound_id or layout.compound_id
        load = load or layout.load
        building_blocks = building_blocks or layout.building_blocks
        block_smiles = block_smiles or layout.block_smiles
        optional = layout.optional
    smiles = smiles or "smiles"
    if target is None:
        raise DELDataError("read_counts: name the target replicate columns (target=...) or give a preset")

    # the header first, so that string columns can be read as strings
    table: pd.DataFrame | _ParquetColumns | None = None
    if isinstance(source, pd.DataFrame):
        table = source.rename(columns=str)
        columns = list(table.columns)
    else:
        path = Path(source)
        if not path.exists():
            raise DELDataError(f"{path}: no such file")
        kind = table_kind(path)
        if kind == "parquet":
            table = _ParquetColumns(path)
            columns = table.columns
        else:
            columns = read_header(path, kind)
    _check_column_names(columns, source)

    def resolve(patterns: Any, role: str, key: str) -> list[str]:
        return _resolve(columns, patterns, role, preset, optional=key in optional)

    target_columns = resolve(target, "target counts", "target")
    control_columns = resolve(control, "control counts", "control")
    smiles_column = resolve(smiles, "smiles", "smiles")[0]
    id_column = (resolve(compound_id, "compound ids", "compound_id") or [None])[0]
    load_column = (resolve(load, "load", "load") or [None])[0]
    bb_columns = resolve(building_blocks, "building blocks", "building_blocks")
    block_smiles_columns = resolve(block_smiles, "building-block SMILES", "block_smiles")
    if block_smiles_columns and len(block_smiles_columns) != len(bb_columns):
        raise DELDataError(
            f"columns {block_smiles_columns} for building-block SMILES: expected one per building-block column "
            f"{bb_columns}"
        )
    overlap = set(target_columns) & set(control_columns)
    if overlap:
        raise DELDataError(f"columns {sorted(overlap)} are named both as target and as control counts")
    truth_columns = [c for c in columns if c.startswith("truth:")] if preset == "delpyro" else []
    # what DELData.save writes besides: the SMILES as first read, the observed mark
    saved_extras = [c for c in columns if c in ("smiles_as_read", "observed")] if preset == "delpyro" else []

    if table is None:
        strings = {c: str for c in [smiles_column, id_column, *bb_columns, *block_smiles_columns, *saved_extras] if c}
        # pandas 3 parses floats exactly by default; pandas 2 needs to be asked
        exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
        table = read_file(
            path,
            kind,
            lambda: pd.read_csv(
                path, sep=separator(kind), dtype=strings, keep_default_na=False, na_values=[""], **exact
            ),
        )
    n_rows = len(table)
    if n_rows == 0:
        where = "" if isinstance(source, pd.DataFrame) else f"{source}: "
        raise DELDataError(f"{where}the table is empty: expected at least one compound row")
    observed = None
    if library is not None:
        where = "the table" if isinstance(source, pd.DataFrame) else str(source)
        if id_column is None or poses is not None or truth_columns:
            raise DELDataError(
                f"{where}: completing from a library needs the compound id column (compound_id=...), and a "
                "table without poses or truth columns"
            )
        if isinstance(table, _ParquetColumns):
            table = table.frame()
        members, library_name = _read_library(library, [id_column, smiles_column, *bb_columns, *block_smiles_columns])
        table, observed = complete(
            table,
            members,
            id_column=id_column,
            smiles_column=smiles_column,
            count_columns=[*target_columns, *control_columns],
            block_columns=[*bb_columns, *block_smiles_columns],
            load_column=load_column,
            where=where,
            library_name=library_name,
        )
        note = (
            f"{where}: completed from {library_name}: {int((~observed).sum()):,} members without reads added with "
            f"zero counts to the {n_rows:,} the table lists"
        )
        _tell(note, report)
        n_rows = len(table)

    smiles_values = as_text(table[smiles_column], smiles_column, n_rows)
    pose_array = _load_poses(poses, source, preset)
    if pose_array is not None and pose_array.shape[0] != n_rows:
        raise DELDataError(f"poses: the pose array has {pose_array.shape[0]} rows but the table has {n_rows} rows")

    keep = np.arange(n_rows)
    as_read: dict[str, np.ndarray] = {}  # the SMILES column as the file wrote it, when some were repaired
    n_repaired = 0
    if on_invalid_smiles == "error":
        bad_smiles = invalid_smiles(smiles_values)
    else:
        repair = repair_smiles(smiles_values)
        bad_smiles = repair.unfixable
        n_repaired = repair.repaired.size
        if n_repaired:
            note = "\n".join(repair.report_lines(smiles_column))
            _tell(note, report)
            as_read["smiles_as_read"] = smiles_values
            smiles_values = repair.smiles
    if bad_smiles.size:
        shown = smiles_values[bad_smiles].tolist()
        if on_invalid_smiles != "drop":
            spaced = [s for s in shown if isinstance(s, str) and has_inner_space(s)]
            hint = f"; {len(spaced)} hold whitespace inside the SMILES" if spaced else ""
            if on_invalid_smiles == "repair":
                hint += ", and repair fixes only a charged atom written without its charge"
                if n_repaired:
                    hint += f" ({n_repaired} other {'row was' if n_repaired == 1 else 'rows were'} repaired)"
            elif repairable := repair_smiles(smiles_values[bad_smiles]).repaired.size:
                hint += (
                    f"; {repairable} of them only write a charged atom without its charge, which "
                    "on_invalid_smiles='repair' (the default) repairs"
                )
            raise DELDataError(
                f"column {smiles_column!r}: expected SMILES that RDKit can parse; "
                f"{rows_text(bad_smiles, shown)} cannot be parsed{hint} (on_invalid_smiles='drop' drops them)"
            )
        note = (
            f"dropped {bad_smiles.size} of {n_rows} rows whose {smiles_column!r} RDKit cannot parse and "
            f"repair cannot fix: {rows_text(bad_smiles, shown)}"
        )
        _tell(note, report)
        keep = np.setdiff1d(keep, bad_smiles)
        if keep.size == 0:
            raise DELDataError(f"column {smiles_column!r}: no row has a SMILES that RDKit can parse")
        # the rows are dropped after the screen is assembled (so that any other error names the table's
        # own row numbers); until then an empty or missing SMILES must not fail the string check
        smiles_values[bad_smiles] = "*"
        if as_read:
            as_read["smiles_as_read"][bad_smiles] = "*"

    if id_column:
        ids = as_strings(table[id_column], id_column, n_rows)
        check_unique(ids, id_column)
    else:
        width = len(str(n_rows - 1))
        ids = np.strings.add("row", np.strings.zfill(np.arange(n_rows).astype(STRINGS), width))
    for column in {smiles_column, id_column} - {None, *bb_columns, *block_smiles_columns, *saved_extras}:
        del table[column]  # held as numpy strings now: the frame's copy goes (a table of 10^7 compounds)
    _release_arrow_memory()

    def strip(names: list[str], prefix: str) -> list[str]:
        if preset != "delpyro":
            return names
        return [c[len(prefix) :] if c.startswith(prefix) else c for c in names]

    attrs: dict[str, Any] = {}
    if preset == "delpyro" and not isinstance(source, pd.DataFrame):
        attrs_path = sidecar_paths(Path(source))[1]
        if attrs_path.exists():
            attrs = json.loads(attrs_path.read_text())

    data = DELData(
        target_counts=as_counts(table[target_columns].to_numpy(), "target_counts", target_columns),
        control_counts=(
            as_counts(table[control_columns].to_numpy(), "control_counts", control_columns)
            if control_columns
            else np.zeros((n_rows, 0), dtype=np.int64)
        ),
        smiles=smiles_values,
        compound_id=ids,
        load=as_load(table[load_column].to_numpy(), load_column) if load_column else None,
        building_blocks=(
            pd.DataFrame(
                {
                    name: as_block_ids(table[c], c, n_rows)
                    for name, c in zip(strip(bb_columns, "bb:"), bb_columns, strict=True)
                }
            )
            if bb_columns
            else None
        ),
        poses=pose_array,
        truth=(
            pd.DataFrame({c[len("truth:") :]: table[c].to_numpy(copy=True) for c in truth_columns})
            if truth_columns
            else None
        ),
        target_names=strip(target_columns, "target:"),
        control_names=strip(control_columns, "control:"),
        attrs=attrs,
        # a table DELData.save wrote keeps its own smiles_as_read (the SMILES as first read)
        **{**as_read, **_saved_extras(table, saved_extras)},
        **({} if observed is None else {"observed": observed}),
        **_block_smiles(table, strip(bb_columns, "bb:"), bb_columns, block_smiles_columns, source),
    )
    del table  # the pandas copy of the table (or the parquet file's handle)
    _release_arrow_memory()
    return data if keep.size == n_rows else data.subset(keep)


def _saved_extras(table: pd.DataFrame, extras: list[str]) -> dict[str, Any]:
    """The optional DELData fields a table written by ``DELData.save`` holds, read back."""
    out: dict[str, Any] = {}
    if "smiles_as_read" in extras:
        out["smiles_as_read"] = table["smiles_as_read"]
    if "observed" in extras:
        values = table["observed"].astype(str).str.lower()
        bad = np.flatnonzero(~values.isin(["true", "false"]).to_numpy())
        if bad.size:
            raise DELDataError(
                f"column 'observed': expected True or False; {rows_text(bad, values.iloc[bad].tolist())}"
            )
        out["observed"] = (values == "true").to_numpy()
    return out


def _block_smiles(
    table: pd.DataFrame, cycles: list[str], bb_columns: list[str], smiles_columns: list[str], source: Any
) -> dict[str, Any]:
    """``{"building_block_smiles": {cycle: {block id: SMILES}}}`` from a block SMILES column per cycle."""
    if not smiles_columns:
        return {}
    where = "the table" if isinstance(source, pd.DataFrame) else str(source)
    out = {}
    for cycle, ids, smiles in zip(cycles, bb_columns, smiles_columns, strict=True):
        pairs = table[[ids, smiles]].astype(str).drop_duplicates()
        twice = pairs[ids].duplicated(keep=False).to_numpy()
        if twice.any():
            blocks = sorted(set(pairs[ids][twice]))
            raise DELDataError(
                f"{where}: column {smiles!r}: blocks {blocks[:10]} of {ids!r} are written with different SMILES "
                "in different rows"
            )
        out[cycle] = dict(zip(pairs[ids], pairs[smiles], strict=True))
    return {"building_block_smiles": out}


def _read_library(source: str | Path | pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, str]:
    """The members of a library (a path or a DataFrame), with ``columns`` read as strings, and its name."""
    if isinstance(source, pd.DataFrame):
        return source.rename(columns=str), "the library"
    path = Path(source)
    if not path.exists():
        raise DELDataError(f"{path}: no such file (the library)")
    kind = table_kind(path)
    if kind == "parquet":
        return read_file(path, kind, lambda: pd.read_parquet(path)).rename(columns=str), str(path)
    names = read_header(path, kind)
    _check_column_names(names, path)
    wanted = [c for c in columns if c in names]
    table = read_file(
        path, kind, lambda: pd.read_csv(path, sep=separator(kind), usecols=wanted, dtype=str, keep_default_na=False)
    )
    return table, str(path)


class _ParquetColumns:
    """A parquet table read a column (or a few) at a time, as ``read_counts`` asks for them: ``table[name]``
    is a Series, ``table[[names]]`` a DataFrame, each read from the file when asked. Only the columns
    being converted are in memory beside what is already converted (for 10^7 compounds, the SMILES column
    alone rather than the whole table and its pandas copy). Text columns come as Arrow-backed strings (no
    Python object per row); whatever goes wrong in the file is a DELDataError naming it."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet

        self.path = path
        self._file = read_file(path, "parquet", lambda: pyarrow.parquet.ParquetFile(path))
        self.columns = [str(c) for c in self._file.schema_arrow.names]
        self._rows = self._file.metadata.num_rows

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, names: str | list[str]) -> pd.Series | pd.DataFrame:
        wanted = [names] if isinstance(names, str) else list(names)
        frame = read_file(self.path, "parquet", lambda: self._read(wanted))
        return frame[names]

    def __delitem__(self, name: str) -> None:
        """Nothing to free: a column is in memory only while it is converted."""

    def frame(self) -> pd.DataFrame:
        """The whole table as one DataFrame (for completing it from a library)."""
        return self[self.columns]

    def _read(self, names: list[str]) -> pd.DataFrame:
        table = self._file.read(columns=names)
        frame = table.to_pandas(split_blocks=True, self_destruct=True, types_mapper=_arrow_text)
        del table
        return frame


def _arrow_text(kind: pyarrow.DataType) -> Any:
    """pandas' Arrow-backed string dtype for Arrow's text types (``to_pandas``' ``types_mapper``)."""
    if pyarrow.types.is_string(kind) or pyarrow.types.is_large_string(kind):
        return pd.StringDtype("pyarrow")
    return None


def _release_arrow_memory() -> None:
    """Give freed memory back to the system: after a parquet read pyarrow's allocator holds on to the
    freed buffers (hundreds of MB for a million compounds), and glibc's malloc to the pages of the
    columns converted and freed meanwhile (about 170 MB more for a million compounds)."""
    pyarrow.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> Any:
    """glibc, whose ``malloc_trim`` hands freed heap pages back; None elsewhere (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "malloc_trim") else None
    except (OSError, TypeError):  # TypeError: Windows has no process-wide handle
        return None


_LIBC = _glibc()


def _load_poses(poses: Any, source: Any, preset: str | None) -> np.ndarray | None:
    """The pose array from an array or a .npy path (memory-mapped); the delpyro sidecar by default."""
    if poses is None and preset == "delpyro" and not isinstance(source, pd.DataFrame):
        beside = sidecar_paths(Path(source))[0]
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
