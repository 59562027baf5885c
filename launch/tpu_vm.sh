#!/usr/bin/env bash
# One pipeline run on a Cloud TPU VM (a single host or a pod slice): create or reuse it, install, run on every worker.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'EOF'
Usage: launch/tpu_vm.sh --name NAME --zone ZONE --workdir gs://BUCKET/PATH [options] -- MAIN_ARGS...

1. Reuses the TPU VM NAME if `gcloud compute tpus tpu-vm describe` finds it, else creates it
   (`gcloud compute tpus tpu-vm create NAME --zone --accelerator-type --version [--spot]`).
2. Copies this repository's committed HEAD (`git archive`) to every worker (`tpu-vm scp --worker=all`).
3. Installs it on every worker: a venv with the given Python, `pip install -r requirements.txt "jax[tpu]"`.
4. Runs `python -m stilts_jax.main MAIN_ARGS --config.workdir=WORKDIR` on every worker at once
   (`tpu-vm ssh --worker=all`); jax.distributed finds the pod's other workers by itself.
The workdir must be on GCS so that every worker writes to, and a rerun resumes from, the same place.

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
  --skip-install            reuse what a previous call installed
  --dry-run                 print the exact commands and run nothing
  -h, --help                this help

Example:
  launch/tpu_vm.sh --name stilts-v4 --zone us-central2-b --accelerator-type v4-32 \
      --workdir gs://my-bucket/stilts/squad_to_tydiqa -- --config=configs/squad_to_tydiqa.py --config.mesh.fsdp=4
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

common=("--zone=$zone")
[[ -n $project ]] && common+=("--project=$project")
archive="${TMPDIR:-/tmp}/stilts-jax-$name.tar.gz"

create=(gcloud compute tpus tpu-vm create "$name" "${common[@]}" "--accelerator-type=$accelerator_type"
  "--version=$version")
((spot)) && create+=(--spot)

setup="$(quote_all command -v "$python") >/dev/null || (sudo apt-get update -q && sudo apt-get install -y -q $(quote "$python") $(quote "$python-venv"))"
setup+=" && mkdir -p $(quote "$remote_dir") && tar -xzf stilts-jax.tar.gz -C $(quote "$remote_dir")"
setup+=" && cd $(quote "$remote_dir") && $(quote "$python") -m venv .venv && . .venv/bin/activate"
setup+=" && pip install -q -U pip && pip install -q -r requirements.txt 'jax[tpu]' && pip install -q --no-deps -e ."
run="cd $(quote "$remote_dir") && . .venv/bin/activate && $(quote_all python -m stilts_jax.main "${main_args[@]}" "--config.workdir=$workdir")"

# Each step as one command line: what --dry-run prints and what is run (with bash -c).
steps=(
  "$(quote_all gcloud compute tpus tpu-vm describe "$name" "${common[@]}") >/dev/null 2>&1 || $(quote_all "${create[@]}")"
)
if ((install)); then
  steps+=(
    "$(quote_all git -C "$repo_dir" archive --format=tar.gz "--output=$archive" HEAD)"
    "$(quote_all gcloud compute tpus tpu-vm scp "$archive" "$name:stilts-jax.tar.gz" --worker=all "${common[@]}")"
    "$(quote_all gcloud compute tpus tpu-vm ssh "$name" --worker=all "${common[@]}" "--command=$setup")"
  )
fi
steps+=("$(quote_all gcloud compute tpus tpu-vm ssh "$name" --worker=all "${common[@]}" "--command=$run")")

for step in "${steps[@]}"; do
  if ((dry_run)); then
    printf '%s\n' "$step"
  else
    echo "+ $step" >&2
    bash -c "set -euo pipefail; $step"
  fi
done
