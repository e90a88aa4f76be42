"""Guides: the variational families, and a guide of stored posterior samples (NUTS).

- :func:`make_guide`: "auto_normal" (mean field), "auto_lowrank" (a low-rank multivariate normal over
  the globals; per-compound effects stay mean field) or "auto_delta" (a point estimate, MAP).
- :class:`RowAutoNormal`: the mean-field guide as "auto_normal" and "auto_lowrank" build it, whose
  per-compound rows are gathered for the batch, so a step costs what its batch holds, not the screen.
- :class:`ScreenedGuide`: the guide as SVI runs it, which leaves the per-compound sites out on a batch
  without any compound of the training screen (their effects then come from the prior).
- :func:`build_guide`: an autoguide builds itself by tracing the model once; this does it on an
  example batch and a forked random state, and starts the local sites' scales where they belong.
- :func:`draw_sites`: many draws of a guide's latent sites at once (the guide in a plate of draws).
- :class:`SamplesGuide`: draws stored posterior samples, so a NUTS fit answers like a variational one.
"""

from __future__ import annotations

from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoDelta, AutoGuideList, AutoLowRankMultivariateNormal, AutoNormal
from pyro.nn import PyroParam
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import nn

from delpyro.config import GUIDES, check_choice
from delpyro.effects import screened_positions
from delpyro.model import COMPOUND_EFFECT, LOCAL_SITES, DELModel

__all__ = [
    "RowAutoNormal",
    "SamplesGuide",
    "ScreenedGuide",
    "build_guide",
    "draw_sites",
    "latent_sites",
    "make_guide",
]


class RowAutoNormal(AutoNormal):
    """AutoNormal, except for the per-compound effects (``compound_effect``): their guide rows, a loc and a
    scale per screened compound and arm, are read for the batch's compounds only.

    An AutoNormal parameter with a row per compound is constrained whole and then cut to the batch by its
    plate, and its gradient comes back as a whole dense tensor: every step paid for every compound of the
    screen (a step of 4,096 compounds cost 2.9 times as much with 10^7 rows as with 27,000;
    ``bench/row_scaling.py``). Here the rows are gathered with ``embedding(..., sparse=True)``, the scale's
    softplus is taken after the gather, and the gradients are sparse: the optimizer moves the batch's
    rows (:class:`~delpyro.optim.FusedClippedAdam`). The parameters keep AutoNormal's names and values (the
    scale is stored unconstrained, as AutoNormal's ``softplus_positive`` stores it), so checkpoints are
    the same. ``model``: the :class:`~delpyro.model.DELModel` whose screened plate the rows belong to.
    """

    def __init__(self, model: Any, *, delmodel: DELModel, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._pyro_name = AutoNormal.__name__  # AutoNormal's parameter names, so checkpoints are the same
        self._delmodel = (delmodel,)  # a tuple, so the model is not registered as a submodule
        #: the store names of the rows' loc and (unconstrained) scale; empty without per-compound effects
        self.row_names: tuple[str, ...] = ()
        #: their starting values, until the store takes them (then dropped: a row per compound each)
        self._row_inits: dict[str, torch.Tensor] = {}
        self._batch: dict[str, Any] | None = None

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        if COMPOUND_EFFECT not in self._event_dims:
            return
        for part in (self.locs, self.scales):  # taken out of the module: read as plain (real) parameters
            name = part._pyro_get_fullname(COMPOUND_EFFECT)
            self._row_inits[name] = getattr(part, f"{COMPOUND_EFFECT}_unconstrained").detach()
            delattr(part, COMPOUND_EFFECT)
        self.row_names = tuple(self._row_inits)

    def start_row_scales(self, value: torch.Tensor) -> None:
        """Start the rows' scales at ``value`` (inside the model's param scope)."""
        _, scale = self.row_names
        stored = dict(pyro.get_param_store().named_parameters())
        current = stored[scale] if scale in stored else self._row_inits[scale]
        start = value.to(current.device).expand_as(current)
        with torch.no_grad():
            current.copy_(start + torch.log(-torch.expm1(-start)))  # softplus^-1

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        self._batch = args[0] if args else None
        try:
            return super().forward(*args, **kwargs)
        finally:
            self._batch = None

    def _get_loc_and_scale(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name != COMPOUND_EFFECT or not self.row_names:
            return super()._get_loc_and_scale(name)
        loc_name, scale_name = self.row_names
        loc = pyro.param(loc_name, lambda: self._row_inits.pop(loc_name), constraint=constraints.real)
        raw = pyro.param(scale_name, lambda: self._row_inits.pop(scale_name), constraint=constraints.real)
        positions, _ = screened_positions(self._batch)
        if positions.numel() == self._delmodel[0].n_screened_held:  # the plate holds every row, in order
            return loc, F.softplus(raw)
        return F.embedding(positions, loc, sparse=True), F.softplus(F.embedding(positions, raw, sparse=True))


_AUTOGUIDES = {"auto_normal": RowAutoNormal, "auto_lowrank": AutoLowRankMultivariateNormal, "auto_delta": AutoDelta}
assert tuple(_AUTOGUIDES) == GUIDES


def make_guide(model: DELModel, kind: str = "auto_normal") -> pyro.nn.PyroModule:
    """The variational family of ``kind`` (see the module docstring); its parameters live in the model's
    parameter store."""
    check_choice("guide", kind, GUIDES)
    with model.param_scope():
        if kind == "auto_normal":
            return RowAutoNormal(model, delmodel=model, create_plates=model.create_plates)
        if kind != "auto_lowrank":
            return _AUTOGUIDES[kind](model, create_plates=model.create_plates)
        if not model.local_sites:
            return _AUTOGUIDES[kind](model)
        # a low-rank normal over the globals; the local sites (per compound, per pair of blocks) stay mean
        # field (a joint covariance over every compound would not fit in memory)
        guide = AutoGuideList(model, create_plates=model.create_plates)
        guide.append(AutoLowRankMultivariateNormal(poutine.block(model, hide=list(LOCAL_SITES))))
        guide.append(RowAutoNormal(poutine.block(model, expose=list(LOCAL_SITES)), delmodel=model))
        return guide


class ScreenedGuide:
    """The guide as SVI runs it on a model with per-compound effects: on a batch without any compound of
    the training screen (a validation screen), the per-compound sites are left out, so the model draws
    those effects from the prior and the loss is a held-out one."""

    def __init__(self, model: DELModel, guide: Any) -> None:
        self.model = model
        self.guide = guide

    def __call__(self, batch: dict[str, Any]) -> Any:
        build_guide(self.guide, self.model)
        _, screened = screened_positions(batch)
        if bool(screened.any()):
            return self.guide(batch)
        # AutoNormal draws an effect through an auxiliary site "<site>_unconstrained", which sits in the
        # subsampled plate too (scaled by the training screen's size): both are left out
        return poutine.block(self.guide, hide_fn=lambda msg: msg["name"].startswith(COMPOUND_EFFECT))(batch)


def build_guide(guide: Any, model: DELModel) -> None:
    """Trace the model once into an autoguide not built yet, on an example batch and a forked random state
    (so a resumed run draws the same numbers as a run straight through); parameters already in the store
    are kept as they are. Afterwards every parameter of model and guide is in the store."""
    if getattr(guide, "prototype_trace", True) is None:
        with torch.random.fork_rng(), model.param_scope(), poutine.block():
            stored = set(pyro.get_param_store().keys())
            example = model.encoding.example_batch(device=model.device)
            guide(example)
            _init_local_scales(guide, model.local_init_scales(), stored)
            guide(example)  # a parameter set anew reaches the store when the guide next runs


def _init_local_scales(guide: Any, values: dict[str, torch.Tensor], stored: set[str]) -> None:
    """Start the guide's scales of each local site at its values (:meth:`DELModel.local_init_scales`,
    unless ``stored``, from a checkpoint)."""
    for part in guide if isinstance(guide, AutoGuideList) else [guide]:
        scales = getattr(part, "scales", None)
        if not isinstance(part, AutoNormal) or scales is None:
            continue
        if isinstance(part, RowAutoNormal) and part.row_names and part.row_names[1] not in stored:
            part.start_row_scales(values[COMPOUND_EFFECT])
        for site, value in values.items():
            if hasattr(scales, site) and scales._pyro_get_fullname(site) not in stored:
                current = getattr(scales, site).detach()
                start = value.to(current.device).expand_as(current).clone()
                setattr(scales, site, PyroParam(start, part.scale_constraint, part._event_dims[site]))


def latent_sites(trace: Any) -> list[tuple[str, Any]]:
    """The latent sample sites of a trace: not observed, not auxiliary, not a plate's subsample index."""
    return [
        (name, site)
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site["infer"].get("is_auxiliary")
        and not site_is_subsample(site)
    ]


def draw_sites(guide: Any, batch: dict[str, Any], count: int) -> dict[str, torch.Tensor]:
    """``count`` draws of an autoguide's latent sites for ``batch`` at once: ``{site: [count, *shape]}``,
    each site in the shape one draw gives it (the per-compound effects for the batch's screened compounds).

    The guide runs once inside a plate of ``count`` draws, left of every plate the model uses, as Pyro's
    vectorized particles do."""
    one = poutine.trace(guide).get_trace(batch)  # the shapes of a single draw
    shapes = {name: site["value"].shape for name, site in latent_sites(one)}
    prototype = getattr(guide, "prototype_trace", None)
    prototype = one if prototype is None else prototype
    nesting = max(
        (-frame.dim for _, site in latent_sites(prototype) for frame in site["cond_indep_stack"] if frame.vectorized),
        default=0,
    )
    nesting = max(nesting, 2)  # the model's compound and replicate plates
    with pyro.plate("draws", count, dim=-(nesting + 1)):
        trace = poutine.trace(guide).get_trace(batch)
    return {name: site["value"].reshape(count, *shapes[name]) for name, site in latent_sites(trace)}


class SamplesGuide(nn.Module):
    """A guide that draws one stored posterior sample per call (a random one, from torch's generator).

    ``samples``: ``{site: [n_samples, ...]}``; the local sites (the screened compounds' effects,
    ``[n_samples, n_screened, n_arms]``, and the pairs' normals, ``[n_samples, n_pair_slots, n_arms]``) are
    drawn in the model's plates for the batch's screened compounds and pairs, as an autoguide would.
    """

    def __init__(self, samples: dict[str, torch.Tensor], model: DELModel) -> None:
        super().__init__()
        self.samples = samples
        self.local_sites = set(LOCAL_SITES) & set(samples)
        self.local_plate = model.local_plate
        self.n_samples = next(iter(samples.values())).shape[0]
        example = model.encoding.example_batch(device=model.device)
        self.prototype_trace = prune_subsample_sites(poutine.trace(self).get_trace(example))

    def draw(self, batch: dict[str, Any], count: int) -> dict[str, torch.Tensor]:
        """``count`` stored samples at once (random ones): ``{site: [count, ...]}``, the local sites for the
        batch's screened compounds in the plate's order (as :meth:`forward` gives one)."""
        chosen = torch.randint(self.n_samples, (count,))
        out = {}
        for name, values in self.samples.items():
            if name in self.local_sites:
                with self.local_plate(name, batch) as positions:
                    out[name] = values[chosen[:, None], positions]  # no copy of every compound's draws
            else:
                out[name] = values[chosen]
        return out

    def forward(self, batch: dict[str, Any]) -> None:
        s = int(torch.randint(self.n_samples, ()))
        for name, values in self.samples.items():
            if name in self.local_sites:
                with self.local_plate(name, batch) as positions:
                    pyro.sample(name, dist.Delta(values[s][positions], event_dim=1))
            else:
                value = values[s]
                pyro.sample(name, dist.Delta(value, event_dim=value.dim()))
