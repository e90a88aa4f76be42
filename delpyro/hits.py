r"""Hit calls from a prediction, with the posterior expected false discovery rate held at a level.

A compound is a hit when its log target enrichment exceeds the prediction's threshold (``p_enriched`` is
the posterior probability of that, :func:`delpyro.posterior.predict`). Its local false discovery rate is
the posterior probability that it is not one, ``lfdr_i = 1 - p_enriched_i``. Calling the k compounds of
smallest lfdr makes, in expectation under the posterior, ``sum of their lfdr`` false calls, so the posterior
expected FDR of that call is their mean lfdr (Müller, Parmigiani and Rice 2006; Newton et al. 2004).
:func:`call_hits` calls the largest such set whose mean stays at or below the level: it controls the
FDR the model believes in, and holds the realized FDR near the level as far as the posterior is
calibrated (``bench/hits.py`` measures how far on the simulator).

``p_enriched`` comes from Monte Carlo draws (``num_samples`` of :func:`~delpyro.posterior.predict`), so
lfdr is known to about 1 / num_samples: a compound every draw puts above the threshold gets lfdr 0.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["HitCalls", "call_hits"]

#: the prediction columns a hit table carries along, when the prediction has them
CARRIED = ("compound_id", "log_enrichment_mean", "log_enrichment_q05", "log_enrichment_q95", "p_enriched")


@dataclass(frozen=True, repr=False)
class HitCalls:
    """The outcome of :func:`call_hits`.

    ``table`` holds every compound of the prediction, most certain first: the prediction's id, mean,
    90% interval and ``p_enriched``, then ``lfdr`` (1 - p_enriched), ``expected_fdr`` (the posterior
    expected FDR of calling every compound down to that row: a Bayesian q-value) and ``called``. Its
    index is the compound's row in the prediction.
    """

    table: pd.DataFrame
    fdr: float
    threshold: float | None
    what: str = "enriched"

    @property
    def hits(self) -> pd.DataFrame:
        """The called compounds (rows of ``table``)."""
        return self.table[self.table["called"]]

    @property
    def n_called(self) -> int:
        return int(self.table["called"].sum())

    @property
    def expected_fdr(self) -> float:
        """The posterior expected FDR of the call (0 when nothing is called)."""
        called = self.hits
        return float(called["lfdr"].mean()) if len(called) else 0.0

    @property
    def expected_false(self) -> float:
        """The posterior expected number of false calls among the called."""
        return float(self.hits["lfdr"].sum())

    def summary(self) -> str:
        """One sentence: how many were called, at what level, and what "hit" means here."""
        where = "" if self.threshold is None else f" (log enrichment above {self.threshold:.3g})"
        return (
            f"called {self.n_called:,} of {len(self.table):,} compounds as {self.what}{where} at posterior "
            f"expected FDR <= {self.fdr:g}: expected FDR of the call {self.expected_fdr:.3f}, "
            f"about {self.expected_false:.1f} false"
        )

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"HitCalls: {self.summary()}"

    def _repr_html_(self) -> str:
        head = self.hits.head(20).to_html(float_format=lambda v: f"{v:.3g}")
        return f"<p>{html.escape(self.summary())}</p>{head}"


def call_hits(
    prediction: pd.DataFrame, fdr: float = 0.05, *, column: str = "p_enriched", what: str = "enriched"
) -> HitCalls:
    """Call hits at posterior expected false discovery rate ``fdr``.

    Args:
        prediction: a table of :func:`~delpyro.posterior.predict` (``FitResult.predict``), or any table
            with a posterior probability of being a hit in ``column``; its ``attrs["threshold"]`` (the
            log enrichment a hit exceeds) is reported.
        fdr: the level, in (0, 1).
        column: the column of hit probabilities.
        what: what a hit is, for the summary ("enriched"; "selective for CA2", ...).

    Returns:
        :class:`HitCalls`: every compound ranked by local fdr, the called ones marked, and a summary
        (``str(calls)``, or the notebook's display) that says how many were called.
    """
    if not 0.0 < fdr < 1.0:
        raise ValueError(f"fdr must be in (0, 1), got {fdr}")
    if column not in prediction.columns:
        raise ValueError(f"prediction: no column {column!r} (columns: {', '.join(map(str, prediction.columns))})")
    probability = pd.to_numeric(prediction[column], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~((probability >= 0.0) & (probability <= 1.0)))
    if bad.size:
        rows = ", ".join(str(int(r)) for r in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(f"prediction column {column!r}: {bad.size} values outside [0, 1] or missing (rows {rows})")
    lfdr = 1.0 - probability
    order = np.argsort(lfdr, kind="stable")
    running = np.cumsum(lfdr[order]) / np.arange(1, lfdr.size + 1)
    # the running mean of sorted values never decreases, so the called set is a prefix
    n_called = int(np.searchsorted(running, fdr, side="right"))
    carried = [name for name in CARRIED if name in prediction.columns and name != column]
    table = prediction.iloc[order][carried].copy()
    table[column] = probability[order]
    table["lfdr"] = lfdr[order]
    table["expected_fdr"] = running
    table["called"] = np.arange(lfdr.size) < n_called
    table.index = prediction.index[order]
    threshold = prediction.attrs.get("threshold")
    threshold = None if threshold is None else float(threshold)
    return HitCalls(table=table, fdr=float(fdr), threshold=threshold, what=what)
