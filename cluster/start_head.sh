#!/usr/bin/env bash
# Start (or stop) a Ray head node for asr-tune, with token authentication on by default.
#
# Usage:
#   cluster/start_head.sh                                  # dashboard on 127.0.0.1:8265, token auth on
#   cluster/start_head.sh --dashboard-host 0.0.0.0 --dashboard-port 8265 --node-ip 10.0.0.5
#   cluster/start_head.sh --temp-dir /tmp/ray-asr --port 6380 --token-file ~/.ray/asr_token
#   cluster/start_head.sh --block                          # stay in the foreground; Ctrl-C stops
#   cluster/start_head.sh --num-gpus 4 -- --object-store-memory 2000000000   # extra `ray start` args
#   cluster/start_head.sh stop --temp-dir /tmp/ray-asr     # stops ONLY the head started with that dir
#   cluster/start_head.sh stop                             # no --temp-dir and no state file: `ray stop`
#
# Options (environment variable in brackets):
#   --dashboard-host HOST  [ASR_TUNE_DASHBOARD_HOST]  default 127.0.0.1 (loopback only)
#   --dashboard-port PORT  [ASR_TUNE_DASHBOARD_PORT]  default 8265
#   --port PORT            [ASR_TUNE_GCS_PORT]        GCS port workers join on, default 6379
#   --client-port PORT     [ASR_TUNE_CLIENT_PORT]     Ray Client server port, default 10001
#   --agent-port PORT      [ASR_TUNE_AGENT_PORT]      dashboard agent HTTP port, default 52365
#   --node-ip ADDR         [ASR_TUNE_NODE_IP]         address other nodes reach this one on (Ray auto-detects)
#   --temp-dir DIR         [ASR_TUNE_RAY_TEMP_DIR]    Ray session/log dir, default /tmp/ray
#   --token-file FILE      [RAY_AUTH_TOKEN_PATH]      default ~/.ray/auth_token; created (mode 600) if absent
#   --no-auth                                         RAY_AUTH_MODE=disabled (trusted networks only)
#   --num-cpus N / --num-gpus N                       override Ray's auto-detection (GPUs: CUDA/nvidia-smi)
#   --block                                           run `ray start --block` in the foreground
#
# Token authentication (Ray >= 2.52): every Ray process of the cluster is started with
#   RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<token file>
# so the GCS/raylet gRPC, the dashboard and the Jobs REST API demand `Authorization: Bearer <token>`.
# Clients: `asr-tune submit --token-file FILE` or RAY_AUTH_TOKEN=<token> / RAY_AUTH_TOKEN_PATH=FILE.
# Jobs started on the cluster inherit the two variables, so `ray.init()` inside them authenticates.
#
# `stop` never runs the machine-wide `ray stop` when it can target one head: it kills the processes of
# the session recorded in <temp-dir>/asr_tune_head.env, those whose command line names a non-default
# <temp-dir>, and all of their descendants (workers, job drivers), SIGTERM first, SIGKILL after
# ASR_TUNE_STOP_GRACE seconds (default 5).
set -euo pipefail

STATE_NAME="asr_tune_head.env"
DEFAULT_TEMP_DIR="/tmp/ray"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "start_head.sh: error: $*" >&2; exit 2; }
log() { echo "start_head.sh: $*" >&2; }

find_ray() {
  if [[ -n "${RAY_BIN:-}" ]]; then echo "$RAY_BIN"; return; fi
  command -v ray 2>/dev/null || die "'ray' not found on PATH (pip install 'ray[default,tune]==2.60.*' or set RAY_BIN)"
}

generate_token() {  # 64 hex chars = 256 bits, like `ray get-auth-token --generate`
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
}

ensure_token_file() {
  local file="$1"
  if [[ -s "$file" ]]; then return; fi
  mkdir -p "$(dirname "$file")"
  (umask 077 && generate_token > "$file")
  log "generated a new token in $file"
}

# PIDs of one head: processes in the recorded session, processes whose command line names the
# (non-default) temp dir, plus all their descendants; never this script, its ancestors or children.
head_pids() {
  local sid="$1" match="$2"
  ps -eo pid=,ppid=,sid=,args= | SID="$sid" MATCH="$match" ME="$$" awk '
    { pid = $1; parent[pid] = $2; s = $3; $1 = $2 = $3 = ""; args[pid] = $0; order[++n] = pid; sess[pid] = s }
    END {
      # this script, its ancestors and its descendants (subshells, ps, awk) are never targets
      p = ENVIRON["ME"]; while (p != "" && p != "0" && !(p in skip)) { skip[p] = 1; p = parent[p] }
      mine[ENVIRON["ME"]] = 1; changed = 1
      while (changed) {
        changed = 0
        for (i = 1; i <= n; i++) { q = order[i]
          if (!(q in mine) && (parent[q] in mine)) { mine[q] = 1; skip[q] = 1; changed = 1 } }
      }
      for (i = 1; i <= n; i++) {
        q = order[i]; if (q in skip) continue
        if (ENVIRON["SID"] != "" && sess[q] == ENVIRON["SID"]) hit[q] = 1
        if (ENVIRON["MATCH"] != "" && index(args[q], ENVIRON["MATCH"]) > 0) hit[q] = 1
      }
      changed = 1
      while (changed) {
        changed = 0
        for (i = 1; i <= n; i++) { q = order[i]
          if (!(q in hit) && !(q in skip) && (parent[q] in hit)) { hit[q] = 1; changed = 1 } }
      }
      for (q in hit) print q
    }'
}

alive_pids() {  # the given pids that still run (zombies waiting to be reaped count as gone)
  [[ $# -gt 0 ]] || return 0
  ps -o pid=,stat= -p "$(IFS=,; echo "$*")" 2>/dev/null | awk '$2 !~ /^Z/ {print $1}' || true
}

cmd_stop() {
  local temp_dir="${ASR_TUNE_RAY_TEMP_DIR:-}"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --temp-dir) temp_dir="$2"; shift 2 ;;
      --temp-dir=*) temp_dir="${1#*=}"; shift ;;
      -h|--help) usage; exit 0 ;;
      *) die "stop: unknown option '$1'" ;;
    esac
  done
  local state="${temp_dir:-$DEFAULT_TEMP_DIR}/$STATE_NAME"
  if [[ -z "$temp_dir" && ! -f "$state" ]]; then
    log "no --temp-dir and no $state: running 'ray stop' (stops EVERY Ray instance on this machine)"
    exec "$(find_ray)" stop
  fi
  local sid="" match=""
  if [[ -f "$state" ]]; then sid="$(sed -n 's/^HEAD_SID=//p' "$state")"; fi
  temp_dir="${temp_dir%/}"
  if [[ -n "$temp_dir" && "$temp_dir" != "$DEFAULT_TEMP_DIR" ]]; then match="$temp_dir/"; fi
  local pids; pids="$(head_pids "$sid" "$match" | tr '\n' ' ')"
  if [[ -z "${pids// /}" ]]; then
    log "no running head found for temp dir ${temp_dir:-$DEFAULT_TEMP_DIR}"
    rm -f "$state"; return 0
  fi
  log "stopping head (temp dir ${temp_dir:-$DEFAULT_TEMP_DIR}): pids $pids"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  local grace="${ASR_TUNE_STOP_GRACE:-5}" i alive
  for ((i = 0; i < grace * 5; i++)); do
    # shellcheck disable=SC2086
    alive="$(alive_pids $pids | tr '\n' ' ')"
    [[ -z "${alive// /}" ]] && break
    sleep 0.2
  done
  if [[ -n "${alive// /}" ]]; then
    log "SIGKILL to $alive"
    # shellcheck disable=SC2086
    kill -KILL $alive 2>/dev/null || true
  fi
  # anything the dying processes spawned meanwhile
  local rest; rest="$(head_pids "$sid" "$match" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  if [[ -n "${rest// /}" ]]; then kill -KILL $rest 2>/dev/null || true; fi
  rm -f "$state"
  log "stopped"
}

cmd_start() {
  local dash_host="${ASR_TUNE_DASHBOARD_HOST:-127.0.0.1}"
  local dash_port="${ASR_TUNE_DASHBOARD_PORT:-8265}"
  local gcs_port="${ASR_TUNE_GCS_PORT:-6379}"
  local client_port="${ASR_TUNE_CLIENT_PORT:-10001}"
  local agent_port="${ASR_TUNE_AGENT_PORT:-52365}"
  local node_ip="${ASR_TUNE_NODE_IP:-}"
  local temp_dir="${ASR_TUNE_RAY_TEMP_DIR:-$DEFAULT_TEMP_DIR}"
  local token_file="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
  local auth=1 block=0 num_cpus="" num_gpus=""
  local extra=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dashboard-host) dash_host="$2"; shift 2 ;;
      --dashboard-port) dash_port="$2"; shift 2 ;;
      --port) gcs_port="$2"; shift 2 ;;
      --client-port) client_port="$2"; shift 2 ;;
      --agent-port) agent_port="$2"; shift 2 ;;
      --node-ip) node_ip="$2"; shift 2 ;;
      --temp-dir) temp_dir="$2"; shift 2 ;;
      --token-file) token_file="$2"; shift 2 ;;
      --no-auth) auth=0; shift ;;
      --num-cpus) num_cpus="$2"; shift 2 ;;
      --num-gpus) num_gpus="$2"; shift 2 ;;
      --block) block=1; shift ;;
      -h|--help) usage; exit 0 ;;
      --) shift; extra=("$@"); break ;;
      *) die "unknown option '$1' (see --help; pass raw 'ray start' flags after --)" ;;
    esac
  done
  [[ "$temp_dir" = /* ]] || temp_dir="$PWD/$temp_dir"
  temp_dir="${temp_dir%/}"

  local ray; ray="$(find_ray)"
  # Jobs run their entrypoint with the raylet's PATH: put this environment's bin dir (asr-tune,
  # python) first so `asr-tune search` in a job uses the same installation as the head.
  local ray_dir; ray_dir="$(cd "$(dirname "$ray")" && pwd)"
  export PATH="$ray_dir:$PATH"

  if [[ "$auth" == 1 ]]; then
    ensure_token_file "$token_file"
    token_file="$(cd "$(dirname "$token_file")" && pwd)/$(basename "$token_file")"
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$token_file"
    unset RAY_AUTH_TOKEN
  else
    export RAY_AUTH_MODE=disabled
    log "WARNING: token authentication disabled; anyone reaching the ports can run code"
  fi

  if [[ -z "$num_gpus" ]] && command -v nvidia-smi >/dev/null 2>&1; then
    log "GPUs visible to nvidia-smi: $(nvidia-smi -L 2>/dev/null | wc -l) (Ray auto-detects them)"
  fi

  local args=(start --head --port="$gcs_port" --temp-dir="$temp_dir"
              --include-dashboard=true --dashboard-host="$dash_host" --dashboard-port="$dash_port"
              --ray-client-server-port="$client_port" --dashboard-agent-listen-port="$agent_port"
              --disable-usage-stats)
  [[ -n "$node_ip" ]] && args+=(--node-ip-address="$node_ip")
  [[ -n "$num_cpus" ]] && args+=(--num-cpus="$num_cpus")
  [[ -n "$num_gpus" ]] && args+=(--num-gpus="$num_gpus")
  args+=("${extra[@]}")

  local url_host="$dash_host"
  [[ "$url_host" == "0.0.0.0" ]] && url_host="${node_ip:-$(hostname -I 2>/dev/null | awk '{print $1}')}"
  local dashboard_url="http://${url_host:-127.0.0.1}:$dash_port"

  if [[ "$block" == 1 ]]; then
    log "dashboard / jobs API: $dashboard_url (foreground; Ctrl-C stops the head)"
    exec "$ray" "${args[@]}" --block
  fi

  mkdir -p "$temp_dir"
  local state="$temp_dir/$STATE_NAME"
  if [[ -f "$state" ]]; then
    local old_sid; old_sid="$(sed -n 's/^HEAD_SID=//p' "$state")"
    if [[ -n "$old_sid" && -n "$(head_pids "$old_sid" "")" ]]; then
      die "a head started with --temp-dir $temp_dir is still running; stop it first: $0 stop --temp-dir $temp_dir"
    fi
  fi
  local sid_file; sid_file="$(mktemp)"
  local rc=0
  # A new session groups every daemon of this head so that `stop` can find them all.
  if command -v setsid >/dev/null 2>&1; then
    # shellcheck disable=SC2016  # $$ and $@ expand in the new session's shell
    setsid -w bash -c 'echo $$ > "$0"; exec "$@"' "$sid_file" "$ray" "${args[@]}" || rc=$?
  else
    "$ray" "${args[@]}" || rc=$?
  fi
  local sid; sid="$(cat "$sid_file")"; rm -f "$sid_file"
  echo "HEAD_SID=$sid" > "$state"
  if [[ "$rc" != 0 ]]; then
    log "ray start failed (exit $rc, see the messages above); cleaning up what it started"
    cmd_stop --temp-dir "$temp_dir" >/dev/null 2>&1 || true
    die "ray start failed: is a port in use (--port, --dashboard-port, --client-port, --agent-port)?"
  fi
  # Ray records the GCS address (node-ip:port) workers must join in <temp-dir>/ray_current_cluster
  local gcs_address; gcs_address="$(cat "$temp_dir/ray_current_cluster" 2>/dev/null || echo "<head-ip>:$gcs_port")"
  {
    echo "HEAD_SID=$sid"
    echo "DASHBOARD_URL=$dashboard_url"
    echo "GCS_ADDRESS=$gcs_address"
    echo "TEMP_DIR=$temp_dir"
    echo "AUTH=$([[ $auth == 1 ]] && echo token || echo disabled)"
    echo "TOKEN_FILE=$([[ $auth == 1 ]] && echo "$token_file")"
  } > "$state"

  echo "Ray head started."
  echo "  dashboard / jobs API : $dashboard_url"
  echo "  submit               : RAY_ADDRESS=$dashboard_url asr-tune submit CONFIG.yaml$([[ $auth == 1 ]] && echo " --token-file $token_file")"
  echo "  join a worker        : cluster/start_worker.sh --address $gcs_address$([[ $auth == 1 ]] && echo " --token-file <copy of $token_file>")"
  echo "  stop                 : $0 stop --temp-dir $temp_dir"
}

case "${1:-start}" in
  stop) shift; cmd_stop "$@" ;;
  start) [[ $# -gt 0 ]] && shift; cmd_start "$@" ;;
  *) cmd_start "$@" ;;
esac
