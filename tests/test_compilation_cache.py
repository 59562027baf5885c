"""The persistent compilation cache: on by default for a run, a folder of the user's choice, off with ""."""

from __future__ import annotations

import os
import subprocess
import sys

import jax

from stilts_jax.core.compilation_cache import default_folder, enable_compilation_cache

PROBE = """
import sys, jax, jax.numpy as jnp
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
from stilts_jax.core.compilation_cache import enable_compilation_cache
print(enable_compilation_cache(sys.argv[1]))
jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()
"""


def _probe(folder: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", PROBE, folder], capture_output=True, text=True, env=env, check=True)
    return result.stdout.strip()


def test_a_run_fills_the_cache_folder_and_an_empty_setting_turns_it_off(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    assert _probe(str(tmp_path / "cache"), env) == str(tmp_path / "cache")
    assert any((tmp_path / "cache").iterdir())
    assert _probe("", env) == "None"
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    assert _probe("default", env) == str(tmp_path / "xdg" / "stilts-jax" / "jax-compilation")


def test_a_cache_set_by_the_caller_is_kept(tmp_path):
    current = jax.config.jax_compilation_cache_dir  # the test session's own (tests/conftest.py)
    assert current and enable_compilation_cache(str(tmp_path)) == str(current)
    assert default_folder().endswith(os.path.join("stilts-jax", "jax-compilation"))
