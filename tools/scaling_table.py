"""Which mesh and remat settings fit each TPU slice, for the paper's phases: the table of docs/SCALING.md.

For every model x slice x recipe it compiles the recipe's programs with `python -m stilts_jax.aot` (the TPU
compiler, on this host: no TPU, weights or data), trying settings from the cheapest to the most memory-frugal
until every program fits the device's HBM:

  1. data parallel (parameters replicated), no remat
  2. FSDP (parameters, gradients and optimizer state split over the devices), no remat
  3. FSDP with remat='save_dots'
  4. FSDP with remat='full'

When a slice has more devices than the recipe's smallest training batch has rows, the devices left over split the
heads (mesh.tensor). Each compile's report is kept under --results (a rerun skips what is there), and the table is
written between the scaling-table markers of docs/SCALING.md (--doc) and printed.

    python tools/scaling_table.py                                   # every cell (hours on a small host)
    python tools/scaling_table.py --models xlm-roberta-base --slices v5e-8 v4-8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {
    "squad_to_tydiqa": "configs/squad_to_tydiqa.py",
    "mnli_to_xnli": "configs/stilts.py:intermediate=mnli,target=xnli",
    "tatoeba": "configs/stilts.py:intermediate=none,target=tatoeba",
}
# Slice names as Cloud TPU sells them -> libtpu topology names and JAX devices (v4 and v5p count TensorCores in the
# name; JAX runs each chip's two as one megacore device).
SLICES = {
    "v4-8": ("v4:2x2x1", 4),
    "v4-32": ("v4:2x2x4", 16),
    "v5e-8": ("v5e:2x4", 8),
    "v5e-256": ("v5e:16x16", 256),
    "v5p-8": ("v5p:2x2x1", 4),
    "v6e-8": ("v6e:2x4", 8),
}
MODELS = ("xlm-roberta-base", "xlm-roberta-large")
BEGIN, END = "<!-- scaling-table:begin -->", "<!-- scaling-table:end -->"


@dataclasses.dataclass(frozen=True)
class Setting:
    label: str
    mesh: dict[str, int]
    remat: str

    def overrides(self) -> list[str]:
        return [f"--config.mesh.{axis}={size}" for axis, size in self.mesh.items()] + [
            f"--config.model.remat={self.remat}"
        ]


def recipe_rows(recipe: str) -> int | None:
    """The fewest rows a training micro-batch of the recipe has (what the mesh's batch axes must divide), or None
    when it trains nothing (the Tatoeba evaluation)."""
    sys.path.insert(0, str(ROOT))
    from stilts_jax.config.loader import parse_config_args
    from stilts_jax.config.schema import smallest_training_micro_batch

    config, _ = parse_config_args([f"--config={ROOT / RECIPES[recipe]}"])
    return smallest_training_micro_batch(config)


def settings_for(devices: int, batch: int | None, widths: tuple[int, ...]) -> list[Setting]:
    """The settings to try, cheapest first. The batch is split over as many devices as it has rows for and the
    others split the heads, as a run with the default mesh does (core.distributed.fit_mesh_to_batch)."""
    sys.path.insert(0, str(ROOT))
    from stilts_jax.core.distributed import fit_mesh_to_batch

    shape, _ = fit_mesh_to_batch({"data": -1, "fsdp": 1, "tensor": 1}, devices, batch, widths)
    if shape["data"] == -1:  # unchanged: the batch splits over every device, or no head split fits
        if batch is not None and batch % devices:
            return []
        shape = {"data": devices, "fsdp": 1, "tensor": 1}
    batch_devices, tensor = shape["data"], shape["tensor"]
    extra = {"tensor": tensor}
    tag = f", tensor={tensor}" if tensor > 1 else ""
    return [
        Setting(f"data={batch_devices}{tag}", {"data": batch_devices, "fsdp": 1, **extra}, "none"),
        Setting(f"fsdp={batch_devices}{tag}", {"data": 1, "fsdp": batch_devices, **extra}, "none"),
        Setting(
            f"fsdp={batch_devices}{tag}, remat save_dots", {"data": 1, "fsdp": batch_devices, **extra}, "save_dots"
        ),
        Setting(f"fsdp={batch_devices}{tag}, remat full", {"data": 1, "fsdp": batch_devices, **extra}, "full"),
    ]


def compile_cell(model: str, topology: str, recipe: str, setting: Setting, output: Path, extra: list[str]) -> dict:
    if output.exists():
        kept = json.loads(output.read_text())
        # A report of an earlier version of the aot tool (no HBM traffic) is compiled again; failures are kept.
        if "error" in kept or all("hbm_bytes_accessed" in p for p in kept.get("programs", [])):
            return kept
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "stilts_jax.aot",
        f"--config={ROOT / RECIPES[recipe]}",
        f"--config.model.name={model}",
        "--config.model.tokenizer=",
        "--buckets=longest",
        f"--topology={topology}",
        f"--output={output}",
        *setting.overrides(),
        *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        report = {"error": last, "command": command}
        output.write_text(json.dumps(report, indent=2) + "\n")
        return report
    report = json.loads(output.read_text())
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    output.write_text(json.dumps(report, indent=2) + "\n")
    return report


def fits(report: dict) -> bool:
    return "programs" in report and all(p["fits"] for p in report["programs"])


def widths_of(model: str) -> tuple[int, ...]:
    """The model's attention heads and feed-forward width: what the tensor axis splits."""
    config = json.loads((ROOT / "stilts_jax" / "assets" / "model_configs" / model / "config.json").read_text())
    return int(config["num_attention_heads"]), int(config["intermediate_size"])


def run_cells(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    extra = [] if args.scan_layers is None else [f"--config.model.scan_layers={str(args.scan_layers).lower()}"]
    for model in args.models:
        widths = widths_of(model)
        for slice_name in args.slices:
            topology, devices = SLICES[slice_name]
            for recipe in args.recipes:
                batch = recipe_rows(recipe)
                chosen: tuple[Setting, dict] | None = None
                tried: list[str] = []
                for setting in settings_for(devices, batch, widths):
                    folder = Path(args.results) / model / slice_name / recipe
                    name = setting.label.replace(", ", "_").replace("=", "").replace(" ", "_")
                    print(f"{model} {slice_name} {recipe}: {setting.label} ...", file=sys.stderr, flush=True)
                    report = compile_cell(model, topology, recipe, setting, folder / f"{name}.json", extra)
                    if fits(report):
                        chosen = (setting, report)
                        break
                    tried.append(f"{setting.label}: " + (report.get("error") or "does not fit"))
                rows.append({"model": model, "slice": slice_name, "recipe": recipe, "chosen": chosen, "tried": tried})
    return rows


def mfu_columns(program: dict[str, Any]) -> tuple[str, str]:
    """The roofline MFU by HBM traffic and by the cost analysis' all-memory bytes."""
    return f"{program['roofline_mfu']:.3f}", f"{program['roofline_mfu_all_memories']:.3f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    gib = 1024**3
    lines = [
        "| model | slice | program | setting | live GiB | HBM GiB | headroom | roofline MFU (HBM) | "
        "roofline MFU (all memories) | compile s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for row in rows:
        head = f"| {row['model']} | {row['slice']} |"
        if row["chosen"] is None:
            reason = "; ".join(row["tried"]) or "the batch cannot be split over this slice"
            lines.append(f"{head} {row['recipe']} | nothing fits | | | | | | |")
            notes.append(f"{row['model']} on {row['slice']}, {row['recipe']}: {reason}")
            continue
        setting, report = row["chosen"]
        for program in report["programs"]:
            if program.get("same_as"):
                continue
            live, hbm = program["live_bytes"], program["hbm_bytes"]
            by_hbm, by_all = mfu_columns(program)
            lines.append(
                f"{head} {row['recipe']}: {program['name']} | {setting.label} | {live / gib:.2f} | {hbm / gib:g} | "
                f"{100 * (1 - live / hbm):.0f}% | {by_hbm} | {by_all} | {program['compile_seconds']:.0f} |"
            )
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text


def write_doc(doc: Path, table: str) -> None:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} markers to write the table between")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    doc.write_text(f"{before}{BEGIN}\n{table}{END}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--slices", nargs="+", default=list(SLICES), choices=list(SLICES))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--results", default=str(ROOT / "workdir" / "scaling"), help="one JSON report per compile")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "SCALING.md"), help="'' prints the table only")
    parser.add_argument(
        "--scan-layers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile with model.scan_layers on or off (default: the recipes' own setting)",
    )
    args = parser.parse_args(argv)
    table = markdown(run_cells(args))
    print(table)
    if args.doc:
        write_doc(Path(args.doc), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
