"""The SVI objective and its two steps: :func:`make_svi`, :func:`train_step`, :func:`eval_step`.

The pieces a notebook calls one at a time::

    encoding = Encoding.fit(train, config)
    model = DELModel(config, encoding)
    guide = make_guide(model, "auto_normal")
    svi = make_svi(model, guide, make_optim(lr=1e-3), loss="trace_elbo")
    for batch in Minibatches(encoding.encode(train), batch_size=256):
        loss = train_step(svi, batch)          # ELBO loss per compound

:func:`delpyro.fit` runs these steps in a loop of callbacks. Every Pyro call runs inside the model's own
parameter store (``model.param_scope()``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled, zero_grads
from pyro.optim import PyroOptim

from delpyro.config import LOSSES, check_choice
from delpyro.guides import ScreenedGuide
from delpyro.keys import INDEX, SCREEN_SIZE
from delpyro.model import DELModel
from delpyro.workers import flushing_subnormals

__all__ = ["MeanFieldELBO", "NonFiniteLossError", "eval_step", "make_svi", "train_step"]


class MeanFieldELBO(TraceMeanField_ELBO):
    """TraceMeanField_ELBO (analytic KL divergences where the guide's and the prior's families have one)
    for this model, whose new compounds' effects are drawn from their prior with their density masked
    out (``new_compound_effect``, integrated over, not inferred): such a site has no guide site, and
    contributes nothing, so it is left out of the sum."""

    def _differentiable_loss_particle(self, model_trace: Any, guide_trace: Any) -> tuple[Any, Any]:
        masked = [
            name
            for name, site in model_trace.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and name not in guide_trace.nodes
            and site["mask"] is False
        ]
        if masked:
            model_trace = model_trace.copy()
            for name in masked:
                model_trace.remove_node(name)
        return super()._differentiable_loss_particle(model_trace, guide_trace)


_ELBOS = {"trace_elbo": Trace_ELBO, "meanfield": MeanFieldELBO}
assert tuple(_ELBOS) == LOSSES


class NonFiniteLossError(FloatingPointError):
    """A training step gave a NaN or infinite loss or gradient; no parameter was changed by it.

    ``step`` is the step number; ``result`` (set by :func:`fit`) the FitResult in its last good state.
    """

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.result: Any = None


def make_svi(model: DELModel, guide: Any, optim: PyroOptim, loss: str = "trace_elbo") -> SVI:
    """SVI with "trace_elbo" (Trace_ELBO) or "meanfield" (:class:`MeanFieldELBO`). With per-compound effects
    the guide is wrapped in a :class:`~delpyro.guides.ScreenedGuide`, so a validation batch gets a
    held-out loss."""
    check_choice("loss", loss, LOSSES)
    if "compound" in model.terms:
        guide = ScreenedGuide(model, guide)
    return SVI(model, guide, optim, loss=_ELBOS[loss]())


def train_step(svi: SVI, batch: dict[str, Any], *, validate: bool = True, exchange: Any = None) -> float:
    """One gradient step on ``batch``; returns the loss (negative ELBO) per compound of the screen.

    A NaN or infinite loss or gradient raises :class:`NonFiniteLossError` before any parameter changes.
    ``validate=False`` skips Pyro's checks of distribution arguments and sample supports (a fifth of a
    small model's step): :func:`fit` validates the first step of a run only, when a bad shape or value in
    the data would show; later NaNs are still caught by the loss and gradient checks.

    ``exchange`` (a :class:`~delpyro.distributed.GradientExchange`, when several processes share each
    batch): called with the step's parameters, loss and finiteness after the gradients are made and before
    the optimizer moves anything; it weights and adds the gradients across the processes and returns the
    whole batch's loss and whether every process's was finite. A process whose part of the batch is empty
    takes part with zero gradients.
    """
    model = svi.model
    model.train()
    validation = pyro.validation_enabled(validate and is_validation_enabled())
    with model.param_scope(), validation, flushing_subnormals():
        if exchange is not None and len(batch[INDEX]) == 0:
            params = exchange.parameters()
            loss = 0.0
        else:
            with poutine.trace(param_only=True) as capture:
                try:
                    loss = svi.loss_and_grads(svi.model, svi.guide, batch)
                except (ValueError, torch.linalg.LinAlgError) as err:
                    # a distribution checks its arguments (NaN or infinite rates are reported this way), and
                    # a divergence can surface as a covariance that is no longer positive definite
                    if isinstance(err, ValueError) and "invalid values" not in str(err):
                        raise
                    zero_grads({site["value"].unconstrained() for site in capture.trace.nodes.values()})
                    raise NonFiniteLossError(
                        f"the parameters diverged: a distribution could not be made ({err})"
                    ) from None
            params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
        finite = math.isfinite(loss) and _finite_gradients(params)
        if exchange is not None:
            loss, finite = exchange(params, float(loss), finite, batch)
        if not finite:
            zero_grads(params)
            raise NonFiniteLossError(f"the loss or its gradient is not finite (loss {loss})")
        svi.optim(params)
        zero_grads({p for p in params if p.grad is None or not p.grad.is_sparse})
        for p in params:  # a sparse gradient is dropped, not zeroed: the next one starts anew
            if p.grad is not None and p.grad.is_sparse:
                p.grad = None
    return float(loss) / batch[SCREEN_SIZE]


def _finite_gradients(params: Iterable[torch.Tensor]) -> bool:
    """Whether every gradient is finite. The fast check is one fused L2 norm per gradient (NaN and inf
    propagate into it); only when a norm is not finite, which a huge finite gradient can also cause, are
    the elements looked at one by one."""
    grads = [p.grad._values() if p.grad.is_sparse else p.grad for p in params if p.grad is not None]
    if not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
        return True
    return all(bool(torch.isfinite(g).all()) for g in grads)


def eval_step(svi: SVI, batch: dict[str, Any]) -> float:
    """The loss per compound on ``batch`` without a gradient or any parameter change (dropout off)."""
    model = svi.model
    with model.evaluating(), model.param_scope(), torch.no_grad(), flushing_subnormals(), warnings.catch_warnings():
        # held-out compounds draw their own effects from the prior, which the guide does not hold
        warnings.filterwarnings("ignore", message="Found vars in model but not guide")
        warnings.filterwarnings("ignore", message="Found plate statements in guide but not model")
        loss = svi.evaluate_loss(batch)
    return float(loss) / batch[SCREEN_SIZE]
