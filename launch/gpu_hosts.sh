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
  --log-dir DIR             where process-<i>.log files go (default: workdir/launch-logs); with --detach, on
                            each host, relative to --remote-dir
  --detach                  start every process detached (nohup setsid) and return: closing this terminal or
                            losing a connection does not stop the run. Process i logs to
                            LOG_DIR/run-<UTC time>-process<i>.log on its host and records its PID beside it (.pid)
  --follow                  with --detach: stream every process's log here (each line prefixed with its process)
                            until the run ends; Ctrl-C stops the streaming, not the run
  --dry-run                 print the exact commands, one per process (then one per process to follow), and run
                            nothing
  -h, --help                this help

Examples:
  launch/gpu_hosts.sh --hosts gpu1,gpu2 -- --config=configs/stilts.py:intermediate=squad,target=tydiqa \
      --config.workdir=/shared/runs/squad_tydiqa --config.mesh.fsdp=8
  launch/gpu_hosts.sh --hosts gpu1,gpu2 --remote-dir /srv/stilts-jax --detach --follow -- \
      --config=configs/squad_to_tydiqa.py --config.workdir=/shared/runs/squad_tydiqa
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
detach=0
follow=0
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
    --detach) detach=1; shift ;;
    --follow) follow=1; shift ;;
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
((follow <= detach)) || die "--follow streams the logs of a --detach run; without --detach the logs are in --log-dir"

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

# Where process $1 of a detached run logs (on its host), and the command line that starts it there.
run_id="run-$(date -u +%Y%m%d-%H%M%S)"
detached_log() {
  printf '%s/%s-process%s' "$log_dir" "$run_id" "$1"
}
on_host() {  # on_host I COMMAND: COMMAND as run for process I (here with --local, else over ssh in --remote-dir)
  if ((local_count > 0)); then
    printf '%s' "$2"
  else
    quote_all ssh -o BatchMode=yes "${hosts[$1]}" "cd $(quote "$remote_dir") && $2"
  fi
}
detached_command() {
  local i=$1 log pid
  process_argv "$i"
  log=$(quote "$(detached_log "$i").log")
  pid=$(quote "$(detached_log "$i").pid")
  on_host "$i" "mkdir -p $(quote "$log_dir") && { nohup setsid $(quote_all "${argv[@]}") >$log 2>&1 </dev/null & echo \$! >$pid; } && echo \"process $i: pid \$(cat $pid), log \$(cd $(quote "$log_dir") && pwd)/$run_id-process$i.log\""
}
follow_command() {
  local i=$1
  on_host "$i" "tail -n +1 --pid=\"\$(cat $(quote "$(detached_log "$i").pid"))\" -F $(quote "$(detached_log "$i").log") | sed -u 's/^/[process $i] /'"
}

if ((detach)); then
  for ((i = 0; i < count; i++)); do
    line=$(detached_command "$i")
    if ((dry_run)); then
      printf '%s\n' "$line"
    else
      bash -c "set -euo pipefail; $line"
    fi
  done
  followers=()
  for ((i = 0; i < count; i++)); do
    line=$(follow_command "$i")
    if ((dry_run)); then
      ((follow)) && printf '%s\n' "$line"
    elif ((follow)); then
      bash -c "set -euo pipefail; $line" &
      followers+=("$!")
    else
      echo "process $i's log: $line"
    fi
  done
  for pid in ${followers[@]+"${followers[@]}"}; do
    wait "$pid" || true
  done
  exit 0
fi

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
