"""Several targets, one screen: the selections of one library against several proteins, joined.

:func:`~delpyro.selections.read_selections` and :func:`~delpyro.simulate_targets.simulate_targets` give one
:class:`~delpyro.data.DELData` per target, each with its own target replicates and its no-protein
controls. :func:`join_targets` makes one screen of them for a model that fits the targets together: the
target replicates of every target side by side (``attrs["replicate_targets"]`` names each one's target,
:attr:`DELData.replicate_targets`), load and structures once, and the controls once per bead set. Targets
with the same controls were selected on the same beads and share them; when the targets' controls
differ (streptavidin beads for some, nickel beads for others), each set of controls is a bead set, and
the screen records each control replicate's set and each target's (:attr:`DELData.bead_sets`), so that
a model gives each bead set its own matrix enrichment. :func:`split_targets` gives the per-target
screens back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

from delpyro.data import CONTROL_BEAD_SETS, REPLICATE_TARGETS, TARGET_BEAD_SETS, DELData, DELDataError

__all__ = ["join_targets", "split_targets"]


def _same(first: DELData, other: DELData, name: str) -> None:
    """A DELDataError unless ``other`` (target ``name``) has ``first``'s compounds, controls and load."""

    def differ(what: str) -> DELDataError:
        return DELDataError(f"join_targets: target {name!r} has other {what} than the first target's")

    if not np.array_equal(first.compound_id, other.compound_id):
        raise differ("compounds (compound_id, in order)")
    if not np.array_equal(first.smiles, other.smiles):
        raise differ("SMILES")
    if (first.load is None) != (other.load is None) or (
        first.load is not None and not np.array_equal(first.load, other.load)
    ):
        raise differ("load")
    blocks = first.building_blocks, other.building_blocks
    if (blocks[0] is None) != (blocks[1] is None) or (blocks[0] is not None and not blocks[0].equals(blocks[1])):
        raise differ("building blocks")
    if (first.poses is None) != (other.poses is None):
        raise differ("poses")


def _bead_sets(screens: Mapping[str, DELData]) -> tuple[list[tuple[str, DELData]], dict[str, str]]:
    """The bead sets of ``screens``: ``([(name, a screen holding its controls)], {target: name})``. Targets
    whose control replicates (names and counts) are the same share a set; sets must not share a control
    replicate. A set is named after its controls' beads and buffer when the screens record them (a
    published panel), else ``beads_1``, ``beads_2``, ..."""
    sets: list[tuple[str, DELData]] = []
    per_target: dict[str, str] = {}
    for target, screen in screens.items():
        for name, holder in sets:
            if holder.control_names == screen.control_names and np.array_equal(
                holder.control_counts, screen.control_counts
            ):
                per_target[target] = name
                break
        else:
            sets.append((f"beads_{len(sets) + 1}", screen))
            per_target[target] = sets[-1][0]
    seen: dict[str, tuple[str, np.ndarray]] = {}
    for name, holder in sets:
        for j, control in enumerate(holder.control_names):
            counts = holder.control_counts[:, j]
            if control in seen:
                users = [t for t, s in per_target.items() if s in (seen[control][0], name)]
                if np.array_equal(seen[control][1], counts):
                    raise DELDataError(
                        f"join_targets: targets {users} share the control replicate {control!r} but not all their "
                        "controls: a control belongs to one bead set (give targets on the same beads the same "
                        "controls)"
                    )
                raise DELDataError(
                    f"join_targets: targets {users} have control replicates named {control!r} with other counts: "
                    "one name, one selection (rename one of them, or give targets on the same beads the same "
                    "controls)"
                )
            seen[control] = name, counts
    if len(sets) > 1 and any(holder.n_control_replicates == 0 for _, holder in sets):
        bare = [t for t, s in per_target.items() if dict(sets)[s].n_control_replicates == 0]
        raise DELDataError(f"join_targets: targets {bare} have no control replicates and the others have")
    names = [_described(holder) for _, holder in sets]
    if len(set(names)) == len(names) and all(names):
        renamed = {old: new for (old, _), new in zip(sets, names, strict=True)}
        sets = [(renamed[old], holder) for old, holder in sets]
        per_target = {t: renamed[s] for t, s in per_target.items()}
    return sets, per_target


def _described(screen: DELData) -> str:
    """ "<beads> / <buffer>" of a screen's controls, when its attrs' selections table says them alike for
    every control replicate (a panel of :func:`~delpyro.selections.read_selections`); else ""."""
    simulated = screen.attrs.get("target_bead_sets")  # a panel of simulate_targets names its sets
    if isinstance(simulated, Mapping) and screen.attrs.get("target") in simulated:
        return str(simulated[screen.attrs["target"]])
    rows = dict(screen.attrs.get("selections") or {}).get("rows") or []
    found = {
        (str(row.get("beads", "")), str(row.get("buffer", "")))
        for row in rows
        if isinstance(row, Mapping) and row.get("name") in screen.control_names
    }
    if len(found) != 1:
        return ""
    beads, buffer = found.pop()
    return " / ".join(part for part in (beads, buffer) if part and part != "unspecified")


def join_targets(screens: Mapping[str, DELData]) -> DELData:
    """One screen of several targets from ``{target: screen}`` (two or more, the same compounds in the
    same order, the same load): the targets' replicates side by side, in the mapping's order, named
    ``<target>:<replicate>``, with ``attrs["replicate_targets"]``. Targets with the same controls share
    them; when they differ, each set of controls is a bead set (see the module docstring): the controls
    of every set side by side, with ``attrs["control_bead_sets"]`` and ``attrs["target_bead_sets"]``.
    The truth keeps the columns every screen has with the same values (a simulated panel's
    ``log_t_<target>`` among them); attrs keep the first screen's, with ``targets``."""
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
    sets, per_target = _bead_sets(screens)
    controls = {}
    if len(sets) > 1:
        attrs[CONTROL_BEAD_SETS] = [name for name, holder in sets for _ in holder.control_names]
        attrs[TARGET_BEAD_SETS] = per_target
        controls = {
            "control_counts": np.concatenate([holder.control_counts for _, holder in sets], axis=1),
            "control_names": [c for _, holder in sets for c in holder.control_names],
        }
    return dataclasses.replace(
        first,
        target_counts=np.concatenate([screen.target_counts for screen in screens.values()], axis=1),
        truth=truth,
        target_names=[f"{name}:{r}" for name, screen in screens.items() for r in screen.target_names],
        attrs=attrs,
        **controls,
    )


def split_targets(data: DELData) -> dict[str, DELData]:
    """``{target: screen}`` of a screen of several targets (the inverse of :func:`join_targets`, with the
    replicates' names less their ``<target>:`` prefix); a screen of one target gives ``{"target": data}``."""
    replicate_targets = data.replicate_targets
    if replicate_targets is None:
        return {"target": data}
    out = {}
    attrs = {k: v for k, v in data.attrs.items() if k not in (REPLICATE_TARGETS, CONTROL_BEAD_SETS, TARGET_BEAD_SETS)}
    control_sets, target_sets = data.control_bead_sets, data.target_bead_sets
    for target in data.targets:
        columns = [j for j, t in enumerate(replicate_targets) if t == target]
        prefix = f"{target}:"
        names = [data.target_names[j] for j in columns]
        controls = {}
        if control_sets is not None:  # the target's own bead set's controls
            own = [j for j, s in enumerate(control_sets) if s == target_sets[target]]
            controls = {
                "control_counts": data.control_counts[:, own],
                "control_names": [data.control_names[j] for j in own],
            }
        out[target] = dataclasses.replace(
            data,
            target_counts=data.target_counts[:, columns],
            target_names=[n[len(prefix) :] if n.startswith(prefix) else n for n in names],
            attrs={**attrs, "target": target},
            **controls,
        )
    return out
