"""How the package is laid out: imports run one way, down the layers; the model's sample sites and their
names live in model.py; the README's layout names every module."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pyro
import torch
from pyro.poutine.util import site_is_subsample

import delpyro
from delpyro import DELModel, Encoding, Minibatches, ModelConfig

PACKAGE = Path(delpyro.__file__).parent
README = PACKAGE.parent / "README.md"

#: Each module's layer, bottom first: a module may import only modules of lower layers.
LAYERS = [
    ("keys", "widgets", "files", "workers"),  # batch keys; the training display; safe file writes; worker pools
    ("data",),  # the screen container
    ("repair", "library"),  # SMILES repair; completing an observed-only table from its library
    ("reading", "splits", "batches", "features", "baselines", "simulate"),
    ("selections", "datasets", "simulate_targets", "targets"),  # many selections; real screens; several targets
    ("nets", "distributions"),  # plain torch networks; count distributions
    ("config",),
    ("encoding", "effects"),  # a screen -> arrays; the latent effects' arithmetic
    ("model",),  # every plate and sample site
    ("guides", "optim"),
    ("steps", "checkpoint", "distributed"),  # the SVI objective and its steps; the checkpoint file; processes
    ("posterior", "diagnostics"),  # summaries and checks, over any fitted result
    ("results",),  # SVI and MCMC results, siblings behind one interface
    ("train", "mcmc", "predictions"),  # fit (a loop of callbacks); NUTS; predictions written in chunks
    ("metrics", "hits", "choice"),  # scores against the truth; hit calls at a posterior FDR; choosing terms
    ("selectivity",),  # one target against the others, from each target's posterior
    ("plots",),
    ("report",),
    ("cli", "__init__"),
    ("__main__",),
]
RANK = {module: rank for rank, modules in enumerate(LAYERS) for module in modules}


def imported_modules(path: Path) -> set[str]:
    """The delpyro modules a file imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "delpyro":  # from delpyro import plots, results
                names = [f"delpyro.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "delpyro" and len(parts) > 1 and (PACKAGE / f"{parts[1]}.py").exists():
                found.add(parts[1])
    return found


def test_every_module_has_a_layer_and_imports_only_lower_layers() -> None:
    modules = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert sorted(RANK) == modules, "a module was added or removed: give it a layer in LAYERS and the README"
    upward = []
    for module in modules:
        for imported in imported_modules(PACKAGE / f"{module}.py"):
            if RANK[imported] >= RANK[module]:
                upward.append(f"{module} (layer {RANK[module]}) imports {imported} (layer {RANK[imported]})")
    assert not upward, "imports must run down the layers:\n" + "\n".join(upward)


def test_the_layer_check_finds_an_upward_import(tmp_path) -> None:
    source = tmp_path / "data.py"
    source.write_text(
        "import numpy\n\ndef f():\n    from delpyro.model import DELModel\n    from delpyro import results\n"
    )
    assert imported_modules(source) == {"model", "results"}


def _sample_site_names() -> set[str]:
    """The latent sample sites of the model under settings that between them make every site."""
    screen = delpyro.simulate_del(seed=0, n_per_cycle=(3, 3, 2))
    names: set[str] = set()
    configs = [
        ModelConfig(hidden_size=4, n_layers=0, fingerprint_bits=32, depth_deviation=0.1, matrix_shift="latent"),
        ModelConfig(terms=("building_blocks", "compound")),  # intercepts
    ]
    for config in configs:
        encoding = Encoding.fit(screen, config)
        model = DELModel(config, encoding)
        batch = next(iter(Minibatches(encoding.encode(screen), 5, shuffle=False)))
        batch["training_position"] = batch["training_position"].clone()
        batch["training_position"][0] = -1  # a new compound too
        with model.param_scope(), torch.no_grad():
            trace = pyro.poutine.trace(model).get_trace(batch)
        names |= {
            name
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
        }
    return names


def test_the_model_sites_and_their_names_live_in_model_py() -> None:
    names = _sample_site_names()
    assert {"compound_effect", "new_compound_effect", "bb_z", "target_intercept", "target_gate"} <= names
    # a setting that fixes a site's value is named as the site is (ModelConfig.target_gate: the same gate)
    names -= {field.name for field in dataclasses.fields(ModelConfig)}
    written = []
    sampled = []
    for path in PACKAGE.glob("*.py"):
        if path.name == "model.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names:
                written.append(f"{path.name}:{node.lineno} {node.value!r}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "sample"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "pyro"
                and path.name != "guides.py"  # a guide's own sites (stored NUTS samples)
            ):
                sampled.append(f"{path.name}:{node.lineno}")
    assert not written, "site names are model.py's constants:\n" + "\n".join(written)
    assert not sampled, "the model's sample sites are all in model.py:\n" + "\n".join(sampled)


def test_the_readme_lays_out_every_module() -> None:
    text = README.read_text()
    section = text[text.index("## How the code is laid out") :]
    section = section[: section.index("\n## ", 1)]
    listed = set(re.findall(r"`(\w+)\.py`", section))
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules <= listed, f"the README's layout misses {sorted(modules - listed)}"
