"""`--config.dry_run=true`: what a run would do, printed before anything is trained or written.

The resolved config, each phase with what a run would do with it in this workdir (run, resume, reuse, or refuse
because its settings changed), and the data each phase would read.
"""

from __future__ import annotations

import ml_collections

from stilts_jax.config.loader import config_to_json
from stilts_jax.core.paths import as_path
from stilts_jax.pipeline.common import DONE
from stilts_jax.pipeline.preflight import planned_reads
from stilts_jax.pipeline.reuse import evaluation_fingerprint, plan, recorded_settings


def _source_text(source: dict) -> str:
    kind = source.get("kind", "hf")
    where = {key: value for key, value in source.items() if key != "kind" and value not in ("", None, {})}
    return f"{kind} " + ", ".join(f"{key}={value}" for key, value in where.items())


def describe(config: ml_collections.ConfigDict) -> str:
    """The dry run's report."""
    workdir = as_path(config.workdir)
    phases = plan(config)
    lines = ["# resolved config", config_to_json(config).rstrip(), "", f"# phases (workdir {workdir})"]
    for phase in phases:
        recorded = recorded_settings(workdir / phase.folder)
        if recorded is None:
            state = (
                "reuse (finished by an earlier version, unverified)"
                if (workdir / phase.folder / DONE).exists()
                else "run"
            )
        elif recorded.get("fingerprint") != phase.fingerprint:
            state = (
                "start anew (settings changed; on_change=restart)"
                if config.on_change == "restart"
                else "refused: settings changed (see --config.on_change)"
            )
        else:
            state = "reuse (finished)" if (workdir / phase.folder / DONE).exists() else "resume from its checkpoints"
        lines.append(f"- {phase.folder}: {phase.config.task} -> {state} [settings {phase.fingerprint}]")
    lines.append(f"- evaluation: {config.target.task} [settings {evaluation_fingerprint(config, phases)}]")
    lines += ["", "# data"]
    for read in planned_reads(config):
        languages = ", ".join(read.languages) if read.languages else "every language"
        lines.append(f"- {read.where}: {read.spec.name} {read.which} ({languages}) from {_source_text(read.source)}")
    return "\n".join(lines) + "\n"
