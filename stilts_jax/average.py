r"""Average the selected target models of several runs of one sweep cell (the same intermediate and target tasks and
model, different seeds) into one model, and evaluate it zero-shot like any finished phase.

    python -m stilts_jax.average --runs=workdir/sweeps/stilts/mnli_to_xnli_seed0,workdir/sweeps/stilts/mnli_to_xnli_seed1 \
        --output=workdir/averaged/mnli_to_xnli
    python -m stilts_jax.main --config=configs/stilts.py:intermediate=mnli,target=xnli \
        --config.target.evaluate_model=workdir/averaged/mnli_to_xnli --config.workdir=workdir/mnli_to_xnli_avg

Each run is a workdir (its target phase) or a finished phase folder. The uniform average of their selected models
(each phase's best_model: encoder and head) is written to OUTPUT/best_model with a phase record
(OUTPUT/phase_done.json) naming the runs, so `--config.target.evaluate_model=OUTPUT` evaluates it in every language
(Schmidt et al. 2023: averaging runs fine-tuned from one encoder improves zero-shot transfer without target-language
dev data). Runs of different target tasks, intermediate tasks or models are refused; other setting differences
(e.g. a learning rate) are listed and averaged only with --allow-different-settings.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from stilts_jax.core.errors import InputError, run_tool

# Where the runs must agree: what the selected model is (settings keys, dotted) and the cell it belongs to.
_RUN_VARIES = (
    "seed",
    "starts_from",
)  # what differs between seeds of one cell: the seed, and so the encoder started from


def _phase_folder(run: str) -> Any:
    from stilts_jax.core.paths import absolute, as_path
    from stilts_jax.pipeline.common import DONE

    path = as_path(run)
    if (path / "target" / DONE).exists():
        return absolute(path / "target")
    if (path / DONE).exists():
        return absolute(path)
    raise InputError(
        f"--runs: {run} is neither a workdir with a finished target phase (target/{DONE}) nor a finished phase "
        f"folder ({DONE}); finish the run with python -m stilts_jax.main first"
    )


def _intermediate(phase_dir: Any) -> str | None:
    """The intermediate task of the run the phase belongs to (its workdir's config.json), or None when unknown."""
    config = phase_dir.parent / "config.json"
    if phase_dir.name != "target" or not config.exists():
        return None
    intermediate = json.loads(config.read_text()).get("intermediate", {})
    return "&".join(intermediate.get("tasks") or []) or intermediate.get("task") or ""


def _check_runs(folders: list[Any], records: list[dict[str, Any]], allow_different_settings: bool) -> list[str]:
    """Refuse runs of different cells (task, model, intermediate task); the other setting differences, listed."""
    from stilts_jax.pipeline.reuse import differences

    first, first_dir = records[0], folders[0]
    notes = []
    for folder, record in zip(folders[1:], records[1:]):
        if record["task"] != first["task"]:
            raise InputError(
                f"--runs: {folder} trained {record['task']}, {first_dir} trained {first['task']}: only runs of one "
                "target task can be averaged"
            )
        ours, theirs = record["settings"].get("model", {}), first["settings"].get("model", {})
        if ours != theirs:
            changed = "; ".join(differences(theirs, ours))
            raise InputError(
                f"--runs: {folder} was trained from another model than {first_dir} ({changed}); only runs of one "
                "model can be averaged"
            )
        if _intermediate(folder) != _intermediate(first_dir):
            raise InputError(
                f"--runs: {folder} follows the intermediate task {_intermediate(folder)!r}, {first_dir} follows "
                f"{_intermediate(first_dir)!r}: average the runs of one sweep cell (its seeds)"
            )
        mine = {k: v for k, v in record["settings"].items() if k not in _RUN_VARIES}
        reference = {k: v for k, v in first["settings"].items() if k not in _RUN_VARIES}
        changed_settings = differences(reference, mine)
        if changed_settings:
            text = f"{folder} differs from {first_dir} in " + "; ".join(changed_settings)
            if not allow_different_settings:
                raise InputError(
                    f"--runs: {text}. Average the seeds of one configuration, or pass --allow-different-settings"
                )
            notes.append(text)
    return notes


def average_runs(runs: list[str], output: str, *, allow_different_settings: bool = False) -> dict[str, Any]:
    """Write the uniform average of the runs' selected target models to `output` (best_model and phase_done.json);
    returns the phase record written."""
    import jax
    import orbax.checkpoint as ocp

    from stilts_jax.core.io_utils import atomic_write_text
    from stilts_jax.core.paths import absolute, as_path
    from stilts_jax.pipeline.common import DONE
    from stilts_jax.pipeline.evaluate_model import read_phase
    from stilts_jax.train.averaging import average_params
    from stilts_jax.train.checkpoints import load_params, save_params

    if len(runs) < 2:
        raise InputError(f"--runs names {len(runs)} run(s); averaging needs two or more (comma-separated)")
    folders = [_phase_folder(run) for run in runs]
    if len({str(f) for f in folders}) != len(folders):
        raise InputError("--runs names one run more than once")
    records = [read_phase(folder) for folder in folders]
    notes = _check_runs(folders, records, allow_different_settings)
    out = absolute(output)
    if any(str(out) == str(folder) or str(out).startswith(str(folder) + "/") for folder in folders):
        raise InputError(f"--output {out} is inside one of the runs; name a new folder")

    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    checkpointer = ocp.StandardCheckpointer()
    try:
        saved = checkpointer.metadata(as_path(records[0]["best_model"])).item_metadata.tree
    finally:
        checkpointer.close()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(tuple(x.shape), x.dtype, sharding=device), saved)
    params = average_params([functools.partial(load_params, record["best_model"], abstract) for record in records])
    save_params(out / "best_model", params)

    entries = [
        {
            "run": str(folder),
            "seed": record["settings"].get("seed"),
            "best_step": record.get("best_step"),
            "dev": record.get("dev"),
        }
        for folder, record in zip(folders, records)
    ]
    named = ", ".join(f"{e['run']} (seed {e['seed']}, step {e['best_step']}, English dev {e['dev']})" for e in entries)
    identity = json.dumps([[r.get("fingerprint"), r.get("best_step"), str(f)] for f, r in zip(folders, records)])
    record = {
        "task": records[0]["task"],
        "best_step": None,
        "dev": None,  # the average was not evaluated on the English dev set
        "selection": f"uniform average of the selected models of {len(records)} runs: {named}",
        "averaged_runs": entries,
        "train_languages": records[0].get("train_languages", ["en"]),
        "language_sampling": records[0].get("language_sampling", "concatenate"),
        "best_model": "best_model",
        "fingerprint": hashlib.sha256(identity.encode()).hexdigest()[:16],
        "settings": records[0]["settings"],
        **({"setting_differences": notes} if notes else {}),
    }
    atomic_write_text(out / DONE, json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.average",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--runs", required=True, help="comma-separated workdirs (or finished phase folders)")
    parser.add_argument("--output", required=True, help="the folder to write (best_model and phase_done.json)")
    parser.add_argument(
        "--allow-different-settings",
        action="store_true",
        help="average runs whose target settings differ beyond the seed (the differences are recorded)",
    )
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def body() -> None:
        runs = [run.strip() for run in options.runs.split(",") if run.strip()]
        record = average_runs(runs, options.output, allow_different_settings=options.allow_different_settings)
        for note in record.get("setting_differences", []):
            print(f"note: {note}", flush=True)
        output = Path(options.output)
        print(
            f"averaged the {record['task']} models of {len(runs)} runs into {output / 'best_model'}; evaluate it with "
            f"--config.target.evaluate_model={output}",
            flush=True,
        )

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
