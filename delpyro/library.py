"""Completing an observed-only table from its library: the members without reads, added with zero counts.

Many published tables list only the members that got reads (DELi cubes, per-selection count files, the top
of a large library). Modeled as the whole library they bias every enrichment and the zero inflation. When
the library is known (an enumerated table of its members: ids, SMILES, building blocks), :func:`complete`
adds every member the table does not list, with zero counts, and marks which rows the table listed (the
``observed`` field of :class:`~delpyro.data.DELData`). When it is not, model the table as it is with
``ModelConfig(observed_only=...)`` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from delpyro.data import DELDataError, rows_text

__all__ = ["complete"]


def complete(
    table: pd.DataFrame,
    library: pd.DataFrame,
    *,
    id_column: str,
    smiles_column: str,
    count_columns: list[str],
    block_columns: list[str],
    load_column: str | None = None,
    where: str = "the table",
    library_name: str = "the library",
) -> tuple[pd.DataFrame, np.ndarray]:
    """``(completed table, observed)``: one row per library member, in the library's order.

    Rows the table lists keep every value of theirs; the others get zero counts (and a zero load: no read
    before selection either), the library's SMILES and building blocks. ``observed`` (bool ``[n_library]``)
    marks the table's rows. The library must hold ``id_column`` and ``smiles_column`` (and the building-block
    columns the table has); a table member missing from the library, or whose building blocks the library
    gives otherwise, is a :class:`~delpyro.data.DELDataError` naming its rows.
    """
    missing = [c for c in (id_column, smiles_column, *block_columns) if c not in library.columns]
    if missing:
        raise DELDataError(f"{library_name}: columns {missing} are missing; the library needs the table's ids, "
                           "SMILES and building-block columns")  # fmt: skip
    library_ids = library[id_column].astype(str)
    repeated = np.flatnonzero(library_ids.duplicated(keep=False).to_numpy())
    if repeated.size:
        raise DELDataError(
            f"{library_name}: column {id_column!r}: member ids must be unique; "
            f"{rows_text(repeated, library_ids.iloc[repeated].tolist())} repeat"
        )
    position = pd.Index(library_ids).get_indexer(table[id_column].astype(str))
    unknown = np.flatnonzero(position < 0)
    if unknown.size:
        raise DELDataError(
            f"{where}: column {id_column!r}: {rows_text(unknown, table[id_column].iloc[unknown].tolist())} "
            f"are not members of {library_name}"
        )
    for column in block_columns:
        differ = np.flatnonzero(
            library[column].astype(str).to_numpy()[position] != table[column].astype(str).to_numpy()
        )
        if differ.size:
            raise DELDataError(
                f"{where}: column {column!r}: {rows_text(differ, table[column].iloc[differ].tolist())} name other "
                f"building blocks than {library_name} gives the same members"
            )
    n = len(library)
    observed = np.zeros(n, dtype=bool)
    observed[position] = True
    columns: dict[str, Any] = {
        id_column: library_ids.to_numpy(dtype=object),
        smiles_column: _placed(library[smiles_column].to_numpy(dtype=object), table[smiles_column], position),
    }
    for column in block_columns:
        columns[column] = library[column].astype(str).to_numpy(dtype=object)
    for column in [*count_columns, *([load_column] if load_column else [])]:
        values = table[column].to_numpy()
        filled = np.zeros(n, dtype=values.dtype if values.dtype.kind in "iuf" else object)
        filled[position] = values
        columns[column] = filled
    return pd.DataFrame(columns), observed


def _placed(values: np.ndarray, table_values: pd.Series, position: np.ndarray) -> np.ndarray:
    """The library's values, with the table's own in the table's rows."""
    out = values.copy()
    out[position] = table_values.to_numpy(dtype=object)
    return out
