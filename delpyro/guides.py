"""Guides: the variational families, and a guide of stored posterior samples (NUTS).

- :func:`make_guide`: "auto_normal" (mean field), "auto_lowrank" (a low-rank multivariate normal over
  the globals; per-compound effects stay mean field) or "auto_delta" (a point estimate, MAP).
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
from pyro import poutine
from pyro.infer.autoguide import AutoDelta, AutoGuideList, AutoLowRankMultivariateNormal, AutoNormal
from pyro.nn import PyroParam
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import nn

from delpyro.config import GUIDES, check_choice
from delpyro.effects import screened_positions
from delpyro.model import COMPOUND_EFFECT, LOCAL_SITES, DELModel

__all__ = ["SamplesGuide", "ScreenedGuide", "build_guide", "draw_sites", "latent_sites", "make_guide"]

_AUTOGUIDES = {"auto_normal": AutoNormal, "auto_lowrank": AutoLowRankMultivariateNormal, "auto_delta": AutoDelta}
assert tuple(_AUTOGUIDES) == GUIDES


def make_guide(model: DELModel, kind: str = "auto_normal") -> pyro.nn.PyroModule:
    """The variational family of ``kind`` (see the module docstring); its parameters live in the model's
    parameter store."""
    check_choice("guide", kind, GUIDES)
    with model.param_scope():
        if kind != "auto_lowrank":
            return _AUTOGUIDES[kind](model, create_plates=model.create_plates)
        if not model.local_sites:
            return _AUTOGUIDES[kind](model)
        # a low-rank normal over the globals; the local sites (per compound, per pair of blocks) stay mean
        # field (a joint covariance over every compound would not fit in memory)
        guide = AutoGuideList(model, create_plates=model.create_plates)
        guide.append(AutoLowRankMultivariateNormal(poutine.block(model, hide=list(LOCAL_SITES))))
        guide.append(AutoNormal(poutine.block(model, expose=list(LOCAL_SITES))))  # the list's plates
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
