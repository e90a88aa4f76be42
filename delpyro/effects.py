"""The arithmetic of the latent effects: plain torch, no Pyro (their sample sites are in model.py).

- :class:`BuildingBlockEffects`: building-block and disynthon effects from their scales and standard
  normals (non-centred form; the blocks of a cycle centred), a compound's sum of its families' effects,
  and the split of values by arm and family under the names users see.
- :func:`compound_prior`, :func:`compound_parts`: the per-compound effects' prior and their parts on
  the two arms.
- :func:`screened_positions`, :func:`effects_in_batch_order`: where a batch's compounds sit in the
  training screen, and their effects put in batch order.

Every function takes any number of leading dims (draws of a posterior) before its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyro.distributions as dist
import torch
from torch import nn

from delpyro.keys import INDEX, TRAINING_POSITION

__all__ = [
    "BuildingBlockEffects",
    "compound_parts",
    "compound_prior",
    "effects_in_batch_order",
    "family_effects",
    "screened_positions",
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


def compound_prior(target_scale: torch.Tensor, matrix_scale: torch.Tensor | None) -> dist.Distribution:
    """The prior of one compound's effect site, given the scales (``[]`` or ``[draws]``).

    Target only (``matrix_scale`` None): z ~ Normal(0, 1), non-centred (the effect is sigma_t z). With a
    matrix arm, (w, u_m) ~ MultivariateNormal(0, [[sigma_t^2 + sigma_m^2, sigma_m^2], [sigma_m^2, sigma_m^2]]):
    u_m the matrix effect and w = u_t + u_m the whole target arm's deviation, centred. The target reads
    pin w and the control reads u_m, so the two are nearly independent a posteriori and a mean-field
    guide can represent them; (u_t, u_m) would be strongly anti-correlated.
    """
    if matrix_scale is None:
        return dist.Normal(0.0, 1.0).expand([1]).to_event(1)
    var_t, var_m = target_scale**2, matrix_scale**2
    covariance = torch.stack([var_t + var_m, var_m, var_m, var_m], dim=-1).reshape(*var_t.shape, 2, 2)
    return dist.MultivariateNormal(torch.zeros(2, dtype=var_t.dtype, device=var_t.device), covariance)


def compound_parts(z: torch.Tensor, target_scale: torch.Tensor, has_matrix: bool) -> dict[str, torch.Tensor]:
    """The compound effects on each arm ``[..., batch]`` from the effect sites' values ``[..., batch, n_arms]``
    in batch order: u_t = sigma_t z (target only), or u_t = w - u_m and u_m (with a matrix arm)."""
    if not has_matrix:
        return {"target": target_scale.unsqueeze(-1) * z[..., 0]}
    return {"target": z[..., 0] - z[..., 1], "matrix": z[..., 1]}


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
