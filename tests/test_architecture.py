"""The package's layers hold (docs/ARCHITECTURE.md): the import-linter contracts of pyproject.toml [tool.importlinter]
are kept, none of them is missing, and every import a contract ignores says why.

The contracts: the layers (pipeline | experiments > tasks > evaluation > train | data > models > foundation), models
and train never importing pipeline, tasks or data, and no import cycle between the subpackages or between the modules
of any package (acyclic_siblings checks every level below stilts_jax, so a module-level cycle breaks it too).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
CONTRACTS = {"layers", "models-train-know-no-task", "no-cycles"}

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("importlinter") is None,
    reason='import-linter is not installed: `pip install -e ".[test]"` (or `pip install import-linter`) to check the '
    "architecture contracts",
)


def _contracts() -> list[dict]:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]


def test_the_architecture_contracts_are_configured():
    contracts = {c["id"]: c for c in _contracts()}
    assert set(contracts) >= CONTRACTS, f"pyproject.toml lacks the contracts {sorted(CONTRACTS - set(contracts))}"
    assert contracts["no-cycles"]["ancestors"] == ["stilts_jax"]


def test_every_ignored_import_says_why():
    """An `ignore_imports` entry weakens a contract: it must carry a comment (on its line or the line above)."""
    lines = PYPROJECT.read_text().splitlines()
    in_list = False
    for number, line in enumerate(lines):
        code = line.split("#", 1)[0]
        in_list = in_list or code.strip().startswith("ignore_imports")
        if in_list and "->" in code:
            above = lines[number - 1].strip()
            assert "#" in line or above.startswith("#"), (
                f"pyproject.toml:{number + 1}: an ignored import without a comment saying why: {line.strip()}"
            )
        if in_list and "]" in code:
            in_list = False


def test_import_contracts_are_kept():
    command = (
        "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_logo=True, no_cache=True))"
    )
    result = subprocess.run([sys.executable, "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"lint-imports failed:\n{result.stdout}\n{result.stderr}"
    for contract in _contracts():
        assert f"{contract['name']} KEPT" in " ".join(result.stdout.split()), result.stdout
