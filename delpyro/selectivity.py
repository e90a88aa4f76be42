r"""Selectivity: which compounds and building blocks bind one target and not the others, with the posterior.

A panel screens one library against several targets (:func:`~delpyro.selections.read_selections`,
:func:`~delpyro.simulate_targets.simulate_targets`). Each target's log enrichment log t_k (natural logs) is
known to its model only up to a constant: reads are divided by each replicate's library size, and a
target that many compounds bind spreads its reads thinner. Most library members bind nothing, so the
targets are put on one scale by measuring each from its median compound:

    e_{k,i} = log t_{k,i} - median over the screen of the posterior means of log t_k

(``centres``: the medians subtracted). From the posterior of e, per compound:

- ``p_enriched``: P(e_k > threshold), enriched for k (default threshold log 2: twice the median compound);
- ``p_selective``: P(enriched for k and for none of the other targets);
- per other target j: the posterior mean and 90% interval of e_k - e_j, and ``p_greater``, the
  probability that it exceeds ``delta`` (k binds at least e^delta-fold better than j; default log 4).

Probabilities are joint over the targets: they come from draws of every target's log enrichment for the
same compound, one draw of each per posterior sample. Fitted one target at a time the targets'
posteriors are independent and their draws are paired by index; a joint fit's draws carry the
correlations its shared parts make.

:meth:`Selectivity.call` calls selective hits as :func:`~delpyro.hits.call_hits` calls hits: the largest
set of compounds, by ``p_selective``, whose posterior expected false discovery rate (the mean of
1 - p_selective) stays at or below the level. :func:`building_block_selectivity` compares each building
block's effect on two targets the same way.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from delpyro.data import DELData
from delpyro.hits import HitCalls, call_hits
from delpyro.posterior import building_block_draws, enrichment_draws, summarize_draws

__all__ = ["Selectivity", "building_block_selectivity", "selectivity", "selectivity_from_draws"]

#: the default selectivity margin: a compound is selective for k over j when e_k - e_j > log 4
DEFAULT_DELTA = math.log(4.0)
#: the default enrichment threshold: e_k > log 2, twice the median compound
DEFAULT_THRESHOLD = math.log(2.0)


@dataclass(frozen=True, repr=False)
class Selectivity:
    """The outcome of :func:`selectivity`.

    ``table``: one row per compound and target (compounds in the screen's order within each target):
    ``compound_id``, ``target``, ``log_enrichment_mean``, ``log_enrichment_q05``, ``log_enrichment_q95``
    (of e, the log enrichment measured from the target's median compound), ``p_enriched``,
    ``p_selective``. ``pairs``: one row per compound, target and other target: ``compound_id``,
    ``target``, ``other``, ``difference_mean``, ``difference_q05``, ``difference_q95`` (e_target -
    e_other) and ``p_greater`` (P(difference > delta)). ``centres``: each target's median subtracted;
    ``threshold`` and ``delta``: as given to :func:`selectivity`.
    """

    table: pd.DataFrame
    pairs: pd.DataFrame
    centres: dict[str, float]
    threshold: float
    delta: float

    @property
    def targets(self) -> list[str]:
        return list(self.centres)

    def of(self, target: str) -> pd.DataFrame:
        """``table``'s rows of one target, indexed by the compound's row in the screen."""
        if target not in self.centres:
            raise ValueError(f"target {target!r} is not one of {self.targets}")
        rows = self.table[self.table["target"] == target]
        return rows.set_index(rows.index - rows.index[0])

    def call(self, target: str, fdr: float = 0.05) -> HitCalls:
        """Selective hits for ``target`` at posterior expected FDR ``fdr``: compounds enriched for it and
        for none of the others (``p_selective``), called as :func:`~delpyro.hits.call_hits` calls hits."""
        rows = self.of(target)
        rows.attrs["threshold"] = self.threshold
        others = ", ".join(t for t in self.targets if t != target)
        return call_hits(rows, fdr, column="p_selective", what=f"selective for {target} (not enriched for {others})")

    def summary(self) -> str:
        counts = ", ".join(f"{t}: {self.call(t).n_called:,}" for t in self.targets)
        return (
            f"selectivity over {len(self.targets)} targets ({', '.join(self.targets)}): enriched above "
            f"{self.threshold:.3g} from each target's median compound, pairwise margin {self.delta:.3g}; selective "
            f"hits at posterior expected FDR <= 0.05: {counts}"
        )

    def __repr__(self) -> str:
        return f"Selectivity: {self.summary()}"

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.summary())}</p>"


def _targets(results: Any) -> list[str]:
    """The targets of ``{target: result}`` or of one result of a model of several targets."""
    model = getattr(results, "model", None)
    if model is not None:
        if model.targets is None:
            raise ValueError("selectivity needs a model of several targets, or {target: result} of two or more")
        return list(model.targets)
    targets = [str(t) for t in results]
    if len(targets) < 2:
        raise ValueError(f"selectivity compares two or more targets; got {targets}")
    return targets


def _panel_draws(results: Any, data: DELData, num_samples: int, batch_size: int, seed: int, cache_dir):
    """(rows [batch], {target: draws [samples, batch]}) batch by batch, every target's draws for the same
    rows: one joint model's from the same posterior draw, or separate models' each with a seed of its own
    (so that their draws are independent)."""
    if getattr(results, "model", None) is not None:
        targets = results.model.targets
        for rows, draws in enrichment_draws(results, data, num_samples, batch_size, seed=seed, cache_dir=cache_dir):
            yield rows, {target: draws[..., k] for k, target in enumerate(targets)}
        return
    streams = {
        target: enrichment_draws(result, data, num_samples, batch_size, seed=seed + 1000003 * k, cache_dir=cache_dir)
        for k, (target, result) in enumerate(results.items())
    }
    for parts in zip(*streams.values(), strict=True):
        rows = parts[0][0]
        yield rows, {target: draws for target, (_, draws) in zip(streams, parts, strict=True)}


def selectivity(
    results: Any,
    data: DELData,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    delta: float = DEFAULT_DELTA,
    num_samples: int = 200,
    batch_size: int = 4096,
    seed: int = 0,
    cache_dir: str | None = None,
) -> Selectivity:
    """Posterior selectivity of every compound of ``data`` across the targets of ``results``.

    Args:
        results: a model of several targets (``fit`` on a screen of :func:`~delpyro.targets.join_targets`),
            or ``{target: fitted result}``, two or more, each target's model (``fit`` on that target's
            screen, with the same compounds' structures).
        data: the compounds to score (any screen of the panel: only the structures and building blocks are
            read), or compounds never screened.
        threshold: the log enrichment, from the target's median compound, that an enriched compound
            exceeds (default log 2).
        delta: the margin of ``p_greater`` (log scale; default log 4).
        num_samples: posterior draws per target (probabilities are known to about 1 / num_samples).
        batch_size, seed, cache_dir: as for :func:`~delpyro.posterior.predict`.

    Returns:
        :class:`Selectivity`: the per-compound table, the pairwise table, the medians; ``call(target)``
        makes selective hit calls. The medians are taken over ``data``'s compounds (a first pass over the
        same draws).
    """
    targets = _targets(results)
    return selectivity_from_draws(
        lambda: _panel_draws(results, data, num_samples, batch_size, seed, cache_dir),
        targets,
        data.compound_id,
        threshold=threshold,
        delta=delta,
    )


def selectivity_from_draws(
    draws: Callable[[], Iterable[tuple[np.ndarray, dict[str, np.ndarray]]]],
    targets: Sequence[str],
    compound_id: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    delta: float = DEFAULT_DELTA,
) -> Selectivity:
    """:func:`selectivity` from posterior draws of any source.

    Args:
        draws: called with no argument, it yields ``(rows [batch], {target: draws [samples, batch]})``
            over the compounds, every target's draws of one posterior sample in one row (one draw,
            ``[1, batch]``, for a point estimate); called twice, and giving the same draws each time (the
            first pass finds the medians).
        targets: the targets, two or more, keys of every yielded dict.
        compound_id: ``[n_compounds]``, the rows' ids.
        threshold, delta: as for :func:`selectivity`.
    """
    targets = [str(t) for t in targets]
    if len(targets) < 2:
        raise ValueError(f"selectivity compares two or more targets; got {targets}")
    n = len(compound_id)
    means = {t: np.empty(n) for t in targets}
    q05 = {t: np.empty(n) for t in targets}
    q95 = {t: np.empty(n) for t in targets}
    for rows, values in draws():
        for target in targets:
            summary = summarize_draws(values[target])
            means[target][rows], q05[target][rows], q95[target][rows] = summary["mean"], summary["q05"], summary["q95"]
    centres = {t: float(np.median(means[t])) for t in targets}
    for target in targets:
        means[target] -= centres[target]
        q05[target] -= centres[target]
        q95[target] -= centres[target]
    p_enriched = {t: np.empty(n) for t in targets}
    p_selective = {t: np.empty(n) for t in targets}
    pair_summaries: dict[tuple[str, str], dict[str, np.ndarray]] = {
        (a, b): {k: np.empty(n) for k in ("mean", "q05", "q95", "p")} for a in targets for b in targets if a != b
    }
    for rows, values in draws():
        shape = (max(len(values[t]) for t in targets), len(rows))  # a point estimate gives one draw
        enriched = {t: np.broadcast_to(values[t] - centres[t] > threshold, shape) for t in targets}
        for target in targets:
            others = [enriched[t] for t in targets if t != target]
            alone = enriched[target] & ~np.logical_or.reduce(others)
            p_enriched[target][rows] = enriched[target].mean(0)
            p_selective[target][rows] = alone.mean(0)
        for (a, b), out in pair_summaries.items():
            difference = np.broadcast_to((values[a] - centres[a]) - (values[b] - centres[b]), shape)
            summary = summarize_draws(difference)
            out["mean"][rows], out["q05"][rows], out["q95"][rows] = summary["mean"], summary["q05"], summary["q95"]
            out["p"][rows] = (difference > delta).mean(0)
    table = pd.concat(
        [
            pd.DataFrame(
                {
                    "compound_id": compound_id,
                    "target": target,
                    "log_enrichment_mean": means[target],
                    "log_enrichment_q05": q05[target],
                    "log_enrichment_q95": q95[target],
                    "p_enriched": p_enriched[target],
                    "p_selective": p_selective[target],
                }
            )
            for target in targets
        ],
        ignore_index=True,
    )
    pairs = pd.concat(
        [
            pd.DataFrame(
                {
                    "compound_id": compound_id,
                    "target": a,
                    "other": b,
                    "difference_mean": out["mean"],
                    "difference_q05": out["q05"],
                    "difference_q95": out["q95"],
                    "p_greater": out["p"],
                }
            )
            for (a, b), out in pair_summaries.items()
        ],
        ignore_index=True,
    )
    return Selectivity(table=table, pairs=pairs, centres=centres, threshold=float(threshold), delta=float(delta))


def building_block_selectivity(
    results: Any,
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    delta: float = DEFAULT_DELTA,
    num_samples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each building block's effect on one target against another: one row per (cycle, block, target,
    other) with ``effect_target`` and ``effect_other`` (posterior means), ``difference_mean``,
    ``difference_q05``, ``difference_q95`` and ``p_greater`` (P(difference > delta)).

    A block's effect is its deviation from its cycle's average block (the model centres them), so the
    difference says how much more a block helps binding one target than the other, the rest of the
    compound alike. Blocks seen in training by both models are compared. ``pairs``: the (target, other)
    pairs (default every ordered pair). ``results``: as for :func:`selectivity`.
    """
    targets = _targets(results)
    if pairs is None:
        pairs = [(a, b) for a in targets for b in targets if a != b]
    for a, b in pairs:
        if a not in targets or b not in targets or a == b:
            raise ValueError(f"pairs: ({a!r}, {b!r}) is not a pair of two of the targets {targets}")
    if getattr(results, "model", None) is not None:  # one model: every target's effects from the same draws
        draws = {t: building_block_draws(results, "target", num_samples, seed, target=t) for t in targets}
    else:
        draws = {
            t: building_block_draws(results[t], "target", num_samples, seed + 1000003 * k)
            for k, t in enumerate(targets)
        }
    frames = []
    for a, b in pairs:
        for cycle, (ids_a, effects_a) in draws[a].items():
            if cycle not in draws[b]:
                continue
            ids_b, effects_b = draws[b][cycle]
            position_b = {block: j for j, block in enumerate(ids_b)}
            shared = [(i, position_b[block]) for i, block in enumerate(ids_a) if block in position_b]
            if not shared:
                continue
            left, right = (np.array(side) for side in zip(*shared, strict=True))
            difference = effects_a[:, left] - effects_b[:, right]
            summary = summarize_draws(difference)
            frames.append(
                pd.DataFrame(
                    {
                        "cycle": cycle,
                        "building_block": [ids_a[i] for i in left],
                        "target": a,
                        "other": b,
                        "effect_target": effects_a[:, left].mean(0),
                        "effect_other": effects_b[:, right].mean(0),
                        "difference_mean": summary["mean"],
                        "difference_q05": summary["q05"],
                        "difference_q95": summary["q95"],
                        "p_greater": (difference > delta).mean(0),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
