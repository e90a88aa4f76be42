"""The checkpoint file: what it holds, its format versions, and how it is written and read.

A checkpoint is one file (:func:`write`, through :func:`delpyro.files.replacing`: a save never leaves a
half-written file in place of a good one). It starts with a text header, then holds a ``torch.save`` of a
dict of plain values and tensors::

    delpyro checkpoint
    format 6
    sha256 <the SHA-256 of everything after the header>
    <torch.save of the state>

Reading checks the checksum before anything is unpickled (a damaged file is refused, not read as
garbage), and unpickles with ``weights_only=True``: a file holding any other object (which unpickling
would have to run) is refused. The state:

=================  =================================================================================
key                what it holds
=================  =================================================================================
``format``         :data:`FORMAT`
``config``         the :class:`~delpyro.config.ModelConfig` as a dict
``encoding``       the :class:`~delpyro.encoding.Encoding` as a dict
``model_state``    the model's ``state_dict`` (the networks' weights)
``params``         every parameter of the model's Pyro store, unconstrained (networks, guide, point
                   estimates); their constraints come from the model and guide rebuilt on loading
``optim_state``    the optimizer's state per parameter name
``ema``            the moving average of the parameters
``rng``            the random states (:func:`rng_state`: a tensor and lists)
``seed``, ``epoch``, ``step``, ``records``, ``best_val_loss``, ``best_epoch``, ``stopped_early``,
``stopped_by_user``: where training stands
=================  =================================================================================

:func:`read` gives that dict for the current format, for formats 5, 4 and 3, and for format 2 (a bare
``torch.save`` of the settings, encoding and parameter names used then, read with ``weights_only=True``
allowing only Pyro's constraint classes and numpy arrays) of a model without disynthon families, and
refuses anything else with a message saying why.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyro.distributions.constraints as pyro_constraints
import torch
import torch.distributions.constraints as torch_constraints

from delpyro.config import ModelConfig, resolve_terms
from delpyro.effects import matrix_share
from delpyro.files import write_bytes

__all__ = ["FORMAT", "read", "rng_state", "set_rng_state", "write"]

#: 6: the encoding's training compound ids as UTF-8 text and offsets (two tensors), not a list of strings.
#: 5: with controls, the per-compound site ``compound_effect`` holds (w, d), d = u_m - kappa w
#: (:func:`delpyro.effects.compound_prior_scales`); formats 2 to 4 held (w, u_m).
#: 4: disynthon (pair) effects as a local site, ``bb_pair_z``, not centred, with each pair's training
#: compounds in the encoding (``pair_counts``); formats 2 and 3 centred them within ``bb_z``.
#: 3: a checksummed header, then a weights-only state: the model's screen constants in an ``encoding``
#: (format 2 had a ``spec``), its networks under ``networks.`` with residual layers under
#: ``encoder.residual.``, point estimates named without ``observation.``, ``n_layers`` and
#: ``gates="latent"``, no constraints, random states as tensors and lists.
#: 2: building-block effects as two sample sites. 1: two sites per family.
FORMAT = 6
_MAGIC = b"delpyro checkpoint\n"


def write(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (plain values and tensors only) to ``path``, with its header and checksum."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = _MAGIC + f"format {FORMAT}\nsha256 {hashlib.sha256(payload).hexdigest()}\n".encode()
    return write_bytes(path, header + payload)


def read(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict of the current format (formats 2 to 4 are converted).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError``, naming the file and what is wrong,
    for anything that is not a whole delpyro checkpoint."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(_MAGIC):
        state = _unpickle(path, _checked_payload(path, data))
    else:
        with torch.serialization.safe_globals(_FORMAT_2_GLOBALS):
            state = _unpickle(path, data)
    found = state.get("format") if isinstance(state, dict) else None
    if found == 4 and data.startswith(_MAGIC):
        return _from_format_4(path, state)
    if found in (5, FORMAT) and data.startswith(_MAGIC):  # format 5's list of ids is read as it is
        return {**state, "format": FORMAT}
    if found == 3 and data.startswith(_MAGIC):
        return _from_format_4(path, _from_format_3(path, state))
    if found == 2:
        return _from_format_4(path, _from_format_3(path, _from_format_2(state)))
    if found == 1:
        raise ValueError(
            f"{path}: a checkpoint of format 1, written before building-block effects became two sample "
            f"sites (format 2); its guide parameters do not fit this model: fit again"
        )
    raise ValueError(f"{path}: not a delpyro checkpoint of format {FORMAT} (or 5, 4, 3 or 2)")


def _checked_payload(path: Path, data: bytes) -> bytes:
    lines = data.split(b"\n", 3)
    if len(lines) < 4 or not lines[1].startswith(b"format ") or not lines[2].startswith(b"sha256 "):
        raise ValueError(f"{path}: a damaged delpyro checkpoint: its header is cut or garbled")
    payload = lines[3]
    if hashlib.sha256(payload).hexdigest().encode() != lines[2][len(b"sha256 ") :]:
        raise ValueError(
            f"{path}: a damaged delpyro checkpoint: its contents do not match their checksum "
            "(a truncated copy, or a changed byte); nothing was read from it"
        )
    return payload


def _unpickle(path: Path, data: bytes) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
        if not refused:
            raise ValueError(f"{path}: not a delpyro checkpoint: it cannot be read as one") from None
        what = refused[0].split("Unsupported global:")[-1].split(" was not")[0].strip()
        raise ValueError(
            f"{path}: refused: this file holds objects other than tensors and plain values ({what}), and "
            "reading them would run code; a delpyro checkpoint never does"
        ) from None
    except Exception as err:  # whatever else a damaged or foreign file makes torch.load raise
        raise ValueError(f"{path}: not a delpyro checkpoint: it cannot be read as one ({err})") from None


#: What format-2 files hold besides tensors and plain values: Pyro's constraints and numpy's random state.
_FORMAT_2_GLOBALS = [
    value
    for module in (torch_constraints, pyro_constraints)
    for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, torch_constraints.Constraint)
] + [np.ndarray, np.dtype, type(np.dtype(np.uint32)), np._core.multiarray._reconstruct]


def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's global random states, as a tensor and lists (what ``weights_only``
    reads)."""
    return _plain_rng(torch.get_rng_state(), random.getstate(), np.random.get_state())  # noqa: NPY002


def _plain_rng(torch_state: torch.Tensor, random_state: tuple, numpy_state: tuple) -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = numpy_state
    return {
        "torch": torch_state,
        "random": [random_state[0], list(random_state[1]), random_state[2]],
        "numpy": [kind, [int(k) for k in keys], int(position), int(has_gauss), float(cached)],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Set the random states :func:`rng_state` gave."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["random"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))  # noqa: NPY002


#: the guide's parameters that format 5 changed, and the scales' medians that convert them
_EFFECT_LOCS, _EFFECT_SCALES = "AutoNormal.locs.compound_effect", "AutoNormal.scales.compound_effect"
_SCALE_LOCS = ("AutoNormal.locs.compound_scale", "AutoNormal.locs.compound_matrix_scale")


def _from_format_4(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """A format-4 checkpoint in format 5. With controls and the "compound" term, the guide's per-compound
    normals held (w, u_m); now (w, d), d = u_m - kappa w, with kappa at the guide's medians of sigma_t and
    sigma_m. Each compound's means move exactly, and d's scale is set so that its target effect
    u_t = (1 - kappa) w - d keeps the spread it had, sqrt(s_w^2 + s_m^2): s_d^2 = s_m^2 + (2 kappa -
    kappa^2) s_w^2. Its log enrichment keeps its mean and spread; draws differ, as the guide's coordinates
    did. The optimizer's moments of the two parameters restart (they belonged to the old coordinates).
    Other guides than AutoNormal's are refused."""
    state = {**state, "format": FORMAT}  # format 5's encoding, read as format 6's
    if "compound" not in state["encoding"]["terms"] or not state["encoding"].get("control_names"):
        return state
    params = state["params"]
    if _EFFECT_LOCS not in params or any(name not in params for name in _SCALE_LOCS):
        raise ValueError(
            f"{path}: a checkpoint of format 4 of a model with controls and per-compound effects whose guide is "
            f"not AutoNormal's; its per-compound parameters are in the coordinates before format 5 and "
            "cannot be converted: fit again"
        )
    kappa = float(matrix_share(params[_SCALE_LOCS[0]].exp(), params[_SCALE_LOCS[1]].exp()))
    positive = torch.distributions.biject_to(pyro_constraints.softplus_positive)

    def converted(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(values)
        if _EFFECT_LOCS in values:
            loc = values[_EFFECT_LOCS]
            out[_EFFECT_LOCS] = torch.stack([loc[:, 0], loc[:, 1] - kappa * loc[:, 0]], dim=-1)
        if _EFFECT_SCALES in values:
            scale = positive(values[_EFFECT_SCALES])
            d_scale = (scale[:, 1] ** 2 + (2 * kappa - kappa**2) * scale[:, 0] ** 2).sqrt()
            out[_EFFECT_SCALES] = positive.inv(torch.stack([scale[:, 0], d_scale], dim=-1))
        return out

    optim_state = {k: v for k, v in state["optim_state"].items() if k not in (_EFFECT_LOCS, _EFFECT_SCALES)}
    ema = dict(state["ema"], shadow=converted(state["ema"]["shadow"]))
    return {**state, "params": converted(params), "optim_state": optim_state, "ema": ema}


def _from_format_3(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """A format-3 checkpoint in format 4: the same, with no pair counts, when its model has no
    disynthon families. One with them is refused: its guide held the pairs' effects centred within
    ``bb_z``, which this model does not, so its parameters do not carry over."""
    encoding = state["encoding"]
    if encoding.get("pair_keys"):
        raise ValueError(
            f"{path}: a checkpoint of format {state['format']} of a model with disynthon families, written "
            f"before pair effects became a local site (format 4); its guide parameters do not fit this "
            "model: fit again (models without disynthon families, bb_pairs=False, still load)"
        )
    return {**state, "format": 4, "encoding": {**encoding, "pair_counts": {}}}


def _from_format_2(state: dict[str, Any]) -> dict[str, Any]:
    """A format-2 checkpoint in format 3. Format 2 named the residual layers' counts
    ``n_blocks`` and ``n_post_blocks``, latent gates ``"global"``, kept the screen's constants in a
    ``spec`` (without the fingerprint settings and terms, which came from the config), the networks
    under ``terms.`` (residual layers under ``encoder.blocks.``) with the depth offsets as buffers, and
    point estimates as ``observation.<name>``, each parameter's constraint, and the random states as
    ``pyro.util.get_rng_state`` gives them."""
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
    converted = {key: value for key, value in state.items() if key not in ("spec", "constraints")}
    rng = state["rng"]
    converted.update(
        format=3,
        config=config,
        encoding=encoding,
        model_state=model_state,
        params=renamed(state["params"]),
        optim_state=renamed(state["optim_state"]),
        ema=ema,
        best_epoch=None,
        rng=_plain_rng(rng["torch"], rng["random"], rng["numpy"]),
    )
    return converted
