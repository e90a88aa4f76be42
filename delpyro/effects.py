"""The arithmetic of the latent effects: plain torch, no Pyro (their sample sites are in model.py).

- :class:`BuildingBlockEffects`: building-block and disynthon effects from their scales and standard
  normals (non-centred form; the blocks of a cycle centred), a compound's sum of its families' effects,
  and the split of values by arm and family under the names users see.
- :func:`compound_prior`, :func:`compound_parts`: the per-compound effects' prior (a diagonal normal in
  rotated coordinates, :func:`compound_prior_scales`) and their parts on the arms (each target's and each
  bead set's matrix).
- :func:`screened_positions`, :func:`effects_in_batch_order`: where a batch's compounds sit in the
  training screen, and their effects put in batch order.

Every function takes any number of leading dims (draws of a posterior) before its own.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pyro.distributions as dist
import torch
from torch import nn

from delpyro.keys import INDEX, TRAINING_POSITION

__all__ = [
    "BuildingBlockEffects",
    "bead_set_members",
    "compound_parts",
    "compound_prior",
    "compound_prior_scales",
    "effects_in_batch_order",
    "family_effects",
    "matrix_share",
    "rotate_targets",
    "screened_positions",
    "target_rotation",
    "unrotate_compound_effects",
]


def family_effects(scale: torch.Tensor, z: torch.Tensor, centred: bool = True) -> torch.Tensor:
    """Effects of one building-block family from its scale ``[...]`` and standard normals ``[..., n + 1]``
    (the last slot is the unseen block). A cycle's family is ``centred``: its seen blocks' normals less
    their mean, so its effects sum to zero and the level stays with the network or intercept. A pair
    family is not (``centred=False``): its effects are the scale times the normals (see :mod:`delpyro.model`).
    """
    if not centred:
        return scale.unsqueeze(-1) * z
    seen = z[..., :-1]
    seen = seen - seen.mean(dim=-1, keepdim=True)
    return scale.unsqueeze(-1) * torch.cat([seen, z[..., -1:]], dim=-1)


class BuildingBlockEffects(nn.Module):
    """Building-block families, cycles then pairs of cycles, for every arm.

    Two sample sites hold the standard normals: ``bb_z`` ``[..., n_arms, n_cycle_slots]`` for the cycles'
    blocks, one family after another (global: a few hundred or thousand blocks), and ``bb_pair_z``
    ``[..., pairs, n_arms]`` for the pairs of blocks (local: in a plate over every pair family's slots one
    after another, ``n_pair_slots`` in all, subsampled to the pairs a batch holds). ``bb_scale``
    ``[..., n_arms, n_families]`` scales both. :meth:`effects` gives the cycles' effects (centred, see
    :func:`family_effects`); a compound adds its blocks' effects and its pairs' (:meth:`forward`).
    :meth:`named` splits a value by arm and family, under the names the summaries and ArviZ exports use:
    ``bb_{arm}_scale_{family}``, ``bb_{arm}_{family}`` and ``bb_{arm}_{family}_effect``.

    Args:
        families: (name, slots) per family, cycles first (:attr:`delpyro.encoding.Encoding.families`).
        n_cycles: how many of ``families`` are cycles.
        arms: the arms with building-block effects ("target", and "matrix" with controls).
        pair_counts: training compounds of every pair slot ``[n_pair_slots]`` (0 for the unseen slots).
    """

    def __init__(
        self, families: list[tuple[str, int]], n_cycles: int, arms: tuple[str, ...], pair_counts: np.ndarray
    ) -> None:
        super().__init__()
        self.families = families
        self.n_cycles = n_cycles
        self.arms = arms
        sizes = [size for _, size in families]
        cycle_starts = np.concatenate([[0], np.cumsum(sizes[:n_cycles])]).astype(np.int64)
        pair_starts = np.concatenate([[0], np.cumsum(sizes[n_cycles:])]).astype(np.int64)
        #: each family's (start, stop) in its site's slots: the cycles' in ``bb_z``, the pairs' in ``bb_pair_z``
        self.slots = [(int(cycle_starts[k]), int(cycle_starts[k + 1])) for k in range(n_cycles)] + [
            (int(pair_starts[k]), int(pair_starts[k + 1])) for k in range(len(families) - n_cycles)
        ]
        self.n_cycle_slots = int(cycle_starts[-1])
        self.n_pair_slots = int(pair_starts[-1])
        # a compound's code in family k is its slot in the concatenated slots once shifted by this
        self.register_buffer("cycle_offsets", torch.as_tensor(cycle_starts[:-1]), persistent=False)
        self.register_buffer("pair_offsets", torch.as_tensor(pair_starts[:-1]), persistent=False)
        self.register_buffer("pair_counts", torch.as_tensor(pair_counts, dtype=torch.float32), persistent=False)
        # each pair slot's family, counted from the first pair family
        family = np.repeat(np.arange(len(families) - n_cycles), np.diff(pair_starts))
        self.register_buffer("pair_family", torch.as_tensor(family, dtype=torch.long), persistent=False)

    @property
    def has_pairs(self) -> bool:
        return len(self.families) > self.n_cycles

    def effects(self, scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The cycles' effects ``[..., n_arms, n_cycle_slots]`` from ``bb_scale`` and ``bb_z``."""
        cycles = enumerate(self.slots[: self.n_cycles])
        return torch.cat([family_effects(scale[..., k], z[..., start:stop]) for k, (start, stop) in cycles], dim=-1)

    def pair_effects(self, scale: torch.Tensor, pair_z: torch.Tensor) -> torch.Tensor:
        """Every pair slot's effects ``[..., n_pair_slots, n_arms]`` from ``bb_scale`` and ``bb_pair_z`` drawn
        over all of them: each slot's family scale times its normal."""
        return scale[..., self.n_cycles :].index_select(-1, self.pair_family).transpose(-1, -2) * pair_z

    def pair_slots(self, codes: torch.Tensor) -> torch.Tensor:
        """Each compound's slot in ``bb_pair_z`` per pair family, int64 ``[batch, n_pair_families]``, from the
        compounds' codes ``[batch, n_families]``."""
        return codes[:, self.n_cycles :] + self.pair_offsets

    def forward(
        self,
        scale: torch.Tensor,
        effects: torch.Tensor,
        codes: torch.Tensor,
        pair_z: torch.Tensor | None = None,
        pair_positions: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each compound's sum of its families' effects ``[..., batch]``, by arm: its blocks' from the cycles'
        effects ``[..., n_arms, n_cycle_slots]`` and its codes ``[batch, n_families]``; its pairs' from
        ``bb_scale`` ``[..., n_arms, n_families]`` and ``pair_z`` ``[..., slots, n_arms]``, where
        ``pair_positions`` ``[batch, n_pair_families]`` locates each of its pairs among those slots."""
        total = effects[..., codes[:, : self.n_cycles] + self.cycle_offsets].sum(-1)  # [..., n_arms, batch]
        if self.has_pairs:
            z = pair_z[..., pair_positions, :].movedim(-1, -3)  # [..., n_arms, batch, n_pair_families]
            total = total + (z * scale[..., self.n_cycles :].unsqueeze(-2)).sum(-1)
        return {arm: total[..., a, :] for a, arm in enumerate(self.arms)}

    def named(self, value: Any, kind: str) -> dict[str, Any]:
        """A value split by arm and family, an array or a tensor with any leading dims: the scales
        (``kind="scale"``, ``[..., n_arms, n_families]``) as ``bb_{arm}_scale_{family}`` ``[...]``; the cycles'
        standard normals (``"z"``) or effects (``"effect"``, both ``[..., n_arms, n_cycle_slots]``) and the
        pairs' (``"pair_z"``, ``"pair_effect"``, both ``[..., n_pair_slots, n_arms]``) as ``bb_{arm}_{family}``
        and ``bb_{arm}_{family}_effect`` ``[..., n + 1]``."""
        out = {}
        for a, arm in enumerate(self.arms):
            for k, (name, _) in enumerate(self.families):
                start, stop = self.slots[k]
                is_pair = k >= self.n_cycles
                if kind == "scale":
                    out[f"bb_{arm}_scale_{name}"] = value[..., a, k]
                elif kind in ("z", "effect") and not is_pair:
                    out[f"bb_{arm}_{name}" + ("_effect" if kind == "effect" else "")] = value[..., a, start:stop]
                elif kind in ("pair_z", "pair_effect") and is_pair:
                    out[f"bb_{arm}_{name}" + ("_effect" if kind == "pair_effect" else "")] = value[..., start:stop, a]
        return out


def matrix_share(target_scale: torch.Tensor, matrix_scale: torch.Tensor, n_targets: int = 1) -> torch.Tensor:
    """kappa = sigma_m^2 / (sigma_t^2 + K sigma_m^2), K = ``n_targets``: what a compound's prior expects of
    its matrix effect given its target arms' whole deviations w_k = u_k + u_m, E[u_m | w] = kappa sum_k w_k
    (one target: sigma_m^2 / (sigma_t^2 + sigma_m^2))."""
    var_m = matrix_scale**2
    return var_m / (target_scale**2 + n_targets * var_m)


def bead_set_members(target_sets: tuple[int, ...] | None, n_targets: int) -> list[list[int]]:
    """The targets (positions) of each bead set, in set order, from each target's set (None: one set)."""
    if target_sets is None:
        return [list(range(n_targets))]
    return [[k for k, s in enumerate(target_sets) if s == g] for g in range(max(target_sets) + 1)]


@functools.cache
def target_rotation(n_targets: int) -> torch.Tensor:
    """Q ``[K, K]``, orthonormal, its first row 1 / sqrt(K) (a Helmert matrix): ``a = Q w`` holds the
    targets' mean (times sqrt K) first, then K - 1 contrasts between them; ``[[1.]]`` for one target.
    Made once per K (do not change it in place)."""
    rows = [np.full(n_targets, 1.0 / np.sqrt(n_targets))]
    for k in range(1, n_targets):
        row = np.zeros(n_targets)
        row[:k] = 1.0
        row[k] = -float(k)
        rows.append(row / np.sqrt(k * (k + 1)))
    return torch.as_tensor(np.stack(rows), dtype=torch.float32)


def rotate_targets(value: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """a = Q w, or with ``inverse`` w = Q^T a (:func:`target_rotation`), over the last dim of ``value``
    ``[..., K]``; one target needs no rotation (Q = [[1]])."""
    n_targets = value.shape[-1]
    if n_targets == 1:
        return value
    rotation = target_rotation(n_targets).to(value)
    return value @ rotation if inverse else value @ rotation.T


def compound_prior_scales(target_scale: torch.Tensor, matrix_scale: torch.Tensor, n_targets: int = 1) -> torch.Tensor:
    """The prior standard deviations ``[..., K + 1]`` of one bead set's part of a compound's effect site
    with a matrix arm, K = ``n_targets`` (the set's targets): its numbers (a_1, ..., a_K, d) are independent
    normals around zero.

    u_k ~ Normal(0, sigma_t^2), one per target, and u_m ~ Normal(0, sigma_m^2) are independent. Each target
    arm's whole deviation is w_k = u_k + u_m; the site holds a = Q w (:func:`target_rotation`: the mean of
    the w, scaled, and contrasts between them; a = w for one target) and d = u_m - kappa sum_k w_k
    (:func:`matrix_share`), the matrix effect less what the w predict of it, its regression on them
    removed. So they are uncorrelated, hence (jointly normal) independent, with variances

        var a_1 = sigma_t^2 + K sigma_m^2,   var a_j = sigma_t^2 (j > 1),
        var d = sigma_m^2 sigma_t^2 / (sigma_t^2 + K sigma_m^2),

    and the map (u, u_m) -> (a, d) has unit Jacobian (triangular with unit diagonal, then a rotation):
    the density is that of the u and u_m.

    Why these coordinates: a mean-field guide treats the site's numbers as independent. The target
    reads pin each w_k and the control reads u_m. In (u, u_m) they are strongly anti-correlated a
    posteriori; in (w, u_m) they are correlated whenever the control reads say little of a compound (then
    E[u_m | w] = kappa sum w), so the guide's variance of u_k = w_k - u_m is too large, and the learned
    sigma_t, which follows it, grows with training. In (w, d), d is independent of the w under the prior
    and nearly so when the controls are shallow, as in most screens; when the control reads pin u_m much
    more tightly than the target reads pin w, d takes up some of w's spread and a correlation returns.
    Several targets' w share u_m, so they are correlated with each other a priori; the rotation a = Q w
    makes them independent, and, as every target's reads pin its own w_k about as tightly, keeps them
    nearly so a posteriori.
    """
    var_t = target_scale**2
    var_m = matrix_scale**2
    total = var_t + n_targets * var_m
    parts = [total, *[var_t] * (n_targets - 1), var_m * var_t / total]
    return torch.stack(torch.broadcast_tensors(*parts), dim=-1).sqrt()


def unrotate_compound_effects(
    value: torch.Tensor,
    target_scale: torch.Tensor,
    matrix_scale: torch.Tensor,
    target_sets: tuple[int, ...] | None = None,
    n_targets: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(u ``[..., K]``, u_m ``[..., G]``) from a value of the effect site ``[..., K + G]`` (G bead sets, each
    set's part (a, d) after the last's, see :func:`compound_prior_scales`) and the scales (``[...]``,
    broadcasting against the value's leading dims): per set w = Q^T a, u_m = d + kappa sum_k w_k and
    u_k = w_k - u_m. ``target_sets``: each target's set (None: one set)."""
    own = [None] * n_targets
    matrices = []
    start = 0
    for members in bead_set_members(target_sets, n_targets):
        size = len(members)
        w = rotate_targets(value[..., start : start + size], inverse=True)
        matrix = value[..., start + size] + matrix_share(target_scale, matrix_scale, size) * w.sum(-1)
        for j, k in enumerate(members):
            own[k] = w[..., j] - matrix
        matrices.append(matrix)
        start += size + 1
    return torch.stack(own, dim=-1), torch.stack(matrices, dim=-1)


def compound_prior(
    target_scale: torch.Tensor,
    matrix_scale: torch.Tensor | None,
    n_targets: int = 1,
    target_sets: tuple[int, ...] | None = None,
) -> dist.Distribution:
    """The prior of one compound's effect site, given the scales (``[]`` or ``[draws]``): a diagonal normal
    (event dim 1).

    Target arms only (``matrix_scale`` None): z_k ~ Normal(0, 1), one per target, non-centred (the effect
    is sigma_t z_k). With a matrix arm, each bead set's (a_1, ..., a_K, d) of :func:`compound_prior_scales`
    (a = w for one target), the sets one after another (``target_sets``: each target's set; None: one).
    """
    if matrix_scale is None:
        return dist.Normal(0.0, 1.0).expand([n_targets]).to_event(1)
    members = bead_set_members(target_sets, n_targets)
    scales = torch.cat([compound_prior_scales(target_scale, matrix_scale, len(m)) for m in members], dim=-1)
    return dist.Normal(torch.zeros_like(scales), scales).to_event(1)


def compound_parts(
    z: torch.Tensor,
    target_scale: torch.Tensor,
    matrix_scale: torch.Tensor | None,
    target_arms: tuple[str, ...] = ("target",),
    matrix_arms: tuple[str, ...] = ("matrix",),
    target_sets: tuple[int, ...] | None = None,
) -> dict[str, torch.Tensor]:
    """The compound effects on each arm ``[..., batch]`` from the effect sites' values ``[..., batch, n]``
    and the scales (``[...]``): u_k = sigma_t z_k (target arms only), or, with a matrix arm (``matrix_scale``
    given), :func:`unrotate_compound_effects`. The target arms are named by ``target_arms``, one per
    target, the matrix arms by ``matrix_arms``, one per bead set (``target_sets``: each target's)."""

    def per_batch(scale: torch.Tensor) -> torch.Tensor:
        return scale.unsqueeze(-1) if scale.dim() else scale

    if matrix_scale is None:
        return {arm: per_batch(target_scale) * z[..., k] for k, arm in enumerate(target_arms)}
    scales = per_batch(target_scale), per_batch(matrix_scale)
    own, matrix = unrotate_compound_effects(z, *scales, target_sets, len(target_arms))
    out = {arm: own[..., k] for k, arm in enumerate(target_arms)}
    out.update({arm: matrix[..., g] for g, arm in enumerate(matrix_arms)})
    return out


def screened_positions(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, screened)``: the training-screen positions of the batch's screened compounds (a
    single placeholder 0 when there are none) and the mask of screened compounds ``[batch]``. The
    positions come from ``batch[TRAINING_POSITION]`` (-1: not screened), else from ``batch[INDEX]``."""
    position = batch.get(TRAINING_POSITION)
    if position is None:
        position = batch[INDEX]
    screened = position >= 0
    chosen = position[screened]
    if chosen.numel() == 0:
        chosen = torch.zeros(1, dtype=torch.long, device=position.device)
    return chosen, screened


def effects_in_batch_order(
    screened_value: torch.Tensor | None,
    new_value: torch.Tensor | None,
    batch: dict[str, torch.Tensor],
    n_screened: int,
) -> torch.Tensor:
    """The effect sites' values of a batch's compounds, in batch order ``[..., batch, n_arms]``.

    ``screened_value`` ``[..., n screened in batch, n_arms]``: the screened compounds' values as the
    screened plate gives them: in the order of their positions, or in the training screen's order when
    the plate holds every screened compound (then the positions pick them). ``new_value``
    ``[..., n new in batch, n_arms]``: the compounds never screened, in batch order.
    """
    positions, screened = screened_positions(batch)
    if screened_value is not None and positions.numel() == n_screened:
        screened_value = screened_value[..., positions, :]
    if bool(screened.all()):
        return screened_value
    if not bool(screened.any()):
        return new_value
    leading = new_value.shape[:-2]
    z = new_value.new_empty(*leading, screened.shape[0], new_value.shape[-1])
    z[..., screened, :] = screened_value
    z[..., ~screened, :] = new_value
    return z
