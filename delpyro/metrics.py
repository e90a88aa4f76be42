"""How good is a fit: affinity correlation, hit recovery, interval calibration and posterior predictive checks.

Every function takes the per-compound table of :func:`delpyro.predict` (or a plain array or Series of
scores) and returns a small pandas DataFrame:

- :func:`affinity_correlation`: Spearman and Pearson correlations between predicted enrichment and
  measured affinities (pKi, pKd, pIC50), on all matched compounds and on a molecular-weight window;
  :func:`match_affinities` gives the matched rows themselves.
- :func:`hit_recovery`: precision and recall of the top-k compounds against known binders, and the
  average precision (area under the precision-recall curve).
- :func:`calibration`: how often the posterior intervals cover the truth, level by level.
- :func:`ppc_statistics`: posterior predictive p-values of count statistics (zero fraction, mean,
  variance, maximum), replicate by replicate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from delpyro.data import rows_text
from delpyro.features import molecular_weight

__all__ = [
    "AFFINITY_KINDS",
    "AFFINITY_UNITS",
    "PPC_STATISTICS",
    "affinity_correlation",
    "average_precision",
    "calibration",
    "hit_recovery",
    "match_affinities",
    "ppc_statistics",
]

#: Affinity measurements and the name of their negative log10 (molar) form.
AFFINITY_KINDS = {"ki": "pKi", "kd": "pKd", "ic50": "pIC50", "ec50": "pEC50"}
#: Concentration units and their size in mol/L; "pK" means the values are already -log10(molar).
AFFINITY_UNITS = {"M": 1.0, "mM": 1e-3, "uM": 1e-6, "µM": 1e-6, "μM": 1e-6, "nM": 1e-9, "pM": 1e-12, "pK": math.nan}

PPC_STATISTICS = {
    "zero_fraction": lambda counts, axis: np.mean(counts == 0, axis=axis),
    "mean": lambda counts, axis: np.mean(counts, axis=axis),
    "variance": lambda counts, axis: np.var(counts, axis=axis),
    "maximum": lambda counts, axis: np.max(counts, axis=axis),
}


# ---------------------------------------------------------------------------------------------------
# inputs


def _scores(
    pred: Any, score: str = "log_enrichment_mean", compound_ids: Sequence[Any] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(scores [n] float64, compound ids [n] as str or None)`` from a predict table, a Series (its index
    holds the ids) or an array (ids from ``compound_ids``)."""
    if isinstance(pred, pd.DataFrame):
        if score not in pred.columns:
            raise ValueError(f"pred: no column {score!r}; its columns are {list(pred.columns)}")
        values = pred[score]
        ids = pred["compound_id"].astype(str).to_numpy() if "compound_id" in pred.columns else None
    elif isinstance(pred, pd.Series):
        values = pred
        ids = None if isinstance(pred.index, pd.RangeIndex) else pred.index.astype(str).to_numpy()
    else:
        values = pd.Series(np.asarray(pred).reshape(-1))
        ids = None
    if compound_ids is not None:
        ids = np.asarray([str(i) for i in compound_ids])
        if len(ids) != len(values):
            raise ValueError(f"compound_ids: {len(ids)} ids for {len(values)} scores")
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(numeric))
    if bad.size:
        name = score if isinstance(pred, pd.DataFrame) else "pred"
        raise ValueError(f"{name}: {rows_text(bad, np.asarray(values)[bad].tolist())} are not finite numbers")
    return numeric, ids


def _aligned(
    truth: Any, ids: np.ndarray | None, n: int, column: str, what: str = "truth"
) -> tuple[pd.Series, np.ndarray]:
    """``(truth values [m], positions [m] in pred)``: a DataFrame with ``compound_id`` is matched by id,
    anything else (array, Series, DataFrame without ids) is taken row by row."""
    if isinstance(truth, pd.DataFrame):
        if column not in truth.columns:
            raise ValueError(f"{what}: no column {column!r}; its columns are {list(truth.columns)}")
        if "compound_id" in truth.columns:
            if ids is None:
                raise ValueError(f"{what} is matched by compound_id, and pred has no compound ids")
            lookup = pd.Series(np.arange(len(ids)), index=ids)
            if not lookup.index.is_unique:
                raise ValueError("pred: compound ids are not unique")
            keys = truth["compound_id"].astype(str)
            found = keys.isin(lookup.index).to_numpy()
            if not found.any():
                raise ValueError(f"{what}: no compound_id matches a compound of pred")
            return truth[column][found].reset_index(drop=True), lookup[keys[found]].to_numpy()
        truth = truth[column]
    values = pd.Series(np.asarray(truth).reshape(-1))
    if len(values) != n:
        raise ValueError(f"{what}: {len(values)} values for {n} compounds of pred; pass one per row of pred")
    return values, np.arange(n)


def _canonical(smiles: Sequence[Any]) -> list[str | None]:
    from rdkit import Chem, rdBase

    out: list[str | None] = []
    with rdBase.BlockLogs():
        for text in smiles:
            mol = Chem.MolFromSmiles(text) if isinstance(text, str) and text.strip() else None
            out.append(None if mol is None else Chem.MolToSmiles(mol))
    return out


def _to_pk(values: pd.Series, column: str, unit: str) -> np.ndarray:
    """-log10(molar) of affinity values in ``unit``, after checking every value is a positive number."""
    if unit not in AFFINITY_UNITS:
        raise ValueError(f"unit must be one of {list(AFFINITY_UNITS)}, got {unit!r}")
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(numeric))
    if bad.size:
        raise ValueError(
            f"affinities: column {column!r}, {rows_text(bad, values.iloc[bad].tolist())} are not numbers "
            "(censored values such as '>10000' must be removed or resolved first)"
        )
    if unit == "pK":
        return numeric
    bad = np.flatnonzero(numeric <= 0)
    if bad.size:
        raise ValueError(
            f"affinities: column {column!r}, {rows_text(bad, values.iloc[bad].tolist())} are not positive "
            f"concentrations in {unit}"
        )
    return -np.log10(numeric * AFFINITY_UNITS[unit])


# ---------------------------------------------------------------------------------------------------
# affinities


def match_affinities(
    pred: Any,
    affinities: pd.DataFrame,
    kind: str = "Ki",
    *,
    unit: str = "nM",
    value_column: str | None = None,
    on: str = "auto",
    id_column: str = "compound_id",
    smiles_column: str = "smiles",
    score: str = "log_enrichment_mean",
    compound_ids: Sequence[Any] | None = None,
    smiles: Sequence[str] | None = None,
    train_smiles: Sequence[str] | None = None,
    mw_range: tuple[float, float] | None = None,
    mw_quantiles: tuple[float, float] = (0.1, 0.9),
) -> pd.DataFrame:
    """The compounds of ``pred`` that have a measured affinity, one row each (see :func:`affinity_correlation`
    for the arguments).

    Columns: ``compound_id``, ``smiles`` (when known), ``score`` (the prediction), ``pK`` (-log10 of the
    affinity in mol/L, the mean over repeated measurements, i.e. of their geometric mean),
    ``n_measurements``, and with a molecular-weight window ``mw`` (g/mol) and ``in_mw_window``. The
    window is in ``attrs["mw_range"]`` (None without one) and the p-form's name (``pKi``...) in
    ``attrs["pk_name"]``.
    """
    if kind.lower() not in AFFINITY_KINDS:
        raise ValueError(f"kind must be one of ['Ki', 'Kd', 'IC50', 'EC50'], got {kind!r}")
    if not isinstance(affinities, pd.DataFrame):
        raise ValueError("affinities must be a DataFrame with an id (or SMILES) column and a value column")
    if value_column is None:
        candidates = [kind, kind.lower(), kind.upper(), "value"]
        value_column = next((c for c in candidates if c in affinities.columns), None)
        if value_column is None:
            raise ValueError(
                f"affinities: no value column (looked for {sorted(set(candidates))}); pass value_column=, "
                f"its columns are {list(affinities.columns)}"
            )
    elif value_column not in affinities.columns:
        raise ValueError(f"affinities: no column {value_column!r}; its columns are {list(affinities.columns)}")
    if mw_range is not None and train_smiles is not None:
        raise ValueError("give the molecular-weight window as mw_range or as train_smiles, not both")
    scores, ids = _scores(pred, score, compound_ids)
    pred_smiles = None
    if smiles is not None:
        pred_smiles = np.asarray(list(smiles), dtype=object)
        if len(pred_smiles) != len(scores):
            raise ValueError(f"smiles: {len(pred_smiles)} SMILES for {len(scores)} compounds of pred")
    elif isinstance(pred, pd.DataFrame) and "smiles" in pred.columns:
        pred_smiles = pred["smiles"].to_numpy(dtype=object)

    if on == "auto":
        if id_column in affinities.columns and ids is not None:
            on = "compound_id"
        elif smiles_column in affinities.columns and pred_smiles is not None:
            on = "smiles"
        else:
            raise ValueError(
                f"affinities: no way to match compounds: needs a {id_column!r} column (with ids in pred), or a "
                f"{smiles_column!r} column with the screen's SMILES in pred or smiles=; its columns are "
                f"{list(affinities.columns)}"
            )
    if on == "compound_id":
        if id_column not in affinities.columns:
            raise ValueError(f"affinities: no column {id_column!r}; its columns are {list(affinities.columns)}")
        if ids is None:
            raise ValueError("pred has no compound ids: pass a predict table, a Series indexed by id or compound_ids=")
        pred_keys = ids
        keys = affinities[id_column].astype(str).to_numpy()
    elif on == "smiles":
        if smiles_column not in affinities.columns:
            raise ValueError(f"affinities: no column {smiles_column!r}; its columns are {list(affinities.columns)}")
        if pred_smiles is None:
            raise ValueError("matching on SMILES needs the screen's SMILES: a 'smiles' column in pred or smiles=")
        pred_keys = np.asarray(_canonical(pred_smiles), dtype=object)
        bad = np.flatnonzero([k is None for k in pred_keys])
        if bad.size:
            raise ValueError(f"pred smiles: {rows_text(bad, pred_smiles[bad].tolist())} are not SMILES RDKit can parse")
        raw = affinities[smiles_column].tolist()
        keys = np.asarray(_canonical(raw), dtype=object)
        bad = np.flatnonzero([k is None for k in keys])
        if bad.size:
            raise ValueError(
                f"affinities: column {smiles_column!r}, {rows_text(bad, [raw[i] for i in bad])} are not SMILES "
                "that RDKit can parse"
            )
    else:
        raise ValueError(f"on must be 'auto', 'compound_id' or 'smiles', got {on!r}")

    pk = _to_pk(affinities[value_column].reset_index(drop=True), value_column, unit)
    lookup = pd.Series(np.arange(len(pred_keys)), index=pred_keys)
    duplicated = lookup.index.duplicated()
    if duplicated.any():
        raise ValueError(
            f"pred: {on} values are not unique: {rows_text(np.flatnonzero(duplicated), pred_keys[duplicated])}"
        )
    found = np.isin(keys, pred_keys)
    if not found.any():
        raise ValueError(
            f"affinities: no {on} matches a compound of pred (affinities has e.g. {list(keys[:3])}, "
            f"pred has e.g. {list(pred_keys[:3])})"
        )
    measured = pd.DataFrame({"position": lookup[keys[found]].to_numpy(), "pK": pk[found]})
    grouped = measured.groupby("position", sort=True)["pK"].agg(["mean", "size"])
    positions = grouped.index.to_numpy()
    table = pd.DataFrame(
        {
            "compound_id": ids[positions] if ids is not None else pred_keys[positions],
            "score": scores[positions],
            "pK": grouped["mean"].to_numpy(),
            "n_measurements": grouped["size"].to_numpy(),
        }
    )
    matched_smiles = None
    if pred_smiles is not None:
        matched_smiles = pred_smiles[positions]
    elif smiles_column in affinities.columns:
        first = pd.Series(affinities[smiles_column].to_numpy()[found], index=measured["position"].to_numpy())
        matched_smiles = first.groupby(level=0).first().loc[positions].to_numpy(dtype=object)
    if matched_smiles is not None:
        table.insert(1, "smiles", matched_smiles)

    window = None
    if train_smiles is not None:
        lo_q, hi_q = mw_quantiles
        if not 0 <= lo_q < hi_q <= 1:
            raise ValueError(f"mw_quantiles must satisfy 0 <= low < high <= 1, got {mw_quantiles}")
        train_mw = molecular_weight(train_smiles)
        window = (float(np.quantile(train_mw, lo_q)), float(np.quantile(train_mw, hi_q)))
    elif mw_range is not None:
        lo, hi = (float(v) for v in mw_range)
        if not lo <= hi:
            raise ValueError(f"mw_range must be (low, high) with low <= high, got {mw_range}")
        window = (lo, hi)
    if window is not None:
        if matched_smiles is None:
            raise ValueError(
                "a molecular-weight window needs the matched compounds' SMILES: a 'smiles' column in pred or "
                "affinities, or smiles="
            )
        table["mw"] = molecular_weight(matched_smiles)
        table["in_mw_window"] = (table["mw"] >= window[0]) & (table["mw"] <= window[1])
    table.attrs["mw_range"] = window
    table.attrs["pk_name"] = AFFINITY_KINDS[kind.lower()]
    return table


def _correlations(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson coefficients with their two-sided p-values (NaN below 3 pairs or for a constant)."""
    out = {"n": len(x), "spearman": math.nan, "spearman_p": math.nan, "pearson": math.nan, "pearson_p": math.nan}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spearman = stats.spearmanr(x, y)
        pearson = stats.pearsonr(x, y)
    out.update(
        spearman=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
        pearson=float(pearson.statistic),
        pearson_p=float(pearson.pvalue),
    )
    return out


def affinity_correlation(
    pred: Any,
    affinities: pd.DataFrame,
    kind: str = "Ki",
    mw_range: tuple[float, float] | None = None,
    *,
    unit: str = "nM",
    train_smiles: Sequence[str] | None = None,
    value_column: str | None = None,
    on: str = "auto",
    id_column: str = "compound_id",
    smiles_column: str = "smiles",
    score: str = "log_enrichment_mean",
    compound_ids: Sequence[Any] | None = None,
    smiles: Sequence[str] | None = None,
    mw_quantiles: tuple[float, float] = (0.1, 0.9),
) -> pd.DataFrame:
    """Rank and linear correlation between predicted enrichment and measured affinity.

    Affinities (``kind``: "Ki", "Kd", "IC50" or "EC50") in ``unit`` ("M", "mM", "uM", "nM", "pM"; "pK" when
    the values are already -log10 molar) become ``pK = -log10(affinity in mol/L)``: 1 nM is 9. Repeated
    measurements of a compound are averaged on that scale. **Sign convention:** higher enrichment should mean
    tighter binding, that is a smaller Ki and a larger pK, so a good model gives *positive* correlations.

    Args:
        pred: a :func:`delpyro.predict` table (``score`` column, default the posterior mean
            ``log_enrichment_mean``; ``compound_id``), a Series of scores indexed by compound id, or an
            array of scores with ``compound_ids=``.
        affinities: one row per measurement: an id column (``id_column``) or a SMILES column
            (``smiles_column``, matched to ``pred``'s SMILES after RDKit canonicalization), and a value column
            (``value_column``; by default the column named like ``kind``, or "value").
        mw_range: ``(low, high)`` molecular weight (g/mol) of the window; or
        train_smiles: the training screen's SMILES, whose ``mw_quantiles`` (default 10th and 90th
            percentiles) of molecular weight make the window. Without either, only "all" is reported.
        on: "compound_id", "smiles" or "auto" (ids when both sides have them, else SMILES).
        smiles: the SMILES of ``pred``'s compounds, in its order (when ``pred`` has no "smiles" column).

    Returns:
        A DataFrame indexed by ``subset`` ("all", and "mw_window" with a window) with columns ``n``,
        ``spearman``, ``spearman_p``, ``pearson``, ``pearson_p`` (two-sided p-values; NaN below three
        compounds), ``mw_low`` and ``mw_high``.

    Raises:
        ValueError: a column is missing, an affinity is not a positive number (the message names the column and
            rows), no compound matches, or the window needs SMILES that are not given.

    >>> pred = pd.DataFrame({"compound_id": ["a", "b", "c", "d"], "log_enrichment_mean": [0.1, 2.0, 1.0, 3.0]})
    >>> ki = pd.DataFrame({"compound_id": ["a", "b", "c", "d"], "Ki": [5000.0, 20.0, 300.0, 1.0]})
    >>> table = affinity_correlation(pred, ki)
    >>> int(table.loc["all", "n"]), float(table.loc["all", "spearman"])
    (4, 1.0)
    """
    matched = match_affinities(
        pred,
        affinities,
        kind,
        unit=unit,
        value_column=value_column,
        on=on,
        id_column=id_column,
        smiles_column=smiles_column,
        score=score,
        compound_ids=compound_ids,
        smiles=smiles,
        train_smiles=train_smiles,
        mw_range=mw_range,
        mw_quantiles=mw_quantiles,
    )
    window = matched.attrs["mw_range"]
    low, high = window if window is not None else (math.nan, math.nan)
    rows = {"all": _correlations(matched["score"].to_numpy(), matched["pK"].to_numpy())}
    if window is not None:
        inside = matched[matched["in_mw_window"]]
        rows["mw_window"] = _correlations(inside["score"].to_numpy(), inside["pK"].to_numpy())
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["n"] = table["n"].astype(int)
    table["mw_low"] = low
    table["mw_high"] = high
    table.index.name = "subset"
    return table


# ---------------------------------------------------------------------------------------------------
# hits


def average_precision(score: Any, truth: Any) -> float:
    """Area under the precision-recall curve as a step function: ``sum_k (R_k - R_{k-1}) P_k`` over the
    distinct score thresholds from high to low (tied scores enter together), as scikit-learn's
    ``average_precision_score``. NaN when ``truth`` has no positive.

    >>> average_precision([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.8333333333333333
    """
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=bool).reshape(-1)
    if score.shape != truth.shape:
        raise ValueError(f"score and truth differ in length: {score.size} and {truth.size}")
    positives = int(truth.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-score, kind="mergesort")
    ranked, hits = score[order], truth[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # the last row of every tie group
    true_positives = np.cumsum(hits)[ends]
    precision = true_positives / (ends + 1)
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _booleans(values: pd.Series) -> np.ndarray:
    """Booleans from a Series of booleans or of 0/1 numbers; anything else is an error naming the rows."""
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=bool)
    numeric = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(~numeric.isin([0, 1]).to_numpy())
    if bad.size:
        raise ValueError(f"truth: {rows_text(bad, values.iloc[bad].tolist())} are not booleans (or 0/1)")
    return numeric.to_numpy() == 1


def hit_recovery(
    pred: Any,
    truth: Any,
    top_k: int | Sequence[int] = (10, 50, 100),
    *,
    score: str = "log_enrichment_mean",
    truth_column: str = "is_binder",
) -> pd.DataFrame:
    """Precision and recall of the ``top_k`` compounds with the highest ``score`` against the true binders.

    Args:
        pred: a :func:`delpyro.predict` table (``score``: "log_enrichment_mean" or "p_enriched", or any
            column), or an array or Series of scores.
        truth: booleans, one per row of ``pred`` (e.g. ``data.truth["is_binder"]``), or a DataFrame with
            ``truth_column`` (matched by ``compound_id`` when it has one; then only matched rows count).
        top_k: one k or several; a k above the number of compounds takes them all.

    Returns:
        One row per k: ``k``, ``true_positives``, ``precision`` (true positives / k), ``recall`` (true
        positives / binders), and on every row ``n_binders``, ``n_compounds``, ``base_rate`` (the precision
        of a random pick) and ``average_precision`` (:func:`average_precision` over all compounds). Tied
        scores at the k-th place are taken in row order. Recall and average precision are NaN without binders.
    """
    scores, ids = _scores(pred, score)
    values, positions = _aligned(truth, ids, len(scores), truth_column)
    if values.isna().any():
        bad = np.flatnonzero(values.isna().to_numpy())
        raise ValueError(f"truth: {rows_text(bad)} are missing")
    hits = _booleans(values)
    scores = scores[positions]
    ks = [top_k] if isinstance(top_k, int | np.integer) else list(top_k)
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"top_k must be one or more positive integers, got {top_k!r}")
    n = len(scores)
    binders = int(hits.sum())
    ranked = hits[np.argsort(-scores, kind="mergesort")]
    cumulative = np.cumsum(ranked)
    ap = average_precision(scores, hits)
    rows = []
    for k in ks:
        k = min(int(k), n)
        true_positives = int(cumulative[k - 1])
        rows.append(
            {
                "k": k,
                "true_positives": true_positives,
                "precision": true_positives / k,
                "recall": true_positives / binders if binders else math.nan,
                "n_binders": binders,
                "n_compounds": n,
                "base_rate": binders / n,
                "average_precision": ap,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# calibration


def _quantile_column(prefix: str, q: float) -> str | None:
    """``prefix_q05`` for q = 0.05 (predict's naming); None when the percentage is not a whole number."""
    percent = round(q * 100, 9)
    if percent != int(percent):
        return None
    return f"{prefix}_q{int(percent):02d}"


def calibration(
    pred: pd.DataFrame,
    truth: Any,
    levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
    *,
    prefix: str = "log_enrichment",
    truth_column: str = "log_target_enrichment",
) -> pd.DataFrame:
    """How often the central posterior intervals contain the true value, level by level.

    For a level L the interval runs from the (1 - L)/2 to the (1 + L)/2 posterior quantile. Where
    ``pred`` stores both quantiles (``log_enrichment_q25``/``_q75`` for 0.5, ``_q05``/``_q95`` for 0.9) they
    are used (method "quantiles"); otherwise a normal approximation ``mean +- z sd`` from
    ``log_enrichment_mean`` and ``log_enrichment_sd`` (method "normal"). A calibrated posterior covers
    about L of the compounds. Compare on the model's scale: for a simulated screen pass
    :func:`delpyro.truth_on_model_scale`.

    Args:
        pred: a :func:`delpyro.predict` table (columns ``{prefix}_mean``, ``_sd`` and quantiles).
        truth: true values, one per row of ``pred``, or a DataFrame with ``truth_column`` (matched by
            ``compound_id`` when it has one).
        levels: central interval levels, each strictly between 0 and 1.

    Returns:
        One row per level: ``level``, ``nominal`` (the coverage a calibrated posterior gives: the level),
        ``coverage``, ``n``, ``method`` and ``mean_width`` (the intervals' mean width).
    """
    if not isinstance(pred, pd.DataFrame):
        raise ValueError("pred must be a predict table (a DataFrame with posterior means, sds and quantiles)")
    ids = pred["compound_id"].astype(str).to_numpy() if "compound_id" in pred.columns else None
    values, positions = _aligned(truth, ids, len(pred), truth_column)
    true = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(true))
    if bad.size:
        raise ValueError(f"truth: {rows_text(bad, values.iloc[bad].tolist())} are not finite numbers")
    rows = []
    for level in levels:
        level = float(level)
        if not 0 < level < 1:
            raise ValueError(f"levels must lie strictly between 0 and 1, got {level}")
        lower_name = _quantile_column(prefix, (1 - level) / 2)
        upper_name = _quantile_column(prefix, (1 + level) / 2)
        if lower_name in pred.columns and upper_name in pred.columns:
            lower = pred[lower_name].to_numpy(np.float64)[positions]
            upper = pred[upper_name].to_numpy(np.float64)[positions]
            method = "quantiles"
        else:
            for column in (f"{prefix}_mean", f"{prefix}_sd"):
                if column not in pred.columns:
                    raise ValueError(f"pred: no column {column!r} for the normal approximation at level {level}")
            mean = pred[f"{prefix}_mean"].to_numpy(np.float64)[positions]
            sd = pred[f"{prefix}_sd"].to_numpy(np.float64)[positions]
            z = float(stats.norm.ppf((1 + level) / 2))
            lower, upper = mean - z * sd, mean + z * sd
            method = "normal"
        rows.append(
            {
                "level": level,
                "nominal": level,
                "coverage": float(np.mean((true >= lower) & (true <= upper))),
                "n": len(true),
                "method": method,
                "mean_width": float(np.mean(upper - lower)),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# posterior predictive checks


def ppc_statistics(
    observed: Any,
    replicated: Any,
    names: Sequence[str] | None = None,
    statistics: Sequence[str] = ("zero_fraction", "mean", "variance", "maximum"),
) -> pd.DataFrame:
    """Posterior predictive checks of count statistics, replicate by replicate.

    Args:
        observed: counts ``[n_compounds, n_replicates]`` (a DataFrame's columns name the replicates; a
            vector is one replicate).
        replicated: draws from the posterior predictive ``[n_draws, n_compounds, n_replicates]``, or
            ``[n_chains, n_draws, n_compounds, n_replicates]`` (an InferenceData's ``posterior_predictive``
            counts), whose chains are pooled.
        names: replicate names (default: the DataFrame's columns, else "0", "1", ...).
        statistics: from "zero_fraction", "mean", "variance" (over compounds, ddof 0) and "maximum".

    Returns:
        A tidy DataFrame, one row per replicate and statistic: ``replicate``, ``statistic``, ``observed``,
        ``replicated_mean``, ``replicated_q05``, ``replicated_q95`` and ``ppp``, the posterior predictive
        p-value: the fraction of draws whose statistic is at least the observed one (ties count). Values
        near 0 or 1 flag a statistic the model does not reproduce.
    """
    if names is None and isinstance(observed, pd.DataFrame):
        names = [str(c) for c in observed.columns]
    observed = np.asarray(observed, dtype=np.float64)
    replicated = np.asarray(replicated, dtype=np.float64)
    if observed.ndim == 1:
        observed = observed[:, None]
        replicated = replicated[..., None]
    if replicated.ndim == 4:  # [chain, draw, ...] as in an InferenceData's posterior_predictive group
        replicated = replicated.reshape(-1, *replicated.shape[2:])
    if observed.ndim != 2 or replicated.ndim != 3 or replicated.shape[1:] != observed.shape:
        raise ValueError(
            "replicated must be [n_draws, n_compounds, n_replicates] matching observed [n_compounds, "
            f"n_replicates]; got observed {observed.shape} and replicated {replicated.shape}"
        )
    if replicated.shape[0] < 1 or observed.shape[0] < 1:
        raise ValueError("ppc_statistics needs at least one draw and one compound")
    names = [str(r) for r in range(observed.shape[1])] if names is None else [str(n) for n in names]
    if len(names) != observed.shape[1]:
        raise ValueError(f"names: {len(names)} names for {observed.shape[1]} replicates")
    unknown = [s for s in statistics if s not in PPC_STATISTICS]
    if unknown:
        raise ValueError(f"statistics {unknown} unknown; choose from {list(PPC_STATISTICS)}")
    rows = []
    for r, name in enumerate(names):
        for statistic in statistics:
            function = PPC_STATISTICS[statistic]
            value = float(function(observed[:, r], 0))
            draws = function(replicated[:, :, r], 1)
            q05, q95 = np.quantile(draws, [0.05, 0.95])
            rows.append(
                {
                    "replicate": name,
                    "statistic": statistic,
                    "observed": value,
                    "replicated_mean": float(draws.mean()),
                    "replicated_q05": float(q05),
                    "replicated_q95": float(q95),
                    "ppp": float(np.mean(draws >= value)),
                }
            )
    return pd.DataFrame(rows)
