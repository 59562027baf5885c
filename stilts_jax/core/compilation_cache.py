"""JAX's persistent compilation cache, on by default: a resumed or repeated run loads its compiled programs instead
of compiling them again (minutes per train step for XLM-R large on a TPU slice).

`compilation_cache` in the config names the folder (local or gs://; `~` and `$VAR` expanded), "default" being
`$XDG_CACHE_HOME/stilts-jax/jax-compilation` (`~/.cache/...` without it); "" turns the cache off. A cache folder already set for the process (JAX_COMPILATION_CACHE_DIR, or jax.config by the caller) is kept.
"""

from __future__ import annotations

import os

import jax


def default_folder() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.join(base, "stilts-jax", "jax-compilation")


def enable_compilation_cache(folder: str) -> str | None:
    """Point JAX's persistent cache at `folder` unless one is set already; returns the folder in use (None: off)."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return str(current)
    if not folder:
        return None
    if folder == "default":
        folder = default_folder()
    path = folder if "://" in folder else os.path.expanduser(os.path.expandvars(folder))
    jax.config.update("jax_compilation_cache_dir", path)
    return path
