"""Baselines a model must beat, from counts alone: a naive enrichment, a building-block average, and the
field's frequentist hit call (a negative-binomial GLM of target against control replicates, DESeq2 through
``pydeseq2``, with Benjamini-Hochberg adjusted p-values)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from delpyro.data import DELData

__all__ = ["building_block_baseline", "deseq2_enrichment", "naive_enrichment"]


def naive_enrichment(data: DELData) -> np.ndarray:
    """The baseline a model must beat ``[n]``: log((mean target + 1) / (mean control + 1)) over the
    replicates, each count divided by its replicate's reads per compound (log(mean target + 1) without
    controls)."""
    target = data.target_counts / np.maximum(data.target_counts.sum(0), 1) * data.n_compounds
    if data.n_control_replicates == 0:
        return np.log(target.mean(1) + 1)
    control = data.control_counts / np.maximum(data.control_counts.sum(0), 1) * data.n_compounds
    return np.log((target.mean(1) + 1) / (control.mean(1) + 1))


def building_block_baseline(train: DELData, test: DELData) -> np.ndarray:
    """A building-block-mean baseline for ``test`` ``[n_test]``: each building block scores the mean
    naive enrichment (:func:`naive_enrichment`) of the training compounds that carry it, and a compound
    scores the mean over its cycles of its blocks' scores; a block absent from training scores the
    overall training mean."""
    if train.building_blocks is None or test.building_blocks is None:
        raise ValueError("building_blocks: the baseline needs building-block id columns in both screens")
    naive = naive_enrichment(train)
    overall = float(naive.mean())
    score = np.zeros(test.n_compounds)
    for cycle in train.building_blocks.columns:
        means = pd.Series(naive).groupby(train.building_blocks[cycle].to_numpy()).mean()
        score += test.building_blocks[cycle].map(means).fillna(overall).to_numpy(np.float64)
    return score / len(train.building_blocks.columns)


def deseq2_enrichment(
    data: DELData,
    *,
    lfc_null: float = 0.0,
    alt_hypothesis: str = "greater",
    alpha: float = 0.05,
    n_cpus: int | None = None,
) -> pd.DataFrame:
    """Each compound's enrichment in the target replicates over the control replicates by DESeq2
    (``pydeseq2``): the compounds are DESeq2's genes, the replicates its samples, the design
    ``~ condition`` (target against control), size factors by "poscounts" (a DEL table is mostly zeros,
    so the median-of-ratios ones are undefined), dispersions shrunk to a parametric trend, Wald tests.

    Args:
        data: a screen with control replicates (DESeq2 compares the two arms).
        lfc_null, alt_hypothesis: the Wald test's null log2 fold change and alternative ("greater": is
            the compound enriched by more than ``lfc_null``; "greaterAbs", "less", "lessAbs", or None for
            two-sided against ``lfc_null``).
        alpha: the FDR level DESeq2's independent filtering aims at.
        n_cpus: processes for pydeseq2 (None: its default).

    Returns:
        One row per compound, in the screen's order: ``compound_id``, ``base_mean``, ``log2_fold_change``,
        ``lfc_se``, ``p_value`` and ``p_adjusted`` (Benjamini-Hochberg; NaN where DESeq2 filtered the
        compound out: no reads, or too few for the test at ``alpha``).
    """
    if data.n_control_replicates == 0 or data.control_counts is None:
        raise ValueError("deseq2_enrichment compares target with control replicates: this screen has no controls")
    if data.n_target_replicates + data.n_control_replicates < 3:
        raise ValueError("deseq2_enrichment needs at least three replicates in all, to estimate dispersions")
    from pydeseq2.dds import DeseqDataSet  # imported here: a heavy import that only this baseline needs
    from pydeseq2.ds import DeseqStats

    genes = [f"c{i}" for i in range(data.n_compounds)]
    samples = [f"target_{r}" for r in range(data.n_target_replicates)]
    samples += [f"control_{r}" for r in range(data.n_control_replicates)]
    counts = np.concatenate([data.target_counts, data.control_counts], axis=1).T
    frame = pd.DataFrame(counts.astype(np.int64), index=samples, columns=genes)
    condition = ["target"] * data.n_target_replicates + ["control"] * data.n_control_replicates
    metadata = pd.DataFrame({"condition": condition}, index=samples)
    dds = DeseqDataSet(
        counts=frame,
        metadata=metadata,
        design="~condition",
        size_factors_fit_type="poscounts",
        refit_cooks=True,
        quiet=True,
        n_cpus=n_cpus,
    )
    dds.deseq2()
    stats = DeseqStats(
        dds,
        contrast=["condition", "target", "control"],
        alpha=alpha,
        lfc_null=lfc_null,
        alt_hypothesis=alt_hypothesis,
        quiet=True,
        n_cpus=n_cpus,
    )
    stats.summary()
    results = stats.results_df.reindex(genes)
    return pd.DataFrame(
        {
            "compound_id": np.asarray(data.compound_id),
            "base_mean": results["baseMean"].to_numpy(np.float64),
            "log2_fold_change": results["log2FoldChange"].to_numpy(np.float64),
            "lfc_se": results["lfcSE"].to_numpy(np.float64),
            "p_value": results["pvalue"].to_numpy(np.float64),
            "p_adjusted": results["padj"].to_numpy(np.float64),
        }
    )
