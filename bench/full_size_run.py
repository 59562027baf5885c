"""The whole pipeline at XLM-R's real shapes on this host: the time of every stage a run goes through, and the peak
host memory.

    python bench/full_size_run.py                                  # xlm-roberta-large, random weights, 2 steps/phase
    python bench/full_size_run.py --model xlm-roberta-base --layers 2 --vocab-size 4002   # the reduced CI run

It runs `python -m stilts_jax.main --config=configs/demo.py` in this process (SQuAD -> TyDiQA-GoldP on the shipped
demo data) with `model.random_init=true`: the encoder is built from the shipped config.json of `--model` with
random weights, so nothing is downloaded; the tokenizer is the shipped demo tokenizer (its ids are a subset of the
real vocabulary). Each phase trains `--steps` steps at `--batch`; the English dev sets are cut to `--dev-examples`,
the zero-shot evaluation to `--languages`. After the run it restores the target phase's last checkpoint as a resume
would (manifests verified, the whole train state) and exports the target model as a transformers folder.

Stages are timed by wrapping the functions the pipeline calls (exclusive times: a stage inside another is counted
once, in the inner one); each train step is synchronised (`jax.block_until_ready`) so its time is its compute,
which the loop would otherwise overlap with the next step's dispatch. Compilation is JAX's own compile events
(tracing, lowering, XLA), counted inside the stage that triggered it and shown in its own column. "peak RSS" is the
process's maximum resident set size (getrusage) when the stage first ended. The figures depend on the host's load
(printed above the table).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class StageClock:
    """Exclusive wall time, calls, compile time and the RSS high-water mark per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.compile: dict[str, float] = {}
        self.rss: dict[str, int] = {}
        self.order: list[str] = []  # by first start
        self.originals: dict[tuple[Any, str], Callable[..., Any]] = {}
        self._stack: list[list[Any]] = []  # [name, started, paused seconds]
        self.on_stage_end: Callable[[], None] | None = None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if name not in self.order:
            self.order.append(name)
        if self._stack:
            self._stack[-1].append(now)  # the parent pauses
        self._stack.append([name, now])
        try:
            yield
        finally:
            end = time.perf_counter()
            _, started = self._stack.pop()
            self.seconds[name] = self.seconds.get(name, 0.0) + end - started
            self.calls[name] = self.calls.get(name, 0) + 1
            self.rss.setdefault(name, peak_rss())
            if self._stack:  # the parent resumes: its clock restarts now
                parent = self._stack[-1]
                paused = parent.pop()
                parent[1] += end - paused
            if self.on_stage_end is not None:
                self.on_stage_end()

    def compiled(self, seconds: float) -> None:
        name = self._stack[-1][0] if self._stack else "other (outside the stages)"
        self.compile[name] = self.compile.get(name, 0.0) + seconds

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        function = getattr(owner, attribute)
        self.originals[(owner, attribute)] = function

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return function(*args, **kwargs)

        setattr(owner, attribute, timed)


def write_report(
    path: Path, clock: StageClock, header: list[str], total: float | None, pipeline_seconds: float | None
) -> None:
    """The stage table as JSON; total and pipeline_seconds are None while the run is still going."""
    stages = {
        stage: {
            "calls": clock.calls[stage],
            "seconds": clock.seconds[stage],
            "compile_seconds": clock.compile.get(stage, 0.0),
            "peak_rss_bytes": clock.rss[stage],
        }
        for stage in clock.order
        if stage in clock.seconds
    }
    report = {
        "header": header,
        "finished": total is not None,
        "total_seconds": total,
        "pipeline_seconds": pipeline_seconds,
        "peak_rss_bytes": peak_rss(),
        "stages": stages,
    }
    path.write_text(json.dumps(report, indent=2))


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def model_folder(model: str, layers: int, vocab_size: int, scratch: Path) -> str:
    """The shipped config's name, or a copy of it with fewer layers / a smaller vocabulary in `scratch`."""
    from stilts_jax.models.config import shipped_config_dir

    shipped = shipped_config_dir(model)
    if shipped is None:
        raise SystemExit(f"no shipped config for {model}")
    if not layers and not vocab_size:
        return model
    config = json.loads((shipped / "config.json").read_text())
    config["num_hidden_layers"] = layers or config["num_hidden_layers"]
    config["vocab_size"] = vocab_size or config["vocab_size"]
    folder = scratch / f"{model}-reduced"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return str(folder)


def instrument(clock: StageClock) -> None:
    import jax

    from stilts_jax.pipeline import common, context, runner, training, zero_shot
    from stilts_jax.train import checkpoints, loop

    compile_events = {
        "/jax/core/compile/backend_compile_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/jaxpr_trace_duration",
    }

    def on_event(event: str, duration: float, **_: Any) -> None:
        if event in compile_events:
            clock.compiled(duration)

    jax.monitoring.register_event_duration_secs_listener(on_event)

    clock.wrap(context.RunContext, "__init__", "setup: mesh, tokenizer, model config")
    clock.wrap(context.RunContext, "make_model", "model build (random weights, new head)")
    clock.wrap(context.RunContext, "pretrained_encoder", "model build (random weights, new head)")
    clock.wrap(training, "training_features", "featurization (training features)")
    clock.wrap(loop, "ModelSpec", "sharding: parameter shardings, train state on the mesh")
    clock.wrap(loop, "init_train_state", "sharding: parameter shardings, train state on the mesh")
    clock.wrap(checkpoints.Checkpoints, "restore_latest", "restore (resume check at phase start)")
    clock.wrap(checkpoints.Checkpoints, "save", "checkpoint save (training thread)")
    clock.wrap(checkpoints.Checkpoints, "wait", "checkpoint wait + close (last save, manifest)")
    clock.wrap(checkpoints.Checkpoints, "close", "checkpoint wait + close (last save, manifest)")
    clock.wrap(checkpoints.Checkpoints, "restore_state", "restore best checkpoint")
    clock.wrap(context.RunContext, "load_encoder", "hand-off: encoder into the target model")
    clock.wrap(training, "save_params", "save best_model and encoder")
    clock.wrap(common.SelectionScores, "during_training", "evaluation: English dev during training")
    clock.wrap(common.SelectionScores, "final", "evaluation: selected model's English dev score")
    clock.wrap(zero_shot, "load_params", "restore best model for the evaluation")
    clock.wrap(runner, "evaluate_zero_shot", "evaluation: zero-shot languages")

    make_train_step = loop.make_train_step

    def timed_make_train_step(*args: Any, **kwargs: Any) -> Callable[..., Any]:
        step = make_train_step(*args, **kwargs)
        calls = [0]

        def timed_step(state: Any, batch: Any) -> Any:
            calls[0] += 1
            name = "first train step (compile + run)" if calls[0] == 1 else "train steps after the first"
            with clock.stage(name):
                return jax.block_until_ready(step(state, batch))

        return timed_step

    loop.make_train_step = timed_make_train_step


def restore_like_a_resume(clock: StageClock, checkpoint_dir: Path) -> int:
    """Restore the newest checkpoint of `checkpoint_dir` onto this process's first device as `restore_latest` does
    on resume (manifest check, Orbax restore of every array); returns the restored step."""
    import jax
    import orbax.checkpoint as ocp

    from stilts_jax.train.checkpoints import Checkpoints

    checkpoints = Checkpoints(checkpoint_dir)
    step = checkpoints.all_steps()[-1]
    reader = ocp.StandardCheckpointer()
    tree = reader.metadata(checkpoint_dir / str(step) / "state").item_metadata.tree
    reader.close()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device), tree)
    restore_latest = clock.originals[(Checkpoints, "restore_latest")]  # timed as this stage, not the wrapped one
    restored = restore_latest(checkpoints, abstract)
    checkpoints.close()
    if restored is None or restored[0] != step:
        raise SystemExit(f"the checkpoint of step {step} in {checkpoint_dir} did not restore")
    jax.block_until_ready(restored[1])
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="xlm-roberta-large", help="a shipped model config (default: large)")
    parser.add_argument("--layers", type=int, default=0, help="fewer layers than the config's (0: as shipped)")
    parser.add_argument("--vocab-size", type=int, default=0, help="a smaller vocabulary (0: as shipped)")
    parser.add_argument("--steps", type=int, default=2, help="train steps per phase (default: 2)")
    parser.add_argument("--batch", type=int, default=8, help="global batch size (default: 8)")
    parser.add_argument("--max-length", type=int, default=160, help="sequence length (default: the demo's 160)")
    parser.add_argument("--dev-examples", type=int, default=16, help="English dev examples per phase (default: 16)")
    parser.add_argument("--languages", default="en,sw", help="zero-shot languages (default: en,sw)")
    parser.add_argument("--workdir", default=None, help="kept afterwards (default: a temporary folder, removed)")
    parser.add_argument("--json", default=None, help="also write the stage table as JSON here")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from stilts_jax import main as stilts_main
    from stilts_jax.core.tokenization import DEMO_TOKENIZER_DIR
    from stilts_jax.export import export_phase

    import common

    scratch = Path(tempfile.mkdtemp(prefix="full_size_run_"))
    workdir = Path(args.workdir) if args.workdir else scratch / "workdir"
    name = model_folder(args.model, args.layers, args.vocab_size, scratch)
    languages = [lang for lang in args.languages.split(",") if lang]
    overrides = [
        f"--config={ROOT / 'configs' / 'demo.py'}",
        f"--config.workdir={workdir}",
        f"--config.model.name={name}",
        "--config.model.make_tiny=false",
        "--config.model.random_init=true",
        f"--config.model.tokenizer={DEMO_TOKENIZER_DIR}",
        f"--config.evaluation.languages={languages!r}",
        "--config.evaluation.plots=false",
    ]
    for phase in ("intermediate", "target"):
        overrides += [
            f"--config.{phase}.train.max_steps={args.steps}",
            f"--config.{phase}.train.batch_size={args.batch}",
            f"--config.{phase}.max_length={args.max_length}",
            f"--config.{phase}.max_dev_examples={args.dev_examples}",
            f"--config.{phase}.train.progress_bar=false",
        ]
    header = common.environment_lines(torch_needed=False)
    shape = (
        f"{args.model}"
        + (f", {args.layers} layers" if args.layers else "")
        + (f", vocabulary {args.vocab_size}" if args.vocab_size else "")
    )
    header.append(
        f"model: {shape}, random weights; {args.steps} steps per phase at batch {args.batch} x {args.max_length}; "
        f"English dev {args.dev_examples} examples per phase; zero-shot languages {', '.join(languages)}"
    )
    for line in header:
        print(line, flush=True)

    clock = StageClock()
    if args.json:  # rewritten whenever a stage ends: a run killed midway (out of memory) still leaves its stages
        clock.on_stage_end = lambda: write_report(Path(args.json), clock, header, None, None)
    instrument(clock)
    started = time.perf_counter()
    try:
        with clock.stage("other (config, data loading, planning, records)"):
            code = stilts_main.main(overrides)
        if code != 0:
            raise SystemExit(f"the pipeline failed (exit status {code})")
        pipeline_seconds = time.perf_counter() - started
        with clock.stage("restore (resume: manifests verified, whole train state)"):
            restore_like_a_resume(clock, workdir / "target" / "checkpoints")
        with clock.stage("export (transformers folder)"):
            export_phase(str(workdir), "target", str(scratch / "exported"))
        total = time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the model config copy, the export, the workdir unless given

    outer = "other (config, data loading, planning, records)"
    order = [stage for stage in clock.order if stage != outer] + [outer]
    rows = [
        [
            stage,
            clock.calls[stage],
            f"{clock.seconds[stage]:.1f}",
            f"{clock.compile.get(stage, 0.0):.1f}",
            common.fmt_bytes(clock.rss[stage]),
        ]
        for stage in order
    ]
    rows.append(["**total**", "", f"{total:.1f}", f"{sum(clock.compile.values()):.1f}", common.fmt_bytes(peak_rss())])
    print()
    print(
        f"pipeline {pipeline_seconds:.1f} s, then the restore and the export; load average now {os.getloadavg()[0]:.2f}"
    )
    print(
        common.markdown_table(["stage", "calls", "seconds (exclusive)", "of which compiling", "peak RSS so far"], rows)
    )
    if args.json:
        write_report(Path(args.json), clock, header, total, pipeline_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
