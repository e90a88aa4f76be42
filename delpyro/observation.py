"""The observation model: how read counts arise from enrichments, replicate depth and load.

For compound i, control replicate r and target replicate s (natural logs throughout)::

    log control rate[i, r] = log depth_r + log load_i + log m_i
    log target rate[i, s]  = log depth_s + log load_i + log combine(m_i, t_i)
    combine = m + t ("additive", computed as logaddexp) | m * t ("multiplicative", a sum of logs)
    count ~ Poisson | ZIP | NB | ZINB (rate, gate logits, concentration)

``log depth`` is the library-size offset of each replicate (log of its column total over the number of
compounds, from the training screen) and ``log load`` the pre-selection abundance offset; both can be
turned off. Without control replicates there is no matrix arm and the target rate uses t alone. Rates are
kept in log space, so nothing overflows at large counts; zero-inflated distributions take gate logits.
Replicates are a plate (dim -1) inside the compound plate (dim -2): no Python loop over replicates.

Globals can be latent, with priors, so that the guide approximates their posterior:

- ``gates="global"``: each arm's gate probability ~ Beta(a, b) (``<arm>_gate``); ``gates="per_compound"``
  takes each compound's gate logits from the network instead (``values["<arm>_gate_logits"]``, ``[batch, 1]``);
- ``concentration="latent"``: each arm's NB concentration ~ LogNormal(log c0, 1.5) (``<arm>_concentration``);
- ``depth_deviation > 0``: each replicate's log depth gets a deviation ~ Normal(0, depth_deviation) around
  its library-size offset (``<arm>_depth_deviation``), for replicates whose library size misstates the
  selection's yield.

:meth:`Observation.sample_globals` draws them outside the compound plate; ``forward`` uses them.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn

from delpyro.data import DELDataError

__all__ = [
    "LIKELIHOODS",
    "LogRatePoisson",
    "Observation",
    "count_distribution",
    "load_offset",
    "log_depth_offsets",
]

LIKELIHOODS = ("poisson", "zip", "nb", "zinb")


class LogRatePoisson(dist.TorchDistribution):
    """A Poisson distribution parameterized by its log rate: log p(k) = k log_rate - exp(log_rate) - log k!."""

    arg_constraints: ClassVar[dict] = {"log_rate": constraints.real}
    support = constraints.nonnegative_integer

    def __init__(self, log_rate: torch.Tensor, validate_args: bool | None = None) -> None:
        self.log_rate = log_rate
        super().__init__(log_rate.shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.log_rate.exp()

    @property
    def variance(self) -> torch.Tensor:
        return self.log_rate.exp()

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LogRatePoisson, _instance)
        new.log_rate = self.log_rate.expand(batch_shape)
        super(LogRatePoisson, new).__init__(torch.Size(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            return torch.poisson(self.log_rate.exp().expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return value * self.log_rate - self.log_rate.exp() - torch.lgamma(value + 1.0)


def count_distribution(
    likelihood: str,
    log_rate: torch.Tensor,
    gate_logits: torch.Tensor | None = None,
    log_concentration: torch.Tensor | None = None,
) -> dist.TorchDistribution:
    """The count distribution with mean ``exp(log_rate)`` before zero inflation.

    - ``"poisson"``: Poisson(rate).
    - ``"zip"``: with probability sigmoid(gate_logits) a structural zero, else Poisson(rate).
    - ``"nb"``: negative binomial with mean rate and concentration c = exp(log_concentration):
      variance rate + rate^2 / c (logits = log_rate - log c).
    - ``"zinb"``: zero-inflated negative binomial.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if likelihood in ("poisson", "zip"):
        base = LogRatePoisson(log_rate)
    else:
        if log_concentration is None:
            raise ValueError(f"likelihood {likelihood!r} needs log_concentration")
        log_concentration = torch.as_tensor(log_concentration, dtype=log_rate.dtype, device=log_rate.device)
        base = dist.NegativeBinomial(total_count=log_concentration.exp(), logits=log_rate - log_concentration)
    if likelihood in ("zip", "zinb"):
        if gate_logits is None:
            raise ValueError(f"likelihood {likelihood!r} needs gate_logits")
        gate_logits = torch.as_tensor(gate_logits, dtype=log_rate.dtype, device=log_rate.device)
        shape = torch.broadcast_shapes(base.batch_shape, gate_logits.shape)
        return dist.ZeroInflatedDistribution(base.expand(shape), gate_logits=gate_logits.expand(shape))
    return base


def log_depth_offsets(counts: np.ndarray, names: list[str], arm: str) -> np.ndarray:
    """float64 ``[n_replicates]``: log(column total / n_compounds), library-size normalization.

    A replicate without reads cannot be normalized: a DELDataError names it.
    """
    counts = np.asarray(counts)
    if counts.shape[1] == 0:
        return np.zeros(0)
    totals = counts.sum(axis=0).astype(np.float64)
    empty = [names[j] for j in np.flatnonzero(totals == 0)]
    if empty:
        raise DELDataError(f"{arm} replicates {empty} hold no reads: their depth cannot be normalized")
    return np.log(totals / counts.shape[0])


def load_offset(load: np.ndarray) -> tuple[float, float]:
    """``(pseudocount, log_mean)`` so that the offset is log(load + pseudocount) - log_mean.

    Whole-number loads (pre-selection counts) get a pseudocount of 0.5; relative abundances half their
    smallest positive value. ``log_mean`` centres the offset: log of the mean of load + pseudocount.
    """
    load = np.asarray(load, dtype=np.float64)
    if np.all(load == np.round(load)):
        pseudocount = 0.5
    else:
        positive = load[load > 0]
        pseudocount = 0.5 * float(positive.min()) if positive.size else 1.0
    return pseudocount, float(np.log(np.mean(load + pseudocount)))


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


class Observation(nn.Module):
    """Count likelihoods of the control and target replicates, given log enrichments ``[batch]``.

    Args:
        likelihood: "poisson" | "zip" | "nb" | "zinb".
        combine: "additive" (target rate from m + t) | "multiplicative" (m * t).
        gates: "fixed" (``control_gate`` and ``target_gate`` as given) | "learned" (point estimates,
            initialized there).
        log_depth_target, log_depth_control: per-replicate offsets ``[n_replicates]`` (zeros: no normalization).
        nb_concentration: initial NB concentration per arm (learned, a point estimate).
    """

    def __init__(
        self,
        likelihood: str,
        combine: str,
        gates: str,
        control_gate: float,
        target_gate: float,
        log_depth_target: np.ndarray,
        log_depth_control: np.ndarray,
        nb_concentration: float,
        concentration: str = "learned",
        depth_deviation: float = 0.0,
        gate_prior: tuple[float, float] = (1.0, 1.0),
        matrix_shift: str = "none",
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if combine not in ("additive", "multiplicative"):
            raise ValueError(f"combine must be 'additive' or 'multiplicative', got {combine!r}")
        if gates not in ("fixed", "learned", "global", "per_compound"):
            raise ValueError(f"gates must be 'fixed', 'learned', 'global' or 'per_compound', got {gates!r}")
        if concentration not in ("learned", "latent"):
            raise ValueError(f"concentration must be 'learned' or 'latent', got {concentration!r}")
        if depth_deviation < 0 or min(gate_prior) <= 0:
            raise ValueError("depth_deviation must be >= 0 and the gate prior's parameters positive")
        if matrix_shift not in ("learned", "latent", "none"):
            raise ValueError(f"matrix_shift must be 'learned', 'latent' or 'none', got {matrix_shift!r}")
        for name, value in [("control_gate", control_gate), ("target_gate", target_gate)]:
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")
        self.likelihood = likelihood
        self.combine = combine
        self.gates = gates
        self.zero_inflated = likelihood in ("zip", "zinb")
        self.negative_binomial = likelihood in ("nb", "zinb")
        self.register_buffer("log_depth_target", torch.as_tensor(log_depth_target, dtype=torch.float32))
        self.register_buffer("log_depth_control", torch.as_tensor(log_depth_control, dtype=torch.float32))
        self.initial_gate_logits = {"control": _logit(control_gate), "target": _logit(target_gate)}
        self.initial_log_concentration = math.log(nb_concentration)
        self.concentration = concentration
        self.depth_deviation = float(depth_deviation)
        self.gate_prior = (float(gate_prior[0]), float(gate_prior[1]))
        self.matrix_shift = matrix_shift

    def arms(self) -> list[str]:
        return ["control", "target"] if self.has_control else ["target"]

    def replicate_plates(self) -> dict[str, pyro.plate]:
        """One plate per arm over its replicates (dim -1), made once per model call and entered as needed."""
        return {
            arm: pyro.plate(f"{arm}_replicates", getattr(self, f"log_depth_{arm}").numel(), dim=-1)
            for arm in self.arms()
        }

    def sample_globals(self, plates: dict[str, pyro.plate]) -> dict[str, torch.Tensor]:
        """Draw the latent globals (outside the compound plate); returns what ``forward`` needs."""
        values: dict[str, torch.Tensor] = {}
        device = self.log_depth_target.device
        for arm in self.arms():
            if self.zero_inflated and self.gates == "global":
                a, b = (torch.tensor(v, device=device) for v in self.gate_prior)
                gate = pyro.sample(f"{arm}_gate", dist.Beta(a, b)).clamp(1e-6, 1 - 1e-6)
                values[f"{arm}_gate_logits"] = gate.log() - (-gate).log1p()
            if self.negative_binomial and self.concentration == "latent":
                prior = dist.LogNormal(torch.tensor(self.initial_log_concentration, device=device), 1.5)
                values[f"{arm}_log_concentration"] = pyro.sample(f"{arm}_concentration", prior).log()
            if arm == "target" and self.uses_matrix_shift:
                if self.matrix_shift == "latent":
                    prior = dist.Normal(torch.tensor(0.0, device=device), 1.0)
                    values["target_matrix_shift"] = pyro.sample("target_matrix_shift", prior)
                else:
                    values["target_matrix_shift"] = pyro.param(
                        "observation.target_matrix_shift", torch.tensor(0.0, device=device)
                    )
            if self.depth_deviation > 0:
                depth = getattr(self, f"log_depth_{arm}")
                with plates[arm]:
                    values[f"{arm}_depth_deviation"] = pyro.sample(
                        f"{arm}_depth_deviation", dist.Normal(torch.zeros_like(depth), self.depth_deviation)
                    )
        return values

    @property
    def uses_matrix_shift(self) -> bool:
        return self.matrix_shift != "none" and self.combine == "additive" and self.has_control

    @property
    def has_control(self) -> bool:
        return self.log_depth_control.numel() > 0

    def gate_logits(self, arm: str, values: dict[str, torch.Tensor] | None = None) -> torch.Tensor | None:
        if not self.zero_inflated:
            return None
        if self.gates in ("global", "per_compound"):  # per compound: [batch, 1], from the network
            return (values or {})[f"{arm}_gate_logits"]
        initial = torch.tensor(self.initial_gate_logits[arm], device=self.log_depth_target.device)
        if self.gates == "fixed":
            return initial
        return pyro.param(f"observation.{arm}_gate_logits", initial)

    def log_concentration(self, arm: str, values: dict[str, torch.Tensor] | None = None) -> torch.Tensor | None:
        if not self.negative_binomial:
            return None
        if self.concentration == "latent":
            return (values or {})[f"{arm}_log_concentration"]
        initial = torch.tensor(self.initial_log_concentration, device=self.log_depth_target.device)
        return pyro.param(f"observation.{arm}_log_concentration", initial)

    def log_target_arm(
        self, log_target: torch.Tensor, log_matrix: torch.Tensor | None, values: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """log combine(m, t) ``[batch]``: what the target selection retains, before depth and load."""
        if log_matrix is None or not self.has_control:
            return log_target
        if self.combine == "additive":
            shift = (values or {}).get("target_matrix_shift")
            return torch.logaddexp(log_matrix if shift is None else log_matrix + shift, log_target)
        return log_matrix + log_target

    def forward(
        self,
        log_target: torch.Tensor,
        log_matrix: torch.Tensor | None,
        log_load: torch.Tensor | None,
        batch: dict[str, torch.Tensor],
        values: dict[str, torch.Tensor] | None = None,
        plates: dict[str, pyro.plate] | None = None,
    ) -> None:
        """Sample (observe, when the batch has counts) ``control_counts`` and ``target_counts``.

        Must be called inside the compound plate (dim -2); enrichments and load are ``[batch]``;
        ``values`` are the latent globals from :meth:`sample_globals`, ``plates`` the replicate plates
        from :meth:`replicate_plates` (made here when not given).
        """
        values = values or {}
        plates = plates or self.replicate_plates()
        offset = 0.0 if log_load is None else log_load.unsqueeze(-1)
        if self.has_control:
            if log_matrix is None:
                raise ValueError("a screen with control replicates needs a log matrix enrichment term")
            log_rate = log_matrix.unsqueeze(-1) + offset + self._log_depth("control", values)
            with plates["control"]:
                pyro.sample(
                    "control_counts",
                    count_distribution(
                        self.likelihood,
                        log_rate,
                        self.gate_logits("control", values),
                        self.log_concentration("control", values),
                    ),
                    obs=batch.get("control_counts"),
                )
        log_rate = (
            self.log_target_arm(log_target, log_matrix, values).unsqueeze(-1)
            + offset
            + self._log_depth("target", values)
        )
        with plates["target"]:
            pyro.sample(
                "target_counts",
                count_distribution(
                    self.likelihood,
                    log_rate,
                    self.gate_logits("target", values),
                    self.log_concentration("target", values),
                ),
                obs=batch.get("target_counts"),
            )

    def _log_depth(self, arm: str, values: dict[str, torch.Tensor]) -> torch.Tensor:
        depth = getattr(self, f"log_depth_{arm}")
        deviation = values.get(f"{arm}_depth_deviation")
        return depth if deviation is None else depth + deviation
