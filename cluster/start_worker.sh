#!/usr/bin/env bash
# Join this machine to an asr-tune Ray head as a worker node (token authentication on by default).
#
# Usage:
#   cluster/start_worker.sh --address 10.0.0.5:6379 --token-file ~/.ray/auth_token
#   RAY_AUTH_TOKEN=$(cat token) cluster/start_worker.sh --address 10.0.0.5:6379 --num-gpus 8
#   cluster/start_worker.sh --address 10.0.0.5:6379 --block          # foreground; Ctrl-C leaves
#   cluster/start_worker.sh --address 10.0.0.5:6379 -- --resources '{"a100": 8}'   # extra `ray start` args
#   cluster/start_worker.sh stop --temp-dir /tmp/ray-asr-worker         # stops only this node
#
# Options (environment variable in brackets):
#   --address HOST:PORT   [ASR_TUNE_HEAD_ADDRESS]  the head's GCS address (printed by start_head.sh)
#   --token-file FILE     [RAY_AUTH_TOKEN_PATH]    copy of the head's token file; default ~/.ray/auth_token
#                                                  (or export RAY_AUTH_TOKEN=<token> instead of a file)
#   --no-auth                                      join a head started with --no-auth
#   --node-ip ADDR        [ASR_TUNE_NODE_IP]       address the head reaches this node on (Ray auto-detects)
#   --temp-dir DIR        [ASR_TUNE_RAY_TEMP_DIR]  default /tmp/ray
#   --num-cpus N / --num-gpus N                    override auto-detection (GPUs via CUDA/nvidia-smi)
#   --block                                        run `ray start --block` in the foreground
#
# The token must be the head's: the worker's raylet authenticates to the GCS with it, and a wrong or
# missing token makes `ray start` fail with an authentication error.
set -euo pipefail

STATE_NAME="asr_tune_head.env"   # same per-node state file as start_head.sh, so its `stop` works
DEFAULT_TEMP_DIR="/tmp/ray"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "start_worker.sh: error: $*" >&2; exit 2; }
log() { echo "start_worker.sh: $*" >&2; }

if [[ "${1:-}" == "stop" ]]; then
  shift
  exec bash "$HERE/start_head.sh" stop "$@"
fi
[[ "${1:-}" == "start" ]] && shift

address="${ASR_TUNE_HEAD_ADDRESS:-}"
token_file="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
node_ip="${ASR_TUNE_NODE_IP:-}"
temp_dir="${ASR_TUNE_RAY_TEMP_DIR:-$DEFAULT_TEMP_DIR}"
auth=1 block=0 num_cpus="" num_gpus=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --address) address="$2"; shift 2 ;;
    --token-file) token_file="$2"; shift 2 ;;
    --no-auth) auth=0; shift ;;
    --node-ip) node_ip="$2"; shift 2 ;;
    --temp-dir) temp_dir="$2"; shift 2 ;;
    --num-cpus) num_cpus="$2"; shift 2 ;;
    --num-gpus) num_gpus="$2"; shift 2 ;;
    --block) block=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option '$1' (see --help; pass raw 'ray start' flags after --)" ;;
  esac
done
[[ -n "$address" ]] || die "--address HEAD_IP:GCS_PORT is required (start_head.sh prints it)"
[[ "$temp_dir" = /* ]] || temp_dir="$PWD/$temp_dir"
temp_dir="${temp_dir%/}"

if [[ "$auth" == 1 ]]; then
  export RAY_AUTH_MODE=token
  if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
    log "using the token in RAY_AUTH_TOKEN"
  else
    [[ -s "$token_file" ]] || die "no token: copy the head's token file here and pass --token-file FILE (or set RAY_AUTH_TOKEN)"
    RAY_AUTH_TOKEN_PATH="$(cd "$(dirname "$token_file")" && pwd)/$(basename "$token_file")"
    export RAY_AUTH_TOKEN_PATH
  fi
else
  export RAY_AUTH_MODE=disabled
fi

ray="${RAY_BIN:-$(command -v ray || true)}"
[[ -n "$ray" ]] || die "'ray' not found on PATH (pip install asr-tune, or set RAY_BIN)"
ray_dir="$(cd "$(dirname "$ray")" && pwd)"
export PATH="$ray_dir:$PATH"

if [[ -z "$num_gpus" ]] && command -v nvidia-smi >/dev/null 2>&1; then
  log "GPUs visible to nvidia-smi: $(nvidia-smi -L 2>/dev/null | wc -l) (Ray auto-detects them)"
fi

args=(start --address="$address" --temp-dir="$temp_dir" --disable-usage-stats)
[[ -n "$node_ip" ]] && args+=(--node-ip-address="$node_ip")
[[ -n "$num_cpus" ]] && args+=(--num-cpus="$num_cpus")
[[ -n "$num_gpus" ]] && args+=(--num-gpus="$num_gpus")
args+=("${extra[@]}")

if [[ "$block" == 1 ]]; then
  exec "$ray" "${args[@]}" --block
fi

mkdir -p "$temp_dir"
sid_file="$(mktemp)"
rc=0
if command -v setsid >/dev/null 2>&1; then
  # shellcheck disable=SC2016  # $$ and $@ expand in the new session's shell
  setsid -w bash -c 'echo $$ > "$0"; exec "$@"' "$sid_file" "$ray" "${args[@]}" || rc=$?
else
  "$ray" "${args[@]}" || rc=$?
fi
{
  echo "HEAD_SID=$(cat "$sid_file")"
  echo "ROLE=worker"
  echo "HEAD_ADDRESS=$address"
  echo "TEMP_DIR=$temp_dir"
} > "$temp_dir/$STATE_NAME"
rm -f "$sid_file"
if [[ "$rc" != 0 ]]; then
  bash "$HERE/start_head.sh" stop --temp-dir "$temp_dir" >/dev/null 2>&1 || true
  die "ray start failed (wrong address, unreachable head or wrong token?)"
fi
echo "Worker joined $address. Stop it with: $0 stop --temp-dir $temp_dir"
