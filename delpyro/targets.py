"""Several targets, one screen: the selections of one library against several proteins, joined.

:func:`~delpyro.selections.read_selections` and :func:`~delpyro.simulate_targets.simulate_targets` give one
:class:`~delpyro.data.DELData` per target, each with its own target replicates and the no-protein
controls they share. :func:`join_targets` makes one screen of them for a model that fits the targets
together: the target replicates of every target side by side (``attrs["replicate_targets"]`` names each
one's target, :attr:`DELData.replicate_targets`), the shared controls, load and structures once.
:func:`split_targets` gives the per-target screens back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

from delpyro.data import REPLICATE_TARGETS, DELData, DELDataError

__all__ = ["join_targets", "split_targets"]


def _same(first: DELData, other: DELData, name: str) -> None:
    """A DELDataError unless ``other`` (target ``name``) has ``first``'s compounds, controls and load."""

    def differ(what: str) -> DELDataError:
        return DELDataError(f"join_targets: target {name!r} has other {what} than the first target's")

    if not np.array_equal(first.compound_id, other.compound_id):
        raise differ("compounds (compound_id, in order)")
    if not np.array_equal(first.smiles, other.smiles):
        raise differ("SMILES")
    if first.control_names != other.control_names or not np.array_equal(first.control_counts, other.control_counts):
        raise differ(
            "control replicates (the joint model shares one set of controls; fit targets with other beads apart)"
        )
    if (first.load is None) != (other.load is None) or (
        first.load is not None and not np.array_equal(first.load, other.load)
    ):
        raise differ("load")
    blocks = first.building_blocks, other.building_blocks
    if (blocks[0] is None) != (blocks[1] is None) or (blocks[0] is not None and not blocks[0].equals(blocks[1])):
        raise differ("building blocks")
    if (first.poses is None) != (other.poses is None):
        raise differ("poses")


def join_targets(screens: Mapping[str, DELData]) -> DELData:
    """One screen of several targets from ``{target: screen}`` (two or more, the same compounds in the
    same order, the same controls and load): the targets' replicates side by side, in the mapping's
    order, named ``<target>:<replicate>``, with ``attrs["replicate_targets"]``. The truth keeps the
    columns every screen has with the same values (a simulated panel's ``log_t_<target>`` among them);
    attrs keep the first screen's, with ``targets``."""
    names = [str(name) for name in screens]
    if len(names) < 2:
        raise DELDataError(f"join_targets: expected two or more targets, got {names}")
    bad = [name for name in names if not name.strip() or ":" in name]
    if bad:
        raise DELDataError(f"join_targets: target names must be non-empty and hold no ':', got {bad}")
    first = next(iter(screens.values()))
    for name, screen in screens.items():
        if screen.replicate_targets is not None:
            raise DELDataError(f"join_targets: the screen of {name!r} already holds several targets")
        _same(first, screen, name)
    truth = None
    if all(screen.truth is not None for screen in screens.values()):
        columns = {}
        for column in first.truth.columns:
            values = first.truth[column]
            if all(column in s.truth.columns and s.truth[column].equals(values) for s in screens.values()):
                columns[column] = values
        truth = pd.DataFrame(columns) if columns else None
    replicate_targets = [name for name, screen in screens.items() for _ in screen.target_names]
    attrs = {**first.attrs, REPLICATE_TARGETS: replicate_targets, "targets": names}
    return dataclasses.replace(
        first,
        target_counts=np.concatenate([screen.target_counts for screen in screens.values()], axis=1),
        truth=truth,
        target_names=[f"{name}:{r}" for name, screen in screens.items() for r in screen.target_names],
        attrs=attrs,
    )


def split_targets(data: DELData) -> dict[str, DELData]:
    """``{target: screen}`` of a screen of several targets (the inverse of :func:`join_targets`, with the
    replicates' names less their ``<target>:`` prefix); a screen of one target gives ``{"target": data}``."""
    replicate_targets = data.replicate_targets
    if replicate_targets is None:
        return {"target": data}
    out = {}
    attrs = {k: v for k, v in data.attrs.items() if k != REPLICATE_TARGETS}
    for target in data.targets:
        columns = [j for j, t in enumerate(replicate_targets) if t == target]
        prefix = f"{target}:"
        names = [data.target_names[j] for j in columns]
        out[target] = dataclasses.replace(
            data,
            target_counts=data.target_counts[:, columns],
            target_names=[n[len(prefix) :] if n.startswith(prefix) else n for n in names],
            attrs={**attrs, "target": target},
        )
    return out
