"""Count distributions: log probabilities against scipy from zero to 10^6 reads and at extreme gates,
finite and correct gradients, sampled moments."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from delpyro.distributions import LIKELIHOODS, LogRatePoisson, count_distribution

COUNTS = [0.0, 1.0, 7.0, 1e3, 1e6]
LOG_RATES = [-20.0, -3.0, 0.0, 2.5, 14.0]  # exp(14) is about 1.2e6
GATE_LOGITS = [-30.0, 0.0, 30.0]
LOG_CONCENTRATIONS = [-5.0, 0.0, 8.0]


# ---------------------------------------------------------------------------------------------------
# references, written with numpy and scipy only


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def poisson_ref(k: np.ndarray, log_rate: np.ndarray) -> np.ndarray:
    return stats.poisson.logpmf(k, np.exp(log_rate))


def nb_scipy(k: np.ndarray, log_rate: np.ndarray, log_c: np.ndarray) -> np.ndarray:
    """scipy's own negative binomial: n = c, p = c / (c + mu)."""
    mu, c = np.exp(log_rate), np.exp(log_c)
    return stats.nbinom.logpmf(k, c, c / (c + mu))


def nb_ref(k: np.ndarray, log_rate: np.ndarray, log_c: np.ndarray) -> np.ndarray:
    """The same pmf with log p and log(1 - p) taken in log space.

    scipy.stats.nbinom only takes p, and 1 - p = mu / (c + mu) loses all its digits when mu << c
    (log_rate -20, log c 8), so over the full grid the reference is written out with scipy.special:
    log C(k + c - 1, k) + c log(c / (c + mu)) + k log(mu / (c + mu)).
    """
    c = np.exp(log_c)
    log_total = np.logaddexp(log_rate, log_c)
    coefficient = special.gammaln(c + k) - special.gammaln(k + 1.0) - special.gammaln(c)
    return coefficient + c * (log_c - log_total) + k * (log_rate - log_total)


def zero_inflated_ref(k: np.ndarray, gate_logits: np.ndarray, base_log_pmf: np.ndarray) -> np.ndarray:
    """log(pi + (1 - pi) f(0)) at zero, log(1 - pi) + log f(k) elsewhere, with pi = sigmoid(gate_logits)."""
    log_pi = -softplus(-gate_logits)
    log_not_pi = -softplus(gate_logits)
    at_zero = np.logaddexp(log_pi, log_not_pi + base_log_pmf)
    return np.where(k == 0, at_zero, log_not_pi + base_log_pmf)


def reference(likelihood: str, k, log_rate, gate_logits=None, log_c=None) -> np.ndarray:
    k, log_rate = np.asarray(k, dtype=np.float64), np.asarray(log_rate, dtype=np.float64)
    if likelihood in ("poisson", "zip"):
        base = poisson_ref(k, log_rate)
    else:
        base = nb_ref(k, log_rate, np.asarray(log_c, dtype=np.float64))
    if likelihood in ("zip", "zinb"):
        return zero_inflated_ref(k, np.asarray(gate_logits, dtype=np.float64), base)
    return base


def grid(likelihood: str) -> dict[str, np.ndarray]:
    """Every combination of count, log rate and (where the likelihood has them) gate and concentration."""
    gates = GATE_LOGITS if likelihood in ("zip", "zinb") else [np.nan]
    concentrations = LOG_CONCENTRATIONS if likelihood in ("nb", "zinb") else [np.nan]
    rows = np.array(list(itertools.product(COUNTS, LOG_RATES, gates, concentrations)), dtype=np.float64)
    return {"k": rows[:, 0], "log_rate": rows[:, 1], "gate_logits": rows[:, 2], "log_c": rows[:, 3]}


def torch_log_prob(likelihood: str, k, log_rate, gate_logits, log_c, dtype=torch.float64) -> torch.Tensor:
    def tensor(x):
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=dtype)

    distribution = count_distribution(
        likelihood,
        tensor(log_rate),
        tensor(gate_logits) if likelihood in ("zip", "zinb") else None,
        tensor(log_c) if likelihood in ("nb", "zinb") else None,
    )
    return distribution.log_prob(tensor(k))


# ---------------------------------------------------------------------------------------------------
# log probabilities


def test_references_agree_with_scipy_stats_where_p_is_well_conditioned() -> None:
    # The log-space negative binomial reference is scipy's nbinom wherever 1 - p keeps its digits.
    g = grid("nb")
    ok = g["log_rate"] >= g["log_c"]
    assert ok.sum() > 20
    np.testing.assert_allclose(
        nb_ref(g["k"][ok], g["log_rate"][ok], g["log_c"][ok]),
        nb_scipy(g["k"][ok], g["log_rate"][ok], g["log_c"][ok]),
        rtol=1e-11,
        atol=1e-9,
    )
    # and at p -> 1 scipy's value is off while the log-space one is not (a check of the reference itself)
    exact = -20.0 - np.log1p(np.exp(-28.0)) * (1 + np.exp(8.0))  # k = 1: log c*mu/(c+mu) - c log(1+mu/c)
    assert nb_ref(1.0, -20.0, 8.0) == pytest.approx(exact, abs=1e-10)
    assert nb_scipy(1.0, -20.0, 8.0) != pytest.approx(exact, abs=1e-6)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_prob_matches_scipy_over_extreme_grid(likelihood: str) -> None:
    g = grid(likelihood)
    got = torch_log_prob(likelihood, g["k"], g["log_rate"], g["gate_logits"], g["log_c"]).numpy()
    expected = reference(likelihood, g["k"], g["log_rate"], g["gate_logits"], g["log_c"])
    assert np.all(np.isfinite(expected))
    bad = ~np.isclose(got, expected, rtol=1e-9, atol=1e-9)
    assert not bad.any(), {
        name: values[bad][:5].tolist() for name, values in {**g, "got": got, "expected": expected}.items()
    }


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_negative_binomial_matches_scipy_stats_directly(likelihood: str) -> None:
    # n = c, p = c / (c + mu): scipy.stats.nbinom as is, on the part of the grid where p is not near 1.
    g = grid(likelihood)
    ok = g["log_rate"] >= g["log_c"]
    base = nb_scipy(g["k"][ok], g["log_rate"][ok], g["log_c"][ok])
    if likelihood == "zinb":
        expected = zero_inflated_ref(g["k"][ok], g["gate_logits"][ok], base)
    else:
        expected = base
    got = torch_log_prob(likelihood, g["k"][ok], g["log_rate"][ok], g["gate_logits"][ok], g["log_c"][ok])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_poisson_is_scipy_poisson_written_out() -> None:
    log_rate = torch.tensor([-20.0, 0.0, 14.0], dtype=torch.float64)
    k = torch.tensor([1e6, 0.0, 0.0], dtype=torch.float64)
    got = LogRatePoisson(log_rate).log_prob(k).numpy()
    # 1e6 * (-20) - exp(-20) - log(1e6!), -1, -exp(14)
    expected = np.array([-2e7 - np.exp(-20.0) - special.gammaln(1e6 + 1), -1.0, -np.exp(14.0)])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got, stats.poisson.logpmf(k.numpy(), np.exp(log_rate.numpy())), rtol=1e-12)


def test_zero_inflation_extremes_by_hand() -> None:
    # gate logit +30: nearly every zero is structural, a nonzero count pays about -30 on top of f(k)
    k = torch.tensor([0.0, 7.0], dtype=torch.float64)
    log_rate = torch.tensor(2.0, dtype=torch.float64)
    got = count_distribution("zip", log_rate, gate_logits=torch.tensor(30.0, dtype=torch.float64)).log_prob(k)
    f7 = stats.poisson.logpmf(7, np.exp(2.0))
    assert got[0].item() == pytest.approx(-np.exp(-30.0) * (1 - np.exp(-np.exp(2.0))), rel=1e-6)
    assert got[1].item() == pytest.approx(-30.0 - np.log1p(np.exp(-30.0)) + f7, rel=1e-12)
    # gate logit -30 with a huge rate: a zero is almost only possible as a structural zero
    log_rate = torch.tensor(14.0, dtype=torch.float64)
    got = count_distribution("zip", log_rate, gate_logits=torch.tensor(-30.0, dtype=torch.float64)).log_prob(k)
    assert got[0].item() == pytest.approx(-30.0 - np.log1p(np.exp(-30.0)), rel=1e-12)
    # gate 0: pi = 1/2 exactly
    got = count_distribution("zinb", torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)).log_prob(k.float())
    # NB with mu = c = 1 is geometric with p = 1/2: f(0) = 1/2, f(7) = 2^-8
    np.testing.assert_allclose(got.numpy(), [np.log(0.5 + 0.25), np.log(0.5 * 2.0**-8)], rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    likelihood=st.sampled_from(LIKELIHOODS),
    k=st.integers(0, 1_000_000),
    log_rate=st.floats(-20.0, 14.0),
    gate_logits=st.floats(-30.0, 30.0),
    log_c=st.floats(-5.0, 8.0),
)
def test_log_prob_matches_reference_anywhere_in_range(likelihood, k, log_rate, gate_logits, log_c) -> None:
    got = torch_log_prob(likelihood, float(k), log_rate, gate_logits, log_c).item()
    expected = float(reference(likelihood, float(k), log_rate, gate_logits, log_c))
    # lgamma of arguments near 1e7 carries a few 1e-9 of rounding in either computation
    assert got == pytest.approx(expected, rel=1e-9, abs=5e-8)


def test_batch_shapes_broadcast() -> None:
    log_rate = torch.zeros(3, 2)
    d = count_distribution("zinb", log_rate, gate_logits=torch.tensor(0.5), log_concentration=torch.zeros(2))
    assert d.batch_shape == (3, 2)
    assert d.sample((4,)).shape == (4, 3, 2)
    assert d.log_prob(torch.ones(3, 2)).shape == (3, 2)
    p = LogRatePoisson(torch.zeros(2)).expand((5, 2))
    assert p.batch_shape == (5, 2)
    assert p.sample().shape == (5, 2)


def test_count_distribution_rejects_bad_arguments() -> None:
    log_rate = torch.zeros(2)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        count_distribution("gaussian", log_rate)
    with pytest.raises(ValueError, match="needs log_concentration"):
        count_distribution("nb", log_rate, gate_logits=torch.zeros(2))
    with pytest.raises(ValueError, match="needs log_concentration"):
        count_distribution("zinb", log_rate, gate_logits=torch.zeros(2))
    with pytest.raises(ValueError, match="needs gate_logits"):
        count_distribution("zip", log_rate)


# ---------------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_gradients_are_finite_at_extremes(likelihood: str, dtype: torch.dtype) -> None:
    g = grid(likelihood)
    log_rate = torch.tensor(g["log_rate"], dtype=dtype, requires_grad=True)
    gate_logits = torch.tensor(g["gate_logits"], dtype=dtype, requires_grad=True)
    log_c = torch.tensor(g["log_c"], dtype=dtype, requires_grad=True)
    k = torch.tensor(g["k"], dtype=dtype)
    distribution = count_distribution(
        likelihood,
        log_rate,
        gate_logits if likelihood in ("zip", "zinb") else None,
        log_c if likelihood in ("nb", "zinb") else None,
    )
    log_prob = distribution.log_prob(k)
    assert torch.isfinite(log_prob).all()
    log_prob.sum().backward()
    assert torch.isfinite(log_rate.grad).all()
    # the hardest corners of the grid: a million reads at rate 2e-9, no reads at rate 1.2e6
    for count, rate in [(1e6, -20.0), (0.0, 14.0)]:
        rows = (g["k"] == count) & (g["log_rate"] == rate)
        assert rows.any() and torch.isfinite(log_rate.grad[rows]).all()
    if likelihood in ("zip", "zinb"):
        assert torch.isfinite(gate_logits.grad).all()
    if likelihood in ("nb", "zinb"):
        assert torch.isfinite(log_c.grad).all()


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_gradients_match_finite_differences(likelihood: str) -> None:
    log_rate = torch.tensor([-1.0, 0.3, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    gate_logits = torch.tensor([-2.0, 0.0, 1.5, -0.5], dtype=torch.float64, requires_grad=True)
    log_c = torch.tensor([-1.0, 0.5, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    k = torch.tensor([0.0, 1.0, 0.0, 40.0], dtype=torch.float64)

    def f(log_rate, gate_logits, log_c):
        return torch_log_prob(likelihood, k, log_rate, gate_logits, log_c)

    assert torch.autograd.gradcheck(f, (log_rate, gate_logits, log_c))


def test_poisson_gradient_is_k_minus_rate() -> None:
    log_rate = torch.tensor([-20.0, 0.0, 14.0], dtype=torch.float64, requires_grad=True)
    k = torch.tensor([1e6, 3.0, 0.0], dtype=torch.float64)
    count_distribution("poisson", log_rate).log_prob(k).sum().backward()
    np.testing.assert_allclose(log_rate.grad.numpy(), k.numpy() - np.exp([-20.0, 0.0, 14.0]), rtol=1e-12)


# ---------------------------------------------------------------------------------------------------
# sampled moments

N_DRAWS = 200_000
MU, GATE_LOGIT, LOG_C = 4.0, -1.0, np.log(2.0)


def moments_by_hand(likelihood: str) -> tuple[float, float]:
    """Mean and variance of the zero-inflated or plain count, from the base's first two moments."""
    pi = 1.0 / (1.0 + np.exp(-GATE_LOGIT)) if likelihood in ("zip", "zinb") else 0.0
    c = np.exp(LOG_C)
    base_variance = MU + MU**2 / c if likelihood in ("nb", "zinb") else MU
    mean = (1 - pi) * MU
    variance = (1 - pi) * (base_variance + MU**2) - mean**2
    return mean, variance


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_sampled_mean_is_one_minus_gate_times_rate(likelihood: str) -> None:
    torch.manual_seed(0)
    d = count_distribution(
        likelihood,
        torch.full((N_DRAWS,), np.log(MU), dtype=torch.float64),
        torch.tensor(GATE_LOGIT, dtype=torch.float64),
        torch.tensor(LOG_C, dtype=torch.float64),
    )
    draws = d.sample().numpy()
    assert np.all(draws >= 0) and np.all(draws == np.round(draws))
    mean, variance = moments_by_hand(likelihood)
    standard_error = np.sqrt(variance / N_DRAWS)
    assert abs(draws.mean() - mean) < 4 * standard_error
    assert d.mean.numpy() == pytest.approx(mean, rel=1e-12)


def test_sampled_negative_binomial_variance_is_mu_plus_mu_squared_over_c() -> None:
    torch.manual_seed(1)
    d = count_distribution("nb", torch.full((N_DRAWS,), np.log(MU)), log_concentration=torch.tensor(LOG_C))
    draws = d.sample().double().numpy()
    c = np.exp(LOG_C)
    variance = MU + MU**2 / c
    _, scipy_variance, _, excess_kurtosis = stats.nbinom.stats(c, c / (c + MU), moments="mvsk")
    assert scipy_variance == pytest.approx(variance, rel=1e-12)
    # standard error of a sample variance: sqrt((mu_4 - sigma^4) / n)
    standard_error = np.sqrt((excess_kurtosis + 2.0) * variance**2 / N_DRAWS)
    assert abs(draws.var(ddof=1) - variance) < 4 * standard_error
    # far from the Poisson variance, so the concentration really is used
    assert draws.var() > MU + 20 * standard_error
