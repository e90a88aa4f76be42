"""Inference: the guide, optimizer and SVI builders, the training and evaluation steps, fit, checkpoints.

The pieces a notebook calls one at a time::

    model = DELModel(config, train)
    guide = make_guide(model, "auto_normal")
    svi = make_svi(model, guide, make_optim(lr=1e-3), loss="trace_elbo")
    for batch in Minibatches(model.arrays(train), batch_size=256):
        loss = train_step(svi, batch)          # ELBO loss per compound

and :func:`fit`, which runs those steps with an exponential moving average of the parameters,
validation, early stopping, callbacks, progress and checkpoints, and returns a :class:`FitResult`.
Every Pyro call runs inside the model's own parameter store (``model.param_scope()``).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoDelta, AutoGuideList, AutoLowRankMultivariateNormal, AutoNormal
from pyro.infer.util import is_validation_enabled, zero_grads
from pyro.nn import PyroParam
from pyro.optim import PyroOptim
from pyro.optim.clipped_adam import ClippedAdam as _TorchClippedAdam

from delpyro.data import DELData, Minibatches
from delpyro.model import DataSpec, DELModel, ModelConfig
from delpyro.terms import family_effects, screened_positions
from delpyro.widgets import make_progress

__all__ = [
    "EMA",
    "FitResult",
    "NonFiniteLossError",
    "RowwiseClippedAdam",
    "eval_step",
    "fit",
    "load",
    "make_guide",
    "make_optim",
    "make_svi",
    "train_step",
]

GUIDES = {"auto_normal": AutoNormal, "auto_lowrank": AutoLowRankMultivariateNormal, "auto_delta": AutoDelta}
LOSSES = {"trace_elbo": Trace_ELBO, "meanfield": TraceMeanField_ELBO}
CHECKPOINT_FORMAT = 2


class NonFiniteLossError(FloatingPointError):
    """A training step gave a NaN or infinite loss or gradient; no parameter was changed by it.

    ``step`` is the step number; ``result`` (set by :func:`fit`) the FitResult in its last good state.
    """

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.result: FitResult | None = None


# ---------------------------------------------------------------------------------------------------
# builders and steps


def make_guide(model: DELModel, kind: str = "auto_normal") -> pyro.nn.PyroModule:
    """The variational family: "auto_normal" (mean field), "auto_lowrank" (low-rank multivariate normal
    over the globals; per-compound effects stay mean field) or "auto_delta" (a point estimate, MAP). Its
    parameters live in the model's parameter store."""
    if kind not in GUIDES:
        raise ValueError(f"guide must be one of {sorted(GUIDES)}, got {kind!r}")
    with model.param_scope():
        if kind != "auto_lowrank":
            return GUIDES[kind](model, create_plates=model.create_plates)
        if "compound" not in model.term_names:
            return GUIDES[kind](model)
        # a low-rank normal over the globals; the per-compound effects, local to the subsampled plate,
        # stay mean field (a joint covariance over every compound would not fit in memory)
        guide = AutoGuideList(model, create_plates=model.create_plates)
        guide.append(AutoLowRankMultivariateNormal(poutine.block(model, hide=["compound_effect"])))
        guide.append(AutoNormal(poutine.block(model, expose=["compound_effect"])))  # the list's plates
        return guide


class RowwiseClippedAdam(_TorchClippedAdam):
    """Pyro's ClippedAdam, with an option for parameters whose rows belong to compounds.

    With ``rowwise=True`` a parameter's rows (its first dimension: one per screened compound) each keep
    their own Adam moments and step count, which advance only on steps where that row has a gradient,
    that is, when its compound is in the batch. Plain Adam would keep moving a row by its decaying
    momentum on every later step of the epoch while its second moment decays: over an epoch of n steps a
    row would move about ``lr * sqrt(n)`` instead of ``lr``, which made large screens drift. Row gradients
    are not clipped: each row's step is already bounded by about ``lr``.
    """

    def __init__(self, params: Any, *args: Any, rowwise: bool = False, **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        for group in self.param_groups:
            group["rowwise"] = rowwise

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> Any:
        if not any(group["rowwise"] for group in self.param_groups):
            return super().step(closure)
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            group["lr"] *= group["lrd"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is not None:
                    _rowwise_update(p, self.state[p], group["lr"], beta1, beta2, group["eps"], group["weight_decay"])
        return loss


class FusedClippedAdam(PyroOptim):
    """The optimizer of :func:`make_optim`: ClippedAdam for every parameter of the store, in one step.

    Pyro's ``PyroOptim`` builds one torch optimizer per parameter and steps each in turn, which costs a
    Python call chain and a dozen small kernels per parameter per step (a model with building blocks has
    about 80 parameters). This class keeps the same per-parameter arguments (``optim_args(name)``), the
    same state per parameter (checkpoints are interchangeable with ``PyroOptim``'s) and the same
    arithmetic, but updates all ordinary parameters with ``torch._foreach_*`` kernels: grouped by their
    shared arguments, one kernel per Adam operation. Parameters with ``rowwise=True`` (per-compound rows)
    keep :class:`RowwiseClippedAdam`'s update. Like ClippedAdam, gradients are clamped elementwise to
    ``[-clip_norm, clip_norm]`` and every parameter's learning rate is multiplied by ``lrd`` at each
    step it takes part in.
    """

    def __init__(self, optim_args: Callable[[str], dict[str, Any]]) -> None:
        super().__init__(RowwiseClippedAdam, optim_args)
        self._entries: dict[torch.Tensor, dict[str, Any]] = {}

    def _register(self, p: torch.Tensor) -> dict[str, Any]:
        name = pyro.get_param_store().param_name(p)
        args = {"eps": 1e-8, "weight_decay": 0.0, "clip_norm": 10.0, "lrd": 1.0, "betas": (0.9, 0.999)}
        args.update(self.pt_optim_args(name))
        entry = {"name": name, "args": args, "lr": float(args["lr"]), "state": {}}
        saved = self._state_waiting_to_be_consumed.pop(name, None)
        if saved is not None:  # the per-parameter state_dict of a torch optimizer (PyroOptim's layout)
            entry["lr"] = float(saved["param_groups"][0]["lr"])
            state = saved["state"].get(0, {})
            entry["state"] = {k: (v.to(p.device) if torch.is_tensor(v) else v) for k, v in state.items()}
        self._entries[p] = entry
        return entry

    @torch.no_grad()
    def __call__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        groups: dict[tuple, list[tuple[torch.Tensor, dict[str, Any]]]] = {}
        for p in params:
            entry = self._entries.get(p) or self._register(p)
            entry["lr"] *= entry["args"]["lrd"]  # as ClippedAdam: at every step, with a gradient or not
            if p.grad is None:
                continue
            if entry["args"].get("rowwise"):
                self._rowwise_step(p, entry)
                continue
            a = entry["args"]
            key = (a["clip_norm"], tuple(a["betas"]), a["eps"], a["weight_decay"])
            groups.setdefault(key, []).append((p, entry))
        for (clip, (beta1, beta2), eps, weight_decay), members in groups.items():
            ps = [p for p, _ in members]
            grads = [p.grad for p in ps]
            torch._foreach_clamp_min_(grads, -clip)
            torch._foreach_clamp_max_(grads, clip)
            for p, entry in members:
                state = entry["state"]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
            if weight_decay != 0:
                grads = torch._foreach_add(grads, ps, alpha=weight_decay)
            exp_avgs = [entry["state"]["exp_avg"] for _, entry in members]
            exp_avg_sqs = [entry["state"]["exp_avg_sq"] for _, entry in members]
            torch._foreach_mul_(exp_avgs, beta1)
            torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            denominators = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_add_(denominators, eps)
            steps = [
                -entry["lr"] * math.sqrt(1 - beta2 ** entry["state"]["step"]) / (1 - beta1 ** entry["state"]["step"])
                for _, entry in members
            ]
            torch._foreach_addcdiv_(ps, exp_avgs, denominators, steps)

    def _rowwise_step(self, p: torch.Tensor, entry: dict[str, Any]) -> None:
        a = entry["args"]
        beta1, beta2 = a["betas"]
        _rowwise_update(p, entry["state"], entry["lr"], beta1, beta2, a["eps"], a["weight_decay"])

    def get_state(self) -> dict[str, Any]:
        """Per parameter name, the state_dict a per-parameter torch optimizer would have (PyroOptim's layout)."""
        out = {}
        for entry in self._entries.values():
            group = dict(entry["args"])
            group.update(lr=entry["lr"], params=[0])
            state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in entry["state"].items()}
            out[entry["name"]] = {"state": {0: state} if state else {}, "param_groups": [group]}
        return out


def _rowwise_update(
    p: torch.Tensor,
    state: dict[str, torch.Tensor],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Adam on the rows of ``p`` that have a gradient, each with its own moments and step count (kept in
    ``state``, made on the first update)."""
    grad = p.grad.reshape(p.shape[0], -1)
    rows = grad.ne(0).any(1).nonzero().squeeze(1)
    if rows.numel() == 0:
        return
    if not state:
        state.update(
            step=torch.zeros(p.shape[0], dtype=p.dtype, device=p.device),
            exp_avg=torch.zeros_like(grad),
            exp_avg_sq=torch.zeros_like(grad),
        )
    g = grad[rows]
    values = p.data.reshape(p.shape[0], -1)
    if weight_decay != 0:
        g = g + weight_decay * values[rows]
    steps = state["step"][rows] + 1
    state["step"][rows] = steps
    m = state["exp_avg"][rows].mul_(beta1).add_(g, alpha=1 - beta1)
    v = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(g, g, value=1 - beta2)
    state["exp_avg"][rows] = m
    state["exp_avg_sq"][rows] = v
    m_hat = m / (1 - beta1**steps).unsqueeze(1)
    v_hat = v / (1 - beta2**steps).unsqueeze(1)
    values[rows] -= lr * m_hat / (v_hat.sqrt() + eps)


def make_optim(
    lr: float = 1e-3,
    clip_norm: float = 10.0,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    lr_decay: float = 1.0,
    lr_decay_steps: int = 1000,
    local_lr: float | None = None,
    guide_lr: float | None = None,
) -> PyroOptim:
    """Pyro's ClippedAdam; the learning rate is multiplied by ``lr_decay`` over ``lr_decay_steps`` steps.

    ``local_lr`` is the learning rate of the per-compound guide parameters (names holding
    "compound_effect"), which move only when their compound is in the batch, once an epoch, each row by
    its own Adam state (:class:`RowwiseClippedAdam`); ``guide_lr``
    that of the other guide parameters (the latent globals: names starting "Auto"); None: ``lr``.
    Hierarchical effects in a non-centred form move slowly at a network's learning rate.
    """
    if lr_decay <= 0 or lr_decay_steps < 1:
        raise ValueError("lr_decay must be positive and lr_decay_steps at least 1")
    for name, value in (("local_lr", local_lr), ("guide_lr", guide_lr)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    shared = {
        "clip_norm": clip_norm,
        "betas": tuple(betas),
        "weight_decay": weight_decay,
        "lrd": lr_decay ** (1.0 / lr_decay_steps),
    }

    def arguments(name: str) -> dict[str, Any]:
        if "compound_effect" in name:
            return {**shared, "lr": local_lr or lr, "rowwise": True}
        if name.startswith("Auto") and guide_lr is not None:
            return {**shared, "lr": guide_lr, "rowwise": False}
        return {**shared, "lr": lr, "rowwise": False}

    return FusedClippedAdam(arguments)


def make_svi(model: DELModel, guide: Callable, optim: PyroOptim, loss: str = "trace_elbo") -> SVI:
    """SVI with "trace_elbo" (Trace_ELBO) or "meanfield" (TraceMeanField_ELBO)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if "compound" in model.term_names:
        guide = _ScreenedGuide(model, guide)
    return SVI(model, guide, optim, loss=LOSSES[loss]())


class _ScreenedGuide:
    """The guide as SVI runs it on a model with per-compound effects: on a batch without any compound of
    the training screen (a validation screen), the per-compound site is left out, so the model draws
    those effects from the prior (``new_compound_effect``) and the loss is a held-out one."""

    def __init__(self, model: DELModel, guide: Callable) -> None:
        self.model = model
        self.guide = guide

    def __call__(self, batch: dict[str, Any]) -> Any:
        _build_prototype(self.guide, self.model)
        _, screened = screened_positions(batch)
        if bool(screened.any()):
            return self.guide(batch)
        # AutoNormal draws the effect through an auxiliary site "compound_effect_unconstrained", which sits
        # in the subsampled plate too (scaled by the training screen's size): both are left out
        return poutine.block(self.guide, hide_fn=lambda msg: msg["name"].startswith("compound_effect"))(batch)


def train_step(svi: SVI, batch: dict[str, Any], *, validate: bool = True) -> float:
    """One gradient step on ``batch``; returns the loss (negative ELBO) per compound of the screen.

    A NaN or infinite loss or gradient raises :class:`NonFiniteLossError` before any parameter changes.
    ``validate=False`` skips Pyro's checks of distribution arguments and sample supports (a fifth of a
    small model's step): :func:`fit` validates the first step of a run only, when a bad shape or value in
    the data would show; later NaNs are still caught by the loss and gradient checks.
    """
    model = svi.model
    model.train()
    with model.param_scope(), pyro.validation_enabled(validate and is_validation_enabled()):
        with poutine.trace(param_only=True) as capture:
            try:
                loss = svi.loss_and_grads(svi.model, svi.guide, batch)
            except ValueError as err:
                # a distribution checks its arguments: NaN or infinite rates are reported this way
                if "invalid values" not in str(err):
                    raise
                zero_grads({site["value"].unconstrained() for site in capture.trace.nodes.values()})
                raise NonFiniteLossError(f"a distribution received NaN or infinite parameters ({err})") from None
        params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
        if not math.isfinite(loss) or not _finite_gradients(params):
            zero_grads(params)
            raise NonFiniteLossError(f"the loss or its gradient is not finite (loss {loss})")
        svi.optim(params)
        zero_grads(params)
    return float(loss) / batch["size"]


def _finite_gradients(params: Iterable[torch.Tensor]) -> bool:
    """Whether every gradient is finite. The fast check is one fused L2 norm per gradient (NaN and inf
    propagate into it); only when a norm is not finite, which a huge finite gradient can also cause, are
    the elements looked at one by one."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
        return True
    return all(bool(torch.isfinite(g).all()) for g in grads)


def eval_step(svi: SVI, batch: dict[str, Any]) -> float:
    """The loss per compound on ``batch`` without a gradient or any parameter change (dropout off)."""
    model = svi.model
    was_training = model.training
    model.eval()
    try:
        with model.param_scope(), torch.no_grad(), warnings.catch_warnings():
            # held-out compounds draw their own effects from the prior, which the guide does not hold
            warnings.filterwarnings("ignore", message="Found vars in model but not guide")
            warnings.filterwarnings("ignore", message="Found plate statements in guide but not model")
            loss = svi.evaluate_loss(batch)
    finally:
        model.train(was_training)
    return float(loss) / batch["size"]


# ---------------------------------------------------------------------------------------------------
# moving average of the parameters


class EMA:
    """Exponential moving average of every parameter in a model's store (for evaluation and prediction).

    At update k the decay is min(decay, (1 + k) / (10 + k)), so the average forgets the random start.
    """

    def __init__(self, decay: float | None) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {}

    def update(self) -> None:
        """Call inside the model's param scope, after an optimizer step."""
        if self.decay is None:
            return
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        with torch.no_grad():
            shadows, values = [], []
            for name, value in pyro.get_param_store().named_parameters():
                if name in self.shadow:
                    shadows.append(self.shadow[name])
                    values.append(value.detach())
                else:
                    self.shadow[name] = value.detach().clone()
            if shadows:  # shadow = decay * shadow + (1 - decay) * value, in two fused kernels
                torch._foreach_mul_(shadows, decay)
                torch._foreach_add_(shadows, values, alpha=1.0 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged values in place of the parameters (inside the model's param scope)."""
        if not self.shadow:
            yield
            return
        saved = {}
        store = dict(pyro.get_param_store().named_parameters())
        with torch.no_grad():
            for name, value in self.shadow.items():
                if name in store:
                    saved[name] = store[name].detach().clone()
                    store[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    store[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = state["decay"]
        self.updates = state["updates"]
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}


# ---------------------------------------------------------------------------------------------------
# the result of a fit


@dataclass(eq=False)
class FitResult:
    """A fitted model: configuration, model, guide, SVI (with its optimizer), moving average and history."""

    config: ModelConfig
    model: DELModel
    guide: Any
    svi: SVI
    ema: EMA
    seed: int = 0
    epoch: int = 0
    step: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    best_val_loss: float = math.inf
    stopped_early: bool = False
    #: training ended by a Stop request (the display's button, or a callback's ``stop_requested``)
    stopped_by_user: bool = False

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch: epoch, train_loss, val_loss (NaN without validation data), seconds."""
        return pd.DataFrame(self.records, columns=["epoch", "train_loss", "val_loss", "seconds"])

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """The model's parameter scope with the moving-average parameters in place."""
        with self.model.param_scope(), self.ema.applied():
            yield

    def evaluate(self, data: DELData, batch_size: int = 4096, *, cache_dir: str | None = None) -> float:
        """Loss (negative ELBO) per compound on ``data``, with the averaged parameters."""
        batches = Minibatches(
            self.model.arrays(data, cache_dir=cache_dir), batch_size, shuffle=False, device=self.model.device
        )
        return _evaluate(self, batches)

    def global_sites(self) -> list[str]:
        """Names of the model's latent sites outside the compound plate (gates, concentrations, depth
        deviations, ``bb_scale`` and ``bb_z``; :meth:`sample_globals` splits the last two by family)."""
        trace = getattr(self.guide, "prototype_trace", None)
        if trace is None:
            raise RuntimeError("the guide has not been run yet: fit the model first")
        return [
            name
            for name, site in trace.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and all(frame.name not in ("compounds", "screened") for frame in site["cond_indep_stack"])
        ]

    def sample_globals(self, num_samples: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
        """Draws of every latent global from the guide (averaged parameters): ``{name: [num_samples, ...]}``,
        with the building-block sites split by arm and family (``bb_target_scale_cycle1``,
        ``bb_target_cycle1``, ...; see :meth:`~delpyro.terms.BuildingBlockTerm.named`)."""
        return self.model.named_globals(self.sample_sites(num_samples, seed))

    def sample_sites(self, num_samples: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
        """Draws of every latent global site from the guide, under the model's site names."""
        names = self.global_sites()
        batch = {"index": torch.zeros(1, dtype=torch.long), "size": 1}
        draws: dict[str, list[np.ndarray]] = {name: [] for name in names}
        with torch.random.fork_rng(), self.averaged(), torch.no_grad():
            torch.manual_seed(seed)
            for _ in range(num_samples):
                trace = poutine.trace(self.guide).get_trace(batch)
                for name in names:
                    draws[name].append(trace.nodes[name]["value"].cpu().numpy())
        return {name: np.stack(values) for name, values in draws.items()}

    def globals_summary(self, num_samples: int = 1000, seed: int = 0) -> pd.DataFrame:
        """Posterior mean, sd and 5/50/95% quantiles of every latent global, one row per element."""
        rows = []
        for name, draws in self.sample_globals(num_samples, seed).items():
            flat = draws.reshape(num_samples, -1)
            for j in range(flat.shape[1]):
                column = flat[:, j]
                q05, q50, q95 = np.quantile(column, [0.05, 0.5, 0.95])
                rows.append(
                    {
                        "site": name,
                        "element": j,
                        "mean": column.mean(),
                        "sd": column.std(ddof=1),
                        "q05": q05,
                        "q50": q50,
                        "q95": q95,
                    }
                )
        return pd.DataFrame(rows, columns=["site", "element", "mean", "sd", "q05", "q50", "q95"])

    def building_block_effects(self, arm: str = "target", num_samples: int = 1000, seed: int = 0) -> pd.DataFrame:
        """Posterior of every building block's effect (natural log) on one arm ("target" or "matrix"):
        one row per block, with ``cycle``, ``building_block``, ``mean``, ``sd``, ``q05``, ``q50``, ``q95``."""
        vocabulary = self.model.spec.bb_vocabulary
        if vocabulary is None:
            raise ValueError("this model has no 'building_blocks' term")
        draws = self.sample_globals(num_samples, seed)
        frames = []
        for cycle, ids in vocabulary.items():
            effects = _family_draws(draws, arm, cycle, num_samples)
            frames.append(_effect_summary(effects[:, : len(ids)], {"cycle": cycle, "building_block": ids}))
        return pd.concat(frames, ignore_index=True)

    def disynthon_effects(
        self, cycles: tuple[str, str] | None = None, arm: str = "target", num_samples: int = 1000, seed: int = 0
    ) -> pd.DataFrame:
        """Posterior of the disynthon (pair) interaction effects (``ModelConfig(bb_pairs=True)``), in the layout
        of :meth:`building_block_effects`: one row per pair of blocks seen in training, with ``cycle`` (the
        family, "cycle1+cycle2"), ``building_block`` ("A001+B003"), ``block_a``, ``block_b``, ``mean``, ``sd``,
        ``q05``, ``q50``, ``q95``. These are interactions only: a disynthon's effect on a compound is its two
        blocks' effects plus this. ``cycles`` picks one family (either order); default every family."""
        spec = self.model.spec
        if spec.bb_vocabulary is None:
            raise ValueError("this model has no 'building_blocks' term")
        families = list(spec.pair_keys or {})
        if not families:
            raise ValueError("this model has no disynthon families (ModelConfig(bb_pairs=True) adds them)")
        if cycles is not None:
            a, b = cycles
            families = [f for f in (f"{a}+{b}", f"{b}+{a}") if f in families][:1]
            if not families:
                raise ValueError(f"no disynthon family for cycles {cycles}; the families are {list(spec.pair_keys)}")
        draws = self.sample_globals(num_samples, seed)
        frames = []
        for family in families:
            first, second = family.split("+")
            width = len(spec.bb_vocabulary[second]) + 1
            keys = np.asarray(spec.pair_keys[family], dtype=np.int64)
            block_a = [spec.bb_vocabulary[first][k] for k in keys // width]
            block_b = [spec.bb_vocabulary[second][k] for k in keys % width]
            effects = _family_draws(draws, arm, family, num_samples, keys // width, keys % width)
            labels = {
                "cycle": family,
                "building_block": [f"{x}+{y}" for x, y in zip(block_a, block_b, strict=True)],
                "block_a": block_a,
                "block_b": block_b,
            }
            frames.append(_effect_summary(effects[:, : len(keys)], labels))
        return pd.concat(frames, ignore_index=True)

    def predict(self, data: DELData, num_samples: int = 200, batch_size: int = 4096, **kwargs: Any) -> pd.DataFrame:
        """Posterior summaries per compound: see :func:`delpyro.posterior.predict`."""
        from delpyro.posterior import predict  # the implementation lives with the other posterior summaries

        return predict(self, data, num_samples=num_samples, batch_size=batch_size, **kwargs)

    def to_inference_data(self, data: DELData, num_samples: int = 200, compounds: Any = None, **kwargs: Any) -> Any:
        """The fit on ``data`` as an ``arviz.InferenceData``, computed in batches of compounds.

        Groups: ``posterior`` (every latent global with named dims: gates, concentrations, depth
        deviations by replicate, building-block and disynthon draws and their effects by block id; and
        per compound: ``log_target_enrichment``, ``log_matrix_enrichment``, ``compound_target_effect``,
        ``compound_matrix_effect``), ``posterior_predictive`` (``control_counts``, ``target_counts``),
        ``log_likelihood`` (``counts``: per compound, summed over its replicates and arms, so that LOO
        leaves out a compound), ``observed_data`` and ``constant_data`` (log depth offsets per replicate,
        load). Draws come from the guide as one chain (``num_samples`` of them); for :func:`run_nuts`
        results from its chains (thinned to ``num_samples`` per chain), so r_hat and ESS mean something.
        ``compounds`` (ids, positions or a boolean mask) selects a subset; ``batch_size``, ``seed`` and
        ``cache_dir`` go to :func:`delpyro.posterior.to_inference_data`. Save with ``idata.to_netcdf(path)``.
        """
        from delpyro.posterior import to_inference_data

        return to_inference_data(self, data, num_samples=num_samples, compounds=compounds, **kwargs)

    # ---- checkpoints ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self.model.param_scope():
            store = pyro.get_param_store()
            params = {name: value.detach().clone() for name, value in store.named_parameters()}
            constraints = {name: store._constraints[name] for name in params}
            # keyed by parameter names, so read inside the scope; a loaded state not yet used is kept too
            optim_state = {**self.svi.optim._state_waiting_to_be_consumed, **self.svi.optim.get_state()}
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "spec": asdict(self.model.spec),
            "model_state": {k: v.clone() for k, v in self.model.state_dict().items()},
            "params": params,
            "constraints": constraints,
            "optim_state": optim_state,
            "ema": self.ema.state_dict(),
            "seed": self.seed,
            "epoch": self.epoch,
            "step": self.step,
            "records": list(self.records),
            "best_val_loss": self.best_val_loss,
            "stopped_early": self.stopped_early,
            "stopped_by_user": self.stopped_by_user,
            "rng": pyro.util.get_rng_state(),
        }

    def save(self, path: str | Path) -> Path:
        """Write one checkpoint file (atomically: a temporary file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(handle)
        try:
            torch.save(self.state(), temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return path


def _family_draws(
    draws: dict[str, np.ndarray],
    arm: str,
    family: str,
    num_samples: int,
    rows: np.ndarray | None = None,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """``[num_samples, n_slots]`` effects of one building-block family from draws of the globals (centred as
    the model centres them; ``rows``/``columns``: a pair family's blocks)."""
    key = f"bb_{arm}_{family}"
    if key not in draws:
        raise ValueError(f"no building-block effects on the {arm!r} arm")
    scale = torch.as_tensor(draws[f"bb_{arm}_scale_{family}"].reshape(-1))
    z = torch.as_tensor(draws[key].reshape(num_samples, -1))
    if rows is None:
        return family_effects(scale, z).numpy()
    return family_effects(scale, z, torch.as_tensor(rows), torch.as_tensor(columns)).numpy()


def _effect_summary(effects: np.ndarray, labels: dict[str, Any]) -> pd.DataFrame:
    """One row per column of ``effects`` ``[draws, n]``: the labels, then mean, sd, q05, q50, q95."""
    q05, q50, q95 = np.quantile(effects, [0.05, 0.5, 0.95], axis=0)
    frame = pd.DataFrame(labels, index=range(effects.shape[1]))
    frame["mean"], frame["sd"] = effects.mean(0), effects.std(0, ddof=1)
    frame["q05"], frame["q50"], frame["q95"] = q05, q50, q95
    return frame


def _build(config: ModelConfig, model: DELModel) -> tuple[Any, SVI, EMA]:
    guide = make_guide(model, config.guide)
    optim = make_optim(
        config.lr,
        config.clip_norm,
        config.betas,
        config.weight_decay,
        config.lr_decay,
        config.lr_decay_steps,
        local_lr=config.local_lr,
        guide_lr=config.guide_lr,
    )
    return guide, make_svi(model, guide, optim, config.loss), EMA(config.ema_decay)


def _build_guide(result: FitResult) -> None:
    """An autoguide builds itself by tracing the model once. Doing it on a forked random state keeps a
    resumed run drawing the same numbers as a run straight through; parameters already in the store (a
    loaded checkpoint) are taken as they are."""
    _build_prototype(result.guide, result.model)


def _build_prototype(guide: Any, model: DELModel) -> None:
    """Trace the model once into an autoguide not built yet, on an example batch and a forked random state."""
    if getattr(guide, "prototype_trace", True) is None:
        with torch.random.fork_rng(), model.param_scope(), poutine.block():
            stored = set(pyro.get_param_store().keys())
            guide(model.example_batch())
            _init_local_scales(guide, model.config.local_init_scale, stored)


def _init_local_scales(guide: Any, value: float, stored: set[str]) -> None:
    """Start the guide's per-compound scales at ``value`` (unless ``stored``, from a checkpoint): most
    compounds of a sparse screen keep a posterior close to the prior, and a scale far below it takes many
    epochs (one step each) to grow."""
    for part in guide if isinstance(guide, AutoGuideList) else [guide]:
        scales = getattr(part, "scales", None)
        if not isinstance(part, AutoNormal) or scales is None or not hasattr(scales, "compound_effect"):
            continue
        if scales._pyro_get_fullname("compound_effect") not in stored:
            old = scales.compound_effect.detach()
            event_dim = part._event_dims["compound_effect"]
            scales.compound_effect = PyroParam(torch.full_like(old, value), part.scale_constraint, event_dim)


def load(path: str | Path, *, restore_rng: bool = True) -> FitResult:
    """Read a checkpoint written by :meth:`FitResult.save`; training can go on with ``fit(..., resume=)``.

    ``restore_rng`` also sets the global random state to the one saved, so that resumed training draws
    the same numbers as training straight through would have.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        if found == 1:
            raise ValueError(
                f"{path}: a checkpoint of format 1, written before building-block effects became two sample "
                f"sites (format {CHECKPOINT_FORMAT}); its guide parameters do not fit this model: fit again"
            )
        raise ValueError(f"{path}: not a delpyro checkpoint of format {CHECKPOINT_FORMAT}")
    config = ModelConfig.from_dict(state["config"])
    model = DELModel(config, spec=DataSpec(**state["spec"]))
    model.load_state_dict(state["model_state"])
    guide, svi, ema = _build(config, model)
    with model.param_scope():
        pyro.module("networks", model.terms)  # the networks' own tensors, now holding the saved values
        store = pyro.get_param_store()
        own = dict(store.named_parameters())
        rest = {k: v.detach().requires_grad_(True) for k, v in state["params"].items() if k not in own}
        store.set_state({"params": rest, "constraints": {k: state["constraints"][k] for k in rest}})
    svi.optim.set_state(state["optim_state"])
    ema.load_state_dict(state["ema"])
    result = FitResult(
        config=config,
        model=model,
        guide=guide,
        svi=svi,
        ema=ema,
        seed=state["seed"],
        epoch=state["epoch"],
        step=state["step"],
        records=list(state["records"]),
        best_val_loss=state["best_val_loss"],
        stopped_early=state["stopped_early"],
        stopped_by_user=state.get("stopped_by_user", False),
    )
    _build_guide(result)
    if restore_rng:
        pyro.util.set_rng_state(state["rng"])
    return result


# ---------------------------------------------------------------------------------------------------
# fit


def _evaluate(result: FitResult, batches: Minibatches) -> float:
    total = 0.0
    with result.averaged():
        for batch in batches:
            total += eval_step(result.svi, batch) * len(batch["index"])
    return total / batches.n


def _snapshot(result: FitResult) -> dict[str, Any]:
    with result.model.param_scope():
        params = {name: value.detach().clone() for name, value in pyro.get_param_store().named_parameters()}
    return {"params": params, "ema": result.ema.state_dict()}


def _restore(result: FitResult, snapshot: dict[str, Any]) -> None:
    with result.model.param_scope(), torch.no_grad():
        for name, value in pyro.get_param_store().named_parameters():
            if name in snapshot["params"]:
                value.copy_(snapshot["params"][name])
    result.ema.load_state_dict(snapshot["ema"])


def fit(
    train: DELData,
    val: DELData | None = None,
    config: ModelConfig | None = None,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: str = "auto",
    callbacks: Iterable[Callable[[str, dict[str, Any]], None]] = (),
    checkpoint_dir: str | Path | None = None,
    early_stopping_patience: int | None = None,
    resume: FitResult | str | Path | None = None,
    cache_dir: str | None = None,
    device: str | torch.device | None = None,
) -> FitResult:
    """Fit a model to a screen by SVI and return a :class:`FitResult`.

    Args:
        train, val: the training screen and an optional validation screen (same replicates).
        config: a :class:`ModelConfig` (default ``ModelConfig()``); ``epochs`` and ``batch_size`` override it.
        seed: seeds the weights, the batch order and every draw; the same seed gives the same fit.
        progress: "auto" (a live widget in JupyterLab, text lines elsewhere; the environment variable
            ``DELPYRO_PROGRESS`` overrides that choice) | "text" | "widget" | "none". See
            :class:`delpyro.widgets.TrainingMonitor`.
        callbacks: callables ``callback(event, info)``: event "step" (info: step, epoch, loss, compounds in
            the batch, epochs, steps_per_epoch), "epoch" (info: the history row) and "end" (info:
            {"result": FitResult}). A callback (or the progress display) whose ``stop_requested`` attribute
            is true after a step ends training there: that epoch is closed on the steps done (its row,
            validation and checkpoint as usual), ``result.stopped_by_user`` is set, and
            ``fit(..., resume=result)`` goes on from the next epoch.
        checkpoint_dir: write ``checkpoint.pt`` there after every epoch.
        early_stopping_patience: stop when the validation loss has not improved for this many epochs, and
            keep the best epoch's parameters.
        resume: a FitResult or a checkpoint path; training goes on from its epoch up to ``epochs``.
        cache_dir: where fingerprints are cached.
        device: where to train ("cpu", "cuda", a torch.device; default the CPU). The screen's arrays are
            moved there once, and batches are sliced there; the result stays on that device, and
            ``predict`` runs there too. A checkpoint loads on the CPU.

    The training loss is the negative ELBO per compound over each epoch's steps (as they happened); the
    validation loss is computed with the moving-average parameters. A NaN or infinite loss stops training
    with :class:`NonFiniteLossError` naming the step; its ``result`` keeps the last good state.
    """
    if resume is not None:
        result = resume if isinstance(resume, FitResult) else load(resume)
        config = result.config
        seed = result.seed
    else:
        config = config or ModelConfig()
        pyro.set_rng_seed(seed)
        model = DELModel(config, train)
        if device is not None:
            model.to(device)
        guide, svi, ema = _build(config, model)
        result = FitResult(config=config, model=model, guide=guide, svi=svi, ema=ema, seed=seed)
    epochs = config.epochs if epochs is None else epochs
    batch_size = config.batch_size if batch_size is None else batch_size
    model = result.model
    if resume is not None and device is not None and torch.device(device) != model.device:
        raise ValueError(f"device: the run to resume lives on {model.device}; resume it there")
    batches = Minibatches(
        model.arrays(train, cache_dir=cache_dir), batch_size, shuffle=True, seed=seed, device=model.device
    )
    batches.epoch = result.epoch
    val_batches = (
        Minibatches(model.arrays(val, cache_dir=cache_dir), max(batch_size, 1024), shuffle=False, device=model.device)
        if val is not None
        else None
    )
    _build_guide(result)
    callbacks = list(callbacks)
    reporter = make_progress(progress, epochs)
    best = _snapshot(result) if early_stopping_patience and val is not None else None
    epochs_without_improvement = 0
    result.stopped_by_user = False
    first_step = result.step
    try:
        for epoch in range(result.epoch, epochs):
            started = time.perf_counter()
            total = 0.0
            seen = 0
            for batch in batches:
                try:
                    loss = train_step(result.svi, batch, validate=result.step == first_step)
                except NonFiniteLossError as err:
                    err.step = result.step + 1
                    err.result = result
                    err.args = (f"training stopped at step {err.step} (epoch {epoch + 1}): {err.args[0]}",)
                    raise
                with model.param_scope():
                    result.ema.update()
                result.step += 1
                total += loss * len(batch["index"])
                seen += len(batch["index"])
                info = {
                    "step": result.step,
                    "epoch": epoch + 1,
                    "loss": loss,
                    "compounds": len(batch["index"]),
                    "epochs": epochs,
                    "steps_per_epoch": len(batches),
                }
                reporter.step(info)
                for callback in callbacks:
                    callback("step", info)
                if any(getattr(listener, "stop_requested", False) for listener in (reporter, *callbacks)):
                    result.stopped_by_user = True
                    break
            val_loss = _evaluate(result, val_batches) if val_batches is not None else math.nan
            row = {
                "epoch": epoch + 1,
                "train_loss": total / seen,
                "val_loss": val_loss,
                "seconds": time.perf_counter() - started,
            }
            result.records.append(row)
            result.epoch = epoch + 1
            reporter.epoch(row)
            for callback in callbacks:
                callback("epoch", row)
            if best is not None:
                if val_loss < result.best_val_loss:
                    result.best_val_loss = val_loss
                    best = _snapshot(result)
                    epochs_without_improvement = 0
                else:
                    epochs_without_improvement += 1
            elif val_batches is not None:
                result.best_val_loss = min(result.best_val_loss, val_loss)
            if checkpoint_dir is not None:
                result.save(Path(checkpoint_dir) / "checkpoint.pt")
            if best is not None and epochs_without_improvement >= early_stopping_patience:
                _restore(result, best)
                result.stopped_early = True
                break
            if result.stopped_by_user:
                break
    finally:
        reporter.close()
    for callback in callbacks:
        callback("end", {"result": result})
    return result
