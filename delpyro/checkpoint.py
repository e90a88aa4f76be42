"""The checkpoint file: what it holds, its format versions, and how it is written and read.

A checkpoint is one file written by ``torch.save`` (:func:`write`, atomically: a temporary file in the
same folder, then a rename, so a save never leaves a half-written file in place of a good one). It holds a
dict of format :data:`FORMAT`:

=================  =================================================================================
key                what it holds
=================  =================================================================================
``format``         :data:`FORMAT`
``config``         the :class:`~delpyro.config.ModelConfig` as a dict
``encoding``       the :class:`~delpyro.encoding.Encoding` as a dict
``model_state``    the model's ``state_dict`` (the networks' weights)
``params``         every parameter of the model's Pyro store (networks, guide, point estimates)
``constraints``    each parameter's constraint
``optim_state``    the optimizer's state per parameter name
``ema``            the moving average of the parameters
``rng``            the random states (``pyro.util.get_rng_state``)
``seed``, ``epoch``, ``step``, ``records``, ``best_val_loss``, ``best_epoch``, ``stopped_early``,
``stopped_by_user``: where training stands
=================  =================================================================================

:func:`read` gives that dict for the current format and for format 2 (converted: the settings, encoding and
parameter names it used then), and refuses anything else with a message saying why.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from delpyro.config import ModelConfig, resolve_terms

__all__ = ["FORMAT", "read", "write"]

#: 3: the model's screen constants in an ``encoding`` (format 2 had a ``spec``), its networks under
#: ``networks.`` with residual layers under ``encoder.residual.``, point estimates named without
#: ``observation.``, ``n_layers`` and ``gates="latent"``.
#: 2: building-block effects as two sample sites. 1: two sites per family.
FORMAT = 3


def write(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def read(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict of the current format (format 2 is converted)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    found = state.get("format") if isinstance(state, dict) else None
    if found == FORMAT:
        return state
    if found == 2:
        return _from_format_2(state)
    if found == 1:
        raise ValueError(
            f"{path}: a checkpoint of format 1, written before building-block effects became two sample "
            f"sites (format 2); its guide parameters do not fit this model: fit again"
        )
    raise ValueError(f"{path}: not a delpyro checkpoint of format {FORMAT} (or 2)")


def _from_format_2(state: dict[str, Any]) -> dict[str, Any]:
    """A format-2 checkpoint in the current format. Format 2 named the residual layers' counts
    ``n_blocks`` and ``n_post_blocks``, latent gates ``"global"``, kept the screen's constants in a
    ``spec`` (without the fingerprint settings and terms, which came from the config), the networks
    under ``terms.`` (residual layers under ``encoder.blocks.``) with the depth offsets as buffers, and
    point estimates as ``observation.<name>``."""
    config = dict(state["config"])
    config["n_layers"] = config.pop("n_blocks")
    config["n_post_layers"] = config.pop("n_post_blocks")
    if config["gates"] == "global":
        config["gates"] = "latent"
    spec = state["spec"]
    has_blocks = spec["bb_vocabulary"] is not None
    encoding = {
        **spec,
        "terms": resolve_terms(ModelConfig.from_dict(config), spec["n_poses"], has_blocks),
        "fingerprint_radius": config["fingerprint_radius"],
        "fingerprint_bits": config["fingerprint_bits"],
        "fingerprint_chirality": config["fingerprint_chirality"],
    }

    def new_name(name: str) -> str:
        return name.removeprefix("observation.").replace(".encoder.blocks.", ".encoder.residual.")

    def renamed(values: dict[str, Any]) -> dict[str, Any]:
        return {new_name(name): value for name, value in values.items()}

    model_state = {
        new_name("networks." + name.removeprefix("terms.")): value
        for name, value in state["model_state"].items()
        if name.startswith("terms.")
    }
    ema = dict(state["ema"], shadow=renamed(state["ema"]["shadow"]))
    converted = {key: value for key, value in state.items() if key != "spec"}
    converted.update(
        format=FORMAT,
        config=config,
        encoding=encoding,
        model_state=model_state,
        params=renamed(state["params"]),
        constraints=renamed(state["constraints"]),
        optim_state=renamed(state["optim_state"]),
        ema=ema,
        best_epoch=None,
    )
    return converted
