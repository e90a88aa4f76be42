"""Fitted models: a variational fit (:class:`FitResult`) and a NUTS fit (:class:`MCMCResult`), siblings
behind one interface for posterior draws (:class:`Result`), and :func:`load` for checkpoints.

The interface every summary reads (:mod:`delpyro.posterior`, :mod:`delpyro.diagnostics`):

- ``averaged()``: the model's parameter scope with the parameters to evaluate with in place;
- ``draw_sites(batch, count)``: ``count`` posterior draws of the latent sites at once, the per-compound
  ones for the batch's screened compounds;
- ``sample_sites(num_samples, seed)`` / ``sample_globals``: draws of the global sites (raw / named);
- ``posterior_chains(num_samples, seed)`` and ``local_draw(...)``: draws by chain, for ArviZ;
- ``guide``: something to trace for one posterior draw (an autoguide, or stored samples).

A :class:`FitResult` also holds what training needs to go on (SVI with its optimizer, the moving
average, epoch, step, history) and saves itself as a checkpoint (:mod:`delpyro.checkpoint`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI

from delpyro import checkpoint, diagnostics, posterior
from delpyro.batches import Minibatches, Shard
from delpyro.config import ModelConfig
from delpyro.data import DELData
from delpyro.effects import screened_positions
from delpyro.encoding import Encoding
from delpyro.guides import SamplesGuide, build_guide, draw_sites, make_guide
from delpyro.keys import INDEX, SCREEN_SIZE
from delpyro.model import BB_PAIR_Z, COMPOUND_EFFECT, COMPOUND_PLATES, DELModel
from delpyro.optim import EMA, make_optim
from delpyro.steps import eval_step, make_svi

__all__ = ["FitResult", "MCMCResult", "Result", "from_state", "load"]

#: ``(chain, draw, sample, {site: value})``: one posterior draw of the globals, by chain
Draws = list[tuple[int, int, int, dict[str, torch.Tensor]]]


class Result:
    """What every fitted model answers: posterior draws, and the summaries computed from them."""

    config: ModelConfig
    model: DELModel
    guide: Any
    seed: int

    # ---- the interface for posterior draws ---------------------------------------------------------------
    @contextmanager
    def averaged(self) -> Iterator[None]:
        """The model's parameter scope with the parameters to evaluate with in place."""
        with self.model.param_scope():
            yield

    def draw_sites(self, batch: dict[str, Any], count: int) -> dict[str, torch.Tensor]:
        """``count`` posterior draws of the latent sites for ``batch`` at once: ``{site: [count, ...]}``."""
        raise NotImplementedError

    def posterior_chains(self, num_samples: int, seed: int) -> Draws:
        """Draws of the global sites by chain (see :func:`delpyro.diagnostics.to_inference_data`)."""
        raise NotImplementedError

    def local_draw(
        self, batch: dict[str, Any], values: dict[str, torch.Tensor], chain: int, sample: int
    ) -> dict[str, torch.Tensor]:
        """The local sites of one draw of :meth:`posterior_chains` for ``batch``: the batch's pairs of blocks
        cut from the draw (which holds every pair), and the screened compounds' effects."""
        out = {}
        if BB_PAIR_Z in values:
            out[BB_PAIR_Z] = self.model.local_value(BB_PAIR_Z, batch, values[BB_PAIR_Z])
        _, screened = screened_positions(batch)
        if "compound" in self.model.terms and bool(screened.any()):
            out[COMPOUND_EFFECT] = self.compound_draw(batch, values, chain, sample)
        return out

    def compound_draw(
        self, batch: dict[str, Any], values: dict[str, torch.Tensor], chain: int, sample: int
    ) -> torch.Tensor:
        """The batch's screened compounds' effects in one draw of :meth:`posterior_chains`."""
        raise NotImplementedError

    @property
    def inference(self) -> str:
        """How the posterior was found, in words (an ArviZ attribute)."""
        raise NotImplementedError

    def global_sites(self) -> list[str]:
        """Names of the model's latent sites outside the compound plates (gates, concentrations, depth
        deviations, ``bb_scale``, ``bb_z`` and ``bb_pair_z``, drawn over every pair; :meth:`sample_globals`
        splits the last three by family)."""
        trace = getattr(self.guide, "prototype_trace", None)
        if trace is None:
            raise RuntimeError("the guide has not been run yet: fit the model first")
        return [
            name
            for name, site in trace.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and all(frame.name not in COMPOUND_PLATES for frame in site["cond_indep_stack"])
        ]

    def sample_sites(self, num_samples: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
        """Draws of every latent global site, under the model's site names: ``{site: [num_samples, ...]}``."""
        names = self.global_sites()
        batch = {INDEX: torch.zeros(1, dtype=torch.long), SCREEN_SIZE: 1}
        draws: dict[str, list[np.ndarray]] = {name: [] for name in names}
        with torch.random.fork_rng(), self.averaged(), torch.no_grad():
            torch.manual_seed(seed)
            for _ in range(num_samples):
                trace = poutine.trace(self.guide).get_trace(batch)
                for name in names:
                    draws[name].append(trace.nodes[name]["value"].cpu().numpy())
        return {name: np.stack(values) for name, values in draws.items()}

    def sample_globals(self, num_samples: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
        """Draws of every latent global: ``{name: [num_samples, ...]}``, with the building-block sites split
        by arm and family (``bb_target_scale_cycle1``, ``bb_target_cycle1``, ...)."""
        return self.model.named_globals(self.sample_sites(num_samples, seed))

    # ---- summaries -----------------------------------------------------------------------------------------
    def predict(self, data: DELData, num_samples: int = 200, batch_size: int = 4096, **kwargs: Any) -> pd.DataFrame:
        """Posterior summaries per compound: see :func:`delpyro.posterior.predict`."""
        return posterior.predict(self, data, num_samples=num_samples, batch_size=batch_size, **kwargs)

    def globals_summary(self, num_samples: int = 1000, seed: int = 0) -> pd.DataFrame:
        """Mean, sd and 5/50/95% quantiles of every latent global: see :func:`delpyro.posterior.globals_summary`."""
        return posterior.globals_summary(self, num_samples, seed)

    def building_block_effects(
        self, arm: str = "target", num_samples: int = 1000, seed: int = 0, *, target: str | None = None
    ) -> pd.DataFrame:
        """One row per building block: see :func:`delpyro.posterior.building_block_effects`."""
        return posterior.building_block_effects(self, arm, num_samples, seed, target=target)

    def disynthon_effects(
        self, cycles: tuple[str, str] | None = None, arm: str = "target", num_samples: int = 1000, seed: int = 0
    ) -> pd.DataFrame:
        """One row per disynthon seen in training: see :func:`delpyro.posterior.disynthon_effects`."""
        return posterior.disynthon_effects(self, cycles, arm, num_samples, seed)

    def to_inference_data(self, data: DELData, num_samples: int = 200, compounds: Any = None, **kwargs: Any) -> Any:
        """The fit on ``data`` as an ``arviz.InferenceData``: see :func:`delpyro.diagnostics.to_inference_data`."""
        return diagnostics.to_inference_data(self, data, num_samples=num_samples, compounds=compounds, **kwargs)


#: added to a fit's seed to seed its loss evaluations (:meth:`FitResult.loss`)
LOSS_SEED_OFFSET = 104_729


@dataclass(eq=False)
class FitResult(Result):
    """A variational fit: configuration, model, guide, SVI (with its optimizer), moving average and history."""

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
    #: the epoch whose parameters early stopping kept (None: no early stopping)
    best_epoch: int | None = None
    stopped_early: bool = False
    #: training ended by a Stop request (the display's button, or a callback's ``stop_requested``)
    stopped_by_user: bool = False

    @classmethod
    def new(cls, config: ModelConfig, encoding: Encoding, seed: int = 0) -> FitResult:
        """A model of ``config`` on ``encoding`` with its guide, optimizer and moving average, not trained."""
        model = DELModel(config, encoding)
        return cls.build(config, model, seed)

    @classmethod
    def build(cls, config: ModelConfig, model: DELModel, seed: int = 0) -> FitResult:
        """The guide, optimizer, SVI and moving average of ``config`` around ``model``."""
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
        return cls(config, model, guide, make_svi(model, guide, optim, config.loss), EMA(config.ema_decay), seed)

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch: epoch, train_loss, val_loss (NaN without validation data), seconds."""
        return pd.DataFrame(self.records, columns=["epoch", "train_loss", "val_loss", "seconds"])

    @property
    def inference(self) -> str:
        return f"svi ({self.config.guide})"

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """The model's parameter scope with the moving-average parameters in place."""
        with self.model.param_scope(), self.ema.applied():
            yield

    def draw_sites(self, batch: dict[str, Any], count: int) -> dict[str, torch.Tensor]:
        return draw_sites(self.guide, batch, count)

    def posterior_chains(self, num_samples: int, seed: int) -> Draws:
        """``num_samples`` draws of the guide as one chain (one empty draw for a model without latent sites)."""
        try:
            has_globals = bool(self.global_sites())
        except RuntimeError:
            has_globals = False
        if not self.model.latent_terms and not has_globals:
            return [(0, 0, 0, {})]
        sampled = self.sample_sites(num_samples, seed=seed)  # the model's own sites, to condition it on
        return [(0, d, d, {name: torch.as_tensor(v[d]) for name, v in sampled.items()}) for d in range(num_samples)]

    def compound_draw(
        self, batch: dict[str, Any], values: dict[str, torch.Tensor], chain: int, sample: int
    ) -> torch.Tensor:
        globals_only = {name: value for name, value in values.items() if name != BB_PAIR_Z}
        trace = poutine.trace(poutine.condition(self.guide, data=globals_only)).get_trace(batch)
        return trace.nodes[COMPOUND_EFFECT]["value"]

    def evaluate(self, data: DELData, batch_size: int = 4096, *, cache_dir: str | None = None) -> float:
        """Loss (negative ELBO) per compound on ``data``, with the averaged parameters."""
        encoded = self.model.encoding.encode(data, cache_dir=cache_dir)
        return self.loss(Minibatches(encoded, batch_size, shuffle=False, device=self.model.device))

    def loss(self, batches: Minibatches) -> float:
        """Loss (negative ELBO) per compound over every batch, with the averaged parameters.

        Its draws (the globals from the guide, held-out compounds' effects from their prior) come from a
        random state of their own, seeded by the fit's seed, which is set aside and restored: the same
        parameters give the same loss every time, so the validation losses of successive epochs differ by
        what training changed, not by Monte Carlo noise (common random numbers, which early stopping
        needs), and an evaluation leaves the training's random stream where it was."""
        total = 0.0
        device = self.model.device
        shard = self.model.shard
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), self.averaged():
            torch.manual_seed(LOSS_SEED_OFFSET + self.seed + (0 if shard is None else 7_919 * shard.rank))
            for batch in batches:
                if len(batch[INDEX]):  # a process's part of a batch may be empty
                    total += eval_step(self.svi, batch) * len(batch[INDEX])
        return batches.sum_over_shards(total) / batches.n

    # ---- checkpoints ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a checkpoint holds (see :mod:`delpyro.checkpoint`)."""
        with self.model.param_scope():
            store = pyro.get_param_store()
            params = {name: value.detach().clone() for name, value in store.named_parameters()}
            # keyed by parameter names, so read inside the scope; a loaded state not yet used is kept too
            optim_state = {**self.svi.optim._state_waiting_to_be_consumed, **self.svi.optim.get_state()}
        return {
            "format": checkpoint.FORMAT,
            "config": self.config.to_dict(),
            "encoding": self.model.encoding.to_dict(),
            "model_state": {k: v.clone() for k, v in self.model.state_dict().items()},
            "params": params,
            "optim_state": optim_state,
            "ema": self.ema.state_dict(),
            "seed": self.seed,
            "epoch": self.epoch,
            "step": self.step,
            "records": list(self.records),
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "stopped_by_user": self.stopped_by_user,
            "rng": checkpoint.rng_state(),
        }

    def save(self, path: str | Path) -> Path:
        """Write one checkpoint file (atomically: a temporary file, then a rename); :func:`load` reads it."""
        return checkpoint.write(self.state(), path)


def load(path: str | Path, *, restore_rng: bool = True) -> FitResult:
    """Read a checkpoint written by :meth:`FitResult.save`; training can go on with ``fit(..., resume=)``.

    The file is checked and read without running anything in it (see :mod:`delpyro.checkpoint`); a file
    that is not a whole delpyro checkpoint raises a ``ValueError`` saying why. ``restore_rng`` also sets
    the global random state to the one saved, so that resumed training draws the same numbers as training
    straight through would have.
    """
    return from_state(checkpoint.read(path), path, restore_rng=restore_rng)


def from_state(
    state: dict[str, Any], path: Any = "state", *, restore_rng: bool = False, shard: Shard | None = None
) -> FitResult:
    """The FitResult a checkpoint state describes (:meth:`FitResult.state`; ``path`` names it in errors).
    With ``shard``, the state holds that shard's rows of the per-compound parameters (see
    :func:`delpyro.distributed.shard_state`) and the result trains on that shard."""
    try:
        config = ModelConfig.from_dict(state["config"])
        model = DELModel(config, Encoding.from_dict(state["encoding"]))
        model.load_state_dict(state["model_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: a delpyro checkpoint whose model cannot be rebuilt ({err})") from None
    result = FitResult.build(config, model, state["seed"])
    model.shard = shard
    build_guide(result.guide, model)  # every parameter of model and guide, with its constraint
    with model.param_scope(), torch.no_grad():
        pyro.module("networks", model.networks)
        made = dict(pyro.get_param_store().named_parameters())  # unconstrained, as the file holds them
        saved = state["params"]
        if set(saved) != set(made) or any(saved[k].shape != made[k].shape for k in made):
            differ = sorted(k for k in set(saved) | set(made) if k not in saved or k not in made)
            differ += sorted(k for k in set(saved) & set(made) if saved[k].shape != made[k].shape)
            raise ValueError(f"{path}: its parameters do not fit the model it describes ({differ[:5]})")
        for name, value in made.items():  # in place: the guide's modules hold these very tensors
            value.copy_(saved[name])
    result.svi.optim.set_state(state["optim_state"])
    result.ema.load_state_dict(state["ema"])
    for name in ("epoch", "step", "best_val_loss", "best_epoch", "stopped_early", "stopped_by_user"):
        setattr(result, name, state[name])
    result.records = list(state["records"])
    if restore_rng:
        checkpoint.set_rng_state(state["rng"])
    return result


@dataclass(eq=False)
class MCMCResult(Result):
    """Posterior samples from NUTS (:func:`delpyro.run_nuts`), with the summaries of a variational fit.

    ``samples``: ``{site: [n_chains, n_samples, ...]}``; ``diagnostics``: one row per latent site, the
    largest split r_hat and the smallest effective sample size over its elements.
    """

    config: ModelConfig
    model: DELModel
    samples: dict[str, torch.Tensor]
    diagnostics: pd.DataFrame
    seed: int = 0
    guide: SamplesGuide = field(init=False)

    def __post_init__(self) -> None:
        pooled = {name: values.reshape(-1, *values.shape[2:]) for name, values in self.samples.items()}
        self.guide = SamplesGuide(pooled, self.model)

    @property
    def inference(self) -> str:
        return "nuts"

    def save(self, path: str | Path) -> Path:
        """Not a checkpoint: there is no training to go on with."""
        raise TypeError("an MCMC result keeps its samples in memory; save result.samples with torch.save")

    def draw_sites(self, batch: dict[str, Any], count: int) -> dict[str, torch.Tensor]:
        return self.guide.draw(batch, count)

    def posterior_chains(self, num_samples: int, seed: int) -> Draws:
        """The chains, each thinned evenly to at most ``num_samples`` (``sample``: the kept sample's position)."""
        first = next(iter(self.samples.values()))
        n_chains, n_total = first.shape[:2]
        keep = np.unique(np.linspace(0, n_total - 1, min(num_samples, n_total)).round().astype(int))
        return [
            (c, d, int(i), {name: v[c, i] for name, v in self.samples.items() if name != COMPOUND_EFFECT})
            for c in range(n_chains)
            for d, i in enumerate(keep)
        ]

    def compound_draw(
        self, batch: dict[str, Any], values: dict[str, torch.Tensor], chain: int, sample: int
    ) -> torch.Tensor:
        positions, _ = screened_positions(batch)
        return self.samples[COMPOUND_EFFECT][chain, sample][positions]
