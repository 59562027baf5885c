"""Weights & Biases, an optional second home for what metrics.jsonl and TensorBoard get (`logging.wandb`).

One W&B run per invocation, opened on process 0 around the phases (`wandb_run`): every MetricsLog record goes to it
as `<phase folder>/<split>/<metric>` (`target/train/loss`, `intermediate/1_siqa/dev/dev_score`,
`evaluation/zero_shot/average/f1`), plotted against `<phase folder>/step`, since each phase counts its steps from 0.
The run's config is the resolved config; its group defaults to the workdir's parent folder (a sweep's root, so a
sweep's runs form one group) and its name to the workdir's folder name.

Resuming: an online run's id is kept in `<workdir>/wandb_run.json`, so a rerun in the workdir (after a preemption, or
to add a phase) continues the same W&B run (`resume="allow"`); steps redone after the restored checkpoint are logged
again at the same phase step. An offline run is a new W&B run each invocation, in the same group under the same
name: W&B ignores `resume` offline, and distinct ids keep `wandb sync` from merging two runs into one.

wandb is not a requirement: the preflight (`wandb_problems`) names `pip install "stilts-jax[wandb]"` when the key is
set and the package is missing, before anything runs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections

from stilts_jax.config.loader import config_to_json
from stilts_jax.core.errors import StiltsError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import PathLike, as_path
from stilts_jax.train.metrics_log import forwarding_to

INSTALL = 'pip install "stilts-jax[wandb]"'
RUN_FILE = "wandb_run.json"  # in the workdir: the online run's id, so a rerun continues it
OFFLINE = ("offline", "dryrun", "disabled")  # WANDB_MODE values without a server run to continue


def wandb_problems(config: ml_collections.ConfigDict) -> list[str]:
    """The preflight's check: logging.wandb set but the wandb package missing (or broken) is one problem."""
    if not config.logging.wandb:
        return []
    try:
        import wandb  # noqa: F401 (only whether it imports)
    except ImportError as e:
        return [
            f"logging.wandb={config.logging.wandb!r} logs to Weights & Biases, but the wandb package cannot be "
            f"imported ({e}); install it with: {INSTALL} (or pip install wandb), or set --config.logging.wandb='' "
            "to log to metrics.jsonl and TensorBoard only"
        ]
    return []


class WandbSink:
    """Hands MetricsLog records to a W&B run: one key per metric, prefixed by the phase folder under the workdir."""

    def __init__(self, run: Any, workdir: PathLike):
        self.run = run
        self.root = str(as_path(workdir)).rstrip("/")
        self._phases: set[str] = set()

    def phase_of(self, folder: PathLike) -> str:
        """The folder's path under the workdir ("target", "intermediate/1_siqa", "evaluation"), else its name."""
        text = str(as_path(folder)).rstrip("/")
        if text.startswith(self.root + "/"):
            return text[len(self.root) + 1 :]
        return as_path(folder).name or "run"

    def write(self, folder: PathLike, step: int, split: str, metrics: dict[str, float]) -> None:
        phase = self.phase_of(folder)
        if phase not in self._phases:  # each phase counts its own steps: its charts use them as the x axis
            self._phases.add(phase)
            self.run.define_metric(f"{phase}/step")
            self.run.define_metric(f"{phase}/*", step_metric=f"{phase}/step")
        self.run.log({f"{phase}/step": step, **{f"{phase}/{split}/{name}": v for name, v in metrics.items()}})


def _stored_id(workdir: Any, project: str, entity: str) -> str | None:
    path = workdir / RUN_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None  # a damaged record: a new run (and a new record) rather than a stopped pipeline
    same = isinstance(record, dict) and record.get("project") == project and record.get("entity") == entity
    return str(record["id"]) if same and record.get("id") else None


def init_options(config: ml_collections.ConfigDict, workdir: PathLike) -> dict[str, Any]:
    """wandb.init's arguments for this run: online, `resume="allow"` with the id kept in the workdir (if any)."""
    workdir = as_path(workdir)
    settings = config.logging
    options: dict[str, Any] = {
        "project": settings.wandb,
        "entity": settings.wandb_entity or None,
        "group": settings.wandb_group or workdir.parent.name or None,
        "name": settings.wandb_name or workdir.name,
        "config": json.loads(config_to_json(config)),
    }
    if settings.wandb_mode:
        options["mode"] = settings.wandb_mode
    if (settings.wandb_mode or os.environ.get("WANDB_MODE") or "online") not in OFFLINE:
        options["resume"] = "allow"
        stored = _stored_id(workdir, settings.wandb, settings.wandb_entity)
        if stored:
            options["id"] = stored
    return options


@contextlib.contextmanager
def wandb_run(config: ml_collections.ConfigDict, workdir: PathLike) -> Iterator[Any]:
    """While the block runs, every MetricsLog record also goes to a W&B run (process 0; nothing when logging.wandb
    is ""); yields the run or None. The run is finished with exit code 1 when the block raises."""
    if not config.logging.wandb or jax.process_index() != 0:
        yield None
        return
    import wandb

    workdir = as_path(workdir)
    options = init_options(config, workdir)
    try:
        run = wandb.init(**options)
    except Exception as e:  # wandb raises its own errors (no login, no network, a bad entity)
        raise StiltsError(
            f"Weights & Biases could not start a run in project {options['project']!r}: {e}. Log in with "
            "`wandb login` (or set WANDB_API_KEY), log offline with --config.logging.wandb_mode=offline and "
            "`wandb sync` later, or turn it off with --config.logging.wandb=''"
        ) from e
    if "resume" in options:
        record = {"id": run.id, "project": options["project"], "entity": config.logging.wandb_entity}
        atomic_write_text(workdir / RUN_FILE, json.dumps(record) + "\n")
    exit_code = 1
    try:
        with forwarding_to(WandbSink(run, workdir)):
            yield run
        exit_code = 0
    finally:
        run.finish(exit_code=exit_code)
