"""Many selections in one place: one screen per target, with its matching no-protein control.

A lab that screens one library against several proteins at once publishes all its selections together:
each protein in replicate, beside selections without protein (``no_protein``) on the same beads and in the
same buffer, which show what sticks to the matrix. This module turns such a publication into one
:class:`~delpyro.data.DELData` per target: the target's ``protein`` selections are its target replicates,
the ``no_protein`` selections that match them are its control replicates, and replicate names are the
selection names. Two layouts:

- a wide table (:func:`read_selections`): one row per compound, one count column per selection, plus the
  SMILES, id and building-block columns, described by a selections table;
- the per-selection folder that DELT-Hit writes (:func:`read_delt`; :func:`write_delt` writes one)::

      folder/
          selections.tsv          name, target, group, beads, buffer, date   (or selections.csv)
          building_blocks_1.tsv   code, codon, smiles, reaction[, block_id]  one table per cycle:
          building_blocks_2.tsv   ...                                        _1, _2, _3, ... in order
          <name>/counts.txt       code_1, code_2[, code_3], count            one folder per selection

  ``counts.txt`` is tab-separated (a header line is optional), one line per member that got reads: its
  building-block codes, one per cycle, then its count. Codes are the 1-based ``code`` values of each
  cycle's building-block table. Members with no reads are absent.

**The selections table** has the columns ``name`` (a count column of the wide table, or a sub-folder of
the DELT folder), ``target``, ``group`` (``protein`` or ``no_protein``) and optionally ``beads`` and
``buffer``; other columns (``date``, ...) are kept in the screens' ``attrs``. Column names are matched
case-insensitively; ``group`` values too (``No-Protein`` reads as ``no_protein``). The ``target`` of a
``no_protein`` selection is not used. Beads and buffer are compared as written, after stripping spaces.

**Controls.** A target's controls are the ``no_protein`` selections whose beads and buffer (those of the two
columns that the table has) equal those of one of the target's protein selections; a table with neither
column pairs every target with every ``no_protein`` selection. ``controls={target: [names, ...]}`` names a
target's controls instead (an empty list: none). A target left without a control gets zero control
columns, with a warning, and its screen says so in ``attrs["selections"]["no_control"]``.

Each screen's ``attrs["selections"]`` records where it came from: ``layout`` (``"wide"`` or ``"delt"``),
``source``, ``target``, ``control_match`` (how its controls were found) and ``rows`` (the selections
table's row of each of its selections, as strings, with ``role`` ``"target"`` or ``"control"``).
Everything wrong raises :class:`~delpyro.data.DELDataError` naming the file, the column and the rows.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from delpyro.data import (
    DELData,
    DELDataError,
    as_counts,
    compression,
    is_missing_string,
    rows_text,
    separator,
    table_kind,
)
from delpyro.files import replacing
from delpyro.reading import read_counts, read_file, read_header
from delpyro.repair import invalid_smiles

__all__ = [
    "BLOCK_TABLE",
    "COUNTS_FILE",
    "GROUPS",
    "SELECTIONS_FILES",
    "read_delt",
    "read_selections",
    "write_delt",
]

#: the count file in each selection's folder
COUNTS_FILE = "counts.txt"
#: the selections table of a DELT folder (the first that exists; both is an error)
SELECTIONS_FILES = ("selections.tsv", "selections.csv")
#: each cycle's building-block table in a DELT folder, k = 1, 2, ... (``.csv`` is read too)
BLOCK_TABLE = "building_blocks_{k}.tsv"
#: the values of the selections table's ``group`` column
GROUPS = ("protein", "no_protein")

_REQUIRED = ("name", "target", "group")
_MATCH = ("beads", "buffer")
_BLOCK_REQUIRED = ("code", "smiles")
_BLOCK_OPTIONAL = ("codon", "reaction", "block_id")
_SELECTION_COLUMNS = ("name", "target", "group", "beads", "buffer", "date")


# ----------------------------------------------------------------------------------------------------
# small helpers


@contextlib.contextmanager
def _about(where: str) -> Iterator[None]:
    """Re-raise a DELDataError with ``where`` (a file) in front, unless it already names it."""
    try:
        yield
    except DELDataError as err:
        text = str(err)
        if text.startswith(where):
            raise
        raise DELDataError(f"{where}: {text}") from None


def _strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as a stripped str; missing cells become ''."""
    out = {}
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=object)
        out[str(column)] = ["" if is_missing_string(v) else str(v).strip() for v in values]
    return pd.DataFrame(out, columns=[str(c) for c in frame.columns], dtype=object)


def _read_text_table(path: Path) -> pd.DataFrame:
    """A CSV, TSV or parquet file, every cell a str (nothing parsed as a number or as missing)."""
    if not path.is_file():
        raise DELDataError(f"{path}: no such file")
    kind = table_kind(path)
    if kind == "parquet":
        frame = read_file(path, kind, lambda: pd.read_parquet(path))
    else:
        frame = read_file(
            path,
            kind,
            lambda: pd.read_csv(
                path, sep=separator(kind), dtype=str, keep_default_na=False, compression=compression(path)
            ),
        )
    return _strings(frame)


def _lower_columns(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Column names stripped and lower-cased; two that become one are an error."""
    names = [str(c).strip().lower() for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DELDataError(f"{where}: columns {repeated} appear more than once (names are matched ignoring case)")
    return frame.set_axis(names, axis=1)


def _listed(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:20])
    return shown + (f", ... {len(values)} in all" if len(values) > 20 else "")


# ----------------------------------------------------------------------------------------------------
# the selections table and the pairing of targets with controls


@dataclass(frozen=True)
class _Selections:
    table: pd.DataFrame  # str cells; lower-case column names; group normalized
    where: str  # the file, or "the selections table" for a DataFrame

    @property
    def match(self) -> tuple[str, ...]:
        return tuple(c for c in _MATCH if c in self.table.columns)

    def row(self, name: str) -> int:
        return int(np.flatnonzero(self.table["name"].to_numpy() == name)[0])


@dataclass(frozen=True)
class _Pairing:
    target: str
    protein: list[str]
    controls: list[str]
    how: str
    note: str | None  # why there is no control, when there is none


def _selections(source: str | Path | pd.DataFrame) -> _Selections:
    """The selections table, checked: names, targets and groups."""
    if isinstance(source, pd.DataFrame):
        where = "the selections table"
        table = _strings(source)
    else:
        where = str(source)
        table = _read_text_table(Path(source))
    table = _checked_table(
        table,
        where,
        _REQUIRED,
        "selections table",
        "name, target and group (and optionally beads, buffer)",
        "selection",
    )
    names = table["name"].to_numpy(dtype=object)
    bad = np.flatnonzero(names == "")
    if bad.size:
        raise DELDataError(
            f"{where}: column 'name': expected a selection name in every row; {rows_text(bad)} are empty"
        )
    bad = np.flatnonzero(pd.Series(names).duplicated(keep=False).to_numpy())
    if bad.size:
        raise DELDataError(
            f"{where}: column 'name': selection names must be unique; {rows_text(bad, names[bad].tolist())} repeat"
        )
    groups = np.array([g.lower().replace("-", "_").replace(" ", "_") for g in table["group"]], dtype=object)
    bad = np.flatnonzero(~np.isin(groups, GROUPS))
    if bad.size:
        shown = table["group"].to_numpy(dtype=object)[bad].tolist()
        raise DELDataError(
            f"{where}: column 'group': expected 'protein' or 'no_protein'; {rows_text(bad, shown)} are neither"
        )
    table = table.assign(group=groups)
    bad = np.flatnonzero((groups == "protein") & (table["target"].to_numpy(dtype=object) == ""))
    if bad.size:
        raise DELDataError(
            f"{where}: column 'target': a protein selection needs its target; {rows_text(bad, names[bad].tolist())} "
            "have none"
        )
    return _Selections(table.reset_index(drop=True), where)


def _pairings(selections: _Selections, controls: Mapping[str, Any] | None) -> list[_Pairing]:
    """Each target (in table order) with its protein selections and its controls."""
    table = selections.table
    where = selections.where
    protein = table[table["group"] == "protein"]
    no_protein = table[table["group"] == "no_protein"]
    if len(protein) == 0:
        raise DELDataError(f"{where}: column 'group': no selection is a 'protein' selection, so there is no target")
    targets = list(dict.fromkeys(protein["target"]))
    chosen = _check_controls(selections, controls, targets)
    keys = selections.match
    pairings = []
    for target in targets:
        mine = protein[protein["target"] == target]
        names = mine["name"].tolist()
        if target in chosen:
            pairings.append(_Pairing(target, names, chosen[target], "the controls argument", None))
            continue
        if keys:
            wanted = {tuple(row) for row in mine[list(keys)].itertuples(index=False)}
            found = [
                name
                for name, key in zip(no_protein["name"], no_protein[list(keys)].itertuples(index=False), strict=True)
                if tuple(key) in wanted
            ]
            how = f"same {' and '.join(keys)}"
            described = "; ".join(
                ", ".join(f"{k} {v!r}" for k, v in zip(keys, key, strict=True)) for key in sorted(wanted)
            )
            note = (
                f"no no_protein selection in {where} has the {' and '.join(keys)} of target {target!r}'s "
                f"selections ({described}): its screen has no control replicates"
            )
        else:
            found = no_protein["name"].tolist()
            how = "every no_protein selection (the selections table has no beads or buffer column)"
            note = f"{where} has no no_protein selection: target {target!r}'s screen has no control replicates"
        pairings.append(_Pairing(target, names, found, how, None if found else note))
    return pairings


def _check_controls(selections: _Selections, controls: Mapping[str, Any] | None, targets: list[str]) -> dict:
    """``controls={target: [names]}`` checked against the table: known targets, no_protein selections."""
    if controls is None:
        return {}
    if not isinstance(controls, Mapping):
        raise DELDataError(f"controls: expected a mapping {{target: [selection names]}}, got {type(controls).__name__}")
    table = selections.table
    group_of = dict(zip(table["name"], table["group"], strict=True))
    chosen = {}
    for target, names in controls.items():
        if target not in targets:
            raise DELDataError(
                f"controls: target {target!r} has no protein selection in {selections.where}; its targets are "
                f"{_listed(targets)}"
            )
        names = [names] if isinstance(names, str) else [str(n) for n in names]
        for name in names:
            if name not in group_of:
                raise DELDataError(
                    f"controls: selection {name!r} (a control of target {target!r}) is not in {selections.where}, "
                    "column 'name'"
                )
            if group_of[name] != "no_protein":
                raise DELDataError(
                    f"controls: selection {name!r} (a control of target {target!r}) is a {group_of[name]!r} "
                    f"selection in {selections.where} (row {selections.row(name)}); a control is a no_protein one"
                )
        if len(set(names)) != len(names):
            raise DELDataError(f"controls: target {target!r} names a selection twice: {names}")
        chosen[str(target)] = names
    return chosen


def _warn_about(pairings: list[_Pairing], selections: _Selections, stacklevel: int = 3) -> None:
    """A warning for each target without a control, and one for no_protein selections nobody uses."""
    for pairing in pairings:
        if pairing.note:
            warnings.warn(pairing.note, stacklevel=stacklevel)
    table = selections.table
    used = {name for pairing in pairings for name in pairing.controls}
    unused = [n for n in table.loc[table["group"] == "no_protein", "name"] if n not in used]
    if unused:
        warnings.warn(
            f"{selections.where}: no_protein selections {_listed(unused)} are paired with no target (by beads "
            "and buffer, or by controls={target: [...]}) and are not read",
            stacklevel=stacklevel,
        )


def _selection_attrs(pairing: _Pairing, selections: _Selections, layout: str, source: str) -> dict[str, Any]:
    table = selections.table

    def row(name: str, role: str) -> dict[str, str]:
        values = table.iloc[selections.row(name)].to_dict()
        return {"name": name, "role": role, **{k: str(v) for k, v in values.items() if k != "name"}}

    attrs: dict[str, Any] = {
        "layout": layout,
        "source": source,
        "target": pairing.target,
        "control_match": pairing.how,
        "rows": [row(n, "target") for n in pairing.protein] + [row(n, "control") for n in pairing.controls],
    }
    if pairing.note:
        attrs["no_control"] = pairing.note
    return attrs


# ----------------------------------------------------------------------------------------------------
# the wide table


def _columns_of(table: str | Path | pd.DataFrame) -> tuple[list[str], str]:
    """The column names of the wide table (the header only, for a file) and how to name it."""
    if isinstance(table, pd.DataFrame):
        return [str(c) for c in table.columns], "the count table"
    path = Path(table)
    if not path.is_file():
        raise DELDataError(f"{path}: no such file")
    return read_header(path, table_kind(path)), str(path)


def read_selections(
    table: str | Path | pd.DataFrame,
    selections: str | Path | pd.DataFrame,
    *,
    smiles: str = "smiles",
    compound_id: str | None = None,
    building_blocks: str | Sequence[str] | None = None,
    load: str | None = None,
    controls: Mapping[str, Sequence[str]] | None = None,
    on_invalid_smiles: str = "repair",
    report: list[str] | None = None,
) -> dict[str, DELData]:
    """One screen per target from a wide table with one count column per selection.

    Args:
        table: the wide table (a CSV, TSV or parquet path, or a DataFrame): one row per compound, a count
            column named after each selection, and the SMILES, id, building-block and load columns.
        selections: the selections table (a path or a DataFrame): ``name`` (the count column), ``target``,
            ``group`` (``protein`` or ``no_protein``), optionally ``beads`` and ``buffer``.
        smiles, compound_id, building_blocks, load, on_invalid_smiles, report: as for
            :func:`~delpyro.reading.read_counts`, which reads the table once for all targets.
        controls: ``{target: [no_protein selection names]}``, a target's controls named by hand (the others
            are matched by beads and buffer).

    Returns:
        ``{target: DELData}`` in the order the targets first appear in the selections table; every screen
        holds all the table's compounds, its protein selections as target replicates and its matching
        no_protein selections as control replicates (zero columns, with a warning, when none matches).

    >>> import pandas as pd
    >>> wide = pd.DataFrame({"smiles": ["CCO", "CCN"], "a1": [3, 0], "a2": [1, 2], "c1": [0, 1]})
    >>> table = pd.DataFrame({"name": ["a1", "a2", "c1"], "target": ["A", "A", ""],
    ...                       "group": ["protein", "protein", "no_protein"], "beads": ["SA", "SA", "SA"]})
    >>> screen = read_selections(wide, table)["A"]
    >>> screen.target_names, screen.control_names, screen.control_counts[:, 0].tolist()
    (['a1', 'a2'], ['c1'], [0, 1])
    """
    chosen = _selections(selections)
    pairings = _pairings(chosen, controls)
    columns, where = _columns_of(table)
    needed = [name for pairing in pairings for name in (*pairing.protein, *pairing.controls)]
    needed = list(dict.fromkeys(needed))
    absent = [name for name in needed if name not in columns]
    if absent:
        rows = np.array([chosen.row(name) for name in absent])
        raise DELDataError(
            f"{chosen.where}: column 'name': no count column in {where} for the selections of "
            f"{rows_text(rows, absent)}; its columns are {_listed(columns)}"
        )
    _warn_about(pairings, chosen)
    protein = [name for pairing in pairings for name in pairing.protein]
    used_controls = [name for name in needed if name not in protein]
    with _about(where):
        full = read_counts(
            table,
            target=protein,
            control=used_controls,
            smiles=smiles,
            compound_id=compound_id,
            load=load,
            building_blocks=building_blocks,
            on_invalid_smiles=on_invalid_smiles,
            report=report,
        )
    target_column = {name: j for j, name in enumerate(full.target_names)}
    control_column = {name: j for j, name in enumerate(full.control_names)}
    screens = {}
    for pairing in pairings:
        screens[pairing.target] = DELData(
            target_counts=full.target_counts[:, [target_column[n] for n in pairing.protein]],
            control_counts=full.control_counts[:, [control_column[n] for n in pairing.controls]],
            smiles=full.smiles,
            compound_id=full.compound_id,
            load=full.load,
            building_blocks=full.building_blocks,
            target_names=pairing.protein,
            control_names=pairing.controls,
            attrs={"selections": _selection_attrs(pairing, chosen, "wide", where)},
            smiles_as_read=full.smiles_as_read,
            observed=full.observed,
            building_block_smiles=full.building_block_smiles,
        )
    return screens


# ----------------------------------------------------------------------------------------------------
# the DELT folder: building-block tables and count files


@dataclass(frozen=True)
class _Blocks:
    """One cycle's building-block table."""

    path: Path
    codes: np.ndarray  # int64, in table order
    smiles: np.ndarray  # object, in table order
    extras: dict[str, np.ndarray]  # codon, reaction, block_id columns that hold anything

    @property
    def ids(self) -> np.ndarray:
        return np.array([str(c) for c in self.codes], dtype=object)

    def positions(self, codes: np.ndarray) -> np.ndarray:
        """Table positions of ``codes``; -1 for a code the table lacks."""
        order = np.argsort(self.codes, kind="stable")
        ordered = self.codes[order]
        at = np.clip(np.searchsorted(ordered, codes), 0, len(ordered) - 1)
        return np.where(ordered[at] == codes, order[at], -1)


def _whole_positive(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 values and the positions of entries that are not whole numbers from 1."""
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers < 1) | (numbers != np.round(numbers)) | (numbers > 2.0**53)
    return np.where(bad, 0, numbers).astype(np.int64), np.flatnonzero(bad)


def _checked_table(
    table: pd.DataFrame, where: str, required: Sequence[str], kind: str, columns: str, row: str
) -> pd.DataFrame:
    """``table`` with lower-case column names, once it has the ``required`` columns (a DELDataError naming
    ``where``, the missing ones, what a ``kind`` holds, ``columns``, and the ones it has) and a ``row`` at least."""
    table = _lower_columns(table, where)
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DELDataError(
            f"{where}: columns {missing} are missing: a {kind} has the columns {columns}; its columns are "
            f"{_listed(list(table.columns))}"
        )
    if len(table) == 0:
        raise DELDataError(f"{where}: the {kind} is empty: expected one row per {row}")
    return table


def _block_table(path: Path) -> _Blocks:
    table = _checked_table(
        _read_text_table(path),
        str(path),
        _BLOCK_REQUIRED,
        "building-block table",
        "code, codon, smiles, reaction",
        "building block",
    )
    raw = table["code"].to_numpy(dtype=object)
    codes, bad = _whole_positive(raw)
    if bad.size:
        raise DELDataError(
            f"{path}: column 'code': expected whole numbers from 1; {rows_text(bad, raw[bad].tolist())} are not"
        )
    bad = np.flatnonzero(pd.Series(codes).duplicated(keep=False).to_numpy())
    if bad.size:
        raise DELDataError(f"{path}: column 'code': codes must be unique; {rows_text(bad, codes[bad].tolist())} repeat")
    smiles = table["smiles"].to_numpy(dtype=object)
    bad = invalid_smiles(smiles)
    if bad.size:
        raise DELDataError(
            f"{path}: column 'smiles': expected SMILES that RDKit can parse; {rows_text(bad, smiles[bad].tolist())} "
            "cannot be parsed"
        )
    extras = {c: table[c].to_numpy(dtype=object) for c in _BLOCK_OPTIONAL if c in table.columns}
    extras = {c: v for c, v in extras.items() if any(v != "")}
    return _Blocks(path, codes, smiles, extras)


def _block_tables(folder: Path) -> list[_Blocks]:
    """``building_blocks_1.tsv``, ``building_blocks_2.tsv``, ... (or ``.csv``), numbered from 1 without gaps."""
    paths = []
    while True:
        k = len(paths) + 1
        found = [p for p in (folder / BLOCK_TABLE.format(k=k), folder / f"building_blocks_{k}.csv") if p.is_file()]
        if not found:
            break
        if len(found) > 1:
            raise DELDataError(f"{folder}: both {found[0].name} and {found[1].name} exist; keep one")
        paths.append(found[0])
    stray = sorted(
        p.name
        for p in folder.glob("building_blocks_*")
        if p.is_file() and p.suffix in (".tsv", ".csv") and p not in paths
    )
    if stray:
        raise DELDataError(
            f"{folder}: building-block tables {stray} do not follow building_blocks_1 ... "
            f"building_blocks_{len(paths)} without a gap"
        )
    if not paths:
        raise DELDataError(
            f"{folder}: no building-block tables: expected {BLOCK_TABLE.format(k=1)}, {BLOCK_TABLE.format(k=2)}, ... "
            "(code, codon, smiles, reaction), one per cycle"
        )
    return [_block_table(path) for path in paths]


def _count_file(path: Path, blocks: list[_Blocks]) -> tuple[np.ndarray, np.ndarray]:
    """One selection's ``counts.txt``: the members' flat library positions (sorted) and their counts."""
    k = len(blocks)
    expected = [f"code_{i + 1}" for i in range(k)] + ["count"]
    if not path.is_file():
        raise DELDataError(f"{path}: no such file")
    raw = read_file(path, "tsv", lambda: pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False))
    raw = raw.apply(lambda column: column.fillna("").astype(str).str.strip())
    if raw.shape[1] != k + 1:
        raise DELDataError(
            f"{path}: expected {k + 1} tab-separated columns ({', '.join(expected)}: a code for each of the {k} "
            f"building-block tables, then the count), got {raw.shape[1]}"
        )
    first = [v.lower() for v in raw.iloc[0]]
    if first == expected:
        raw = raw.iloc[1:].reset_index(drop=True)
    elif not all(v.isdigit() for v in first[:k]):
        raise DELDataError(f"{path}: the first line {first} is neither the header {expected} nor a member's codes")
    short = np.flatnonzero((raw == "").any(axis=1).to_numpy())
    if short.size:
        raise DELDataError(
            f"{path}: columns {expected}: {rows_text(short)} leave fields empty (a line with fewer than {k + 1} "
            "tab-separated fields?)"
        )
    shape = tuple(len(b.codes) for b in blocks)
    positions = []
    for i, table in enumerate(blocks):
        column = expected[i]
        values = raw.iloc[:, i].to_numpy(dtype=object)
        codes, bad = _whole_positive(values)
        if bad.size:
            raise DELDataError(
                f"{path}: column {column!r}: expected building-block codes (whole numbers from 1); "
                f"{rows_text(bad, values[bad].tolist())} are not"
            )
        found = table.positions(codes)
        bad = np.flatnonzero(found < 0)
        if bad.size:
            raise DELDataError(
                f"{path}: column {column!r}: {rows_text(bad, codes[bad].tolist())} are codes that "
                f"{table.path} does not hold (its codes run from {table.codes.min()} to {table.codes.max()})"
            )
        positions.append(found)
    with _about(str(path)):
        counts = as_counts(raw.iloc[:, k].to_numpy(dtype=object), "count", ["count"])[:, 0]
    flat = np.ravel_multi_index(positions, shape) if len(raw) else np.zeros(0, dtype=np.int64)
    bad = np.flatnonzero(pd.Series(flat).duplicated(keep=False).to_numpy())
    if bad.size:
        members = ["-".join(raw.iloc[r, :k]) for r in bad]
        raise DELDataError(
            f"{path}: columns {expected[:k]}: each member is listed once; {rows_text(bad, members)} repeat"
        )
    order = np.argsort(flat, kind="stable")
    return flat[order].astype(np.int64), counts[order]


def _find_selections(folder: Path) -> Path:
    found = [folder / name for name in SELECTIONS_FILES if (folder / name).is_file()]
    if not found:
        raise DELDataError(
            f"{folder}: no selections table: expected {' or '.join(SELECTIONS_FILES)} "
            "(name, target, group, beads, buffer, date)"
        )
    if len(found) > 1:
        raise DELDataError(f"{folder}: both {found[0].name} and {found[1].name} exist; keep one")
    return found[0]


def _joined(parts: list[np.ndarray], sep: str) -> np.ndarray:
    """Element-wise ``sep.join`` of object arrays of str."""
    out = parts[0].copy()
    for part in parts[1:]:
        out = out + sep + part
    return out


def read_delt(
    folder: str | Path,
    *,
    selections: str | Path | pd.DataFrame | None = None,
    controls: Mapping[str, Sequence[str]] | None = None,
    complete: bool = False,
) -> dict[str, DELData]:
    """One screen per target from a DELT-Hit folder of per-selection count files.

    The folder holds a selections table (``selections.tsv`` or ``selections.csv``: ``name, target, group,
    beads, buffer, date``), one building-block table per cycle (``building_blocks_1.tsv``,
    ``building_blocks_2.tsv``, ...: ``code, codon, smiles, reaction``, optionally ``block_id``) and a
    sub-folder per selection, named as in the table, with ``counts.txt`` (tab-separated ``code_1, code_2[,
    code_3], count``; members without reads absent). See the module docstring for how controls are paired.

    Args:
        folder: the folder.
        selections: another selections table (a path or a DataFrame) instead of the folder's own.
        controls: ``{target: [no_protein selection names]}``, a target's controls named by hand.
        complete: False: a target's screen holds the members listed in any of its selections' count files
            (its protein selections and its controls), with zeros where a selection does not list one, and
            ``observed`` all True. True: every combination of the building blocks (the whole library, cycle 1
            varying slowest), ``observed`` False for the members no count file of the target lists.

    Returns:
        ``{target: DELData}`` in the order the targets first appear in the selections table. Cycles are
        named ``cycle1``, ``cycle2``, ...; building-block ids are the tables' codes as strings (``"12"``);
        compound ids join them (``"12-3-40"``). The layout holds no product SMILES: ``smiles`` is the
        building blocks' SMILES joined by ``"."``, a dot-disconnected SMILES that RDKit reads (fingerprints of
        it describe the blocks, not the product's bonds), and ``building_block_smiles`` holds each block's.
        ``attrs`` holds ``selections`` (see the module docstring), ``library`` (``n_members``, ``complete``,
        ``blocks_per_cycle``) and, where the block tables fill them, ``building_block_codons``,
        ``building_block_reactions`` and ``building_block_ids`` (the ``block_id`` column: a lab's own block
        names), each ``{cycle: {code: value}}``.

    Raises:
        DELDataError: naming the file, the column and the rows (a code the block table lacks, a member
        listed twice, a negative count, a selection without a folder, an unknown group, ...).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DELDataError(f"{folder}: no such folder")
    chosen = _selections(_find_selections(folder) if selections is None else selections)
    pairings = _pairings(chosen, controls)
    blocks = _block_tables(folder)
    names = chosen.table["name"].to_numpy(dtype=object)
    for problem, test in (
        ("no folder", lambda n: not (folder / n).is_dir()),
        (f"no {COUNTS_FILE} in the folder", lambda n: not (folder / n / COUNTS_FILE).is_file()),
    ):
        bad = np.flatnonzero([test(n) for n in names])
        if bad.size:
            raise DELDataError(
                f"{chosen.where}: column 'name': {problem} in {folder} for the selections of "
                f"{rows_text(bad, names[bad].tolist())}"
            )
    listed_names = set(names)
    strays = sorted(p.name for p in folder.iterdir() if (p / COUNTS_FILE).is_file() and p.name not in listed_names)
    if strays:
        warnings.warn(
            f"{folder}: selection folders {_listed(strays)} are not in {chosen.where} and are not read",
            stacklevel=2,
        )
    _warn_about(pairings, chosen)

    used = list(dict.fromkeys(n for p in pairings for n in (*p.protein, *p.controls)))
    files = {name: _count_file(folder / name / COUNTS_FILE, blocks) for name in used}
    shape = tuple(len(b.codes) for b in blocks)
    size = math.prod(shape)
    cycles = [f"cycle{k + 1}" for k in range(len(blocks))]
    library = {"n_members": size, "complete": bool(complete), "blocks_per_cycle": list(shape)}
    block_attrs = {}
    for column, key in (("codon", "codons"), ("reaction", "reactions"), ("block_id", "ids")):
        values = {
            cycle: dict(zip(b.ids.tolist(), b.extras[column].tolist(), strict=True))
            for cycle, b in zip(cycles, blocks, strict=True)
            if column in b.extras
        }
        if values:
            block_attrs[f"building_block_{key}"] = values
    block_smiles = {
        cycle: dict(zip(b.ids.tolist(), b.smiles.tolist(), strict=True))
        for cycle, b in zip(cycles, blocks, strict=True)
    }
    ids = [b.ids for b in blocks]
    smiles = [b.smiles for b in blocks]

    def members_of(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        where = np.unravel_index(flat, shape)
        parts = [ids[k][where[k]] for k in range(len(blocks))]
        return (
            _joined(parts, "-"),
            _joined([smiles[k][where[k]] for k in range(len(blocks))], "."),
            pd.DataFrame(dict(zip(cycles, parts, strict=True))),
        )

    everything = members_of(np.arange(size, dtype=np.int64)) if complete else None
    screens = {}
    for pairing in pairings:
        own = [*pairing.protein, *pairing.controls]
        listed = np.unique(np.concatenate([files[n][0] for n in own]))
        members = np.arange(size, dtype=np.int64) if complete else listed
        counts = np.zeros((len(members), len(own)), dtype=np.int64)
        for j, name in enumerate(own):
            flat, values = files[name]
            counts[np.searchsorted(members, flat), j] = values
        observed = np.zeros(len(members), dtype=bool)
        observed[np.searchsorted(members, listed)] = True
        compound_id, member_smiles, building_blocks = everything if everything is not None else members_of(members)
        n_target = len(pairing.protein)
        screens[pairing.target] = DELData(
            target_counts=counts[:, :n_target],
            control_counts=counts[:, n_target:],
            smiles=member_smiles,
            compound_id=compound_id,
            building_blocks=building_blocks,
            target_names=pairing.protein,
            control_names=pairing.controls,
            attrs={
                "selections": _selection_attrs(pairing, chosen, "delt", str(folder)),
                "library": library,
                **block_attrs,
            },
            observed=observed,
            building_block_smiles=block_smiles,
        )
    return screens


# ----------------------------------------------------------------------------------------------------
# writing a DELT folder


@dataclass
class _Selection:
    name: str
    target: str
    group: str
    columns: list[tuple[str, DELData, np.ndarray]]  # (target, screen, counts) of each screen holding it


def _block_smiles_of(target: str, screen: DELData) -> dict[str, dict[str, str]]:
    """The screen's block SMILES: its own field, or (a simulated screen) ``attrs["building_block_smiles"]``."""
    found = screen.building_block_smiles or screen.attrs.get("building_block_smiles")
    if not found:
        raise DELDataError(
            f"write_delt: screen {target!r} has no building-block SMILES (building_block_smiles, or "
            "attrs['building_block_smiles']): the building-block tables need them"
        )
    return {str(c): {str(k): str(v) for k, v in dict(table).items()} for c, table in found.items()}


def _block_codes(screens: dict[str, DELData], cycles: list[str]) -> list[tuple[list[str], pd.DataFrame]]:
    """Each cycle's blocks (the screens' ids, in table order) and its table: ``code, codon, smiles, reaction``,
    and ``block_id`` where the ids are not the codes themselves (or ``attrs["building_block_ids"]`` names them)."""
    sources = {
        "codon": ("building_block_codons",),
        "reaction": ("building_block_reactions", "building_block_chemistry"),
        "block_id": ("building_block_ids",),
    }
    out = []
    for cycle in cycles:
        smiles: dict[str, str] = {}
        extras: dict[str, dict[str, str]] = {column: {} for column in sources}
        for target, screen in screens.items():
            known = _block_smiles_of(target, screen)
            if cycle not in known:
                raise DELDataError(f"write_delt: screen {target!r} has no block SMILES for cycle {cycle!r}")
            for block, text in known[cycle].items():
                if smiles.setdefault(block, text) != text:
                    raise DELDataError(
                        f"write_delt: building block {block!r} of cycle {cycle!r} has two SMILES: "
                        f"{smiles[block]!r} and {text!r} (screen {target!r})"
                    )
            lacking = sorted(set(screen.building_blocks[cycle]) - set(known[cycle]))
            if lacking:
                raise DELDataError(
                    f"write_delt: screen {target!r}, column {cycle!r}: blocks {_listed(lacking)} have no SMILES"
                )
            for column, keys in sources.items():
                for key in keys:
                    by_cycle = screen.attrs.get(key)
                    by_block = by_cycle.get(cycle) if isinstance(by_cycle, Mapping) else None
                    for block, value in dict(by_block or {}).items():
                        extras[column].setdefault(str(block), str(value))
        blocks = list(smiles)
        if set(blocks) == {str(i) for i in range(1, len(blocks) + 1)}:
            blocks.sort(key=int)  # a DELT folder read back: its codes stay as they were
            codes = [int(b) for b in blocks]
            block_ids = [extras["block_id"].get(b, "") for b in blocks]
        else:
            codes = list(range(1, len(blocks) + 1))
            block_ids = blocks
        table = pd.DataFrame(
            {
                "code": codes,
                "codon": [extras["codon"].get(b, "") for b in blocks],
                "smiles": [smiles[b] for b in blocks],
                "reaction": [extras["reaction"].get(b, "") for b in blocks],
                "block_id": block_ids,
            }
        )
        if not any(block_ids):
            table = table.drop(columns="block_id")
        out.append((blocks, table))
    return out


def _metadata(
    name: str,
    screens: dict[str, DELData],
    given: dict[str, dict[str, str]],
    defaults: dict[str, str],
) -> dict[str, str]:
    """A selection's beads, buffer and date: ``selections=`` first, then a screen's attrs, then the defaults."""
    out = dict(defaults)
    for screen in screens.values():
        rows = dict(screen.attrs.get("selections") or {}).get("rows") or []
        for row in rows:
            if isinstance(row, Mapping) and row.get("name") == name:
                out.update({k: str(row[k]) for k in defaults if k in row})
    out.update({k: str(v) for k, v in given.get(name, {}).items() if k in defaults})
    return out


def _given_metadata(selections: pd.DataFrame | Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, str]]:
    if selections is None:
        return {}
    if isinstance(selections, pd.DataFrame):
        table = _lower_columns(_strings(selections), "selections")
        if "name" not in table.columns:
            raise DELDataError("write_delt: selections: expected a column 'name'")
        return {row["name"]: {k: v for k, v in row.items() if k != "name"} for row in table.to_dict("records")}
    return {str(name): {str(k): str(v) for k, v in dict(row).items()} for name, row in selections.items()}


def _check_folder_name(name: str, what: str) -> None:
    if not name or name in (".", "..") or any(ch in name for ch in "/\\\0") or name != name.strip():
        raise DELDataError(f"write_delt: {what} {name!r} cannot name a selection folder")


def write_delt(
    screens: DELData | Mapping[str, DELData],
    folder: str | Path,
    *,
    target: str = "target",
    selections: pd.DataFrame | Mapping[str, Mapping[str, Any]] | None = None,
    beads: str = "unspecified",
    buffer: str = "unspecified",
    date: str = "",
    overwrite: bool = False,
) -> Path:
    """Write screens in the DELT-Hit folder layout that :func:`read_delt` reads.

    Each target replicate becomes a ``protein`` selection of its target and each control replicate a
    ``no_protein`` selection, in a folder named after the replicate; a control that several screens share
    (the same name) is written once, and its counts must agree where the screens hold the same member.
    ``counts.txt`` lists the members with reads; the building-block tables come from the screens'
    ``building_blocks`` and ``building_block_smiles`` (or, for a simulated screen, ``attrs
    ["building_block_smiles"]``), with codons and reactions where ``attrs`` has them
    (``building_block_codons``; ``building_block_reactions`` or the simulator's ``building_block_chemistry``).
    Block ids that are the codes ``"1"`` ... ``"n"`` keep them; other ids are numbered in order and kept in
    the table's ``block_id`` column. Load, truth and poses are not part of the layout and are not written.

    Args:
        screens: ``{target: DELData}``, or one screen (its target named by ``target``, or by
            ``attrs["selections"]["target"]`` when it was read with this module).
        folder: where to write; an existing folder that is not empty needs ``overwrite=True``.
        selections: each selection's ``beads``, ``buffer`` and ``date`` by name (a DataFrame with a
            ``name`` column, or ``{name: {"beads": ...}}``); selections it does not name take them from a
            screen's ``attrs["selections"]`` (a screen this module read), or else from ``beads``, ``buffer``
            and ``date``.

    Replicate names are selection names, so they must differ across a target's replicates and its controls
    (``dataclasses.replace(screen, target_names=[...], control_names=[...])`` renames them; a simulated
    screen names both arms ``r1``, ``r2``, ...), and the beads and buffer must pair each target with exactly
    its own controls when read back: otherwise a DELDataError says which.

    Returns:
        the folder.
    """
    if isinstance(screens, DELData):
        named = dict(screens.attrs.get("selections") or {}).get("target") or target
        screens = {str(named): screens}
    screens = {str(k): v for k, v in dict(screens).items()}
    if not screens:
        raise DELDataError("write_delt: no screens to write")
    cycles: list[str] | None = None
    for name, screen in screens.items():
        if not isinstance(screen, DELData):
            raise DELDataError(f"write_delt: screen {name!r} is a {type(screen).__name__}, not a DELData")
        if not name.strip():
            raise DELDataError("write_delt: a target's name is empty")
        if screen.building_blocks is None:
            raise DELDataError(
                f"write_delt: screen {name!r} has no building blocks: the layout records members by them"
            )
        if cycles is None:
            cycles = screen.cycles
        elif screen.cycles != cycles:
            raise DELDataError(f"write_delt: screen {name!r} has cycles {screen.cycles}, another has {cycles}")
    assert cycles is not None
    blocks_and_tables = _block_codes(screens, cycles)
    tables = [table for _, table in blocks_and_tables]
    shape = tuple(len(t) for t in tables)
    given = _given_metadata(selections)
    defaults = {"beads": str(beads), "buffer": str(buffer), "date": str(date)}

    # every selection, once, with the counts of each screen that holds it
    chosen: dict[str, _Selection] = {}
    flats = {}
    for name, screen in screens.items():
        positions = []
        for cycle, (blocks, _) in zip(cycles, blocks_and_tables, strict=True):
            position = dict(zip(blocks, range(len(blocks)), strict=True))
            positions.append(screen.building_blocks[cycle].map(position).to_numpy(dtype=np.int64))
        flat = np.ravel_multi_index(positions, shape)
        bad = np.flatnonzero(pd.Series(flat).duplicated(keep=False).to_numpy())
        if bad.size:
            raise DELDataError(
                f"write_delt: screen {name!r}, columns {cycles}: {rows_text(bad, screen.compound_id[bad].tolist())} "
                "share their building blocks with another compound; the layout records members by their blocks"
            )
        flats[name] = flat
        arms = (("protein", name, screen.target_names, screen.target_counts),)
        arms += (("no_protein", "", screen.control_names, screen.control_counts),)
        for group, selection_target, replicates, counts in arms:
            for j, replicate in enumerate(replicates):
                _check_folder_name(replicate, f"screen {name!r}'s replicate")
                known = chosen.get(replicate)
                if known is None:
                    chosen[replicate] = _Selection(replicate, selection_target, group, [])
                elif (known.group, known.target) != (group, selection_target):
                    raise DELDataError(
                        f"write_delt: replicate {replicate!r} is a {group} selection of screen {name!r} and a "
                        f"{known.group} selection{f' of {known.target!r}' if known.target else ''}: replicate names "
                        "are selection folders and must differ (a control shared by several screens keeps its name)"
                    )
                chosen[replicate].columns.append((name, screen, counts[:, j]))

    table = pd.DataFrame(
        [
            {"name": s.name, "target": s.target, "group": s.group, **_metadata(s.name, screens, given, defaults)}
            for s in chosen.values()
        ],
        columns=list(_SELECTION_COLUMNS),
    )
    _check_pairing(screens, table)
    files = {name: _merged_counts(selection, flats, shape) for name, selection in chosen.items()}

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DELDataError(f"write_delt: {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise DELDataError(f"write_delt: {folder} is not empty (overwrite=True writes over it)")
    for k, blocks in enumerate(tables, start=1):
        _write_tsv(blocks, folder / BLOCK_TABLE.format(k=k))
    _write_tsv(table, folder / SELECTIONS_FILES[0])
    for name, (flat, counts) in files.items():
        codes = np.unravel_index(flat, shape)
        frame = {f"code_{k + 1}": tables[k]["code"].to_numpy()[codes[k]] for k in range(len(tables))}
        _write_tsv(pd.DataFrame({**frame, "count": counts}), folder / name / COUNTS_FILE)
    return folder


def _merged_counts(selection: _Selection, flats: dict[str, np.ndarray], shape: tuple[int, ...]) -> tuple:
    """A selection's members with reads (flat positions, sorted) and counts; screens sharing it must agree."""
    flat = np.concatenate([flats[name] for name, _, _ in selection.columns])
    counts = np.concatenate([column for _, _, column in selection.columns])
    members, inverse = np.unique(flat, return_inverse=True)
    low = np.full(len(members), np.iinfo(np.int64).max, dtype=np.int64)
    high = np.zeros(len(members), dtype=np.int64)
    np.minimum.at(low, inverse, counts)
    np.maximum.at(high, inverse, counts)
    bad = np.flatnonzero(low != high)
    if bad.size:
        screens = [name for name, _, _ in selection.columns]
        raise DELDataError(
            f"write_delt: selection {selection.name!r} is shared by screens {screens}, whose counts differ for "
            f"{len(bad)} members (library positions {_listed(members[bad].tolist())})"
        )
    keep = high > 0
    return members[keep], high[keep]


def _check_pairing(screens: dict[str, DELData], table: pd.DataFrame) -> None:
    """Refuse a folder that :func:`read_delt` would pair otherwise than the screens are."""
    pairings = {p.target: p for p in _pairings(_selections(table), None)}
    for name, screen in screens.items():
        found = pairings[name].controls
        if set(found) != set(screen.control_names):
            raise DELDataError(
                f"write_delt: read back, target {name!r} would be paired by beads and buffer with the controls "
                f"{found}, but its screen has {screen.control_names}; give each selection its beads and buffer "
                "(selections={name: {'beads': ..., 'buffer': ...}})"
            )


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    with replacing(path) as temporary:
        frame.to_csv(temporary, sep="\t", index=False)
