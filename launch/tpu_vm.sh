#!/usr/bin/env bash
# One pipeline run on a Cloud TPU VM (a single host or a pod slice): create or reuse it, install, start the run
# detached on every worker; optionally stream its logs, and recreate a preempted VM and rerun until it finishes.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'EOF'
Usage: launch/tpu_vm.sh --name NAME --zone ZONE --workdir gs://BUCKET/PATH [options] -- MAIN_ARGS...

1. Reuses the TPU VM NAME if `gcloud compute tpus tpu-vm describe` finds it, else creates it
   (`gcloud compute tpus tpu-vm create NAME --zone --accelerator-type --version [--spot]`).
2. Copies this repository's committed HEAD (`git archive`) to every worker (`tpu-vm scp --worker=all`).
3. Installs it on every worker: a venv with the given Python, `pip install -r requirements.txt "jax[tpu]"`.
4. Starts `python -m stilts_jax.main MAIN_ARGS --config.workdir=WORKDIR` on every worker at once
   (`tpu-vm ssh --worker=all`), detached from the connection (nohup setsid): closing this terminal or losing the
   connection does not stop the run. Worker i logs to ~/REMOTE_DIR/logs/run-<UTC time>-worker<i>.log and records
   the run's PID beside it (.pid). jax.distributed finds the pod's other workers by itself.
The workdir must be on GCS so that every worker writes to, and a rerun resumes from, the same place.

--follow streams the workers' logs here (tail over `tpu-vm ssh --worker=all`, each line prefixed with its worker)
until the run ends; Ctrl-C stops the streaming, not the run.

--retry-preempted stays and watches the run (start it under tmux, screen or nohup): every --poll-seconds it checks
whether the run finished (WORKDIR/evaluation/phase_done.json and WORKDIR/results.json, `gcloud storage ls`) and
the VM's state (`tpu-vm describe`). A PREEMPTED or TERMINATED VM (a reclaimed Spot VM, a maintenance event) is
deleted, created again, reinstalled and the run started again; it resumes from the workdir's checkpoints. A run
that stops on a READY VM without finishing is an error (its logs say why) and is not retried. At most
--max-attempts starts in all.

Options:
  --name NAME               TPU VM name (required)
  --zone ZONE               zone, e.g. us-central2-b (required)
  --workdir gs://...        the run's workdir (required)
  --project PROJECT         Google Cloud project (default: gcloud's configured one)
  --accelerator-type TYPE   e.g. v4-8, v4-32, v5litepod-8 (default v4-8)
  --version VERSION         TPU software version: tpu-ubuntu2204-base for v4 and older, v2-alpha-tpuv5-lite
                            for v5e, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e (default tpu-ubuntu2204-base)
  --spot                    create a Spot TPU VM
  --python PY               Python >= 3.11 on the workers, installed with apt if missing (default python3.11)
  --remote-dir DIR          repository folder on the workers, under the home folder (default stilts-jax)
  --skip-install            reuse what a previous call installed (a recreated VM is always installed)
  --follow                  stream every worker's log here until the run ends
  --retry-preempted         watch the run; recreate a preempted or terminated VM and rerun until it finishes
  --max-attempts N          with --retry-preempted: starts of the run at most, the first included (default 10)
  --poll-seconds S          with --retry-preempted: seconds between checks (default 300)
  --dry-run                 print the exact commands and run nothing; with --retry-preempted the read-only
                            checks (describe, storage ls, is the run alive) do run, printed as `# ` lines
  -h, --help                this help

Examples:
  launch/tpu_vm.sh --name stilts-v4 --zone us-central2-b --accelerator-type v4-32 --follow \
      --workdir gs://my-bucket/stilts/squad_to_tydiqa -- --config=configs/squad_to_tydiqa.py --config.mesh.fsdp=4
  nohup launch/tpu_vm.sh --name stilts-spot --zone us-central2-b --accelerator-type v4-32 --spot --retry-preempted \
      --workdir gs://my-bucket/stilts/squad_to_tydiqa -- --config=configs/squad_to_tydiqa.py >launch.log 2>&1 &
EOF
}

die() {
  echo "error: $*" >&2
  exit 2
}

# One word quoted for a POSIX shell (as Python's shlex.quote does): survives spaces and shell characters.
quote() {
  local word=$1
  if [[ -n $word && $word != *[!A-Za-z0-9_./=:,@%+-]* ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

quote_all() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name=""
zone=""
workdir=""
project=""
accelerator_type=v4-8
version=tpu-ubuntu2204-base
spot=0
python=python3.11
remote_dir=stilts-jax
install=1
follow=0
retry=0
max_attempts=10
poll_seconds=300
dry_run=0

while (($#)); do
  case "$1" in
    --name) [[ $# -ge 2 ]] || die "--name needs a value"; name=$2; shift 2 ;;
    --zone) [[ $# -ge 2 ]] || die "--zone needs a value"; zone=$2; shift 2 ;;
    --workdir) [[ $# -ge 2 ]] || die "--workdir needs a value"; workdir=$2; shift 2 ;;
    --project) [[ $# -ge 2 ]] || die "--project needs a value"; project=$2; shift 2 ;;
    --accelerator-type) [[ $# -ge 2 ]] || die "--accelerator-type needs a value"; accelerator_type=$2; shift 2 ;;
    --version) [[ $# -ge 2 ]] || die "--version needs a value"; version=$2; shift 2 ;;
    --spot) spot=1; shift ;;
    --python) [[ $# -ge 2 ]] || die "--python needs a value"; python=$2; shift 2 ;;
    --remote-dir) [[ $# -ge 2 ]] || die "--remote-dir needs a value"; remote_dir=$2; shift 2 ;;
    --skip-install) install=0; shift ;;
    --follow) follow=1; shift ;;
    --retry-preempted) retry=1; shift ;;
    --max-attempts) [[ $# -ge 2 ]] || die "--max-attempts needs a value"; max_attempts=$2; shift 2 ;;
    --poll-seconds) [[ $# -ge 2 ]] || die "--poll-seconds needs a value"; poll_seconds=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (the pipeline's arguments go after --; see --help)" ;;
  esac
done
main_args=("$@")

[[ -n $name ]] || die "--name is required (the TPU VM to create or reuse)"
[[ -n $zone ]] || die "--zone is required, e.g. --zone us-central2-b"
[[ $workdir == gs://* ]] || die "--workdir must be a gs:// path that every worker shares, got '${workdir}'"
((${#main_args[@]})) || die "no pipeline arguments: add -- --config=configs/<recipe>.py [--config.key=value ...]"
[[ $max_attempts =~ ^[1-9][0-9]*$ ]] || die "--max-attempts must be a positive number, got $max_attempts"
[[ $poll_seconds =~ ^[0-9]+$ ]] || die "--poll-seconds must be a number of seconds, got $poll_seconds"

common=("--zone=$zone")
[[ -n $project ]] && common+=("--project=$project")
archive="${TMPDIR:-/tmp}/stilts-jax-$name.tar.gz"
workdir=${workdir%/}
dir=$(quote "$remote_dir")

create=(gcloud compute tpus tpu-vm create "$name" "${common[@]}" "--accelerator-type=$accelerator_type"
  "--version=$version")
((spot)) && create+=(--spot)

setup="$(quote_all command -v "$python") >/dev/null || (sudo apt-get update -q && sudo apt-get install -y -q $(quote "$python") $(quote "$python-venv"))"
setup+=" && mkdir -p $dir && tar -xzf stilts-jax.tar.gz -C $dir"
setup+=" && cd $dir && $(quote "$python") -m venv .venv && . .venv/bin/activate"
setup+=" && pip install -q -U pip && pip install -q -r requirements.txt 'jax[tpu]' && pip install -q --no-deps -e ."

# On a worker: its index in the slice (TPU VM metadata), for its log's name. Expanded there, not here.
# shellcheck disable=SC2016
worker_index='worker=$(curl -sf -m 10 -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number || hostname)'

ssh_all() {  # ssh_all COMMAND: the command line that runs COMMAND on every worker
  quote_all gcloud compute tpus tpu-vm ssh "$name" --worker=all "${common[@]}" "--command=$1"
}

# The command lines of one run (run id $1): start it detached, stream its logs, tell whether it is alive.
start_step() {
  local log="logs/$1-worker\$worker.log" pid="logs/$1-worker\$worker.pid"
  ssh_all "cd $dir && mkdir -p logs && $worker_index && . .venv/bin/activate && { nohup setsid $(quote_all python -m stilts_jax.main "${main_args[@]}" "--config.workdir=$workdir") >\"$log\" 2>&1 </dev/null & echo \$! >\"$pid\"; } && echo \"worker \$worker: pid \$(cat \"$pid\"), log \$PWD/$log\""
}
follow_step() {
  ssh_all "cd $dir && $worker_index && tail -n +1 --pid=\"\$(cat \"logs/$1-worker\$worker.pid\")\" -F \"logs/$1-worker\$worker.log\" | sed -u \"s/^/[worker \$worker] /\""
}
alive_step() {
  ssh_all "cd $dir && $worker_index && kill -0 \"\$(cat \"logs/$1-worker\$worker.pid\")\""
}
describe_step="$(quote_all gcloud compute tpus tpu-vm describe "$name" "${common[@]}" --format='value(state)')"
finished_step="$(quote_all gcloud storage ls "$workdir/evaluation/phase_done.json" "$workdir/results.json")"

# A command line that changes something: printed with --dry-run, else echoed and run.
step() {
  if ((dry_run)); then
    printf '%s\n' "$1"
  else
    echo "+ $1" >&2
    bash -c "set -euo pipefail; $1"
  fi
}

# A read-only check, run even with --dry-run (there printed as a `# ` line, to this script's output, not the
# caller's capture): its output and status are the command's.
exec 3>&1
check() {
  if ((dry_run)); then
    printf '# %s\n' "$1" >&3
  fi
  bash -c "set -uo pipefail; $1"
}

install_steps() {
  step "$(quote_all git -C "$repo_dir" archive --format=tar.gz "--output=$archive" HEAD)" &&
    step "$(quote_all gcloud compute tpus tpu-vm scp "$archive" "$name:stilts-jax.tar.gz" --worker=all "${common[@]}")" &&
    step "$(ssh_all "$setup")"
}

new_run_id() {
  run_id="run-$(date -u +%Y%m%d-%H%M%S)"
}

how_to_follow() {
  echo "the run's logs: $(follow_step "$run_id")" >&2
}

if ((!retry)); then
  new_run_id
  step "$(quote_all gcloud compute tpus tpu-vm describe "$name" "${common[@]}") >/dev/null 2>&1 || $(quote_all "${create[@]}")"
  if ((install)); then
    install_steps
  fi
  step "$(start_step "$run_id")"
  if ((follow)); then
    step "$(follow_step "$run_id")"
  elif ((!dry_run)); then
    how_to_follow
  fi
  exit 0
fi

# --retry-preempted: watch, and start again on a new VM after a preemption, until the workdir says finished.
vm_state() {  # READY, PREEMPTED, TERMINATED, CREATING, ... ABSENT (no such VM), UNKNOWN (describe failed)
  local out
  if out=$(check "$describe_step" 2>&1); then
    state=${out##*$'\n'}
  elif [[ $out == *NOT_FOUND* || $out == *"not found"* ]]; then
    state=ABSENT
  else
    printf '%s\n' "$out" >&2
    state=UNKNOWN
  fi
  state=${state:-UNKNOWN}
  if ((dry_run)); then
    printf '# state: %s\n' "$state"
  fi
}

finished() {
  check "$finished_step" >/dev/null 2>&1 || return 1
  echo "the run finished: $workdir/evaluation/phase_done.json and $workdir/results.json are there" >&2
}

attempts=0
started=0
start_run() {  # start_run FRESH: install (always on a new VM) and start; a failure is reported, not fatal
  if ((attempts >= max_attempts)); then
    echo "error: the run was started $attempts times (--max-attempts) without finishing; $workdir keeps its" \
      "checkpoints: run this again to go on" >&2
    exit 1
  fi
  attempts=$((attempts + 1))
  new_run_id
  echo "attempt $attempts of $max_attempts: starting $run_id on $name" >&2
  if { (($1 || install)) && ! install_steps; } || ! step "$(start_step "$run_id")"; then
    echo "attempt $attempts could not start the run; checking the VM again" >&2
    started=0
    return 0
  fi
  started=1
  if ((follow)); then
    step "$(follow_step "$run_id")" || true
  elif ((!dry_run)); then
    how_to_follow
  fi
}

while true; do
  finished && exit 0
  vm_state
  case $state in
    PREEMPTED | TERMINATED)
      started=0
      echo "$name is $state: deleting it and creating it again" >&2
      step "$(quote_all gcloud compute tpus tpu-vm delete "$name" "${common[@]}" --quiet)" &&
        step "$(quote_all "${create[@]}")" && start_run 1 ;;
    ABSENT)
      started=0
      echo "$name does not exist: creating it" >&2
      step "$(quote_all "${create[@]}")" && start_run 1 ;;
    READY)
      if ((!started)); then
        start_run 0
      elif ! check "$(alive_step "$run_id")" >/dev/null 2>&1; then
        finished && exit 0
        vm_state
        if [[ $state == READY ]]; then
          echo "error: the run stopped on $name without finishing (not a preemption); see its logs:" \
            "$(ssh_all "tail -n 50 $dir/logs/$run_id-worker*.log")" >&2
          exit 1
        fi
        continue
      fi ;;
    *) echo "$name is $state; waiting" >&2 ;;
  esac
  ((dry_run)) || sleep "$poll_seconds"
done
