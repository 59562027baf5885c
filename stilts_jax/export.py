r"""Export a finished phase's fine-tuned model, encoder and task head, as a Hugging Face transformers folder.

    python -m stilts_jax.export --workdir=workdir/demo --phase=target --output=exported/tydiqa \
        [--push-to-hub=user/xlmr-squad-tydiqa]

The folder holds config.json, model.safetensors and the tokenizer files; transformers loads it as the task's model
class with no missing or unexpected weights: span QA -> XLMRobertaForQuestionAnswering, classification ->
...ForSequenceClassification (id2label from the task's labels), tagging -> ...ForTokenClassification, multiple
choice -> ...ForMultipleChoice; BERT models as BertFor... Its logits are the ones the pipeline evaluates with.
--phase: target, intermediate, or a chain stage's folder (intermediate/1_siqa). --push-to-hub uploads the folder to
a hub model repository (created if missing; needs a login: `hf auth login` or HF_TOKEN).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stilts_jax.core.errors import InputError, StiltsError, run_tool


def export_phase(workdir: str, phase: str, output: str) -> tuple[Path, str]:
    """Write the phase's model as a transformers folder; returns it and the transformers class it loads as."""
    from stilts_jax.core.paths import as_path
    from stilts_jax.models import hf_heads
    from stilts_jax.pipeline.context import RunContext
    from stilts_jax.pipeline.evaluate_model import head_kind, load_phase_model, phase_run_config, phase_task, read_phase
    from stilts_jax.tasks.registry import get_task

    record = read_phase(as_path(workdir) / phase)
    kind = head_kind(get_task(record["task"]))
    pipeline = RunContext(phase_run_config(workdir, record))
    task = phase_task(pipeline, record)
    model = load_phase_model(pipeline, record, task)
    labels = list(task.labels) if kind in (hf_heads.SEQUENCE_CLASSIFICATION, hf_heads.TOKEN_CLASSIFICATION) else None
    tokenizer_dir = pipeline.config.model.tokenizer or pipeline.model_dir
    folder = hf_heads.export_task_model(model, output, kind=kind, labels=labels, tokenizer_dir=tokenizer_dir)
    return folder, hf_heads.architecture_name(model.encoder.config, kind)


def push_to_hub(folder: Path, repo: str, *, private: bool = False) -> str:
    """Upload `folder` to the hub model repository `repo` (created when missing); returns the commit's URL."""
    import huggingface_hub
    from huggingface_hub import constants

    hint = (
        f"the exported folder is {folder}; upload it later with `hf upload {repo} {folder}` or run this command "
        "again with --push-to-hub when online"
    )
    if constants.HF_HUB_OFFLINE:
        raise StiltsError(f"--push-to-hub={repo}: HF_HUB_OFFLINE is set, so nothing can be uploaded; {hint}")
    api = huggingface_hub.HfApi()
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info: Any = api.upload_folder(
            repo_id=repo,
            folder_path=str(folder),
            repo_type="model",
            commit_message="Upload a model fine-tuned with stilts-jax",
        )
    except Exception as e:  # no network, no login, no write access: all end here, named
        raise StiltsError(f"--push-to-hub={repo}: the upload failed ({type(e).__name__}: {e}); {hint}") from e
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stilts_jax.export",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--workdir", required=True, help="the workdir the main command ran in")
    parser.add_argument(
        "--phase",
        default="target",
        help="target (default), intermediate, or a chain stage's folder such as intermediate/1_siqa",
    )
    parser.add_argument("--output", required=True, help="the folder to write (replaced whole if it exists)")
    parser.add_argument("--push-to-hub", default="", metavar="REPO", help="also upload the folder to this hub repo")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def body() -> None:
        if options.private and not options.push_to_hub:
            raise InputError("--private applies to --push-to-hub=REPO, which is not given")
        folder, architecture = export_phase(options.workdir, options.phase, options.output)
        print(f"exported {options.workdir}/{options.phase} to {folder} (transformers {architecture})", flush=True)
        if options.push_to_hub:
            url = push_to_hub(folder, options.push_to_hub, private=options.private)
            print(f"uploaded to {options.push_to_hub}: {url}", flush=True)

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
