"""Users' own task modules: Python files (or importable modules) that call `register_task`, loaded before a run.

    --config.task_modules="['path/to/my_tasks.py']"        (main, inspect, sweeps: a config key)
    --task-modules path/to/my_tasks.py                       (python -m stilts_jax.score)

A module is loaded once per process, whatever the number of calls; a path is resolved against the working
directory. Loading is what makes the module's tasks known, so it happens before the config file runs (recipes read
task defaults) and again, as a no-op, when the pipeline starts.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from stilts_jax.core.errors import InputError, StiltsError

_LOADED: dict[str, ModuleType] = {}


def _is_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name or "\\" in name


def load_task_module(name: str) -> ModuleType:
    """Import `name` (a .py path or a dotted module name) once, so the tasks it registers exist."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"a task module is a .py path or a module name, got {name!r}")
    if _is_path(name):
        path = Path(name).expanduser().resolve()
        key = str(path)
        if key in _LOADED:
            return _LOADED[key]
        if not path.is_file():
            raise InputError(
                f"task module {name} does not exist (config key task_modules; paths are relative to {Path.cwd()})"
            )
        module_name = f"stilts_user_tasks_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise InputError(f"task module {path} cannot be imported as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except StiltsError:
            sys.modules.pop(module_name, None)
            raise
        except Exception as e:  # the user's code: say where it failed, without our frames
            sys.modules.pop(module_name, None)
            where = traceback.extract_tb(e.__traceback__)[-1]
            raise InputError(f"task module {path} failed at line {where.lineno}: {type(e).__name__}: {e}") from e
    else:
        key = name
        if key in _LOADED:
            return _LOADED[key]
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            raise InputError(
                f"task module {name!r} cannot be imported ({e}); give a .py path or a module on PYTHONPATH"
            ) from e
    _LOADED[key] = module
    return module


def load_task_modules(names: Sequence[str] | str | None) -> list[ModuleType]:
    """Load every module of `names` (a list, or one name)."""
    if not names:
        return []
    if isinstance(names, str):
        names = [names]
    return [load_task_module(str(name)) for name in names]
