"""Train, validation and test sets of a screen: at random, or with whole building blocks held out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from delpyro.data import DELData, DELDataError

__all__ = ["split"]


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
