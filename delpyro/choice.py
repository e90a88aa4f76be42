"""Choosing a model's terms by held-out predictive fit.

:func:`choose_terms` fits each candidate set of terms to the training screen and keeps the one whose
held-out log predictive density is highest: per validation compound, log (1/S) sum_s p(reads | draw s),
over S posterior draws in which the compound's own effect, never trained, comes from its prior, averaged
over the compounds (the log-likelihoods of :func:`~delpyro.diagnostics.to_inference_data`).

The validation loss is not fit for this, nor for stopping the fits early: it takes
E_s[log p(reads | draw s)] over the prior of a new compound's own effect, which Jensen's inequality puts
below log E_s[p], by more the wider that prior. As a model learns how far compounds stray from their
building blocks, that prior widens and the validation loss rises while the predictions improve: on the
53BP1 screen, early stopping on it (patience 3) ended the network-free model at epoch 7 of 20, with a
held-out Spearman of 0.202 against 0.221 at epoch 20. So every candidate trains for the configured epochs
unless ``early_stopping_patience`` is given. ``bench/real_screens.py`` measures what is chosen on a real
screen and how the choice ranks held-out compounds.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from delpyro.config import ModelConfig
from delpyro.data import DELData
from delpyro.diagnostics import to_inference_data
from delpyro.results import FitResult
from delpyro.train import fit

__all__ = ["CANDIDATE_TERMS", "TermChoice", "choose_terms", "held_out_lpd"]

#: The candidates :func:`choose_terms` tries by default: every term the screen supports (the default
#: model), building blocks and per-compound effects without a network, and the fingerprint network alone.
CANDIDATE_TERMS: dict[str, tuple[str, ...] | None] = {
    "default": None,
    "no_network": ("building_blocks", "compound"),
    "network_only": ("fingerprint",),
}


@dataclass(frozen=True, repr=False)
class TermChoice:
    """What :func:`choose_terms` found: the ``chosen`` candidate's name and fit (``result``), every fit
    (``results``), and ``table``: one row per candidate (``candidate``, ``terms``, ``lpd``: the held-out
    log predictive density per compound, ``difference`` from the highest, ``epoch``: the epoch whose
    parameters were kept, and its ``val_loss``), highest lpd first; candidates the screen cannot take are
    listed with why (``note``) and NaN."""

    chosen: str
    result: FitResult
    results: dict[str, FitResult]
    table: pd.DataFrame

    def summary(self) -> str:
        rows = self.table.set_index("candidate")
        best = rows.loc[self.chosen]
        others = [
            f"{name} {row['difference']:+.4f}" for name, row in rows.iterrows() if name != self.chosen and row["fitted"]
        ]
        behind = f"; the others per compound: {', '.join(others)}" if others else ""
        return (
            f"chose {self.chosen!r} (terms {', '.join(best['terms'])}): held-out log predictive density "
            f"{best['lpd']:.4f} per compound{behind}"
        )

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"TermChoice: {self.summary()}"

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.summary())}</p>{self.table.to_html(index=False)}"


def choose_terms(
    train: DELData,
    val: DELData,
    config: ModelConfig | None = None,
    *,
    candidates: dict[str, tuple[str, ...] | None] | None = None,
    early_stopping_patience: int | None = None,
    num_samples: int = 100,
    **fit_kwargs: Any,
) -> TermChoice:
    """Fit each candidate and keep the one whose held-out log predictive density is highest.

    Args:
        train, val: the training screen and the validation screen whose reads judge the candidates.
        config: the settings every candidate shares (default ``ModelConfig()``); each candidate replaces
            its ``terms``.
        candidates: ``{name: terms}`` (None: every term the screen supports); default
            :data:`CANDIDATE_TERMS`. A candidate whose terms the screen cannot take (building blocks on a
            screen without building-block ids, poses without poses) is listed, not fitted.
        early_stopping_patience: stop each fit when its validation loss has not improved for this many
            epochs, and keep its best epoch; None (the default): train for ``config.epochs`` (see the
            module docstring for why the validation loss misleads here).
        num_samples: posterior draws for the log predictive density.
        fit_kwargs: passed to :func:`~delpyro.train.fit` (``epochs``, ``seed``, ``progress``,
            ``cache_dir``, ``device``, ...).

    Returns:
        :class:`TermChoice`; ``str(choice)`` says what was chosen and by how much.
    """
    if val is None or val.n_compounds == 0:
        raise ValueError("choose_terms compares held-out fit: give it a validation screen")
    config = config or ModelConfig()
    candidates = CANDIDATE_TERMS if candidates is None else candidates
    if not candidates:
        raise ValueError("choose_terms: no candidates")
    rows, results = [], {}
    for name, terms in candidates.items():
        missing = _missing_inputs(train, terms)
        if missing:
            rows.append(_row(name, terms, None, note=f"the screen has no {missing}"))
            continue
        result = fit(
            train, val, replace(config, terms=terms), early_stopping_patience=early_stopping_patience, **fit_kwargs
        )
        results[name] = result
        lpd = held_out_lpd(result, val, num_samples, cache_dir=fit_kwargs.get("cache_dir"))
        rows.append(_row(name, result.model.terms, result, lpd))
    if not results:
        raise ValueError("choose_terms: the screen takes none of the candidates (" + "; ".join(
            f"{row['candidate']}: {row['note']}" for row in rows
        ) + ")")  # fmt: skip
    table = pd.DataFrame(rows)
    chosen = str(table.loc[table["lpd"].idxmax(), "candidate"])
    table.insert(table.columns.get_loc("lpd") + 1, "difference", table["lpd"] - table["lpd"].max())
    table = table.sort_values("lpd", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return TermChoice(chosen=chosen, result=results[chosen], results=results, table=table)


def held_out_lpd(result: FitResult, data: DELData, num_samples: int = 100, cache_dir: str | None = None) -> float:
    """The log predictive density of ``data``'s reads per compound: the mean over compounds of
    log (1/S) sum_s p(reads_i | draw s), S = ``num_samples`` posterior draws (one for a model without latent
    terms, whose draws are all the same)."""
    samples = num_samples if result.model.latent_terms else 1
    idata = to_inference_data(result, data, num_samples=samples, cache_dir=cache_dir)
    log_lik = idata.log_likelihood["counts"].values.reshape(-1, data.n_compounds)  # [draws, compounds]
    return float(np.mean(logsumexp(log_lik, axis=0) - math.log(log_lik.shape[0])))


def _missing_inputs(train: DELData, terms: tuple[str, ...] | None) -> str | None:
    """What a screen lacks for ``terms`` (None: nothing)."""
    if terms is None:
        return None
    if "building_blocks" in terms and train.building_blocks is None:
        return "building-block ids"
    if "poses" in terms and train.poses is None:
        return "poses"
    return None


def _row(
    name: str, terms: tuple[str, ...] | None, result: FitResult | None, lpd: float = math.nan, note: str = ""
) -> dict[str, Any]:
    return {
        "candidate": name,
        "terms": tuple(terms) if terms is not None else ("(every term the screen supports)",),
        "fitted": result is not None,
        "lpd": lpd,
        "epoch": _kept_epoch(result) if result is not None else None,
        "val_loss": _kept_val_loss(result) if result is not None else math.nan,
        "note": note,
    }


def _kept_epoch(result: FitResult) -> int:
    """The epoch whose parameters a fit kept: early stopping's best, else the last."""
    return result.best_epoch if result.stopped_early else result.epoch


def _kept_val_loss(result: FitResult) -> float:
    """The validation loss of the epoch a fit kept (NaN when no epoch was validated)."""
    if result.stopped_early:
        return result.best_val_loss
    last = result.records[-1].get("val_loss") if result.records else None
    return math.nan if last is None else float(last)
