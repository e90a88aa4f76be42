"""Benchmark: training throughput of delpyro against the compute bound of the same network.

    python bench/throughput.py                 # both models, a few minutes on 2 cores
    python bench/throughput.py --quick         # small screens, under a minute
    python bench/throughput.py --device cuda   # the same on a GPU

Two models, each timed two ways in the same run:

- **delpyro**: ``delpyro.fit`` over whole epochs (compounds per second of an epoch, data loading and
  batching included; the first epoch, which builds the guide, is left out).
  (a) the default model (``ModelConfig()``: fingerprint network, building blocks, per-compound effects,
  ZINB with latent gates and concentrations) on a screen without poses;
  (b) the ``del-dock`` preset (fingerprint + 20 docked poses x 224 features, gated attention, ZIP).
- **bound**: the same network (the same delpyro modules, new weights) trained in plain PyTorch on batches
  already sliced in memory: forward, the count log-likelihood written by hand, backward and an Adam step;
  no Pyro. For the default model the building-block and per-compound effects are plain embedding tables
  and the gates and concentrations plain parameters, so the bound does the same arithmetic as the
  model's mean, minus everything probabilistic (sampling, priors, the guide) but the networks' weight
  penalty (``network_prior_scale``), which is part of the network's own training.

Each is timed in alternating rounds (delpyro, bound, delpyro, bound, ...) after a warm-up epoch of both,
and the medians of every timed epoch are compared. Prints ``name: value`` lines, and ``ratio: X``
(delpyro seconds per epoch / bound seconds per epoch) for
each model. ``ratio <= 1.25`` is the target.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import check_device, line, machine_lines

import delpyro
from delpyro import DELModel, Encoding, Minibatches, ModelConfig
from delpyro.config import batch_size_for
from delpyro.keys import (
    BLOCK_CODES,
    CONTROL_COUNTS,
    FINGERPRINTS,
    LOG_LOAD,
    POSES,
    SCREEN_SIZE,
    TARGET_COUNTS,
    TRAINING_POSITION,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------
# the bound: plain PyTorch


def _zinb_log_prob(y: torch.Tensor, log_mu: torch.Tensor, log_phi: torch.Tensor, gate_logit: torch.Tensor):
    """log ZINB(y | mean exp(log_mu), concentration exp(log_phi), gate sigmoid(gate_logit)), by hand."""
    phi = log_phi.exp()
    log_p_nb_zero = phi * (log_phi - torch.logaddexp(log_phi, log_mu))  # phi * log(phi / (phi + mu))
    nb = (
        torch.lgamma(y + phi)
        - torch.lgamma(phi)
        - torch.lgamma(y + 1)
        + phi * (log_phi - torch.logaddexp(log_phi, log_mu))
        + y * (log_mu - torch.logaddexp(log_phi, log_mu))
    )
    log_gate = torch.nn.functional.logsigmoid(gate_logit)
    log_keep = torch.nn.functional.logsigmoid(-gate_logit)
    zero = torch.logaddexp(log_gate, log_keep + log_p_nb_zero)
    return torch.where(y == 0, zero, log_keep + nb)


def _zip_log_prob(y: torch.Tensor, log_mu: torch.Tensor, gate: float) -> torch.Tensor:
    """log ZIP(y | rate exp(log_mu), gate), by hand."""
    mu = log_mu.exp()
    poisson = y * log_mu - mu - torch.lgamma(y + 1)
    zero = torch.log(gate + (1 - gate) * torch.exp(-mu))
    return torch.where(y == 0, zero, math.log1p(-gate) + poisson)


class _Bound(torch.nn.Module):
    """The model's networks with its mean arithmetic in plain PyTorch."""

    def __init__(self, model: DELModel, n_compounds: int) -> None:
        super().__init__()
        config = model.config
        fresh = DELModel(config, model.encoding)  # the same modules, new weights
        self.networks = fresh.networks
        self.likelihood = config.likelihood
        self.multiplicative = config.combine == "multiplicative"
        self.prior_scale = config.network_prior_scale
        self.n_compounds = n_compounds
        self.register_buffer("log_depth_target", torch.as_tensor(model.encoding.log_depth_target))
        self.register_buffer("log_depth_control", torch.as_tensor(model.encoding.log_depth_control))
        self.normalize = config.normalize_depth
        self.gates = {"target": config.target_gate, "control": config.control_gate}
        terms = model.terms
        if "building_blocks" in terms:
            sizes = [size for _, size in model.encoding.families]
            self.blocks = torch.nn.ModuleList(torch.nn.Embedding(size, 2) for size in sizes)
        else:
            self.blocks = None
        self.compound = torch.nn.Embedding(n_compounds, 2) if "compound" in terms else None
        self.shift = torch.nn.Parameter(torch.zeros(()))
        self.gate_logits = torch.nn.Parameter(torch.zeros(2))
        self.log_phi = torch.nn.Parameter(torch.full((2,), math.log(config.nb_concentration)))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target = matrix = 0.0
        embedding = None
        if "fingerprint" in self.networks:
            out = self.networks["fingerprint"](batch[FINGERPRINTS])
            embedding = out.embedding
            target = target + (out.target if out.target is not None else 0.0)
            matrix = matrix + (out.matrix if out.matrix is not None else 0.0)
        if "poses" in self.networks:
            target = target + self.networks["poses"](batch[POSES], embedding)[0]
        if self.blocks is not None:
            codes = batch[BLOCK_CODES]
            for k, table in enumerate(self.blocks):
                effect = table(codes[:, k])
                target, matrix = target + effect[:, 0], matrix + effect[:, 1]
        if self.compound is not None:
            effect = self.compound(batch[TRAINING_POSITION])
            target, matrix = target + effect[:, 0], matrix + effect[:, 1]
        if self.multiplicative:
            log_rate_target = (matrix + target)[:, None]
        else:
            log_rate_target = torch.logaddexp(matrix + self.shift, target)[:, None]
        log_rate_control = matrix[:, None]
        if self.normalize:
            log_rate_target = log_rate_target + self.log_depth_target
            log_rate_control = log_rate_control + self.log_depth_control
        if LOG_LOAD in batch:
            log_rate_target = log_rate_target + batch[LOG_LOAD][:, None]
            log_rate_control = log_rate_control + batch[LOG_LOAD][:, None]
        y_t, y_c = batch[TARGET_COUNTS], batch[CONTROL_COUNTS]
        if self.likelihood == "zinb":
            log_lik = _zinb_log_prob(y_t, log_rate_target, self.log_phi[1], self.gate_logits[1]).sum()
            log_lik = log_lik + _zinb_log_prob(y_c, log_rate_control, self.log_phi[0], self.gate_logits[0]).sum()
        else:
            log_lik = _zip_log_prob(y_t, log_rate_target, self.gates["target"]).sum()
            log_lik = log_lik + _zip_log_prob(y_c, log_rate_control, self.gates["control"]).sum()
        loss = -log_lik / y_t.shape[0]
        if self.prior_scale is not None:  # the networks' weight prior, as the model adds it once a step
            penalty = sum(p.square().sum() for p in self.networks.parameters() if p.dim() > 1)
            loss = loss + 0.5 * penalty / self.prior_scale**2 / self.n_compounds
        return loss


def bound_epochs(model: DELModel, arrays: dict, batch_size: int, epochs: int, device: torch.device) -> list[float]:
    """Seconds per epoch of the plain-PyTorch bound over batches sliced in memory before timing."""
    torch.manual_seed(0)
    n = len(next(iter(arrays.values())))
    bound = _Bound(model, n).to(device)
    optimizer = torch.optim.Adam(bound.parameters(), lr=model.config.lr)
    batches = list(Minibatches(arrays, batch_size, shuffle=True, seed=1, device=device))
    for batch in batches:
        batch.pop(SCREEN_SIZE)
    seconds = []
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = bound(batch)
            loss.backward()
            optimizer.step()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds


# ---------------------------------------------------------------------------------------------------


def delpyro_epochs(screen: delpyro.DELData, config: ModelConfig, epochs: int, device: torch.device) -> list[float]:
    """Seconds per epoch of delpyro.fit (the history's epoch times; the run has no validation set)."""
    result = delpyro.fit(screen, None, config, epochs=epochs, seed=0, progress="none", device=device)
    return [float(s) for s in result.history["seconds"]]


def run(
    name: str, screen: delpyro.DELData, config: ModelConfig, epochs: int, rounds: int, device: torch.device
) -> float:
    """Time delpyro and the bound in alternating rounds after one warm-up epoch of each, so that neither
    gains from running second (allocator, caches) or loses to the machine's drift; medians over every
    timed epoch of every round."""
    batch_size = config.batch_size or batch_size_for(screen.n_compounds)  # the default grows with the screen
    line(f"{name}_compounds", screen.n_compounds)
    line(f"{name}_batch_size", batch_size)
    line(f"{name}_rounds", rounds)
    encoding = Encoding.fit(screen, config)
    model = DELModel(config, encoding)
    arrays = encoding.encode(screen)
    delpyro_epochs(screen, config, 1, device)  # warm-up
    bound_epochs(model, arrays, batch_size, 1, device)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        ours += delpyro_epochs(screen, config, epochs + 1, device)[1:]  # the first epoch builds the guide
        theirs += bound_epochs(model, arrays, batch_size, epochs + 1, device)[1:]
    ours_s, bound_s = statistics.median(ours), statistics.median(theirs)
    steps = math.ceil(screen.n_compounds / batch_size)
    line(f"{name}_delpyro_epoch_s", ours_s)
    line(f"{name}_delpyro_compounds_per_s", screen.n_compounds / ours_s)
    line(f"{name}_delpyro_ms_per_step", 1000 * ours_s / steps)
    line(f"{name}_bound_epoch_s", bound_s)
    line(f"{name}_bound_compounds_per_s", screen.n_compounds / bound_s)
    line(f"{name}_bound_ms_per_step", 1000 * bound_s / steps)
    ratio = ours_s / bound_s
    print(f"ratio: {ratio:.3f}  ({name}: delpyro / bound seconds per epoch)", flush=True)
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small screens and 2 timed epochs (under a minute)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per measurement (default 3; quick 2)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds of each (default 3; quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    parser.add_argument("--models", default="default,del-dock", help="comma-separated: default, del-dock")
    parser.add_argument("--batch-size", type=int, default=None, help="override both models' batch size")
    args = parser.parse_args(argv)
    check_device(args.device)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs = args.epochs or (2 if args.quick else 3)
    rounds = args.rounds or (1 if args.quick else 3)
    machine_lines(args.device)
    line("timed_epochs", epochs)
    for name in args.models.split(","):
        if name == "default":
            cycles = (12, 12, 12) if args.quick else (30, 30, 30)
            screen = delpyro.simulate_del(seed=0, n_per_cycle=cycles)
            config = ModelConfig()
        elif name == "del-dock":
            cycles = (8, 8, 8) if args.quick else (20, 20, 20)
            screen = delpyro.simulate_del(seed=0, n_per_cycle=cycles, n_poses=20, n_pose_features=224)
            config = ModelConfig.preset("del-dock")
        else:
            parser.error(f"unknown model {name!r}")
        if args.batch_size:
            config.batch_size = args.batch_size
        run(name, screen, config, epochs, rounds, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
