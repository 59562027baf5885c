#!/usr/bin/env bash
# One pipeline run over several GPU hosts (one JAX process per host), or over N local CPU processes for testing.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'EOF'
Usage: launch/gpu_hosts.sh (--hosts h1,h2,... | --hosts-file FILE | --local N) [options] -- MAIN_ARGS...

Runs `python -m stilts_jax.main MAIN_ARGS` as one JAX process per host: process i on host i (0..N-1), the
coordinator at the first host:PORT. Each process gets
  --config.distributed.coordinator_address=HOST0:PORT --config.distributed.num_processes=N
  --config.distributed.process_id=i
Hosts are reached with ssh (key-based login; the repository and its environment already on every host at
--remote-dir). --local N starts N processes on this machine instead, in the current folder (CPU, JAX_NUM_CPU_DEVICES fake
devices each), which is how the multi-process code path is tested without GPUs.

Options:
  --hosts LIST              comma-separated hosts; the first one runs process 0 and the coordinator
  --hosts-file FILE         one host per line (blank lines and # comments ignored)
  --local N                 N local processes (coordinator 127.0.0.1:PORT)
  --port PORT               coordinator port (default 12355)
  --devices-per-process K   --local only: fake CPU devices per process (default 1)
  --remote-dir DIR          repository folder on the hosts (default: this repository's path)
  --python PY               Python on the hosts / here (default: python)
  --env KEY=VALUE           environment variable for every process (repeatable)
  --log-dir DIR             where process-<i>.log files go (default: workdir/launch-logs)
  --dry-run                 print the exact commands, one per process, and run nothing
  -h, --help                this help

Examples:
  launch/gpu_hosts.sh --hosts gpu1,gpu2 -- --config=configs/stilts.py:intermediate=squad,target=tydiqa \
      --config.workdir=/shared/runs/squad_tydiqa --config.mesh.fsdp=8
  launch/gpu_hosts.sh --local 2 -- --config=configs/demo.py --config.workdir=/tmp/demo2 \
      --config.intermediate.train.max_steps=3 --config.target.train.max_steps=3
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
hosts=()
local_count=0
port=12355
devices=1
remote_dir="$repo_dir"
python=python
envs=()
log_dir=workdir/launch-logs
dry_run=0

while (($#)); do
  case "$1" in
    --hosts) [[ $# -ge 2 ]] || die "--hosts needs a value"; IFS=, read -r -a more <<<"$2"; hosts+=("${more[@]}"); shift 2 ;;
    --hosts-file)
      [[ $# -ge 2 ]] || die "--hosts-file needs a value"
      [[ -f $2 ]] || die "hosts file $2 does not exist"
      while IFS= read -r line || [[ -n $line ]]; do
        line="${line%%#*}"
        line="${line//[[:space:]]/}"
        [[ -n $line ]] && hosts+=("$line")
      done <"$2"
      shift 2 ;;
    --local) [[ $# -ge 2 ]] || die "--local needs a value"; local_count=$2; shift 2 ;;
    --port) [[ $# -ge 2 ]] || die "--port needs a value"; port=$2; shift 2 ;;
    --devices-per-process) [[ $# -ge 2 ]] || die "--devices-per-process needs a value"; devices=$2; shift 2 ;;
    --remote-dir) [[ $# -ge 2 ]] || die "--remote-dir needs a value"; remote_dir=$2; shift 2 ;;
    --python) [[ $# -ge 2 ]] || die "--python needs a value"; python=$2; shift 2 ;;
    --env) [[ $# -ge 2 && $2 == *=* ]] || die "--env needs KEY=VALUE"; envs+=("$2"); shift 2 ;;
    --log-dir) [[ $# -ge 2 ]] || die "--log-dir needs a value"; log_dir=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option $1 (the pipeline's arguments go after --; see --help)" ;;
  esac
done
main_args=("$@")

[[ $port =~ ^[0-9]+$ ]] || die "--port must be a number, got $port"
[[ $devices =~ ^[1-9][0-9]*$ ]] || die "--devices-per-process must be a positive number, got $devices"
[[ $local_count =~ ^[0-9]+$ ]] || die "--local must be a number, got $local_count"
if ((local_count > 0 && ${#hosts[@]} > 0)); then
  die "give either --local N or hosts, not both"
fi
if ((local_count == 0 && ${#hosts[@]} == 0)); then
  die "no hosts: pass --hosts h1,h2, --hosts-file FILE or --local N (see --help)"
fi
((${#main_args[@]})) || die "no pipeline arguments: add -- --config=configs/<recipe>.py [--config.key=value ...]"

if ((local_count > 0)); then
  count=$local_count
  coordinator="127.0.0.1:$port"
else
  count=${#hosts[@]}
  coordinator="${hosts[0]#*@}:$port"  # user@host logs in as user; the coordinator is host
fi

# The exact argv of process $1 (run here for --local, on its host otherwise).
process_argv() {
  local i=$1
  argv=(env)
  if ((local_count > 0)); then
    argv+=(JAX_PLATFORMS=cpu "JAX_NUM_CPU_DEVICES=$devices")
  fi
  argv+=(PYTHONUNBUFFERED=1 ${envs[@]+"${envs[@]}"} "$python" -m stilts_jax.main "${main_args[@]}"
    "--config.distributed.coordinator_address=$coordinator"
    "--config.distributed.num_processes=$count"
    "--config.distributed.process_id=$i")
}

# The command line of process $1, as printed by --dry-run and run by ssh or bash.
process_command() {
  local i=$1
  process_argv "$i"
  if ((local_count > 0)); then
    quote_all "${argv[@]}"
  else
    quote_all ssh -o BatchMode=yes "${hosts[$i]}" "cd $(quote "$remote_dir") && $(quote_all "${argv[@]}")"
  fi
}

if ((dry_run)); then
  for ((i = 0; i < count; i++)); do
    process_command "$i"
    printf '\n'
  done
  exit 0
fi

mkdir -p "$log_dir"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
}
trap cleanup INT TERM

for ((i = 0; i < count; i++)); do
  process_argv "$i"
  log="$log_dir/process-$i.log"
  echo "process $i of $count: log $log"
  if ((local_count > 0)); then
    "${argv[@]}" >"$log" 2>&1 &
  else
    ssh -o BatchMode=yes "${hosts[$i]}" "cd $(quote "$remote_dir") && $(quote_all "${argv[@]}")" >"$log" 2>&1 &
  fi
  pids+=("$!")
done

# Wait for every process; once one fails the others cannot finish (collectives), so stop them.
failed=0
for ((i = 0; i < count; i++)); do
  if ! wait "${pids[$i]}"; then
    echo "process $i failed; last lines of $log_dir/process-$i.log:" >&2
    tail -n 20 "$log_dir/process-$i.log" >&2 || true
    failed=1
    cleanup
  fi
done
if ((failed)); then
  exit 1
fi
echo "all $count processes finished; process 0's output: $log_dir/process-0.log"
