#!/usr/bin/env bash
# A real multi-node Ray cluster on one machine: a head plus N worker nodes, each with its own temp
# dir and ports, joined with token auth, dashboard on loopback; GPUs can be *declared* on workers
# (Ray schedules declared GPUs exactly like real ones and sets CUDA_VISIBLE_DEVICES from them).
#
# Usage:
#   cluster/local_cluster.sh up                                   # head + 2 workers x 2 declared GPUs
#   cluster/local_cluster.sh up --workers 3 --gpus-per-worker 1 --cpus-per-worker 2
#   cluster/local_cluster.sh up --dir /tmp/asr-lc2 --dashboard-port 8266   # a second, separate cluster
#   cluster/local_cluster.sh status                               # the recorded nodes and addresses
#   cluster/local_cluster.sh kill-worker 1                        # SIGKILL worker 1's raylet (node loss)
#   cluster/local_cluster.sh down                                 # stops only what `up` started
#
# Options of `up` (environment variable in brackets):
#   --dir DIR              [ASR_TUNE_LOCAL_CLUSTER]  state dir, default /tmp/asr-lc (keep it short:
#                                                    Unix socket paths are limited to 107 bytes)
#   --workers N            worker nodes, default 2
#   --gpus-per-worker G    declared GPUs per worker node, default 2 (0: CPU-only workers)
#   --cpus-per-worker C    logical CPUs per worker node, default 2
#   --head-cpus C          logical CPUs of the head (job drivers run there), default 1
#   --dashboard-port PORT  default 8265 (loopback only)
#   --object-store-mb MB   object store per node, default 256 (Ray would take 30% of RAM per node)
#   --token-file FILE      default DIR/token (created, mode 600)
#
# Every node gets --temp-dir DIR/<node>, a free dashboard-agent port and its own worker-port range,
# so nodes never collide with each other or with another Ray on the machine. `down` runs
# `start_head.sh stop --temp-dir` for each recorded node (workers first), never `ray stop`.
# Faster node-loss detection for demos: export RAY_health_check_period_ms=1000
# RAY_health_check_failure_threshold=3 before `up` (every Ray process reads RAY_<setting>).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_NAME="cluster.env"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "local_cluster.sh: error: $*" >&2; exit 2; }
log() { echo "local_cluster.sh: $*" >&2; }

find_ray() {
  if [[ -n "${RAY_BIN:-}" ]]; then echo "$RAY_BIN"; return; fi
  command -v ray 2>/dev/null || die "'ray' not found on PATH (activate the venv or set RAY_BIN)"
}

free_port() {  # a port nothing listens on right now (Ray's own python is always there)
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

state_get() { sed -n "s/^$1=//p" "$2/$STATE_NAME" | head -n1; }

cmd_down() {
  local dir="$1" state="$1/$STATE_NAME"
  if [[ ! -f "$state" ]]; then log "no cluster recorded in $dir (nothing to stop)"; return 0; fi
  local nodes; nodes="$(sed -n 's/^NODE=//p' "$state" | tac)"   # workers first, head last
  local line
  while IFS= read -r line; do
    [[ -n "$line" ]] || continue
    local temp_dir="${line#*:}"
    bash "$HERE/start_head.sh" stop --temp-dir "$temp_dir" >/dev/null 2>&1 \
      || log "stopping ${line%%:*} ($temp_dir) failed"
  done <<< "$nodes"
  rm -f "$state"
  log "stopped the local cluster in $dir"
}

cmd_status() {
  local dir="$1" state="$1/$STATE_NAME"
  [[ -f "$state" ]] || die "no cluster recorded in $dir (run: $0 up --dir $dir)"
  cat "$state"
}

cmd_kill_worker() {
  local dir="$1" index="$2" state="$1/$STATE_NAME"
  [[ -f "$state" ]] || die "no cluster recorded in $dir"
  local temp_dir; temp_dir="$(sed -n "s/^NODE=worker$index://p" "$state")"
  [[ -n "$temp_dir" ]] || die "no worker $index in $state"
  local pid; pid="$(ps -ww -eo pid=,args= | awk -v m="--temp_dir=$temp_dir" '
      $2 ~ /\/raylet$/ { for (i = 3; i <= NF; i++) if ($i == m) { print $1; exit } }')"
  [[ -n "$pid" ]] || die "worker $index: no running raylet with --temp_dir=$temp_dir"
  kill -KILL "$pid"
  echo "killed worker $index's raylet (pid $pid)"
}

fail_up() {  # stop every node `up` started so far, then fail
  cmd_down "$1" >/dev/null 2>&1 || true
  die "up: starting $2 failed (messages above); stopped what had started"
}

cmd_up() {
  local dir="$1"; shift
  local workers=2 gpus=2 cpus=2 head_cpus=1 dash_port=8265 token_file="" store_mb=256
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --workers) workers="$2"; shift 2 ;;
      --gpus-per-worker) gpus="$2"; shift 2 ;;
      --cpus-per-worker) cpus="$2"; shift 2 ;;
      --head-cpus) head_cpus="$2"; shift 2 ;;
      --dashboard-port) dash_port="$2"; shift 2 ;;
      --token-file) token_file="$2"; shift 2 ;;
      --object-store-mb) store_mb="$2"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) die "up: unknown option '$1' (see --help)" ;;
    esac
  done
  for v in "$workers" "$gpus" "$cpus" "$head_cpus" "$dash_port" "$store_mb"; do
    is_uint "$v" || die "up: '$v' is not a non-negative integer"
  done
  [[ -f "$dir/$STATE_NAME" ]] && die "a cluster is already recorded in $dir; stop it first: $0 down --dir $dir"
  mkdir -p "$dir"
  token_file="${token_file:-$dir/token}"

  local ray; ray="$(find_ray)"
  PY="$(dirname "$ray")/python"; [[ -x "$PY" ]] || PY="$(command -v python3)"
  export RAY_BIN="$ray"
  local low=$(( (RANDOM % 40) * 200 + 20000 ))   # this cluster's worker ports: low .. low+200*(N+1)
  local state="$dir/$STATE_NAME" store=$((store_mb * 1024 * 1024))
  echo "NODE=head:$dir/head" > "$state"

  bash "$HERE/start_head.sh" --temp-dir "$dir/head" --port 0 --dashboard-host 127.0.0.1 \
    --dashboard-port "$dash_port" --client-port "$(free_port)" --agent-port "$(free_port)" \
    --token-file "$token_file" --num-cpus "$head_cpus" --num-gpus 0 \
    -- --min-worker-port="$low" --max-worker-port="$((low + 199))" --object-store-memory="$store" \
    >/dev/null || fail_up "$dir" "the head"
  local gcs; gcs="$(sed -n 's/^GCS_ADDRESS=//p' "$dir/head/asr_tune_head.env")"
  [[ "$gcs" == *:[0-9]* ]] || fail_up "$dir" "the head (no GCS address recorded)"
  token_file="$(sed -n 's/^TOKEN_FILE=//p' "$dir/head/asr_tune_head.env")"
  {
    echo "DASHBOARD_URL=http://127.0.0.1:$dash_port"
    echo "GCS_ADDRESS=$gcs"
    echo "TOKEN_FILE=$token_file"
  } >> "$state"

  local i
  for ((i = 1; i <= workers; i++)); do
    local lo=$((low + 200 * i))
    echo "NODE=worker$i:$dir/w$i" >> "$state"
    bash "$HERE/start_worker.sh" --address "$gcs" --token-file "$token_file" --temp-dir "$dir/w$i" \
      --num-cpus "$cpus" --num-gpus "$gpus" -- --dashboard-agent-listen-port="$(free_port)" \
      --min-worker-port="$lo" --max-worker-port="$((lo + 199))" --object-store-memory="$store" \
      >/dev/null || fail_up "$dir" "worker $i"
  done
  echo "Local Ray cluster up: head + $workers worker(s) x $gpus declared GPU(s), $cpus CPU(s) each."
  echo "  dashboard / jobs API : http://127.0.0.1:$dash_port  (token: $token_file)"
  echo "  submit               : asr-tune submit CONFIG.yaml --address http://127.0.0.1:$dash_port --token-file $token_file"
  echo "  search from here     : RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token_file asr-tune search CONFIG.yaml --address $gcs"
  echo "  lose a node          : $0 kill-worker 1 --dir $dir"
  echo "  stop                 : $0 down --dir $dir"
}

main() {
  local cmd="${1:-}"; [[ $# -gt 0 ]] && shift
  local dir="${ASR_TUNE_LOCAL_CLUSTER:-/tmp/asr-lc}" args=()
  while [[ $# -gt 0 ]]; do  # --dir is accepted anywhere after the command
    case "$1" in
      --dir) dir="$2"; shift 2 ;;
      --dir=*) dir="${1#*=}"; shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  [[ "$dir" = /* ]] || dir="$PWD/$dir"
  dir="${dir%/}"
  case "$cmd" in
    up) cmd_up "$dir" "${args[@]+"${args[@]}"}" ;;
    down) cmd_down "$dir" ;;
    status) cmd_status "$dir" ;;
    kill-worker) [[ ${#args[@]} -eq 1 ]] && is_uint "${args[0]}" || die "usage: $0 kill-worker I [--dir DIR]"
                 cmd_kill_worker "$dir" "${args[0]}" ;;
    -h|--help|help) usage ;;
    *) die "unknown option or command '$cmd' (commands: up, status, kill-worker, down; see --help)" ;;
  esac
}

main "$@"
