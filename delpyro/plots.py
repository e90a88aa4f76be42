"""Figures of a fit, in one seaborn theme: training, predictions, posterior predictive checks, effects.

Every function returns a :class:`matplotlib.figure.Figure` (shown by JupyterLab when it is the cell's
value) and writes it only when given ``path=``. Figures are built outside pyplot's figure manager and
under :func:`theme`, a context, so nothing global changes; :func:`set_theme` applies the same theme
globally for one's own figures.

=============================  ==========================================================================
:func:`training_curves`        training and validation loss per epoch
:func:`predicted_vs_true`      predicted against true log enrichment of a simulated screen
:func:`predicted_vs_affinity`  predicted enrichment against measured pKi / pKd / pIC50
:func:`ppc_counts`             posterior predictive checks: count histograms and zero fractions
:func:`top_compounds`          posterior intervals of the compounds with the highest posterior mean
:func:`building_block_forest`  building-block effects, one panel per cycle
:func:`disynthon_heatmap`      disynthon effects of two cycles (with ``FitResult.disynthon_effects``)
:func:`selectivity_map`        one target's enrichment against another's, selective hits marked
:func:`selectivity_forest`     building blocks' effect on one target less their effect on another
:func:`pose_attention`         pose attention weights, compound by pose
:func:`loo_comparison`         an ``arviz.compare`` table
=============================  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from scipy import stats

from delpyro import metrics

if TYPE_CHECKING:
    pass

__all__ = [
    "PALETTE",
    "building_block_forest",
    "disynthon_heatmap",
    "loo_comparison",
    "pose_attention",
    "ppc_counts",
    "predicted_vs_affinity",
    "predicted_vs_true",
    "selectivity_forest",
    "selectivity_map",
    "set_theme",
    "theme",
    "theme_rc",
    "top_compounds",
    "training_curves",
]

#: Colour-blind-safe qualitative palette; sequential maps are "viridis", diverging ones "vlag".
PALETTE = "colorblind"
_CONTEXT = "paper"
_FONT_SCALE = 1.4
_EXTRA_RC = {
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "image.cmap": "viridis",
    "legend.frameon": False,
    "axes.titlepad": 8.0,
}
LOG_ENRICHMENT = "log target enrichment (natural log)"


def theme_rc() -> dict[str, Any]:
    """The theme as matplotlib rc parameters: seaborn's "whitegrid" style, "paper" context at font scale
    1.4 (axis labels about 11 pt on a figure a column or a page wide), the "colorblind" palette."""
    rc: dict[str, Any] = {}
    rc.update(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context(_CONTEXT, font_scale=_FONT_SCALE))
    rc["axes.prop_cycle"] = cycler(color=sns.color_palette(PALETTE))
    rc.update(_EXTRA_RC)
    return rc


def set_theme() -> None:
    """Apply the theme of delpyro's figures globally (seaborn and matplotlib defaults), for one's own plots."""
    sns.set_theme(context=_CONTEXT, style="whitegrid", palette=PALETTE, font_scale=_FONT_SCALE, rc=_EXTRA_RC)


@contextmanager
def theme() -> Iterator[None]:
    """The theme for the duration of a ``with`` block; the previous settings come back after it."""
    with rc_context(theme_rc()):
        yield


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _show_in_notebooks() -> None:
    """Let IPython draw a returned Figure as an image. These figures are made without pyplot (no global
    state), and IPython registers its image formatter only when a pyplot backend starts: in a notebook
    that never touched pyplot a figure would print as ``<Figure size ...>``."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    png = shell.display_formatter.formatters.get("image/png")
    if png is None:
        return
    try:
        png.lookup_by_type(Figure)  # registered already (a pyplot backend, or an earlier figure)
    except KeyError:
        select_figure_formats(shell, {"png"})


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    """Write the figure when a path is given (inside the theme, whose rc sets the resolution)."""
    _show_in_notebooks()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig


def _colors(n: int) -> list[tuple[float, float, float]]:
    return sns.color_palette(PALETTE, max(n, 1))


# ---------------------------------------------------------------------------------------------------
# training


def training_curves(history: Any, *, path: str | Path | None = None) -> Figure:
    """Training and validation loss (negative ELBO per compound, nats) per epoch.

    ``history``: ``FitResult.history`` (columns ``epoch``, ``train_loss``, ``val_loss``) or the FitResult
    itself. The validation curve is drawn when the history has validation losses.
    """
    if hasattr(history, "history") and not isinstance(history, pd.DataFrame):
        history = history.history
    missing = [c for c in ("epoch", "train_loss") if c not in history.columns]
    if missing:
        raise ValueError(f"history: no columns {missing}; its columns are {list(history.columns)}")
    if len(history) == 0:
        raise ValueError("history is empty: fit for at least one epoch")
    with theme():
        fig = _figure(5.5, 3.8)
        ax = fig.subplots()
        ax.plot(history["epoch"], history["train_loss"], marker="o", label="training")
        if "val_loss" in history.columns and history["val_loss"].notna().any():
            ax.plot(history["epoch"], history["val_loss"], marker="s", label="validation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (negative ELBO per compound, nats)")
        ax.set_title("Training curves")
        ax.legend()
        return _finish(fig, path)


# ---------------------------------------------------------------------------------------------------
# predictions


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def predicted_vs_true(
    pred: Any,
    truth: Any,
    *,
    score: str = "log_enrichment_mean",
    truth_column: str = "log_target_enrichment",
    hexbin_above: int = 2000,
    identity: bool = True,
    label: str = "posterior mean",
    path: str | Path | None = None,
) -> Figure:
    """Predicted (by default the posterior mean) against true log target enrichment of a simulated screen,
    with the Spearman correlation in the title. ``label`` names the score on the axis, in the legend and
    in the title (a score that is not a posterior, such as the naive estimate, says what it is).

    ``truth``: one value per row of ``pred`` (e.g. :func:`delpyro.truth_on_model_scale`, on the model's
    scale, or ``data.truth["log_target_enrichment"]``), or a DataFrame with ``truth_column`` (matched by
    ``compound_id`` when it has one). Up to ``hexbin_above`` compounds are points with their 90% posterior
    intervals (``log_enrichment_q05``..``_q95``, when ``pred`` has them); above, a hexbin of counts with a
    colour bar. ``identity`` draws y = x.
    """
    scores, ids = metrics._scores(pred, score)
    values, positions = metrics._aligned(truth, ids, len(scores), truth_column)
    true = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    predicted = scores[positions]
    keep = np.isfinite(true)
    true, predicted, positions = true[keep], predicted[keep], positions[keep]
    rho = _spearman(true, predicted)
    with theme():
        fig = _figure(5.5, 5.0)
        ax = fig.subplots()
        if len(true) > hexbin_above:
            image = ax.hexbin(true, predicted, gridsize=60, bins="log", mincnt=1, cmap="viridis", linewidths=0)
            fig.colorbar(image, ax=ax, label="compounds")
        else:
            interval = None
            if isinstance(pred, pd.DataFrame) and {"log_enrichment_q05", "log_enrichment_q95"} <= set(pred.columns):
                low = pred["log_enrichment_q05"].to_numpy(np.float64)[positions]
                high = pred["log_enrichment_q95"].to_numpy(np.float64)[positions]
                interval = np.vstack([np.clip(predicted - low, 0, None), np.clip(high - predicted, 0, None)])
            if interval is not None and interval.any():
                ax.errorbar(
                    true,
                    predicted,
                    yerr=interval,
                    fmt="none",
                    ecolor=_colors(1)[0],
                    alpha=0.35,
                    lw=0.8,
                    label="90% posterior interval",
                )
            ax.scatter(true, predicted, s=14, color=_colors(1)[0], edgecolors="none", label=label)
        if identity and len(true):
            lo = float(min(true.min(), predicted.min()))
            hi = float(max(true.max(), predicted.max()))
            ax.plot([lo, hi], [lo, hi], ls="--", color="0.4", lw=1, label="y = x")
        ax.set_xlabel(f"true {LOG_ENRICHMENT}")
        ax.set_ylabel(f"{label} of the {LOG_ENRICHMENT}")
        ax.set_title(f"{label[0].upper() + label[1:]} vs true: Spearman ρ = {rho:.3f} (n = {len(true)})")
        if ax.get_legend_handles_labels()[0]:  # a hexbin without the identity line has nothing to name
            ax.legend(loc="upper left")
        return _finish(fig, path)


def predicted_vs_affinity(
    pred: Any,
    affinities: pd.DataFrame,
    kind: str = "Ki",
    *,
    path: str | Path | None = None,
    **options: Any,
) -> Figure:
    """Predicted enrichment against measured affinity as pK (-log10 molar), with the Spearman correlation
    of all matched compounds (and of the molecular-weight window, when one is given) in the title.

    ``options`` go to :func:`delpyro.metrics.affinity_correlation` (``unit``, ``mw_range`` or
    ``train_smiles``, ``value_column``, ``score``, ``smiles``...). Compounds outside the window are drawn
    in a second colour. Higher enrichment for tighter binders gives a rising cloud and a positive rho.
    """
    table = metrics.affinity_correlation(pred, affinities, kind, **options)
    matched = metrics.match_affinities(pred, affinities, kind, **options)
    pk_name = matched.attrs["pk_name"]
    title = f"Spearman ρ = {table.loc['all', 'spearman']:.3f} (n = {int(table.loc['all', 'n'])})"
    with theme():
        fig = _figure(5.5, 5.0)
        ax = fig.subplots()
        colors = _colors(2)
        if "in_mw_window" in matched.columns:
            inside = matched["in_mw_window"].to_numpy()
            low, high = matched.attrs["mw_range"]
            ax.scatter(
                matched["pK"][inside],
                matched["score"][inside],
                s=22,
                color=colors[0],
                label=f"MW {low:.0f}–{high:.0f} g/mol",
            )
            ax.scatter(
                matched["pK"][~inside],
                matched["score"][~inside],
                s=22,
                color=colors[1],
                marker="^",
                label="outside the MW window",
            )
            window = table.loc["mw_window"]
            title += f"; in MW window ρ = {window['spearman']:.3f} (n = {int(window['n'])})"
            ax.legend(loc="upper left")
        else:
            ax.scatter(matched["pK"], matched["score"], s=22, color=colors[0])
        ax.set_xlabel(f"measured {pk_name} (-log10 M)")
        ax.set_ylabel(f"predicted {LOG_ENRICHMENT}")
        ax.set_title(title)
        return _finish(fig, path)


# ---------------------------------------------------------------------------------------------------
# posterior predictive checks


def _count_edges(maximum: float, bins: int) -> np.ndarray:
    """At most ``bins`` bins of whole counts, evenly spaced in log(1 + count): every count up to a few in
    its own bin, wider bins in the tail (edges are whole numbers; a bin holds counts from its left edge up
    to, not including, its right edge)."""
    top = math.floor(maximum) + 1
    spaced = np.floor(np.expm1(np.linspace(0.0, math.log1p(top), bins + 1)))
    return np.unique(np.r_[0.0, spaced, float(top)])


def _histograms(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of each row's values per bin ``[rows, bins]`` (values beyond the edges go to the end bins)."""
    bins = len(edges) - 1
    rows, n = values.shape
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    flat = (index + bins * np.arange(rows)[:, None]).reshape(-1)
    return np.bincount(flat, minlength=rows * bins).reshape(rows, bins) / n


def ppc_counts(
    observed: Any,
    replicated: Any,
    names: Sequence[str] | None = None,
    *,
    bins: int = 30,
    path: str | Path | None = None,
) -> Figure:
    """Posterior predictive checks of the counts: per replicate, the share of compounds per bin of counts (bins
    of whole counts, evenly spaced on a log(1 + count) axis, at most ``bins``) of the observed counts against
    the replicated draws' median and 90% band; and a last panel of every
    replicate's fraction of zero counts, observed (a point) against the replicated 90% interval.

    ``observed`` ``[n_compounds, n_replicates]`` (a DataFrame's columns name the replicates),
    ``replicated`` ``[n_draws, n_compounds, n_replicates]`` (or with a leading chain dimension), as for
    :func:`delpyro.metrics.ppc_statistics`.
    The figure has ``n_replicates + 1`` axes.
    """
    if names is None and isinstance(observed, pd.DataFrame):
        names = [str(c) for c in observed.columns]
    zeros = metrics.ppc_statistics(observed, replicated, names, statistics=("zero_fraction",))
    observed = np.asarray(observed, dtype=np.float64)
    replicated = np.asarray(replicated, dtype=np.float64)
    if observed.ndim == 1:
        observed, replicated = observed[:, None], replicated[..., None]
    if replicated.ndim == 4:
        replicated = replicated.reshape(-1, *replicated.shape[2:])
    names = list(zeros["replicate"])
    panels = len(names) + 1
    ncols = min(panels, 4)
    nrows = math.ceil(panels / ncols)
    colors = _colors(2)
    with theme():
        fig = _figure(3.6 * ncols, 3.2 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
        for ax in axes[panels:]:
            fig.delaxes(ax)
        for r, name in enumerate(names):
            ax = axes[r]
            obs, rep = observed[:, r], replicated[:, :, r]
            edges = _count_edges(max(float(obs.max()), float(rep.max())), bins)
            shares = _histograms(rep, edges)
            q05, q50, q95 = np.quantile(shares, [0.05, 0.5, 0.95], axis=0)
            x_edges = np.log1p(edges)
            ax.stairs(q95, x_edges, baseline=q05, fill=True, color=colors[0], alpha=0.35, label="replicated 90% band")
            ax.stairs(q50, x_edges, color=colors[0], ls="--", label="replicated median")
            ax.stairs(_histograms(obs[None], edges)[0], x_edges, color="black", lw=1.4, label="observed")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("log(1 + count)")
            ax.set_ylabel("fraction of compounds")
            ax.set_title(f"Counts: {name}")
        ax = axes[len(names)]
        x = np.arange(len(names))
        ax.vlines(
            x,
            zeros["replicated_q05"],
            zeros["replicated_q95"],
            lw=6,
            color=colors[0],
            alpha=0.5,
            label="replicated 90% interval",
        )
        ax.scatter(x, zeros["observed"], marker="D", color="black", zorder=3, label="observed")
        ax.set_xticks(x, names, rotation=45 if len(names) > 4 else 0)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xlabel("replicate")
        ax.set_ylabel("fraction of zero counts")
        ax.set_title("Zero fraction")
        handles, labels = axes[0].get_legend_handles_labels()
        extra_handles, extra_labels = ax.get_legend_handles_labels()
        fig.legend(
            [*handles, *extra_handles],
            [*labels, *(f"{label} (zero fraction)" for label in extra_labels)],
            loc="outside lower center",
            ncols=5 if ncols > 2 else 2,
            fontsize="small",
        )
        return _finish(fig, path)


# ---------------------------------------------------------------------------------------------------
# compounds and building blocks


def top_compounds(
    pred: pd.DataFrame, n: int = 30, *, prefix: str = "log_enrichment", path: str | Path | None = None
) -> Figure:
    """Posterior mean, 50% (q25..q75) and 90% (q05..q95) intervals of the ``n`` compounds with the highest
    posterior mean, best at the top, labelled by compound id."""
    needed = ["compound_id", *(f"{prefix}_{s}" for s in ("mean", "q05", "q25", "q75", "q95"))]
    missing = [c for c in needed if c not in pred.columns]
    if missing:
        raise ValueError(f"pred: no columns {missing}; top_compounds needs a predict table")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    top = pred.nlargest(n, f"{prefix}_mean").iloc[::-1]
    y = np.arange(len(top))
    colors = _colors(1)
    with theme():
        fig = _figure(6.0, 1.8 + 0.24 * len(top))
        ax = fig.subplots()
        ax.hlines(y, top[f"{prefix}_q05"], top[f"{prefix}_q95"], color=colors[0], lw=1.2, label="90% interval")
        ax.hlines(y, top[f"{prefix}_q25"], top[f"{prefix}_q75"], color=colors[0], lw=4.0, label="50% interval")
        ax.scatter(top[f"{prefix}_mean"], y, color="black", s=16, zorder=3, label="posterior mean")
        ax.set_yticks(y, top["compound_id"].astype(str))
        ax.set_ylim(-0.7, len(top) - 0.3)
        ax.set_xlabel(LOG_ENRICHMENT)
        ax.set_ylabel("compound")
        ax.set_title(f"Top {len(top)} compounds by posterior mean")
        fig.legend(loc="outside lower center", ncols=3, fontsize="small")
        return _finish(fig, path)


_EFFECT_COLUMNS = ("cycle", "building_block", "mean", "q05", "q95")


def _check_effects(effects: pd.DataFrame) -> None:
    missing = [c for c in _EFFECT_COLUMNS if c not in effects.columns]
    if missing:
        raise ValueError(
            f"effects: no columns {missing}; pass FitResult.building_block_effects() (columns {list(_EFFECT_COLUMNS)})"
        )


def _short(label: str, width: int = 24) -> str:
    """A tick label cut to ``width`` characters (block ids can be whole SMILES), the cut marked by '…'."""
    return label if len(label) <= width else label[: width - 1] + "…"


def building_block_forest(effects: pd.DataFrame, *, top: int | None = None, path: str | Path | None = None) -> Figure:
    """Forest plot of building-block effects (``FitResult.building_block_effects(arm)``): one panel per
    cycle (and per disynthon family, for rows from ``FitResult.disynthon_effects``), blocks ordered by posterior
    mean, largest at the top, with their 90% intervals (q05..q95). ``top`` keeps each panel's ``top``
    blocks of largest absolute mean."""
    _check_effects(effects)
    title = "Building-block effects on log enrichment: posterior mean and 90% interval"
    return _forest(effects, top, title, "effect (natural log)", path)


def _forest(effects: pd.DataFrame, top: int | None, title: str, xlabel: str, path: str | Path | None) -> Figure:
    """One panel per family (``cycle``) of rows with ``building_block``, ``mean``, ``q05`` and ``q95``."""
    families = list(pd.unique(effects["cycle"]))
    if not families:
        raise ValueError("effects is empty")
    panels = []
    for family in families:
        rows = effects[effects["cycle"] == family]
        if top is not None:
            rows = rows.loc[rows["mean"].abs().nlargest(top).index]
        panels.append(rows.sort_values("mean", kind="mergesort"))
    tallest = max(len(p) for p in panels)
    longest = max(len(_short(str(b))) for p in panels for b in p["building_block"])
    colors = _colors(1)
    with theme():
        fig = _figure((2.6 + 0.075 * longest) * len(panels), 1.6 + 0.22 * tallest)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, family, rows in zip(axes, families, panels, strict=True):
            y = np.arange(len(rows))
            ax.axvline(0.0, color="0.5", ls="--", lw=1)
            ax.hlines(y, rows["q05"], rows["q95"], color=colors[0], lw=1.6)
            ax.scatter(rows["mean"], y, color="black", s=14, zorder=3)
            ax.set_yticks(y, [_short(label) for label in rows["building_block"].astype(str)])
            ax.set_ylim(-0.7, len(rows) - 0.3)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("building block" if ax is axes[0] else "")
            ax.set_title(str(family))
        fig.suptitle(title)
        return _finish(fig, path)


def selectivity_forest(
    blocks: pd.DataFrame,
    target: str,
    other: str,
    *,
    top: int | None = 15,
    path: str | Path | None = None,
) -> Figure:
    """Forest plot of building-block selectivity (``delpyro.building_block_selectivity``): each block's
    effect on ``target`` less its effect on ``other``, posterior mean and 90% interval, one panel per
    cycle, largest at the top; ``top`` keeps each cycle's ``top`` blocks of largest absolute difference."""
    needed = {"cycle", "building_block", "target", "other", "difference_mean", "difference_q05", "difference_q95"}
    missing = sorted(needed - set(blocks.columns))
    if missing:
        raise ValueError(f"blocks: no columns {missing}; pass delpyro.building_block_selectivity(...)")
    rows = blocks[(blocks["target"] == target) & (blocks["other"] == other)]
    if rows.empty:
        raise ValueError(f"blocks: no rows of target {target!r} against {other!r}")
    rows = rows.rename(columns={"difference_mean": "mean", "difference_q05": "q05", "difference_q95": "q95"})
    title = f"Building-block selectivity: effect on {target} less effect on {other} (mean, 90% interval)"
    return _forest(rows, top, title, f"{target} - {other} (natural log)", path)


def selectivity_map(
    result: Any,
    target: str,
    other: str,
    *,
    fdr: float = 0.05,
    path: str | Path | None = None,
) -> Figure:
    """One target's log enrichment against another's (``delpyro.selectivity``), each from its median
    compound: every compound's posterior mean in grey; the selective hits of each of the two (called at
    posterior expected FDR ``fdr``) in colour, with 90% intervals; the diagonal and the lines where one
    exceeds the other by the selectivity margin, dashed."""
    for name in (target, other):
        if name not in result.targets:
            raise ValueError(f"target {name!r} is not one of {result.targets}")
    if target == other:
        raise ValueError("selectivity_map compares two different targets")
    x_rows, y_rows = result.of(target), result.of(other)
    x, y = x_rows["log_enrichment_mean"].to_numpy(), y_rows["log_enrichment_mean"].to_numpy()
    colors = _colors(2)
    with theme():
        fig = _figure(6.4, 6.0)
        ax = fig.subplots()
        ax.scatter(x, y, s=4, color="0.6", alpha=0.35, lw=0, rasterized=True, label="every compound")
        for color, name in zip(colors, (target, other), strict=True):
            called = result.call(name, fdr).hits.index.to_numpy()
            ax.errorbar(
                x[called],
                y[called],
                xerr=[
                    x[called] - x_rows["log_enrichment_q05"].to_numpy()[called],
                    x_rows["log_enrichment_q95"].to_numpy()[called] - x[called],
                ],
                yerr=[
                    y[called] - y_rows["log_enrichment_q05"].to_numpy()[called],
                    y_rows["log_enrichment_q95"].to_numpy()[called] - y[called],
                ],
                fmt="o",
                ms=3.5,
                color=color,
                elinewidth=0.3,
                alpha=0.7,
                label=f"selective for {name} ({len(called):,})",
            )
        low = float(min(x.min(), y.min()))
        high = float(max(x.max(), y.max()))
        line = np.array([low, high])
        ax.plot(line, line, color="0.3", lw=1)
        for shift in (result.delta, -result.delta):
            ax.plot(line, line - shift, color="0.3", lw=1, ls="--")
        ax.set_xlim(low - 0.2, high + 0.2)
        ax.set_ylim(low - 0.2, high + 0.2)
        ax.set_xlabel(f"{target}: log enrichment from the median compound")
        ax.set_ylabel(f"{other}: log enrichment from the median compound")
        ax.set_title(f"Selectivity, {target} against {other} (selective hits at expected FDR <= {fdr:g})")
        ax.legend(loc="upper left", fontsize="small", markerscale=1.5)
        return _finish(fig, path)


def disynthon_heatmap(
    effects: pd.DataFrame,
    cycles: tuple[str, str] | None = None,
    *,
    pairs: pd.DataFrame | None = None,
    annotate: bool | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Heatmap of the posterior mean effect of every disynthon (pair of blocks) of two cycles.

    ``effects``: ``FitResult.building_block_effects(arm)``; a cell is the sum of its two blocks' means.
    With disynthon interactions (``pairs``, from ``FitResult.disynthon_effects``, or rows of ``effects`` whose
    ``cycle`` is the family "a+b"), their means are added and pairs never seen in training are left blank.
    ``cycles``: two cycles of the table (default its first two). Blocks of ``cycles[0]`` are rows.
    ``annotate`` writes the values in the cells (default: up to 144 cells).
    """
    _check_effects(effects)
    available = [c for c in pd.unique(effects["cycle"]) if "+" not in str(c)]
    if cycles is None:
        if len(available) < 2:
            raise ValueError(f"effects: a heatmap needs two cycles, the table has {available}")
        cycles = (available[0], available[1])
    a, b = cycles
    for cycle in (a, b):
        if cycle not in available:
            raise ValueError(f"effects: no cycle {cycle!r}; its cycles are {available}")
    block_a = effects[effects["cycle"] == a].set_index("building_block")["mean"]
    block_b = effects[effects["cycle"] == b].set_index("building_block")["mean"]
    grid = pd.DataFrame(
        block_a.to_numpy()[:, None] + block_b.to_numpy()[None, :], index=block_a.index, columns=block_b.index
    )
    if pairs is None and effects["cycle"].isin([f"{a}+{b}", f"{b}+{a}"]).any():
        pairs = effects
    with_pairs = pairs is not None
    if with_pairs:
        missing = [c for c in ("cycle", "block_a", "block_b", "mean") if c not in pairs.columns]
        if missing:
            raise ValueError(f"pairs: no columns {missing}; pass result.disynthon_effects()")
        interaction = pd.DataFrame(np.nan, index=grid.index, columns=grid.columns)
        forward = pairs[pairs["cycle"] == f"{a}+{b}"]
        backward = pairs[pairs["cycle"] == f"{b}+{a}"]
        if forward.empty and backward.empty:
            raise ValueError(f"pairs: no rows for the family {a}+{b}")
        for row_block, column_block, value in zip(
            [*forward["block_a"], *backward["block_b"]],
            [*forward["block_b"], *backward["block_a"]],
            [*forward["mean"], *backward["mean"]],
            strict=True,
        ):
            if row_block in interaction.index and column_block in interaction.columns:
                interaction.loc[row_block, column_block] = value
        grid = grid + interaction
    if annotate is None:
        annotate = grid.size <= 144
    finite = np.abs(grid.to_numpy())[np.isfinite(grid.to_numpy())]
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0  # symmetric: white at zero
    with theme():
        cell = 0.62 if annotate else 0.3
        fig = _figure(max(5.0, 2.6 + cell * grid.shape[1]), max(3.6, 1.6 + cell * 0.8 * grid.shape[0]))
        ax = fig.subplots()
        sns.heatmap(
            grid,
            ax=ax,
            cmap="vlag",
            vmin=-limit,
            vmax=limit,
            annot=annotate,
            fmt=".2f",
            annot_kws={"fontsize": "small"},
            linewidths=0.5,
            cbar_kws={"label": "effect (natural log)"},
        )
        ax.set_xlabel(f"{b} building block")
        ax.set_ylabel(f"{a} building block")
        what = "block effects + pair interaction" if with_pairs else "sum of block effects"
        ax.tick_params(axis="y", rotation=0)
        ax.set_title(f"Disynthon effects {a} × {b}\n({what})")
        return _finish(fig, path)


def pose_attention(
    weights: Any,
    compound_ids: Sequence[Any] | None = None,
    *,
    top: int | None = 30,
    score: str | Sequence[float] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Heatmap of pose attention weights, compound (rows) by pose (columns).

    ``weights``: a :func:`delpyro.predict` table of a model with poses (columns ``attention_pose_0``...;
    ids from ``compound_id``; ranked by ``log_enrichment_mean`` unless ``score`` says otherwise), or an
    array ``[n_compounds, n_poses]`` with ``compound_ids``. ``top`` compounds are shown (None: all), those
    with the highest ``score`` (a column name or one value per compound) when there is one, else the first.
    """
    title_rank = ""
    if isinstance(weights, pd.DataFrame):
        columns = sorted(
            (c for c in weights.columns if str(c).startswith("attention_pose_")), key=lambda c: int(c.rsplit("_", 1)[1])
        )
        if not columns:
            raise ValueError("weights: no attention_pose_* columns; the model has no poses, or pass an array")
        if compound_ids is None and "compound_id" in weights.columns:
            compound_ids = weights["compound_id"].astype(str).tolist()
        if score is None and "log_enrichment_mean" in weights.columns:
            score = "log_enrichment_mean"
        if isinstance(score, str):
            if score not in weights.columns:
                raise ValueError(f"weights: no column {score!r}")
            title_rank = "posterior mean" if score == "log_enrichment_mean" else score
            score = weights[score].to_numpy(np.float64)
        matrix = weights[columns].to_numpy(np.float64)
    else:
        matrix = np.asarray(weights, dtype=np.float64)
        if isinstance(score, str):
            raise ValueError("score as a column name needs a predict table; pass the scores themselves")
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"weights must be [n_compounds, n_poses], got shape {matrix.shape}")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise ValueError("weights: attention weights must be finite and non-negative")
    n = matrix.shape[0]
    labels = [str(i) for i in (compound_ids if compound_ids is not None else range(n))]
    if len(labels) != n:
        raise ValueError(f"compound_ids: {len(labels)} ids for {n} compounds")
    order = np.arange(n)
    if score is not None:
        score = np.asarray(score, dtype=np.float64)
        if score.shape != (n,):
            raise ValueError(f"score: {score.size} values for {n} compounds")
        order = np.argsort(-score, kind="mergesort")
        title_rank = title_rank or "score"
    if top is not None:
        order = order[:top]
    frame = pd.DataFrame(matrix[order], index=[labels[i] for i in order], columns=range(matrix.shape[1]))
    title = "Pose attention"
    if top is not None and top < n:
        title += f" (top {len(order)} by {title_rank})" if title_rank else f" (first {len(order)} compounds)"
    with theme():
        fig = _figure(max(5.0, 2.8 + 0.45 * frame.shape[1]), 1.6 + 0.24 * frame.shape[0])
        ax = fig.subplots()
        sns.heatmap(frame, ax=ax, cmap="viridis", vmin=0.0, cbar_kws={"label": "attention weight"})
        ax.tick_params(axis="y", rotation=0)
        ax.set_xlabel("pose")
        ax.set_ylabel("compound")
        ax.set_title(title)
        return _finish(fig, path)


# ---------------------------------------------------------------------------------------------------
# model comparison


def loo_comparison(table: pd.DataFrame, *, path: str | Path | None = None) -> Figure:
    """An ``arviz.compare`` table as a plot: each model's ELPD with its standard error (circles), and for
    every model but the best, the ELPD difference to the best with its standard error (triangles), best at
    the top; the dashed line is the best model's ELPD. Tick labels carry the stacking weights."""
    criteria = [c for c in table.columns if str(c).startswith("elpd_") and c != "elpd_diff"]
    missing = [c for c in ("rank", "se") if c not in table.columns]
    if not criteria or missing:
        raise ValueError(
            "table: needs an elpd_loo (or elpd_waic) column, rank and se (an arviz.compare table); its columns "
            f"are {list(table.columns)}"
        )
    criterion = criteria[0]
    ordered = table.sort_values("rank")
    scale = str(ordered["scale"].iloc[0]) if "scale" in ordered.columns else "log"
    better = "higher" if scale == "log" else "lower"
    name = {"elpd_loo": "PSIS-LOO", "elpd_waic": "WAIC"}.get(criterion, criterion)
    elpd = ordered[criterion].to_numpy(np.float64)
    se = ordered["se"].to_numpy(np.float64)
    y = np.arange(len(ordered))[::-1].astype(float)
    colors = _colors(2)
    labels = [str(i) for i in ordered.index]
    if "weight" in ordered.columns:
        labels = [f"{label}\n(weight {w:.2f})" for label, w in zip(labels, ordered["weight"], strict=True)]
    with theme():
        fig = _figure(6.0, 1.6 + 0.6 * len(ordered))
        ax = fig.subplots()
        ax.axvline(elpd[0], color="0.5", ls="--", lw=1)
        ax.errorbar(elpd, y, xerr=se, fmt="o", mfc="white", color=colors[0], capsize=3, label=f"{criterion} ± se")
        if "elpd_diff" in ordered.columns and len(ordered) > 1:
            sign = -1.0 if scale == "log" else 1.0
            shifted = elpd[0] + sign * ordered["elpd_diff"].to_numpy(np.float64)[1:]
            dse = ordered["dse"].to_numpy(np.float64)[1:] if "dse" in ordered.columns else None
            ax.errorbar(
                shifted,
                y[1:] - 0.2,
                xerr=dse,
                fmt="^",
                color=colors[1],
                capsize=3,
                label="difference to the best ± se",
            )
        ax.set_yticks(y, labels)
        ax.set_ylim(-0.7, len(ordered) - 0.3)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_xlabel(f"{criterion} ({scale} scale, {better} is better)")
        ax.set_ylabel("model")
        ax.set_title(f"Model comparison ({name})")
        ax.legend(loc="best", fontsize="small")
        return _finish(fig, path)
