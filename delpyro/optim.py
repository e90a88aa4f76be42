"""The optimizer and the moving average of the parameters.

- :func:`make_optim`: ClippedAdam for every parameter of a model's store in one fused step
  (:class:`FusedClippedAdam`), with its own learning rates for the guide's globals and for the
  rows of the local sites (one per compound, one per pair of blocks), which each keep their own Adam state
  (:class:`RowwiseClippedAdam`).
- :class:`EMA`: an exponential moving average of the parameters, for evaluation and prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyro
import torch
from pyro.optim import PyroOptim
from pyro.optim.clipped_adam import ClippedAdam as _TorchClippedAdam

from delpyro.model import LOCAL_SITES, is_compound_row

__all__ = ["EMA", "FusedClippedAdam", "RowwiseClippedAdam", "make_optim"]


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
    ``state``, made on the first update). A sparse gradient (rows gathered for a batch,
    :class:`~delpyro.guides.RowAutoNormal`) names its rows; a dense one is searched for them."""
    if p.grad.is_sparse:
        grad = p.grad.coalesce()
        rows = grad.indices()[0]
        g = grad.values().reshape(rows.numel(), -1)
        keep = g.ne(0).any(1)  # a row gathered whose gradient is zero (a masked batch) does not move
        rows, g = rows[keep], g[keep]
    else:
        grad = p.grad.reshape(p.shape[0], -1)
        rows = grad.ne(0).any(1).nonzero().squeeze(1)
        g = grad[rows]
    if rows.numel() == 0:
        return
    if not state:
        width = p[0].numel() if p.dim() else 1
        state.update(
            step=torch.zeros(p.shape[0], dtype=p.dtype, device=p.device),
            exp_avg=torch.zeros(p.shape[0], width, dtype=p.dtype, device=p.device),
            exp_avg_sq=torch.zeros(p.shape[0], width, dtype=p.dtype, device=p.device),
        )
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

    ``local_lr`` is the learning rate of the local sites' guide parameters (names holding a site of
    ``LOCAL_SITES``: a row per compound or per pair of blocks), which move only when their batch holds
    them, each row by its own Adam state (:class:`RowwiseClippedAdam`); ``guide_lr`` that of the other
    guide parameters (the latent globals: names starting "Auto"); None: ``lr``.
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
        if any(site in name for site in LOCAL_SITES):
            return {**shared, "lr": local_lr or lr, "rowwise": True}
        if name.startswith("Auto") and guide_lr is not None:
            return {**shared, "lr": guide_lr, "rowwise": False}
        return {**shared, "lr": lr, "rowwise": False}

    return FusedClippedAdam(arguments)


class EMA:
    """Exponential moving average of every parameter in a model's store (for evaluation and prediction).

    At update k the decay is :math:`d_k = \\min(d, (1 + k) / (10 + k))`, so the average forgets the random
    start: :math:`s_k = d_k s_{k-1} + (1 - d_k) v_k` for each parameter's value :math:`v_k` after step k.

    The per-compound rows (:func:`~delpyro.model.is_compound_row`) are averaged lazily, so that a step
    costs what its batch holds rather than what the screen holds. A row moves only on the steps whose
    batch holds its compound; between those its value :math:`v` stays put, and the average after steps
    :math:`j+1 \\ldots k` is exactly :math:`v + \\prod_{i=j+1}^{k} d_i \\, (s_j - v)`. So before a step
    (:meth:`before_step`, given the rows the batch reads) those rows are brought up to date with their
    values of then, the update after the step averages those rows only, and every row is brought up to date
    whenever the averages are read (:attr:`shadow`, :meth:`applied`, :meth:`state_dict`). An update
    without :meth:`before_step` first averages every row, as for any other parameter. The result is that of
    averaging every row at every step, up to rounding.
    """

    def __init__(self, decay: float | None) -> None:
        self.decay = decay
        self.updates = 0
        self._shadow: dict[str, torch.Tensor] = {}
        #: the per-compound row parameters averaged lazily (the store's tensors, seen at the last update)
        self._row_params: dict[str, torch.Tensor] = {}
        #: the running sum of log d_i since every row was last brought up to date: entry j after j updates
        self._log_decay = torch.zeros(64, dtype=torch.float64)
        self._n_logs = 1
        #: per compound row, the entry of ``_log_decay`` it was last brought up to date at (int32)
        self._since: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None  # the rows of the step under way (from before_step)

    @property
    def shadow(self) -> dict[str, torch.Tensor]:
        """The averages, every row up to date."""
        self._catch_up_all()
        return self._shadow

    @torch.no_grad()
    def before_step(self, rows: torch.Tensor) -> None:
        """Bring the averages of the per-compound ``rows`` a step is about to move up to date (before the
        optimizer step); the next :meth:`update` averages those rows only."""
        if self.decay is None:
            return
        if self._row_params and self._since is not None:
            factor = self._factors(self._since[rows])
            for name, value in self._row_params.items():
                shadow, current = self._shadow[name], value.detach()[rows]
                shape = (-1, *[1] * (current.dim() - 1))
                shadow[rows] = current + factor.view(shape) * (shadow[rows] - current)
            self._since[rows] = self._n_logs - 1
        self._rows = rows

    @torch.no_grad()
    def update(self) -> None:
        """Call inside the model's param scope, after an optimizer step."""
        if self.decay is None:
            return
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        rows, self._rows = self._rows, None
        if rows is None:  # no rows named: every row is averaged, as before_step was never called
            self._catch_up_all()
        shadows, values = [], []
        self._row_params = {}
        for name, value in pyro.get_param_store().named_parameters():
            if name not in self._shadow:
                self._shadow[name] = value.detach().clone()
                continue
            if rows is not None and is_compound_row(name):
                shadow = self._shadow[name]
                shadow[rows] = decay * shadow[rows] + (1.0 - decay) * value.detach()[rows]
                self._row_params[name] = value
            else:
                shadows.append(self._shadow[name])
                values.append(value.detach())
        if shadows:  # shadow = decay * shadow + (1 - decay) * value, in two fused kernels
            torch._foreach_mul_(shadows, decay)
            torch._foreach_add_(shadows, values, alpha=1.0 - decay)
        if self._row_params:
            self._add_log_decay(math.log(decay))
            if self._since is None:
                n = next(iter(self._row_params.values())).shape[0]
                self._since = torch.zeros(n, dtype=torch.int32, device=rows.device)
            self._since[rows] = self._n_logs - 1

    def _add_log_decay(self, value: float) -> None:
        if self._n_logs == len(self._log_decay):
            self._log_decay = torch.cat([self._log_decay, torch.zeros_like(self._log_decay)])
        self._log_decay[self._n_logs] = self._log_decay[self._n_logs - 1] + value
        self._n_logs += 1

    def _factors(self, since: torch.Tensor) -> torch.Tensor:
        """prod d_i over the updates since each row's entry ``since``, as float32 on its device."""
        logs = self._log_decay[: self._n_logs]
        return torch.exp(logs[-1] - logs).to(torch.float32).to(since.device)[since]  # int32 indexes: no copy

    @torch.no_grad()
    def _catch_up_all(self) -> None:
        """Bring every row's average up to date, in place, and start the running sum anew."""
        if self._since is None or self._n_logs == 1:
            return
        factor = self._factors(self._since)
        for name, value in self._row_params.items():
            shadow = self._shadow[name]
            shadow.sub_(value.detach()).mul_(factor.view(-1, *[1] * (shadow.dim() - 1))).add_(value.detach())
        self._n_logs = 1
        self._since.zero_()

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged values in place of the parameters (inside the model's param scope)."""
        if not self._shadow:
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
        """The decay, the number of updates and the averages (every row up to date)."""
        return {"decay": self.decay, "updates": self.updates, "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = state["decay"]
        self.updates = state["updates"]
        self._shadow = {k: v.clone() for k, v in state["shadow"].items()}
        self._row_params, self._n_logs, self._since, self._rows = {}, 1, None, None
