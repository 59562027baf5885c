"""`python -m stilts_jax.main --help`: the recipes and every config key with its default and valid values."""

from __future__ import annotations

import ast
from pathlib import Path

from stilts_jax.config.loader import ConfigError, load_config_file
from stilts_jax.config.schema import schema


def recipes(folder: Path) -> list[tuple[str, str]]:
    """(path, first docstring line) of every recipe in `folder` (configs/ of the repository)."""
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name == "base.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        found.append((str(path), doc.strip().splitlines()[0] if doc.strip() else ""))
    return found


def _lookup(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def help_text(usage: str, configs: Path = Path("configs")) -> str:
    lines = [usage.rstrip(), ""]
    if configs.is_dir():
        lines.append(f"Recipes ({configs}/):")
        listed = recipes(configs)
        width = max((len(path) for path, _ in listed), default=0)
        lines += [f"  {path.ljust(width)}  {summary}" for path, summary in listed]
        lines.append("")
    defaults = None
    if (configs / "base.py").is_file():
        try:
            defaults = load_config_file(str(configs / "base.py"))
        except ConfigError:
            defaults = None
    lines.append("Config keys (--config.KEY=VALUE; defaults of configs/base.py, whose comments explain each):")
    for dotted, rule in schema():
        default = ""
        if defaults is not None:
            try:
                default = f" = {_lookup(defaults, dotted)!r}"
            except (KeyError, AttributeError):
                default = ""
        lines.append(f"  {dotted}{default}    ({rule.expect})")
    lines += [
        "",
        "Also: --workdir=DIR (the same as --config.workdir=DIR); sections such as intermediate.task_sources "
        "are given whole as a dict.",
    ]
    return "\n".join(lines) + "\n"
