"""Count distributions of DEL reads, parameterized in log space.

:func:`count_distribution` gives the distribution of a replicate's reads from its log rate (the mean
before zero inflation), and, as the likelihood asks, zero-inflation gate logits and a log NB
concentration. Everything stays in logits and log rates: a gate probability underflows where its logit
does not, and a rate of 10^6 reads is an ordinary log rate of 14.

- ``"poisson"``: Poisson(rate), written out in the log rate (:class:`LogRatePoisson`).
- ``"zip"``: with probability sigmoid(gate_logits) a structural zero, else Poisson(rate).
- ``"nb"``: negative binomial with mean rate and concentration c: variance rate + rate^2 / c, with
  logits log rate - log c.
- ``"zinb"``: zero-inflated negative binomial.
"""

from __future__ import annotations

import math
from typing import ClassVar

import pyro.distributions as dist
import torch
from pyro.distributions import constraints

__all__ = [
    "LIKELIHOODS",
    "NEGATIVE_BINOMIAL",
    "ZERO_INFLATED",
    "LogRatePoisson",
    "count_distribution",
    "log1mexp",
]

LIKELIHOODS = ("poisson", "zip", "nb", "zinb")
#: the likelihoods with a structural-zero gate, and those with an NB concentration
ZERO_INFLATED = ("zip", "zinb")
NEGATIVE_BINOMIAL = ("nb", "zinb")


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
    """The count distribution with mean ``exp(log_rate)`` before zero inflation (see the module docstring).

    ``gate_logits`` is needed by "zip" and "zinb", ``log_concentration`` by "nb" and "zinb"; both broadcast
    against ``log_rate``.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if likelihood in NEGATIVE_BINOMIAL:
        if log_concentration is None:
            raise ValueError(f"likelihood {likelihood!r} needs log_concentration")
        log_concentration = torch.as_tensor(log_concentration, dtype=log_rate.dtype, device=log_rate.device)
        base = dist.NegativeBinomial(total_count=log_concentration.exp(), logits=log_rate - log_concentration)
    else:
        base = LogRatePoisson(log_rate)
    if likelihood in ZERO_INFLATED:
        if gate_logits is None:
            raise ValueError(f"likelihood {likelihood!r} needs gate_logits")
        gate_logits = torch.as_tensor(gate_logits, dtype=log_rate.dtype, device=log_rate.device)
        shape = torch.broadcast_shapes(base.batch_shape, gate_logits.shape)
        return dist.ZeroInflatedDistribution(base.expand(shape), gate_logits=gate_logits.expand(shape))
    return base


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012): log(-expm1(x)) near 0, log1p(-exp(x))
    far below it."""
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))
