#!/usr/bin/env bash
# Container start with an image of a real size (issue 13, item 4: the image digest's files
# hashed once, not at every start). `runc run` of /bin/true in an overlay root over an image
# of busybox and Python 3.11's standard library (/usr/lib/python3.11 of this machine: about
# 54 MB in 1,400 files), without ctrust and with ctrustd in enforce (the createRuntime hook),
# interleaved round by round (the order alternates), the vTPM pool full before each run.
# Two phases, each against its own interleaved baseline: the agent as configured by default
# (the image cache on), then the agent with enforcement.image_cache_entries = 0 (every start
# hashes the whole image, as before the cache). Also the registration's "image digest" step
# from the agent's debug log.
#   bench/image_start_bench.sh [BUILD_DIR]   (default build/ci; from the repository root; root)
# BENCH_ROUNDS (default 9) rounds per phase. Writes build/bench/image_start.json (every run)
# and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/ci}
CTRUST=$(readlink -f "$build/src/cmd/ctrust/ctrust")
CTRUSTD=$(readlink -f "$build/src/cmd/ctrustd/ctrustd")
HOOK=$(readlink -f "$build/src/cmd/ctrust-hook/ctrust-hook")
ROUNDS=${BENCH_ROUNDS:-9}
OUT=build/bench/image_start.json
POOL=2
PYLIB=/usr/lib/python3.11

[ "$(id -u)" -eq 0 ] || { echo "image_start_bench: needs root (fanotify, containers)" >&2; exit 1; }
for t in runc swtpm swtpm_setup jq busybox "$CTRUST" "$CTRUSTD" "$HOOK"; do
  command -v "$t" >/dev/null || { echo "image_start_bench: missing $t" >&2; exit 1; }
done
[ -d "$PYLIB" ] || { echo "image_start_bench: no $PYLIB (python3.11)" >&2; exit 1; }
mkdir -p build/bench
WORK=$(mktemp -d /tmp/ctrust-image-bench.XXXXXX)
export TSS2_LOG=all+none
SOCK=$WORK/ctrustd.sock
STATE=$WORK/state
RUNS=$WORK/runs.jsonl
: >"$RUNS"
AGENT_PID=""
MOUNTS=()

cleanup() {
  set +e
  for id in $(runc list -q 2>/dev/null | grep '^imgbench-'); do runc delete -f "$id" >/dev/null 2>&1; done
  if [ -n "$AGENT_PID" ]; then kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; fi
  pkill -f "swtpm_setup.*$WORK" 2>/dev/null
  pkill -f "swtpm socket.*$WORK" 2>/dev/null
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
say() { echo "image_start_bench: $(date -u +%T) $*" >&2; }
source bench/runs_lib.sh
ms() { fmt "$1" 1e6; }

# --- the image and its policy -----------------------------------------------------------------
say "building the image (busybox + $PYLIB)"
IMG=$WORK/image
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,usr/lib}
chmod 1777 "$IMG/tmp"
cp "$(command -v busybox)" "$IMG/bin/busybox"
for a in sh true; do ln -s busybox "$IMG/bin/$a"; done
echo "root:x:0:0:root:/:/bin/sh" >"$IMG/etc/passwd"
cp -a "$PYLIB" "$IMG/usr/lib/"
FILES=$(find "$IMG" -type f | wc -l)
BYTES=$(du -sb "$IMG" | cut -f1)
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$WORK/key.pub" >/dev/null
"$CTRUST" policy create --from "$IMG" --name imgbench --issuer bench --mode enforce --any-image \
  --out "$WORK/policy.json" >/dev/null
"$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/policy.json" >/dev/null

# --- the agent --------------------------------------------------------------------------------
start_agent() {  # IMAGE_CACHE_ENTRIES
  cat >"$WORK/ctrustd.toml" <<EOF
state_dir = "$STATE"
socket = "$SOCK"
log_level = "debug"
[vtpm]
pool = $POOL
[policies]
trust = ["$WORK/key.pub"]
[enforcement]
image_cache_entries = $1
EOF
  : >"$WORK/ctrustd.log"
  "$CTRUSTD" --config "$WORK/ctrustd.toml" >>"$WORK/ctrustd.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 200); do
    if "$CTRUST" ps --socket "$SOCK" >/dev/null 2>&1; then
      "$CTRUST" policy load --socket "$SOCK" "$WORK/policy.json" >/dev/null
      return 0
    fi
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.05
  done
  say "ctrustd did not start:"
  tail -20 "$WORK/ctrustd.log" >&2
  return 1
}
stop_agent() {
  kill "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=""
}

# --- bundles: an overlay root over the image each, as the engines mount them ------------------
bundle() {  # ID HOOK(0/1)
  local b=$WORK/bundles/$1
  mkdir -p "$b/rootfs" "$b/upper" "$b/work"
  mount -t overlay overlay -o "lowerdir=$IMG,upperdir=$b/upper,workdir=$b/work" "$b/rootfs"
  MOUNTS+=("$b/rootfs")
  (cd "$b" && runc spec)
  jq --arg c "$HOOK" --arg s "$SOCK" --argjson hook "$2" '
    .process.terminal = false | .process.args = ["/bin/true"] |
    .root = {"path": "rootfs", "readonly": false} |
    .annotations = {"io.ctrust.policy": "imgbench"} |
    .linux.namespaces |= map(select(.type != "network")) |
    if $hook == 1 then
      .hooks = {"createRuntime": [{"path": $c, "args": ["ctrust-hook", "createRuntime", "--socket", $s]}]}
    else . end' "$b/config.json" >"$b/config.json.new"
  mv "$b/config.json.new" "$b/config.json"
}
time_run() {  # BUNDLE ID: wall ns of a foreground runc run (create, start, exit, delete)
  local s e
  s=$(date +%s%N)
  runc run --bundle "$WORK/bundles/$1" "$2" </dev/null >/dev/null 2>"$WORK/start.err" || {
    say "runc run $2 failed: $(head -c 500 "$WORK/start.err")"
    return 1
  }
  e=$(date +%s%N)
  echo $((e - s))
}
bundle off 0
bundle on 1

phase() {  # NAME IMAGE_CACHE_ENTRIES
  local name=$1 r v order
  say "phase $name: $ROUNDS rounds"
  start_agent "$2"
  wait_pool
  # The first start with this agent: the cache is cold (with it on) or absent.
  record "$name" first-on 0 "$(time_run on "imgbench-$name-first")" ns
  for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order="off on"; else order="on off"; fi
    declare -A t=()
    for v in $order; do
      wait_pool
      t[$v]=$(time_run "$v" "imgbench-$name-$v-$r")
      record "$name" "$v" "$r" "${t[$v]}" ns
    done
    record "$name" added "$r" "$((t[on] - t[off]))" ns
    unset t
  done
  # The registration's image digest step, first start then the others, from the debug log.
  local i=0 lap
  while read -r lap; do
    record "$name" "$([ $i -eq 0 ] && echo digest-first || echo digest)" "$i" \
      "$(awk -v x="$lap" 'BEGIN { printf "%d", x * 1e6 }')" ns
    i=$((i + 1))
  done < <(sed -n 's/.*registered in [0-9.]* ms, .*image digest \([0-9.]*\).*/\1/p' "$WORK/ctrustd.log")
  grep -h 'image files:' "$WORK/ctrustd.log" | tail -1 | sed 's/^/  last start: /' >&2 || true
  stop_agent
}

DATE_START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
phase cached 16384
phase uncached 0
DATE_END=$(date -u +%Y-%m-%dT%H:%M:%SZ)

jq -s --arg start "$DATE_START" --arg stop "$DATE_END" --arg build "$build" \
  --argjson files "$FILES" --argjson bytes "$BYTES" --argjson rounds "$ROUNDS" \
  --arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  '{started: $start, ended: $stop, build: $build, commit: $commit, rounds: $rounds,
    image: {files: $files, bytes: $bytes}, runs: .}' "$RUNS" >"$OUT"

echo "Image: $FILES files, $((BYTES / 1000000)) MB; $ROUNDS interleaved rounds per phase; $DATE_START - $DATE_END"
echo
echo "| agent | runc run without ctrust | with ctrust | added (median of rounds) | first start with this agent | registration's image digest: first / later (medians) |"
echo "|---|---|---|---|---|---|"
for p in cached uncached; do
  echo "| image cache $([ $p = cached ] && echo "on (default)" || echo "off (image_cache_entries = 0)") |" \
    "$(ms "$(med $p off)") ms | $(ms "$(med $p on)") ms | **$(ms "$(med $p added)") ms** |" \
    "$(ms "$(med $p first-on)") ms | $(ms "$(med $p digest-first)") ms / $(ms "$(med $p digest)") ms |"
done
