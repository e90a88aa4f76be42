"""Simulate one library screened against several targets on the same beads, with the truth of every target.

:func:`simulate_targets` makes what a lab gets from a selectivity panel: each target selected in
replicate, and no-protein selections on the same beads that every target shares as its control. It
returns one :class:`~delpyro.data.DELData` per target, as :func:`~delpyro.selections.read_selections`
does for a published panel, so everything that takes a screen takes each of them, and a model that fits
the targets together takes the whole mapping.

What the targets share and what they do not, natural logs throughout (compound i, target k):

    log t_{k,i} = inert_log_target
                  + promiscuous_i                     shared: the same blocks bind every target
                  + pharmacophore_effect [i has a primary aryl sulfonamide]   (the pharmacophore's target only)
                  + sum of i's blocks' effects on k   target-specific: each target's own active blocks
                  + i's disynthons' effects on k      target-specific pairs of blocks
                  + noise_{k,i}                       independent per target, sd target_noise

``promiscuous_i`` is the sum of the compound's promiscuous blocks' effects (a ``promiscuous_fraction`` of
each cycle's blocks, effects gamma distributed around ``promiscuous_scale``). The matrix enrichment
(greasy compounds and sticky blocks), the library's load (synthesis yields times lognormal noise) and the
count model are those of :func:`~delpyro.simulate.simulate_del`, multiplicative: target replicate r of k
has expected reads ``scale_r * load_i * m_i * t_{k,i}``, each control replicate ``scale_r * load_i * m_i``;
counts are negative binomial, then zeroed with the arm's gate.

With ``bead_sets`` ({target: bead set}) the targets are selected on more than one kind of beads: each bead
set has its own matrix enrichment (its own sticky blocks and per-compound noise; the lipophilic part is
the same) and its own no-protein controls, and a target's reads are ``scale_r * load_i * m_{b(k),i} *
t_{k,i}`` with b(k) its set. The library, and so the load, is the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from delpyro.data import DELData
from delpyro.simulate import (
    CYCLES,
    _check_arguments,
    _draw_counts,
    _library,
    _load,
    _matrix_enrichment,
    _per_cycle,
    _plain,
    _sparse_effects,
    _target_enrichment,
    _truth,
)

__all__ = ["simulate_targets", "true_selectivity"]

#: the truth column of each target's log enrichment, in every screen of a panel: ``log_t_<target>``
TARGET_COLUMN = "log_t_{target}"


def simulate_targets(
    seed: int = 0,
    targets: Sequence[str] = ("CA2", "USP7", "PTP1B"),
    n_per_cycle: Sequence[int] = (30, 30, 30),
    n_target_replicates: int = 3,
    n_control_replicates: int = 3,
    with_load: bool = True,
    *,
    bead_sets: Mapping[str, str] | None = None,
    pharmacophore_target: str | None = None,
    pharmacophore_effect: float = 4.5,
    pharmacophore_block_fraction: float | Sequence[float] = 0.04,
    promiscuous_fraction: float = 0.04,
    promiscuous_scale: float = 1.5,
    bb_effect_fraction: float = 0.08,
    bb_effect_scale: float = 1.2,
    disynthon_fraction: float = 0.005,
    disynthon_effect_scale: float = 2.5,
    target_noise: float = 0.3,
    reads_per_compound: float = 0.4,
    replicate_depth_sd: float = 0.3,
    target_gate: float = 0.3,
    control_gate: float = 0.15,
    nb_concentration: float | None = 2.0,
    matrix_logp_fraction: float = 0.1,
    matrix_logp_slope: float = 1.0,
    matrix_bb_fraction: float = 0.03,
    matrix_bb_scale: float = 1.5,
    matrix_noise: float = 0.2,
    yield_mean: float = 0.7,
    yield_concentration: float = 8.0,
    load_noise: float = 0.8,
    load_reads_per_compound: float = 30.0,
    inert_log_target: float = 0.0,
    binder_log_threshold: float = 2.5,
) -> dict[str, DELData]:
    """Simulate a library screened against several ``targets`` that share their beads and controls.

    Returns ``{target: DELData}`` in the order of ``targets``: the same compounds, SMILES, building blocks,
    load and control counts in each (the controls are the same no-protein selections, named
    ``no_protein_r1``, ...), and the target's own replicates (``<target>_r1``, ...). Each screen's ``truth``
    holds its target's story as :func:`~delpyro.simulate.simulate_del` writes it (``log_target_enrichment``,
    ``log_matrix_enrichment``, ``load``, ``is_binder``, the parts), the promiscuous part
    (``target_promiscuous``) and every target's log enrichment (``log_t_<target>``), so that one screen
    carries the whole panel's truth; its ``attrs`` the parameters, the panel's targets, the blocks that
    carry the pharmacophore and, per target and cycle, the block effects.

    ``pharmacophore_target`` (default: the first target) is the one the primary aryl sulfonamide binds, as
    it binds a carbonic anhydrase; the other parts are described in the module docstring. A compound is a
    binder of a target when its log enrichment for it is at least ``binder_log_threshold``. Everything
    random comes from ``numpy.random.default_rng(seed)``, drawn in a fixed order (library, promiscuous
    blocks, each target's enrichment, matrix, load, control counts, each target's counts); the bead sets
    after the first (``bead_sets``) draw their matrix and controls from a stream of their own
    (``default_rng([seed, 2])``), so that the first set's part of a panel is the same with or without the
    others. Their controls are named ``no_protein_<set>_r1``, ...; every screen's truth then holds each
    set's log matrix enrichment (``log_m_<set>``), and attrs each target's set (``target_bead_sets``).
    """
    parameters = {key: _plain(value) for key, value in locals().items()}
    targets = [str(t) for t in targets]
    if len(targets) < 1 or len(set(targets)) != len(targets) or any(not t or t != t.strip() for t in targets):
        raise ValueError(f"targets: expected one or more distinct, non-empty names, got {targets!r}")
    pharmacophore_target = targets[0] if pharmacophore_target is None else str(pharmacophore_target)
    if pharmacophore_target not in targets:
        raise ValueError(f"pharmacophore_target: {pharmacophore_target!r} is not one of the targets {targets}")
    n_per_cycle = tuple(int(n) for n in n_per_cycle)
    _check_arguments(
        n_per_cycle=n_per_cycle,
        n_target_replicates=n_target_replicates,
        n_control_replicates=n_control_replicates,
        n_poses=0,
        n_pose_features=2,
        combine="multiplicative",
        pose_dtype="float32",
        target_gate=target_gate,
        control_gate=control_gate,
        matrix_logp_fraction=matrix_logp_fraction,
        nb_concentration=nb_concentration,
        yield_mean=yield_mean,
        yield_concentration=yield_concentration,
        reads_per_compound=reads_per_compound,
    )
    sets = _bead_sets(targets, bead_sets)
    fractions = _per_cycle(pharmacophore_block_fraction, "pharmacophore_block_fraction", len(n_per_cycle))

    rng = np.random.default_rng(seed)
    library = _library(rng, n_per_cycle, fractions)
    promiscuous_effects = [_sparse_effects(rng, m, promiscuous_fraction, promiscuous_scale, 0.0) for m in n_per_cycle]
    promiscuous = sum(effects[library.index[k]] for k, effects in enumerate(promiscuous_effects))
    enrichments = {
        target: _target_enrichment(
            rng,
            library,
            inert_log_target=inert_log_target,
            pharmacophore_effect=pharmacophore_effect if target == pharmacophore_target else 0.0,
            bb_effect_fraction=bb_effect_fraction,
            bb_effect_scale=bb_effect_scale,
            disynthon_fraction=disynthon_fraction,
            disynthon_effect_scale=disynthon_effect_scale,
            target_noise=target_noise,
        )
        for target in targets
    }

    def bead_matrix(generator: np.random.Generator) -> Any:
        """One bead set's matrix enrichment, drawn from ``generator``."""
        return _matrix_enrichment(
            generator,
            library,
            matrix_logp_fraction=matrix_logp_fraction,
            matrix_logp_slope=matrix_logp_slope,
            matrix_bb_fraction=matrix_bb_fraction,
            matrix_bb_scale=matrix_bb_scale,
            matrix_noise=matrix_noise,
        )

    def depths(n: int, generator: np.random.Generator = rng) -> np.ndarray:
        return reads_per_compound * np.exp(generator.normal(0.0, replicate_depth_sd, size=n))

    matrix = bead_matrix(rng)
    load = _load(rng, library, yield_mean=yield_mean, yield_concentration=yield_concentration, load_noise=load_noise)

    control_scale = depths(n_control_replicates)
    m = np.exp(matrix.log_matrix)
    control = _draw_counts(rng, m, load.relative, control_scale, control_gate, nb_concentration)
    load_counts = rng.poisson(load_reads_per_compound * load.relative).astype(np.float64)
    log_t = {target: enrichment.log_target + promiscuous for target, enrichment in enrichments.items()}
    matrices, controls, control_names = {}, {}, {}
    if sets is not None:  # the first set's matrix and controls are those above; the others their own
        others = np.random.default_rng([seed, 2])
        for number, name in enumerate(dict.fromkeys(sets.values())):
            if number == 0:
                matrices[name], controls[name] = matrix, control
            else:
                matrices[name] = bead_matrix(others)
                scale = depths(n_control_replicates, others)
                rate = np.exp(matrices[name].log_matrix)
                controls[name] = _draw_counts(others, rate, load.relative, scale, control_gate, nb_concentration)
            control_names[name] = [f"no_protein_{name}_r{r + 1}" for r in range(n_control_replicates)]
    counts, scales = {}, {}
    for target in targets:
        scales[target] = depths(n_target_replicates)
        own_m = m if sets is None else np.exp(matrices[sets[target]].log_matrix)
        rate = own_m * np.exp(log_t[target])
        counts[target] = _draw_counts(rng, rate, load.relative, scales[target], target_gate, nb_concentration)

    every_target = {TARGET_COLUMN.format(target=target): values for target, values in log_t.items()}
    every_target.update({f"log_m_{name}": part.log_matrix for name, part in matrices.items()})
    shared_attrs: dict[str, Any] = {
        "simulator": "delpyro.simulate_targets.simulate_targets",
        "parameters": parameters,
        "targets": targets,
        "pharmacophore_target": pharmacophore_target,
        "binder_log_threshold": float(binder_log_threshold),
        "inert_log_target": float(inert_log_target),
        "control_scale": control_scale.tolist(),
        "target_gate": float(target_gate),
        "control_gate": float(control_gate),
        "nb_concentration": None if nb_concentration is None else float(nb_concentration),
        "combine": "multiplicative",
        "pharmacophore_building_blocks": {
            CYCLES[k]: [str(i) for i, b in zip(library.block_ids[k], library.blocks[k], strict=True) if b.pharmacophore]
            for k in range(len(n_per_cycle))
        },
        "bb_promiscuous_effects": _per_block(library, promiscuous_effects),
        "bb_target_effects_by_target": {t: _per_block(library, enrichments[t].bb_effects) for t in targets},
        "bb_matrix_effects": _per_block(library, matrix.bb_effects),
        "disynthon_effects_by_target": {t: enrichments[t].disynthon_effects for t in targets},
    }
    if sets is not None:
        shared_attrs["target_bead_sets"] = dict(sets)
    block_smiles = {
        CYCLES[k]: {str(i): b.smiles for i, b in zip(library.block_ids[k], library.blocks[k], strict=True)}
        for k in range(len(n_per_cycle))
    }
    screens = {}
    for target in targets:
        # simulate_del's truth of this target, its log t with the promiscuous part, which is added after
        # has_pharmacophore, and every target's log t last
        own = dataclasses.replace(enrichments[target], log_target=log_t[target])
        own_matrix = matrix if sets is None else matrices[sets[target]]
        truth = _truth(library, own, own_matrix, load, None, binder_log_threshold)
        truth.insert(5, "target_promiscuous", promiscuous)
        truth = truth.assign(**every_target)
        attrs = {**shared_attrs, "target": target, "target_scale": scales[target].tolist()}
        attrs["bb_target_effects"] = shared_attrs["bb_target_effects_by_target"][target]
        screens[target] = DELData(
            target_counts=counts[target],
            control_counts=control if sets is None else controls[sets[target]],
            smiles=library.smiles,
            compound_id=library.compound_id,
            load=load_counts if with_load else None,
            building_blocks=library.building_blocks,
            truth=truth,
            target_names=[f"{target}_r{r + 1}" for r in range(n_target_replicates)],
            control_names=(
                [f"no_protein_r{r + 1}" for r in range(n_control_replicates)]
                if sets is None
                else control_names[sets[target]]
            ),
            attrs=attrs,
            building_block_smiles=block_smiles,
        )
    return screens


def _bead_sets(targets: list[str], bead_sets: Mapping[str, str] | None) -> dict[str, str] | None:
    """``bead_sets`` checked: every target named once, to a non-empty set name (None: one set)."""
    if bead_sets is None:
        return None
    sets = {str(t): str(b) for t, b in dict(bead_sets).items()}
    if sorted(sets) != sorted(targets):
        raise ValueError(f"bead_sets: expected every target ({targets}) and only those, got {sorted(sets)}")
    bad = [t for t, b in sets.items() if not b.strip() or b != b.strip()]
    if bad:
        raise ValueError(f"bead_sets: targets {bad} have no bead-set name")
    return {t: sets[t] for t in targets}


def _per_block(library: Any, effects: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """``{cycle: {block id: effect}}`` of per-cycle effect arrays."""
    return {
        CYCLES[k]: dict(zip((str(i) for i in library.block_ids[k]), effects[k].tolist(), strict=True))
        for k in range(len(effects))
    }


def true_selectivity(
    screen: DELData, target: str, *, threshold: float = math.log(2.0), delta: float = math.log(4.0)
) -> pd.DataFrame:
    """What the simulator knows of each compound's selectivity for ``target`` ``[n_compounds, ...]``, from
    a screen of :func:`simulate_targets` (any target's: each carries the whole panel's truth), on the
    scale :func:`~delpyro.selectivity.selectivity` uses: each target's log enrichment measured from its
    median compound, e_k = log t_k - median(log t_k).

    Columns: ``log_t`` (e for ``target``), ``margin`` (that minus the largest of the other targets' e:
    positive when it prefers ``target``), ``enriched`` (e > ``threshold``), ``selective`` (enriched for
    ``target`` and for none of the others), and ``greater_<other>`` per other target (e_target - e_other
    > ``delta``).
    """
    truth = screen.truth
    targets = screen.attrs.get("targets") if screen.attrs else None
    if truth is None or not targets:
        raise ValueError("true_selectivity needs a screen of simulate_targets (truth of every target)")
    if target not in targets:
        raise ValueError(f"target {target!r} is not one of the panel's targets {targets}")
    centred = {}
    for t in targets:
        values = truth[TARGET_COLUMN.format(target=t)].to_numpy(np.float64)
        centred[t] = values - np.median(values)
    own = centred[target]
    others = [t for t in targets if t != target]
    out = pd.DataFrame({"compound_id": screen.compound_id, "log_t": own})
    out["margin"] = own - np.max([centred[t] for t in others], axis=0) if others else np.inf
    out["enriched"] = own > threshold
    out["selective"] = out["enriched"] & ~np.logical_or.reduce([centred[t] > threshold for t in others] or [False])
    for t in others:
        out[f"greater_{t}"] = own - centred[t] > delta
    return out
