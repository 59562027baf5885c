"""python -m stilts_jax.aot: the demo run's programs compiled by the real TPU compiler (libtpu), on this CPU host."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

pytest.importorskip("libtpu", reason="compiling for a TPU slice needs libtpu (the test extra installs it)")

from stilts_jax import aot
from stilts_jax.demo.tiny_model import make_tiny_model
from stilts_jax.train.aot import COLLECTIVES, KNOWN_TOPOLOGIES, count_collectives, get_slice

ROOT = Path(__file__).resolve().parent.parent
# The demo (span QA on the tiny model), shortened so that each program compiles in seconds.
SMALL_DEMO = [
    "--config=" + str(ROOT / "configs" / "demo.py"),
    "--buckets=longest",
    *[
        f"--config.{phase}.{key}={value}"
        for phase in ("intermediate", "target")
        for key, value in (("max_length", 128), ("doc_stride", 32), ("train.batch_size", 8))
    ],
]


def run_aot(tmp_path: Path, topology: str, *overrides: str) -> dict:
    output = tmp_path / f"{topology.replace(':', '_')}.json"
    code = aot.main(
        [
            *SMALL_DEMO,
            f"--config.model.name={tmp_path / 'tiny'}",
            f"--config.workdir={tmp_path / 'work'}",
            *overrides,
            f"--topology={topology}",
            f"--output={output}",
        ]
    )
    assert code == 0
    markdown = output.with_suffix(".md").read_text()
    assert markdown.count("| intermediate/train_step") == 1
    assert "## intermediate/train_step: where the HBM bytes go" in markdown
    return json.loads(output.read_text())


def check_report(report: dict, topology: str, devices: int, kind: str) -> None:
    assert (report["topology"], report["num_devices"], report["device_kind"]) == (topology, devices, kind)
    names = [p["name"] for p in report["programs"]]
    assert names == [
        "intermediate/train_step",
        "intermediate/eval_forward@128",
        "target/train_step",
        "target/eval_forward@128",
    ]
    for program in report["programs"]:
        assert program["fits"] is True
        assert 0 < program["live_bytes"] <= program["hbm_bytes"]
        assert program["flops"] > 0 and program["bytes_accessed"] > 0
        assert 0 < program["roofline_mfu"] <= 1
        assert set(program["collectives"]) == set(COLLECTIVES)
        # HBM traffic is a part of what the cost analysis counts (every memory), so its roofline is the looser bound.
        assert 0 < program["hbm_bytes_accessed"] <= 1.1 * program["bytes_accessed"]
        assert program["roofline_mfu"] >= program["roofline_mfu_all_memories"] - 1e-4
        by_source = program["hbm_bytes_by_source"]
        assert by_source and [g["bytes"] for g in by_source] == sorted((g["bytes"] for g in by_source), reverse=True)
        assert sum(g["bytes"] for g in by_source) <= program["hbm_bytes_accessed"] * (1 + 1e-9)
    # SQuAD and TyDiQA have the same shapes: the target's programs are the intermediate's, compiled once.
    assert report["programs"][2]["same_as"] == "intermediate/train_step"
    step = report["programs"][0]
    assert step["inputs"]["input_ids"] == [1, 8, 128] and step["micro_batches"] == 1


def test_v5e_data_parallel_demo(tmp_path: Path) -> None:
    report = run_aot(tmp_path, "v5e:2x2")
    check_report(report, "v5e:2x2", 4, "TPU v5 lite")
    assert report["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1}
    assert report["programs"][0]["hbm_bytes"] == 16 * 1024**3
    collectives = report["programs"][0]["collectives"]
    # Replicated parameters, the batch split four ways: the gradients are all-reduced, nothing else moves.
    assert collectives["all-reduce"] >= 1
    assert collectives["all-to-all"] == 0 and collectives["all-gather"] == 0
    # On a TPU mesh model.attention='auto' runs the splash kernel: FLOPs the cost analysis leaves out, counted from
    # the kernels' shapes (forward 2 matmuls, dq 3, dkv 4 of 2 * seq^2 * head_dim per row and head).
    tiny = inspect.signature(make_tiny_model).parameters  # the demo's model, as the aot tool makes it
    heads, layers = tiny["num_heads"].default, tiny["num_layers"].default
    head_dim = tiny["hidden_size"].default // heads
    per_matmul = 2 * heads * 128 * 128 * head_dim
    step, forward = report["programs"][0], report["programs"][1]
    assert step["kernel_flops"] == layers * (2 + 3 + 4) * per_matmul * (8 // 4)
    assert forward["kernel_flops"] == layers * 2 * per_matmul * (forward["batch_size"] // 4)


def test_v4_fsdp_train_step(tmp_path: Path) -> None:
    report = run_aot(tmp_path, "v4:2x2x1", "--config.mesh.data=1", "--config.mesh.fsdp=4")
    # v4 chips run as one megacore device each (as JAX drives them on a TPU VM): 4 devices of 32 GiB.
    check_report(report, "v4:2x2x1", 4, "TPU v4")
    assert report["device_is"] == "chip" and report["programs"][0]["hbm_bytes"] == 32 * 1024**3
    collectives = report["programs"][0]["collectives"]
    # Parameters sharded over fsdp: gathered for the forward and backward passes.
    assert collectives["all-gather"] >= 1


def test_unknown_topology_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert aot.main([*SMALL_DEMO, "--topology=v5e-2x2"]) == 2
    err = capsys.readouterr().err
    assert "unknown TPU topology 'v5e-2x2' (--topology)" in err and all(name in err for name in KNOWN_TOPOLOGIES)
    with pytest.raises(Exception, match="libtpu does not know TPU topology 'v6e:3x7'"):
        get_slice("v6e:3x7")


def test_unknown_model_names_the_shipped_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = aot.main(
        [
            *SMALL_DEMO,
            "--config.model.make_tiny=false",
            f"--config.model.name={tmp_path / 'nothing'}",
            "--topology=v5e:2x2",
            f"--output={tmp_path / 'r.json'}",
        ]
    )
    assert code == 2
    assert "xlm-roberta-large" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


def test_shipped_model_configs_give_the_published_shapes() -> None:
    from stilts_jax.models.config import EncoderConfig

    shapes = {
        name: EncoderConfig.from_json_file(aot.MODEL_CONFIGS_DIR / name / "config.json")
        for name in aot.shipped_model_names()
    }
    large, base, mbert = shapes["xlm-roberta-large"], shapes["xlm-roberta-base"], shapes["bert-base-multilingual-cased"]
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads, large.intermediate_size) == (
        1024,
        24,
        16,
        4096,
    )
    assert (base.hidden_size, base.num_hidden_layers, base.vocab_size, base.max_position_embeddings) == (
        768,
        12,
        250002,
        514,
    )
    assert (mbert.vocab_size, mbert.type_vocab_size, mbert.max_position_embeddings, mbert.layer_norm_eps) == (
        119547,
        2,
        512,
        1e-12,
    )


def test_count_collectives_reads_opcodes_not_names() -> None:
    hlo = """
  %all-gather.1 = f32[8,4]{1,0} all-gather(f32[2,4]{1,0} %p), dimensions={0}
  %ags = (f32[2]{0}, f32[8]{0}) all-gather-start(f32[2]{0} %q), dimensions={0}
  %agd = f32[8]{0} all-gather-done((f32[2]{0}, f32[8]{0}) %ags)
  %reduce-scatter.2 = f32[2]{0} reduce-scatter(f32[8]{0} %g), dimensions={0}, to_apply=%add
  %cp = f32[2]{0} collective-permute(f32[2]{0} %x), source_target_pairs={{0,1}}
"""
    assert count_collectives(hlo) == {
        "all-gather": 2,
        "reduce-scatter": 1,
        "all-reduce": 0,
        "all-to-all": 0,
        "collective-permute": 1,
    }


def test_count_collectives_reads_tpu_reduce_scatter_fusions() -> None:
    """The TPU compiler emits a reduce-scatter as a fusion of an all-reduce-scatter computation: one reduce-scatter."""
    hlo = """
%all-reduce-scatter.3 (input_0: bf16[128,512]) -> bf16[32,512] {
  %input_0 = bf16[128,512]{1,0} parameter(0)
  %all-reduce.7 = bf16[128,512]{1,0} all-reduce(%input_0), channel_id=3, to_apply=%add
  ROOT %slice = bf16[32,512]{1,0} dynamic-slice(%all-reduce.7, %offset, %zero), dynamic_slice_sizes={32,512}
}

ENTRY %main.1 (p: bf16[128,512]) -> bf16[32,512] {
  %fusion.9 = bf16[32,512]{1,0} fusion(%p), kind=kCustom, calls=%all-reduce-scatter.3
  %all-reduce.8 = f32[128]{0} all-reduce(%b), channel_id=4, to_apply=%add
}
"""
    assert count_collectives(hlo) == {
        "all-gather": 0,
        "reduce-scatter": 1,
        "all-reduce": 1,
        "all-to-all": 0,
        "collective-permute": 0,
    }


def test_cpu_host_with_libtpu_starts_quietly_on_the_cpu() -> None:
    """libtpu installed, no TPU here: importing stilts_jax keeps JAX from loading libtpu (its start-up errors, ~1.7 s)."""
    import os
    import subprocess
    import sys

    from jax._src import hardware_utils

    if hardware_utils.num_available_tpu_chips_and_device_id()[0] or hardware_utils.has_visible_nvidia_gpu():
        pytest.skip("this host has an accelerator")

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JAX_PLATFORMS", "TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID")
    }
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import stilts_jax, jax, os; print(jax.devices()[0].platform, os.environ['JAX_PLATFORMS'])",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert out.stdout.split() == ["cpu", "cpu"]
    assert "TPU" not in out.stderr, out.stderr


@pytest.mark.slow
def test_scanned_layers_report_the_unrolled_costs(tmp_path: Path) -> None:
    """The cost analysis counts a scan's body once; the report extrapolates its FLOPs and bytes from 1 and 2 layers,
    the scan unrolled, and counts the scanned program's HBM bytes and kernel FLOPs from its HLO, trip by trip.

    The forward's costs are the unrolled model's; the train step's backward recomputes the elementwise work the
    scan's checkpoint policy does not save (models.encoder.SCAN_SAVE_POLICY), which reads more bytes."""
    model = make_tiny_model(tmp_path / "tiny3", num_layers=3)
    for scan in ("false", "true"):
        (tmp_path / scan).mkdir()
    reports = {
        scan: run_aot(
            tmp_path / str(scan), "v5e:2x2", f"--config.model.name={model}", f"--config.model.scan_layers={scan}"
        )
        for scan in ("false", "true")
    }
    unrolled, scanned = ({p["name"]: p for p in reports[s]["programs"]} for s in ("false", "true"))
    assert reports["true"]["scan_layers"] is True
    for name in ("intermediate/train_step", "intermediate/eval_forward@128"):
        assert "cost_from" in scanned[name] and scanned[name]["scanned_flops"] < 0.8 * unrolled[name]["flops"]
        for key in ("flops", "bytes_accessed"):
            tolerance = 0.15 if key == "bytes_accessed" and "train_step" in name else 0.05
            assert scanned[name][key] == pytest.approx(unrolled[name][key], rel=tolerance), key
        # The splash kernels, counted in the scanned program trip by trip. Its backward loop runs the forward kernel
        # again (the checkpoint policy saves matmul outputs, not the kernel's): 2 + 2 + 3 + 4 matmuls against 2 + 3 + 4.
        rerun = (2 + 2 + 3 + 4) / (2 + 3 + 4) if "train_step" in name else 1.0
        assert scanned[name]["kernel_flops"] == pytest.approx(rerun * unrolled[name]["kernel_flops"], rel=1e-6)
        # HBM bytes are read from the scanned program itself, every trip of its loop counted (one trip would be about
        # a third of the layers): the forward moves what the unrolled one does, the train step more (the loop writes
        # its saved residuals to stacked buffers and reads them back).
        hbm = scanned[name]["hbm_bytes_accessed"]
        if "train_step" in name:
            assert hbm > unrolled[name]["hbm_bytes_accessed"] and hbm > scanned[name]["hbm_bytes_accessed_without_loop"]
        else:
            assert hbm == pytest.approx(unrolled[name]["hbm_bytes_accessed"], rel=0.01)


def test_a_slice_with_more_devices_than_batch_rows_gets_the_run_default_mesh(tmp_path: Path) -> None:
    """With the default mesh (data = every device) the published intermediate batch of 4 cannot split over a
    v5e-8's 8 devices: the run, and so the aot tool, gives the other devices to the tensor axis."""
    make_tiny_model(tmp_path / "tiny")
    config, _ = aot.parse_args(
        [
            *SMALL_DEMO,
            f"--config.model.name={tmp_path / 'tiny'}",
            "--config.intermediate.train.batch_size=4",
            "--topology=v5e:2x4",
        ]
    )
    compiler = aot.RunCompiler(config, get_slice("v5e:2x4"), "longest", None, tmp_path)
    assert dict(compiler.mesh.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    assert compiler.mesh_note is not None and "4 rows" in compiler.mesh_note
    config.intermediate.train.batch_size = 8
    assert dict(aot.RunCompiler(config, get_slice("v5e:2x4"), "longest", None, tmp_path).mesh.shape)["data"] == 8
