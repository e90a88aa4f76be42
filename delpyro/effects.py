"""The arithmetic of the latent effects: plain torch, no Pyro (their sample sites are in model.py).

- :class:`BuildingBlockEffects`: building-block and disynthon effects from their scales and standard
  normals (centred, non-centred form), a compound's sum of its families' effects, and the split of
  values by arm and family under the names users see.
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


def family_effects(
    scale: torch.Tensor, z: torch.Tensor, rows: torch.Tensor | None = None, columns: torch.Tensor | None = None
) -> torch.Tensor:
    """Effects of one building-block family from its scale ``[...]`` and standard normals ``[..., n + 1]``
    (the last slot is the unseen block): the seen blocks' normals are centred, then all are scaled.

    For a pair family, ``rows`` and ``columns`` (int64 ``[n]``) give each observed pair's block in either
    cycle, and the normals are centred within every row and then every column: a pair effect is then an
    interaction only, and cannot take over its blocks' own effects.
    """
    seen = z[..., :-1]
    if rows is None:
        seen = seen - seen.mean(dim=-1, keepdim=True)
    else:
        for groups in (rows, columns):
            seen = seen - _group_means(seen, groups)
    return scale.unsqueeze(-1) * torch.cat([seen, z[..., -1:]], dim=-1)


def _group_means(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each element replaced by the mean of its group along the last dim (groups: int64 ``[n]``)."""
    n_groups = int(groups.max()) + 1 if groups.numel() else 0
    sums = values.new_zeros(*values.shape[:-1], n_groups).index_add(-1, groups, values)
    counts = torch.bincount(groups, minlength=n_groups).to(values.dtype)
    return (sums / counts.clamp(min=1))[..., groups]


class BuildingBlockEffects(nn.Module):
    """Building-block families laid out one after another in ``n_slots`` slots, for every arm.

    ``bb_scale`` ``[..., n_arms, n_families]`` and ``bb_z`` ``[..., n_arms, n_slots]`` (the model's two
    sample sites) give every family's effects (:meth:`effects`, see :func:`family_effects`); a compound
    adds its families' effects (:meth:`forward`). :meth:`named` splits a value by arm and family, under
    the names the summaries and ArviZ exports use: ``bb_{arm}_scale_{family}``, ``bb_{arm}_{family}``
    and ``bb_{arm}_{family}_effect``.

    Args:
        families: (name, slots) per family, in code order (:attr:`delpyro.encoding.Encoding.families`).
        arms: the arms with building-block effects ("target", and "matrix" with controls).
        pair_blocks: each pair family's observed pairs as block codes in either cycle (for the double
            centring), by family name.
    """

    def __init__(
        self,
        families: list[tuple[str, int]],
        arms: tuple[str, ...],
        pair_blocks: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> None:
        super().__init__()
        self.families = families
        self.arms = arms
        starts = np.concatenate([[0], np.cumsum([size for _, size in families])]).astype(np.int64)
        self.slots = [(int(starts[k]), int(starts[k + 1])) for k in range(len(families))]
        self.n_slots = int(starts[-1])
        # a compound's code in family k is its position in the concatenated slots once shifted by this
        self.register_buffer("code_offsets", torch.as_tensor(starts[:-1]), persistent=False)
        for name, (rows, columns) in pair_blocks.items():
            self.register_buffer(f"rows_{name}", torch.as_tensor(rows, dtype=torch.long), persistent=False)
            self.register_buffer(f"columns_{name}", torch.as_tensor(columns, dtype=torch.long), persistent=False)
        self.pair_names = set(pair_blocks)

    def effects(self, scale: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Every family's effects ``[..., n_arms, n_slots]`` from ``bb_scale`` and ``bb_z``."""
        parts = []
        for k, (name, _) in enumerate(self.families):
            start, stop = self.slots[k]
            if name in self.pair_names:
                rows, columns = getattr(self, f"rows_{name}"), getattr(self, f"columns_{name}")
                parts.append(family_effects(scale[..., k], z[..., start:stop], rows, columns))
            else:
                parts.append(family_effects(scale[..., k], z[..., start:stop]))
        return torch.cat(parts, dim=-1)

    def forward(self, effects: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each compound's sum of its families' effects ``[..., batch]``, by arm, from every family's
        effects ``[..., n_arms, n_slots]`` and the compounds' codes ``[batch, n_families]``."""
        total = effects[..., codes + self.code_offsets].sum(-1)  # [..., n_arms, batch]
        return {arm: total[..., a, :] for a, arm in enumerate(self.arms)}

    def named(self, value: Any, kind: str) -> dict[str, Any]:
        """A value of the scales (``kind="scale"``, ``[..., n_arms, n_families]``), the standard normals
        (``"z"``) or the effects (``"effect"``, both ``[..., n_arms, n_slots]``), an array or a tensor with
        any leading dims, split by arm and family: ``bb_{arm}_scale_{family}`` ``[...]``,
        ``bb_{arm}_{family}`` and ``bb_{arm}_{family}_effect`` ``[..., n + 1]``."""
        out = {}
        for a, arm in enumerate(self.arms):
            for k, (name, _) in enumerate(self.families):
                start, stop = self.slots[k]
                if kind == "scale":
                    out[f"bb_{arm}_scale_{name}"] = value[..., a, k]
                elif kind == "z":
                    out[f"bb_{arm}_{name}"] = value[..., a, start:stop]
                else:
                    out[f"bb_{arm}_{name}_effect"] = value[..., a, start:stop]
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
