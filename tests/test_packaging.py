"""The environment files agree, and the commands a user runs exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0]
    return CONDA_TO_PYPI.get(name.lower(), name.lower()).replace("_", "-")


def _environment_names() -> set[str]:
    names = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        line = line.split("#", 1)[0].rstrip()
        match = re.match(r"^\s+-\s+([A-Za-z0-9_.\-]+)(.*)$", line)
        if match and match.group(1) not in ("pip", "python", "conda-forge"):
            names.add(_name(match.group(1) + match.group(2)))
    return names


def test_environment_yml_and_pyproject_name_the_same_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = {_name(r) for r in project["dependencies"]}
    pyproject |= {_name(r) for r in project["optional-dependencies"]["dev"]}
    environment = _environment_names()
    assert pyproject == environment, (
        f"only in pyproject.toml: {sorted(pyproject - environment)}; "
        f"only in environment.yml: {sorted(environment - pyproject)}"
    )
    for required in [
        "torch",
        "pyro-ppl",
        "jupyterlab",
        "ipywidgets",
        "seaborn",
        "arviz",
        "rdkit",
        "pandas",
        "pyarrow",
        "scipy",
        "tqdm",
        "pytest",
        "hypothesis",
        "ruff",
    ]:
        assert required in pyproject
    assert {"nbmake", "papermill"} & pyproject


def test_makefile_pins_a_cpu_torch_and_has_the_user_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in makefile
    for target in ["demo:", "test:", "lab:", "lint:"]:
        assert re.search(rf"^{target}", makefile, re.MULTILINE), target
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def _shell_commands(text: str) -> list[str]:
    """The commands of a shell script or block: comments, blank lines and shell set-up left out."""
    commands = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(("set ", "cd ")) or line.startswith("#!"):
            continue
        commands.append(line)
    return commands


def test_ci_runs_exactly_the_readme_test_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Tests\n(.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Tests' section"
    blocks = re.findall(r"```bash\n(.*?)```", section.group(1), re.DOTALL)
    assert len(blocks) == 1, "the README's Tests section should hold one bash block: the commands CI runs"
    readme_commands = _shell_commands(blocks[0])
    ci_commands = _shell_commands((ROOT / ".ci" / "run").read_text())
    assert readme_commands == ["make test", "make test-browser"]
    assert ci_commands == readme_commands


def test_shell_commands_skip_comments_and_setup() -> None:
    script = "#!/usr/bin/env bash\n# CI\nset -euo pipefail\ncd x\nmake test  # suite\n\nmake test-browser\n"
    assert _shell_commands(script) == ["make test", "make test-browser"]
