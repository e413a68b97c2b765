#!/usr/bin/env bash
# The node agent's costs (issue 5), against real runc and podman containers, and fapolicyd
# as the enforcement peer. Needs root. Every A/B figure is interleaved: each round runs A
# and B once, in an order that alternates; medians over the rounds, ratios and differences
# taken within a round.
#   1. exec loop (bench/exec_loop.c: fork + execve, timed inside the container) of a tiny
#      static `true` and of busybox `true` in a runc container over a busybox image:
#      no ctrust hook vs ctrustd enforce (policy listing them), verdicts cached;
#   2. first execs: the loop over distinct binaries (the tiny one and busybox, each with
#      a few bytes appended), each run once, in a fresh container per round;
#   3. container start: `runc run` and `podman run` of /bin/true, no hook vs hook, warm
#      vTPM pool; `runc run` of the same bundle without a hook, found by discovery
#      (containers.discover: its cgroup below a watched one);
#   4. ctrustd RSS with 0, 10 and 50 running containers; swtpm RSS per vTPM;
#   5. the exec loop on the host with fapolicyd (integrity = sha256) vs without. fapolicyd
#      runs in a private mount namespace of its own (its config, trust db and run
#      directory bind-mounted there), so it watches only that namespace's mounts: only
#      the loop, entered into that namespace, is intercepted, never the rest of the host.
#      It is never running while ctrustd is.
#   bench/agent_bench.sh [BUILD_DIR]   (default build/default; from the repository root)
# Writes build/bench/agent.json (every run) and prints a Markdown table. BENCH_ROUNDS,
# BENCH_EXECS, BENCH_FIRST, BENCH_FIRST_BIG, BENCH_START_RUNS, BENCH_PODMAN_RUNS,
# BENCH_MEM_STEPS, BENCH_SKIP (words: cached first start podman memory fapolicyd) shorten a
# quick try.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/default}
CTRUST=$(readlink -f "$build/src/cmd/ctrust/ctrust")
CTRUSTD=$(readlink -f "$build/src/cmd/ctrustd/ctrustd")
HOOK=$(readlink -f "$build/src/cmd/ctrust-hook/ctrust-hook")  # what deploy/ uses
SHIM=$(readlink -f "$build/src/cmd/ctrust-runtime/ctrust-runtime")  # engines' way: no hook
ROUNDS=${BENCH_ROUNDS:-7}
N=${BENCH_EXECS:-2000}
NFIRST=${BENCH_FIRST:-500}
NFIRST_BIG=${BENCH_FIRST_BIG:-40}
START_RUNS=${BENCH_START_RUNS:-13}
PODMAN_RUNS=${BENCH_PODMAN_RUNS:-11}
MEM_STEPS=${BENCH_MEM_STEPS:-"10 50"}
SKIP=" ${BENCH_SKIP:-} "
OUT=build/bench/agent.json
POOL=2
HASH_RATE=1.33e9  # bytes/s: OpenSSL SHA-256 on one core here (BENCHMARKS.md)

[ "$(id -u)" -eq 0 ] || { echo "agent_bench: needs root (fanotify, containers)" >&2; exit 1; }
for t in runc podman swtpm swtpm_setup gcc jq busybox unshare nsenter "$CTRUST" "$CTRUSTD" "$HOOK" "$SHIM"; do
  command -v "$t" >/dev/null || { echo "agent_bench: missing $t" >&2; exit 1; }
done
mkdir -p build/bench
WORK=$(mktemp -d /tmp/ctrust-agent-bench.XXXXXX)
chmod 755 "$WORK"  # fapolicyd reads the loop's binaries as its own user
export TSS2_LOG=all+none
SOCK=$WORK/ctrustd.sock
STATE=$WORK/state
BB=$(command -v busybox)
RUNS=$WORK/runs.jsonl
: >"$RUNS"
AGENT_PID=""
FA_PID=""
MOUNTS=()
CONTAINERS=()
PM=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --storage-driver overlay
    --cgroup-manager cgroupfs --events-backend none --runtime runc)

cleanup() {
  set +e
  if [ -n "$FA_PID" ]; then kill "$FA_PID" 2>/dev/null; wait "$FA_PID" 2>/dev/null; fi
  for id in "${CONTAINERS[@]}"; do
    runc kill "$id" KILL >/dev/null 2>&1
    runc delete -f "$id" >/dev/null 2>&1
  done
  if [ -d "$WORK/podman" ]; then "${PM[@]}" rm -af >/dev/null 2>&1; fi
  if [ -n "$AGENT_PID" ]; then kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; fi
  pkill -f "swtpm_setup.*$WORK" 2>/dev/null
  pkill -f "swtpm socket.*$WORK" 2>/dev/null
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null; done
  umount -l "$WORK/podman/root/overlay" 2>/dev/null
  if [ -n "${CG2:-}" ] && [ -d "$CG2$WATCHED" ]; then
    for d in "$CG2$WATCHED"/*/; do [ -d "$d" ] && rmdir "$d"; done
    rmdir "$CG2$WATCHED"
  fi
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
skipped() { [[ "$SKIP" == *" $1 "* ]]; }
say() { echo "agent_bench: $(date -u +%T) $*" >&2; }
source bench/fapolicyd_lib.sh

source bench/runs_lib.sh
now_ns() { date +%s%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- images, policy ---------------------------------------------------------------------------
say "building the image and the policy"
IMG=$WORK/image
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,usr/local/bin}
chmod 1777 "$IMG/tmp"
cp "$BB" "$IMG/bin/busybox"
for a in sh true sleep; do ln -s busybox "$IMG/bin/$a"; done
echo "root:x:0:0:root:/:/bin/sh" >"$IMG/etc/passwd"
gcc -static -O2 -o "$IMG/usr/local/bin/exec_loop" bench/exec_loop.c
gcc -static -nostdlib -O2 -DEXEC_LOOP_TRUE -o "$IMG/bin/tinytrue" bench/exec_loop.c
TINY_SIZE=$(stat -c %s "$IMG/bin/tinytrue")
BB_SIZE=$(stat -c %s "$BB")
# The first-exec image: the same plus distinct copies (one line appended to each).
IMGF=$WORK/image-first
cp -a "$IMG" "$IMGF"
FIRST_S=()
FIRST_B=()
for i in $(seq "$NFIRST"); do
  mkdir -p "$IMGF/first/s/$i"
  cp "$IMG/bin/tinytrue" "$IMGF/first/s/$i/true"
  echo "$i" >>"$IMGF/first/s/$i/true"
  FIRST_S+=("/first/s/$i/true")
done
for i in $(seq "$NFIRST_BIG"); do
  mkdir -p "$IMGF/first/b/$i"
  cp "$BB" "$IMGF/first/b/$i/true"  # argv[0] ends in "true": busybox runs its true applet
  echo "$i" >>"$IMGF/first/b/$i/true"
  FIRST_B+=("/first/b/$i/true")
done
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$WORK/key.pub" >/dev/null
# One enforce policy lists both images' digests at any path (as agent_test.sh's "bb").
"$CTRUST" policy create --from "$IMGF" --name bench --issuer bench --mode enforce --any-image \
  --out "$WORK/bench.json" >/dev/null
jq 'del(.allow[].paths)' "$WORK/bench.json" >"$WORK/bench.json.new"
mv "$WORK/bench.json.new" "$WORK/bench.json"
"$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/bench.json" >/dev/null

# --- the agent --------------------------------------------------------------------------------
# Discovery watches a cgroup of this run's own (removed at the end): only the `discover`
# variant's containers are made below it.
CG2=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
WATCHED=/ctrust-bench-$$
mkdir "$CG2$WATCHED"
cat >"$WORK/ctrustd.toml" <<EOF
state_dir = "$STATE"
socket = "$SOCK"
log_level = "${BENCH_LOG_LEVEL:-info}"
[containers]
discover = ["$WATCHED"]
[vtpm]
pool = $POOL
[policies]
trust = ["$WORK/key.pub"]
EOF
start_agent() {
  "$CTRUSTD" --config "$WORK/ctrustd.toml" >>"$WORK/ctrustd.log" 2>&1 &
  AGENT_PID=$!
  for _ in $(seq 200); do
    "$CTRUST" ps --socket "$SOCK" >/dev/null 2>&1 && return 0
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.05
  done
  say "ctrustd did not start:"
  tail -20 "$WORK/ctrustd.log" >&2
  return 1
}
stop_agent() {
  [ -n "$AGENT_PID" ] || return 0
  kill "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=""
}
agent_cpu_ns() { cat /proc/"$AGENT_PID"/task/*/schedstat | awk '{ s += $1 } END { printf "%d", s }'; }
agent_switches() {
  cat /proc/"$AGENT_PID"/task/*/status | awk '/^(non)?voluntary_ctxt_switches/ { s += $2 } END { printf "%d", s }'
}
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
pss_kb() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup"; }

# --- bundles (as tests/cli/agent_test.sh: an overlay root over the image) ---------------------
# bundle ID IMAGE HOOK ARGS-JSON; HOOK 0: none, 1: ctrust hook, 2: ctrust hook under a
# wrapper that logs each hook's wall time to $WORK/hooks.log (a diagnostic, not the A/B),
# 3: none, its cgroup below the one discovery watches.
cat >"$WORK/hookwrap.sh" <<EOF
#!/bin/sh
s=\$(date +%s%N)
"$HOOK" "\$@"
rc=\$?
e=\$(date +%s%N)
echo "\$1 \$((e - s))" >>"$WORK/hooks.log"
exit \$rc
EOF
chmod 755 "$WORK/hookwrap.sh"
bundle() {
  local id=$1 img=$2 hook=$3 args=$4
  local b=$WORK/bundles/$id
  mkdir -p "$b/rootfs" "$b/upper" "$b/work"
  mount -t overlay overlay -o "lowerdir=$img,upperdir=$b/upper,workdir=$b/work" "$b/rootfs"
  MOUNTS+=("$b/rootfs")
  (cd "$b" && runc spec)
  jq --arg c "$HOOK" --arg w "$WORK/hookwrap.sh" --arg s "$SOCK" --argjson args "$args" --argjson hook "$hook" \
    --arg watched "$WATCHED" --arg id "$id" '
    .process.terminal = false |
    .process.args = $args |
    .root = {"path": "rootfs", "readonly": false} |
    .annotations = {"io.ctrust.policy": "bench"} |
    .linux.namespaces |= map(select(.type != "network")) |
    if $hook == 1 then
      .hooks = {"createRuntime": [{"path": $c, "args": ["ctrust-hook", "createRuntime",
                                                         "--socket", $s]}]}
    elif $hook == 2 then
      .hooks = {"createRuntime": [{"path": $w, "args": ["hookwrap", "createRuntime", "--socket", $s]}]}
    elif $hook == 3 then
      .linux.cgroupsPath = ($watched + "/" + $id)
    else . end
  ' "$b/config.json" >"$b/config.json.new"
  mv "$b/config.json.new" "$b/config.json"
}
run_detached() {  # ID: the bundle's container, started in the background
  CONTAINERS+=("$1")
  runc run -d --bundle "$WORK/bundles/$1" "$1" </dev/null >"$WORK/$1.out" 2>"$WORK/$1.err" || {
    cat "$WORK/$1.err" >&2
    return 1
  }
}
stop_container() {  # ID: killed and deleted, its root unmounted
  runc kill "$1" KILL >/dev/null 2>&1 || true
  for _ in $(seq 100); do runc state "$1" 2>/dev/null | grep -q '"stopped"' && break; sleep 0.02; done
  runc delete -f "$1" >/dev/null 2>&1 || true
  umount "$WORK/bundles/$1/rootfs" 2>/dev/null || true
}
# loop_in ID ARGS...: exec_loop inside the container; prints its ns per exec.
loop_in() {
  local id=$1 out
  shift
  out=$(runc exec "$id" /usr/local/bin/exec_loop "$@" </dev/null 2>"$WORK/loop.err") || {
    say "exec loop in $id failed: $out $(head -c 500 "$WORK/loop.err")"
    return 1
  }
  sed -n 's/^ns_per_exec=\([0-9]*\).*/\1/p' <<<"$out"
}

LOAD_BEFORE=$(loadavg)
FOREIGN=$( (pgrep -x ctrustd || true) | wc -l)  # other agents (tests) running now: noise, and said so
DATE_START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
start_agent
"$CTRUST" policy load --socket "$SOCK" "$WORK/bench.json" >/dev/null
wait_pool

# --- 1. exec, verdict cached ------------------------------------------------------------------
if ! skipped cached; then
  say "1. exec loop, cached verdicts: $ROUNDS rounds of $N execs"
  bundle loop-off "$IMG" 0 '["/bin/sleep", "3600"]'
  bundle loop-on "$IMG" 1 '["/bin/sleep", "3600"]'
  run_detached loop-off
  run_detached loop-on
  wait_pool
  for c in loop-off loop-on; do  # warm-up: page cache, the agent's digest cache
    loop_in $c -w 200 /bin/tinytrue >/dev/null
    loop_in $c -w 200 /bin/true >/dev/null
  done
  for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order="off on"; else order="on off"; fi
    for bin in tinytrue true; do
      declare -A got=()
      for v in $order; do
        if [ "$v" = on ]; then c0=$(agent_cpu_ns); s0=$(agent_switches); fi
        got[$v]=$(loop_in "loop-$v" -w "$N" "/bin/$bin")
        record "cached-$bin" "$v" "$r" "${got[$v]}" ns/exec
        if [ "$v" = on ]; then
          c1=$(agent_cpu_ns); s1=$(agent_switches)
          # the warm-up execs of -w are 1 of N+1: counted in.
          record "cached-$bin" agent-cpu "$r" "$(((c1 - c0) / (N + 1)))" "ns/exec"
          record "cached-$bin" agent-switches "$r" "$(awk -v a="$s0" -v b="$s1" -v n="$N" 'BEGIN { printf "%.2f", (b - a) / (n + 1) }')" "per exec"
        fi
      done
      record "cached-$bin" added "$r" "$((got[on] - got[off]))" ns/exec
      record "cached-$bin" ratio "$r" "$(awk -v a="${got[on]}" -v b="${got[off]}" 'BEGIN { printf "%.4f", a / b }')" x
      unset got
    done
  done
  stop_container loop-off
  stop_container loop-on
  wait_pool
fi

# --- 2. first execs -----------------------------------------------------------------------------
if ! skipped first; then
  say "2. first execs: $ROUNDS rounds of $NFIRST tiny and $NFIRST_BIG busybox-sized binaries"
  for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order="off on"; else order="on off"; fi
    declare -A gs=() gb=()
    for v in $order; do
      id=first-$v-$r
      bundle "$id" "$IMGF" "$([ $v = on ] && echo 1 || echo 0)" '["/bin/sleep", "3600"]'
      run_detached "$id"
      wait_pool
      loop_in "$id" 1 /bin/tinytrue >/dev/null  # the loop binary itself: not timed
      gs[$v]=$(loop_in "$id" "$NFIRST" "${FIRST_S[@]}")
      gb[$v]=$(loop_in "$id" "$NFIRST_BIG" "${FIRST_B[@]}")
      record first-tiny "$v" "$r" "${gs[$v]}" ns/exec
      record first-busybox "$v" "$r" "${gb[$v]}" ns/exec
      stop_container "$id"
    done
    record first-tiny added "$r" "$((gs[on] - gs[off]))" ns/exec
    record first-busybox added "$r" "$((gb[on] - gb[off]))" ns/exec
    unset gs gb
  done
  wait_pool
fi

# --- 3. container start -------------------------------------------------------------------------
if ! skipped start; then
  say "3. container start: $START_RUNS runc runs each"
  bundle start-off "$IMG" 0 '["/bin/true"]'
  bundle start-on "$IMG" 1 '["/bin/true"]'
  bundle start-discover "$IMG" 3 '["/bin/true"]'
  time_run() {  # BUNDLE ID: wall ns of a foreground runc run (create, start, exit, delete)
    local s e
    s=$(now_ns)
    runc run --bundle "$WORK/bundles/$1" "$2" </dev/null >/dev/null 2>"$WORK/start.err" || {
      say "runc run $2 failed: $(head -c 500 "$WORK/start.err")"
      return 1
    }
    e=$(now_ns)
    echo $((e - s))
  }
  time_run start-off start-off-warm >/dev/null
  time_run start-on start-on-warm >/dev/null
  time_run start-discover start-discover-warm >/dev/null
  wait_pool
  for r in $(seq "$START_RUNS"); do
    case $((r % 3)) in
      0) order="off on discover" ;;
      1) order="on discover off" ;;
      *) order="discover off on" ;;
    esac
    declare -A t=()
    for v in $order; do
      wait_pool
      t[$v]=$(time_run "start-$v" "start-$v-$r")
      record runc-start "$v" "$r" "${t[$v]}" ns
    done
    record runc-start added "$r" "$((t[on] - t[off]))" ns
    record runc-start ratio "$r" "$(awk -v a="${t[on]}" -v b="${t[off]}" 'BEGIN { printf "%.4f", a / b }')" x
    record runc-discover added "$r" "$((t[discover] - t[off]))" ns
    record runc-discover ratio "$r" "$(awk -v a="${t[discover]}" -v b="${t[off]}" 'BEGIN { printf "%.4f", a / b }')" x
    unset t
  done
  # How long discovery held each first exec (the agent's debug log, when it is on).
  grep -o 'discovery: pid [0-9]* held [0-9.]* ms' "$WORK/ctrustd.log" | awk '{ print $5 }' |
    while read -r held; do record runc-discover held 0 "$(awk -v h="$held" 'BEGIN { printf "%d", h * 1e6 }')" ns; done
  # Where the added time goes: 5 more runs whose hooks are timed by a wrapper (a sh and a
  # date more per hook, so not part of the A/B above).
  bundle start-wrap "$IMG" 2 '["/bin/true"]'
  for r in 1 2 3 4 5; do
    wait_pool
    : >"$WORK/hooks.log"
    record runc-start wrapped "$r" "$(time_run start-wrap "start-wrap-$r")" ns
    while read -r stage ns; do record runc-start "hook-$stage" "$r" "$ns" ns; done <"$WORK/hooks.log"
  done
  # One hook process alone: ctrust's start-up plus one request to the agent.
  for r in $(seq 21); do
    s=$(now_ns); "$CTRUST" ps --socket "$SOCK" >/dev/null; e=$(now_ns)
    record ctrust-process on "$r" $((e - s)) ns
  done
fi

if ! skipped podman; then
  say "3b. podman run: $PODMAN_RUNS runs each"
  mkdir -p "$WORK/hooks.d" "$WORK/hooks-none.d"
  printf '[containers]\ndefault_ulimits = []\n' >"$WORK/containers.conf"
  export CONTAINERS_CONF=$WORK/containers.conf
  for stage in createRuntime; do
    jq -n --arg c "$HOOK" --arg s "$SOCK" --arg st "$stage" '{
      "version": "1.0.0",
      "hook": {"path": $c, "args": ["ctrust-hook", $st, "--socket", $s]},
      "when": {"always": true}, "stages": [$st]}' >"$WORK/hooks.d/ctrust-$stage.json"
  done
  tar -C "$IMG" -cf "$WORK/image.tar" .
  "${PM[@]}" import "$WORK/image.tar" localhost/ctrust-bench:1 >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log" >&2; exit 1; }
  printf 'runtime = "%s"\nsocket = "%s"\n' "$(command -v runc)" "$SOCK" >"$WORK/runtime.toml"
  # pm_time HOOKS-DIR [RUNTIME ARGS]: wall ns of one podman run --rm
  pm_time() {
    local s e dir=$1
    shift
    s=$(now_ns)
    "${PM[@]}" "$@" --hooks-dir "$dir" run --rm --network none --annotation io.ctrust.policy=bench \
      localhost/ctrust-bench:1 /bin/true </dev/null >/dev/null 2>"$WORK/pm.err" || {
      say "podman run failed: $(head -c 500 "$WORK/pm.err")"
      return 1
    }
    e=$(now_ns)
    echo $((e - s))
  }
  SHIM_ARGS=(--runtime "$SHIM" --runtime-flag "ctrust-config=$WORK/runtime.toml")
  pm_time "$WORK/hooks-none.d" >/dev/null
  pm_time "$WORK/hooks.d" >/dev/null
  pm_time "$WORK/hooks-none.d" "${SHIM_ARGS[@]}" >/dev/null
  # Three variants, each round in a rotated order: off; on with the hook (hooks.d); on
  # through ctrust-runtime (create, then registration from ctrust-runtime: no hook process).
  orders=("off on shim" "on shim off" "shim off on")
  for r in $(seq "$PODMAN_RUNS"); do
    order=${orders[$((r % 3))]}
    declare -A t=()
    for v in $order; do
      wait_pool
      case $v in
        on) t[$v]=$(pm_time "$WORK/hooks.d") ;;
        shim) t[$v]=$(pm_time "$WORK/hooks-none.d" "${SHIM_ARGS[@]}") ;;
        *) t[$v]=$(pm_time "$WORK/hooks-none.d") ;;
      esac
      record podman-start "$v" "$r" "${t[$v]}" ns
    done
    record podman-start added "$r" "$((t[on] - t[off]))" ns
    record podman-start ratio "$r" "$(awk -v a="${t[on]}" -v b="${t[off]}" 'BEGIN { printf "%.4f", a / b }')" x
    record podman-shim added "$r" "$((t[shim] - t[off]))" ns
    record podman-shim ratio "$r" "$(awk -v a="${t[shim]}" -v b="${t[off]}" 'BEGIN { printf "%.4f", a / b }')" x
    unset t
  done
fi

# --- 4. memory ----------------------------------------------------------------------------------
if ! skipped memory; then
  say "4. memory: a fresh agent, then $MEM_STEPS running containers"
  stop_agent
  start_agent
  wait_pool
  sleep 1
  vtpm_pids() { pgrep -f "swtpm socket.*$STATE/vtpm/tpms" || true; }
  mem_point() {  # COUNT
    local n=$1 rss pss srss=0 spss=0 k=0 p
    rss=$(rss_kb "$AGENT_PID")
    pss=$(pss_kb "$AGENT_PID")
    for p in $(vtpm_pids); do
      srss=$((srss + $(rss_kb "$p"))); spss=$((spss + $(pss_kb "$p"))); k=$((k + 1))
    done
    record memory agent-rss "$n" "$rss" kB "{\"containers\": $n}"
    record memory agent-pss "$n" "$pss" kB "{\"containers\": $n}"
    record memory swtpm-rss "$n" "$((srss / k))" kB "{\"containers\": $n, \"vtpms\": $k}"
    record memory swtpm-pss "$n" "$((spss / k))" kB "{\"containers\": $n, \"vtpms\": $k}"
  }
  mem_point 0
  have=0
  for want in $MEM_STEPS; do
    while ((have < want)); do
      have=$((have + 1))
      bundle "mem-$have" "$IMG" 1 '["/bin/sleep", "3600"]'
      run_detached "mem-$have"
    done
    wait_pool
    sleep 1
    mem_point "$want"
  done
  for i in $(seq "$have"); do stop_container "mem-$i"; done
fi
stop_agent
pkill -f "swtpm_setup.*$WORK" 2>/dev/null || true
pkill -f "swtpm socket.*$WORK" 2>/dev/null || true

# --- 5. fapolicyd -------------------------------------------------------------------------------
FA_STATUS="skipped"
if ! skipped fapolicyd && command -v fapolicyd >/dev/null; then
  say "5. fapolicyd: $ROUNDS rounds of $N execs on the host"
  [ -z "$AGENT_PID" ] || { say "ctrustd still running: fapolicyd not started"; exit 1; }
  # Nor while another ctrustd runs on this host (a test, say): wait for it, up to 5 minutes.
  for _ in $(seq 300); do pgrep -x ctrustd >/dev/null || break; sleep 1; done
fi
if ! skipped fapolicyd && command -v fapolicyd >/dev/null && pgrep -x ctrustd >/dev/null; then
  FA_STATUS="not run: another ctrustd is running on this host"
  say "fapolicyd $FA_STATUS"
elif ! skipped fapolicyd && command -v fapolicyd >/dev/null; then
  FA=$WORK/fa
  mkdir -p "$FA/bin" "$FA/untrusted"
  cp "$IMG/usr/local/bin/exec_loop" "$IMG/bin/tinytrue" "$FA/bin/"
  cp "$BB" "$FA/bin/busybox"
  ln -s busybox "$FA/bin/true"
  cp "$IMG/bin/tinytrue" "$FA/untrusted/tinytrue"
  echo untrusted >>"$FA/untrusted/tinytrue"
  ready=""
  fa_start "$FA" ext4,tmpfs "$FA/bin/exec_loop" "$FA/bin/tinytrue" "$FA/bin/busybox" && ready=1
  fa_loop() {  # on|off ARGS...: the exec loop, in fapolicyd's namespace or on the plain host
    local v=$1 out
    shift
    if [ "$v" = on ]; then out=$(in_fa "$FA/bin/exec_loop" "$@"); else out=$("$FA/bin/exec_loop" "$@"); fi
    sed -n 's/^ns_per_exec=\([0-9]*\).*/\1/p' <<<"$out"
  }
  if [ -z "$ready" ]; then
    FA_STATUS="did not start: $(grep -v '^$' "$FA/log" | tail -1)"
    say "fapolicyd $FA_STATUS"
  elif in_fa "$FA/untrusted/tinytrue" 2>/dev/null; then
    FA_STATUS="not enforcing (an untrusted binary ran)"
    say "fapolicyd: $FA_STATUS"
  else
    FA_STATUS="ran"
    fa_loop on -w 200 "$FA/bin/tinytrue" >/dev/null
    fa_loop off -w 200 "$FA/bin/tinytrue" >/dev/null
    for r in $(seq "$ROUNDS"); do
      if pgrep -x ctrustd >/dev/null; then
        FA_STATUS="stopped after $((r - 1)) rounds: another ctrustd started"
        say "fapolicyd $FA_STATUS"
        break
      fi
      if ((r % 2)); then order="off on"; else order="on off"; fi
      for bin in tinytrue true; do
        declare -A got=()
        for v in $order; do
          got[$v]=$(fa_loop "$v" -w "$N" "$FA/bin/$bin")
          record "fapolicyd-$bin" "$v" "$r" "${got[$v]}" ns/exec
        done
        record "fapolicyd-$bin" added "$r" "$((got[on] - got[off]))" ns/exec
        record "fapolicyd-$bin" ratio "$r" "$(awk -v a="${got[on]}" -v b="${got[off]}" 'BEGIN { printf "%.4f", a / b }')" x
        unset got
      done
    done
  fi
  kill "$FA_PID" 2>/dev/null || true
  wait "$FA_PID" 2>/dev/null || true
  FA_PID=""
  cp "$FA/log" "$WORK/fapolicyd.log"
fi

# --- results ------------------------------------------------------------------------------------
LOAD_AFTER=$(loadavg)
DATE_END=$(date -u +%Y-%m-%dT%H:%M:%SZ)
jq -s --arg start "$DATE_START" --arg finish "$DATE_END" --arg lb "$LOAD_BEFORE" --arg la "$LOAD_AFTER" \
  --arg kernel "$(uname -r)" --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
  --argjson ncpu "$(nproc)" --arg fa "$FA_STATUS" --argjson foreign "$FOREIGN" \
  --argjson params "{\"rounds\": $ROUNDS, \"execs\": $N, \"first_tiny\": $NFIRST, \"first_busybox\": $NFIRST_BIG, \"start_runs\": $START_RUNS, \"podman_runs\": $PODMAN_RUNS, \"tiny_bytes\": $TINY_SIZE, \"busybox_bytes\": $BB_SIZE, \"vtpm_pool\": $POOL}" \
  '{start: $start, "end": $finish, load_before: $lb, load_after: $la, kernel: $kernel, cpu: $cpu, cpus: $ncpu,
    params: $params, fapolicyd: $fa, other_agents_at_start: $foreign, runs: .}' "$RUNS" >"$OUT"

us() { fmt "$(med "$1" "$2")" 1000 "${3:-1}"; }
ms() { fmt "$(med "$1" "$2")" 1000000 "${3:-1}"; }
goal_us() {  # BENCH LIMIT-US
  awk -v a="$(med "$1" added)" -v l="$2" 'BEGIN { if (a == "null") print "n/a"; else if (a / 1000 <= l) print "met"; else print "**not met**" }'
}
goal_ms() {  # BENCH LIMIT-MS
  awk -v a="$(med "$1" added)" -v l="$2" 'BEGIN { if (a == "null") print "n/a"; else if (a / 1e6 <= l) print "met"; else print "**not met**" }'
}
goal_ratio() {  # BENCH LIMIT
  awk -v a="$(med "$1" ratio)" -v l="$2" 'BEGIN { if (a == "null") print "n/a"; else if (a <= l) print "met"; else print "**not met**" }'
}
hash_tiny=$(awk -v s="$TINY_SIZE" -v r="$HASH_RATE" 'BEGIN { printf "%.1f", s / r * 1e6 }')
hash_bb=$(awk -v s="$BB_SIZE" -v r="$HASH_RATE" 'BEGIN { printf "%.0f", s / r * 1e6 }')
rest() { awk -v a="$(med "$1" added)" -v h="$2" 'BEGIN { if (a == "null") print "n/a"; else printf "%.0f", a / 1000 - h }'; }
echo
echo "| figure | off | on | added (median of rounds) | ratio | goal |"
echo "|---|---|---|---|---|---|"
echo "| exec, cached, tiny static \`true\` ($TINY_SIZE B), runc container, $N x $ROUNDS | $(us cached-tinytrue off) us | $(us cached-tinytrue on) us | **$(us cached-tinytrue added 2) us** | $(fmt "$(med cached-tinytrue ratio)" 1 3) | <= 1 us: $(goal_us cached-tinytrue 1) |"
echo "| exec, cached, busybox \`true\` ($BB_SIZE B) | $(us cached-true off) us | $(us cached-true on) us | **$(us cached-true added 2) us** | $(fmt "$(med cached-true ratio)" 1 3) | <= 1 us: $(goal_us cached-true 1) |"
echo "| ctrustd CPU per cached exec (all threads, schedstat); context switches | | $(us cached-tinytrue agent-cpu) us; $(fmt "$(med cached-tinytrue agent-switches)" 1 1) | | | |"
echo "| first exec, $NFIRST distinct tiny binaries, fresh container | $(us first-tiny off) us | $(us first-tiny on) us | **$(us first-tiny added 0) us** | | hashing ~$hash_tiny us, the rest $(rest first-tiny "$hash_tiny") us |"
echo "| first exec, $NFIRST_BIG distinct busybox copies | $(us first-busybox off) us | $(us first-busybox on) us | **$(us first-busybox added 0) us** | | hashing ~$hash_bb us, the rest $(rest first-busybox "$hash_bb") us |"
echo "| \`runc run\` of /bin/true, warm vTPM pool, $START_RUNS runs | $(ms runc-start off) ms | $(ms runc-start on) ms | **$(ms runc-start added) ms** | $(fmt "$(med runc-start ratio)" 1 3) | <= 5 ms added: $(goal_ms runc-start 5) (stretch 1 ms: $(goal_ms runc-start 1)) |"
echo "| \`runc run\` of the same bundle without a hook, found by discovery, the same rounds | $(ms runc-start off) ms | $(ms runc-start discover) ms | **$(ms runc-discover added) ms** | $(fmt "$(med runc-discover ratio)" 1 3) | <= 5 ms added: $(goal_ms runc-discover 5) (stretch 1 ms: $(goal_ms runc-discover 1)); first exec held $(ms runc-discover held 2) ms (with BENCH_LOG_LEVEL=debug) |"
echo "| ... of which the createRuntime hook (5 more runs, the hook timed by a wrapper; no poststop hook) | | $(ms runc-start hook-createRuntime) ms | | | whole run $(ms runc-start wrapped) ms |"
echo "| one \`ctrust\` CLI process + one agent request (\`ctrust ps\`) | | $(ms ctrust-process on) ms | | | the hook runs once per container |"
if ! skipped podman; then
  echo "| \`podman run --rm\` of /bin/true, $PODMAN_RUNS runs, the hook (hooks.d) | $(ms podman-start off) ms | $(ms podman-start on) ms | **$(ms podman-start added) ms** | $(fmt "$(med podman-start ratio)" 1 3) | <= 1.03: $(goal_ratio podman-start 1.03) |"
  echo "| ... through \`--runtime ctrust-runtime\` (no hook process), the same rounds | $(ms podman-start off) ms | $(ms podman-start shim) ms | **$(ms podman-shim added) ms** | $(fmt "$(med podman-shim ratio)" 1 3) | <= 1.03: $(goal_ratio podman-shim 1.03) |"
fi
if ! skipped memory; then
  last=${MEM_STEPS##* }
  r0=$(jq -s '[.[] | select(.bench == "memory" and .variant == "agent-rss" and .round == 0) | .value][0]' "$RUNS")
  rl=$(jq -s --argjson n "$last" '[.[] | select(.bench == "memory" and .variant == "agent-rss" and .round == $n) | .value][0]' "$RUNS")
  pts=$(jq -rs '[.[] | select(.bench == "memory" and .variant == "agent-rss") | "\(.round): \(.value / 1024 * 10 | round / 10) MiB"] | join(", ")' "$RUNS")
  sw=$(jq -rs --argjson n "$last" '[.[] | select(.bench == "memory" and .round == $n and (.variant == "swtpm-rss" or .variant == "swtpm-pss")) | "\(.variant | sub("swtpm-"; "")) \(.value / 1024 * 10 | round / 10) MiB"] | join(", ")' "$RUNS")
  echo "| ctrustd RSS by running containers | | $pts | $(awk -v a="$r0" -v b="$rl" -v n="$last" 'BEGIN { printf "%.0f", (b - a) / n }') kB per container | | |"
  echo "| swtpm per vTPM (at $last containers) | | $sw | | | |"
fi
if [ "$FA_STATUS" = ran ] || [[ "$FA_STATUS" == stopped* ]]; then
  echo "| host exec, fapolicyd (integrity=sha256), tiny \`true\` | $(us fapolicyd-tinytrue off) us | $(us fapolicyd-tinytrue on) us | **$(us fapolicyd-tinytrue added 2) us** | $(fmt "$(med fapolicyd-tinytrue ratio)" 1 3) | peer |"
  echo "| host exec, fapolicyd, busybox \`true\` | $(us fapolicyd-true off) us | $(us fapolicyd-true on) us | **$(us fapolicyd-true added 2) us** | $(fmt "$(med fapolicyd-true ratio)" 1 3) | peer |"
else
  echo "| fapolicyd | $FA_STATUS | | | | |"
fi
echo
echo "$DATE_START - $DATE_END, load average $LOAD_BEFORE before, $LOAD_AFTER after; $FOREIGN other ctrustd at the start; every run in $OUT"
