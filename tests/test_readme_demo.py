"""The README's first command, run as a user runs it (subprocesses, from the repository root)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_readme_main_command_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n# 1\..*\n(.*)\n", readme).group(1)
    # Skip the venv and install steps: this interpreter already has the project installed.
    steps = [s.strip() for s in first.split("&&") if s.strip().startswith("python -m stilts_jax")]
    assert len(steps) == 2
    for step in steps:
        args = step.split()[1:]
        args = [a.replace("workdir/", f"{tmp_path}/") for a in args]
        result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
    embeddings = np.load(tmp_path / "emb.de.npy")
    assert embeddings.shape == (80, 64) and np.isfinite(embeddings).all()
    assert "wrote" in result.stdout and "sentences/s" in result.stdout
