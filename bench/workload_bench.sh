#!/usr/bin/env bash
# What ctrust costs real work in a container (issue 12): five workloads run in three runc
# containers of one python3 image at once, with no ctrust hook, in enforce and in measure,
# interleaved round by round (the order alternates), after a warm-up round (the first execs
# and library loads are judged and cached then; what is measured is the steady state).
# Each run is timed inside the container by bench/timeit.c, so `runc exec` is not counted;
# medians over the rounds, ratios taken within a round. A fapolicyd row runs the same
# workloads in a chroot of the same image on the host, with and without fapolicyd
# (integrity = sha256, every ELF file of the image trusted), also interleaved; fapolicyd
# runs in a private mount namespace of its own, never beside ctrustd.
#   1. python3 importing json, email, http.client, xml, asyncio, decimal, unittest, sqlite3
#   2. reading every file of /usr/lib/python3.11 (about 1,400 files)
#   3. 200 execs of /bin/true
#   4. creating 2,000 small files on a tmpfs, then reading them back
#   5. the shell pipeline `echo | cat | wc` 100 times
#
#   bench/workload_bench.sh [BUILD_DIR]   (default build/default; needs root)
# Writes build/bench/workload.json (every run) and prints a Markdown table. BENCH_ROUNDS
# (default 7), BENCH_SKIP=fapolicyd, BENCH_SMOKE=1 (one round, no fapolicyd: what CI runs,
# checking only that every workload succeeds in every container).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/default}
CTRUST=$(readlink -f "$build/src/cmd/ctrust/ctrust")
CTRUSTD=$(readlink -f "$build/src/cmd/ctrustd/ctrustd")
HOOK=$(readlink -f "$build/src/cmd/ctrust-hook/ctrust-hook")
ROUNDS=${BENCH_ROUNDS:-7}
SKIP=" ${BENCH_SKIP:-} "
if [ -n "${BENCH_SMOKE:-}" ]; then
  ROUNDS=1
  SKIP="$SKIP fapolicyd "
fi
OUT=${BENCH_OUT:-build/bench/workload.json}
PY=python3.11

if [ "$(id -u)" -ne 0 ]; then
  echo "workload_bench: needs root (fanotify, BPF, containers)" >&2
  # The smoke test outside CI skips; in CI a missing capability is a failure.
  if [ -n "${BENCH_SMOKE:-}" ] && [ "${CI:-}" != "true" ]; then echo "0 passed, 0 failed, 1 skipped"; exit 0; fi
  exit 1
fi
for t in runc swtpm swtpm_setup gcc jq busybox ldd "/usr/bin/$PY" "$CTRUST" "$CTRUSTD" "$HOOK"; do
  command -v "$t" >/dev/null || { echo "workload_bench: missing $t" >&2; exit 1; }
done
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/ctrust-workload-bench.XXXXXX)
chmod 755 "$WORK"
export TSS2_LOG=all+none
SOCK=$WORK/ctrustd.sock
RUNS=$WORK/runs.jsonl
: >"$RUNS"
AGENT_PID=""
FA_PID=""
MOUNTS=()
CONTAINERS=()
cleanup() {
  set +e
  if [ -n "$FA_PID" ]; then kill "$FA_PID" 2>/dev/null; wait "$FA_PID" 2>/dev/null; fi
  for id in "${CONTAINERS[@]}"; do
    runc kill "$id" KILL >/dev/null 2>&1
    runc delete -f "$id" >/dev/null 2>&1
  done
  if [ -n "$AGENT_PID" ]; then kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; fi
  pkill -f "swtpm socket.*$WORK" 2>/dev/null
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
skipped() { [[ "$SKIP" == *" $1 "* ]]; }
say() { echo "workload_bench: $(date -u +%T) $*" >&2; }
source bench/fapolicyd_lib.sh
source bench/runs_lib.sh

# --- the workloads -----------------------------------------------------------------------------
NAMES=(python-imports read-stdlib exec-true-200 tmpfs-files-2000 pipeline-100)
declare -A CMD=(
  [python-imports]="/usr/bin/python3 -c 'import json, email, http.client, xml.dom.minidom, asyncio, decimal, unittest, sqlite3'"
  [read-stdlib]="find /usr/lib/$PY -type f -exec cat {} + >/dev/null"
  [exec-true-200]='i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i + 1)); done'
  [tmpfs-files-2000]='d=/scratch/w$$; mkdir $d && i=0; while [ $i -lt 2000 ]; do echo x >$d/$i; i=$((i + 1)); done; cat $d/* >/dev/null && rm -rf $d'
  [pipeline-100]='i=0; while [ $i -lt 100 ]; do echo x | cat | wc -l >/dev/null; i=$((i + 1)); done'
)
declare -A TITLE=(
  [python-imports]="python3 importing json, email, http.client, xml, asyncio, decimal, unittest, sqlite3"
  [read-stdlib]="read every file of /usr/lib/$PY"
  [exec-true-200]="200 execs of /bin/true"
  [tmpfs-files-2000]="create 2,000 small files on a tmpfs, then read them back"
  [pipeline-100]="shell pipeline \`echo | cat | wc\` x100"
)

# --- the image: busybox, python3 with its standard library and every library it loads ------------
say "building the python3 image"
IMG=$WORK/image
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,scratch,usr/bin,usr/lib,usr/local/bin}
chmod 1777 "$IMG/tmp"
cp "$(command -v busybox)" "$IMG/bin/busybox"
for a in sh true cat wc find rm mkdir echo; do ln -s busybox "$IMG/bin/$a"; done
echo "root:x:0:0:root:/:/bin/sh" >"$IMG/etc/passwd"
gcc -static -O2 -o "$IMG/usr/local/bin/timeit" bench/timeit.c
cp "/usr/bin/$PY" "$IMG/usr/bin/python3"
cp -a "/usr/lib/$PY" "$IMG/usr/lib/"
{
  ldd "/usr/bin/$PY"
  for so in "/usr/lib/$PY"/lib-dynload/*.so; do ldd "$so"; done
} | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | sort -u | while read -r lib; do
  cp --parents -L "$lib" "$IMG/"
done
mknod "$IMG/dev/null" c 1 3  # for the chroot of the fapolicyd row (runc mounts its own /dev)
FILES=$(find "$IMG/usr/lib/$PY" -type f | wc -l)
say "image: $(du -sh "$IMG" | cut -f1), $FILES files in /usr/lib/$PY"

"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$WORK/key.pub" >/dev/null
for mode in enforce measure; do
  "$CTRUST" policy create --from "$IMG" --name "wl-$mode" --issuer bench --mode "$mode" --any-image \
    --out "$WORK/wl-$mode.json" >/dev/null
  jq 'del(.allow[].paths)' "$WORK/wl-$mode.json" >"$WORK/p.json" && mv "$WORK/p.json" "$WORK/wl-$mode.json"
  "$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/wl-$mode.json" >/dev/null
done

# --- the agent and the three containers ----------------------------------------------------------
cat >"$WORK/ctrustd.toml" <<EOF
state_dir = "$WORK/state"
socket = "$SOCK"
log_level = "warn"
[policies]
trust = ["$WORK/key.pub"]
EOF
"$CTRUSTD" --config "$WORK/ctrustd.toml" >>"$WORK/ctrustd.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 200); do "$CTRUST" ps --socket "$SOCK" >/dev/null 2>&1 && break; sleep 0.05; done
for mode in enforce measure; do "$CTRUST" policy load --socket "$SOCK" "$WORK/wl-$mode.json" >/dev/null; done

bundle() {  # ID POLICY ("" for no hook)
  local id=$1 policy=$2 b=$WORK/bundles/$1
  mkdir -p "$b/rootfs" "$b/upper" "$b/work"
  mount -t overlay overlay -o "lowerdir=$IMG,upperdir=$b/upper,workdir=$b/work" "$b/rootfs"
  MOUNTS+=("$b/rootfs")
  (cd "$b" && runc spec)
  jq --arg h "$HOOK" --arg s "$SOCK" --arg p "$policy" '
    .process.terminal = false |
    .process.args = ["/bin/sh", "-c", "exec sleep 3600"] |
    .root = {"path": "rootfs", "readonly": false} |
    .linux.namespaces |= map(select(.type != "network")) |
    .mounts += [{"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "nodev", "mode=1777", "size=64m"]}] |
    if $p == "" then . else
      .annotations = {"io.ctrust.policy": $p} |
      .hooks = {"createRuntime": [{"path": $h, "args": ["ctrust-hook", "createRuntime", "--socket", $s]}],
                "poststop": [{"path": $h, "args": ["ctrust-hook", "poststop", "--socket", $s]}]}
    end' "$b/config.json" >"$b/config.json.new"
  mv "$b/config.json.new" "$b/config.json"
  CONTAINERS+=("$id")
  runc run -d --bundle "$b" "$id" </dev/null >"$WORK/$id.out" 2>"$WORK/$id.err" || {
    cat "$WORK/$id.err" >&2
    exit 1
  }
}
bundle wl-off ""
bundle wl-enforce wl-enforce
bundle wl-measure wl-measure
declare -A CONTAINER=([off]=wl-off [enforce]=wl-enforce [measure]=wl-measure)

FAILURES=0
# run_in VARIANT NAME: the workload's ns, or fails the benchmark if it did not succeed.
run_in() {
  local out ns status
  out=$(runc exec "${CONTAINER[$1]}" /usr/local/bin/timeit /bin/sh -c "${CMD[$2]}" </dev/null 2>"$WORK/run.err") || true
  ns=$(sed -n 's/^ns=\([0-9]*\) status=.*/\1/p' <<<"$out")
  status=$(sed -n 's/.* status=\([0-9]*\)$/\1/p' <<<"$out")
  if [ -z "$ns" ] || [ "$status" != 0 ]; then
    say "$2 in $1 failed (status ${status:-?}): $out $(head -c 300 "$WORK/run.err")"
    FAILURES=$((FAILURES + 1))
    echo 0
    return
  fi
  echo "$ns"
}

say "warm-up: every workload once in each container"
for n in "${NAMES[@]}"; do for v in off enforce measure; do run_in "$v" "$n" >/dev/null; done; done
for r in $(seq "$ROUNDS"); do
  say "round $r of $ROUNDS"
  if ((r % 2)); then order="off enforce measure"; else order="measure enforce off"; fi
  for n in "${NAMES[@]}"; do
    declare -A got=()
    for v in $order; do
      got[$v]=$(run_in "$v" "$n")
      record "$n" "$v" "$r" "${got[$v]}" ns
    done
    for v in enforce measure; do
      record "$n" "$v-ratio" "$r" "$(awk -v a="${got[$v]}" -v b="${got[off]}" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')" x
    done
    unset got
  done
done
AGENT_CPU=$(awk '{ s += $14 + $15 } END { print s }' /proc/"$AGENT_PID"/task/*/stat)
"$CTRUST" ps --socket "$SOCK" --json >"$WORK/ps.json"
for v in enforce measure; do
  kill_count=$(jq --arg id "${CONTAINER[$v]}" '.containers[] | select(.id == $id) | .counts.violations' "$WORK/ps.json")
  [ "$kill_count" = 0 ] || say "warning: ${CONTAINER[$v]} has $kill_count violations: the workloads met the gate"
done
for id in "${CONTAINERS[@]}"; do runc kill "$id" KILL >/dev/null 2>&1 || true; runc delete -f "$id" >/dev/null 2>&1 || true; done
CONTAINERS=()
kill "$AGENT_PID" 2>/dev/null || true
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=""

# --- fapolicyd -----------------------------------------------------------------------------------
FA_STATUS="skipped"
if ! skipped fapolicyd; then
  if ! command -v fapolicyd >/dev/null; then
    say "installing fapolicyd (Debian's package) for the comparison row"
    DEBIAN_FRONTEND=noninteractive apt-get -qq install -y fapolicyd >/dev/null 2>&1 ||
      { apt-get -qq update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y fapolicyd >/dev/null 2>&1; } || true
  fi
  if ! command -v fapolicyd >/dev/null; then
    FA_STATUS="not installed"
  elif pgrep -x ctrustd >/dev/null; then
    FA_STATUS="not run: a ctrustd is running on this host"
  else
    FA=$WORK/fa
    mkdir -p "$FA"
    mount -t tmpfs -o mode=1777,size=64m tmpfs "$IMG/scratch"
    MOUNTS+=("$IMG/scratch")
    # Every ELF file of the image is trusted: the policy ctrust enforces; and the host's
    # chroot, which starts each run, with what it loads.
    mapfile -t trusted < <({
      find "$IMG" -type f
      readlink -f "$(command -v chroot)"
      ldd "$(command -v chroot)" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | xargs -r readlink -f
    } | sort -u | while read -r f; do
      [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] && echo "$f"
    done)
    ready=""
    fa_start "$FA" ext4,tmpfs,overlay "${trusted[@]}" && ready=1
    fa_run() {  # on|off NAME: the workload in a chroot of the image, under fapolicyd or not
      local out ns
      if [ "$1" = on ]; then
        # nsenter runs before it enters fapolicyd's namespace; chroot is exec'd inside it.
        out=$(in_fa "$(command -v chroot)" "$IMG" /usr/local/bin/timeit /bin/sh -c "${CMD[$2]}" 2>"$WORK/fa.err") || true
      else
        out=$(chroot "$IMG" /usr/local/bin/timeit /bin/sh -c "${CMD[$2]}" 2>/dev/null) || true
      fi
      ns=$(sed -n 's/^ns=\([0-9]*\) status=0$/\1/p' <<<"$out")
      [ -n "$ns" ] || say "fapolicyd ($1): $2 failed: $out $(head -c 300 "$WORK/fa.err" 2>/dev/null)"
      echo "${ns:-0}"
    }
    cp "$IMG/bin/busybox" "$IMG/tmp/untrusted"
    echo untrusted >>"$IMG/tmp/untrusted"
    if [ -z "$ready" ]; then
      FA_STATUS="did not start: $(grep -v '^$' "$FA/log" | tail -1)"
    elif in_fa "$(command -v chroot)" "$IMG" /tmp/untrusted true 2>/dev/null; then
      FA_STATUS="not enforcing (an untrusted binary ran)"
    else
      FA_STATUS="ran"
      for n in "${NAMES[@]}"; do fa_run on "$n" >/dev/null; fa_run off "$n" >/dev/null; done
      for r in $(seq "$ROUNDS"); do
        if ((r % 2)); then order="off on"; else order="on off"; fi
        for n in "${NAMES[@]}"; do
          declare -A got=()
          for v in $order; do got[$v]=$(fa_run "$v" "$n"); record "$n" "fa-$v" "$r" "${got[$v]}" ns; done
          record "$n" fa-ratio "$r" "$(awk -v a="${got[on]}" -v b="${got[off]}" 'BEGIN { printf "%.4f", (a > 0 && b > 0 ? a / b : 0) }')" x
          unset got
        done
      done
    fi
    kill "$FA_PID" 2>/dev/null || true
    wait "$FA_PID" 2>/dev/null || true
    FA_PID=""
  fi
  say "fapolicyd: $FA_STATUS"
fi

# --- results -------------------------------------------------------------------------------------
jq -s --arg kernel "$(uname -r)" --argjson ncpu "$(nproc)" --arg fa "$FA_STATUS" \
  --argjson rounds "$ROUNDS" --argjson failures "$FAILURES" --argjson agent_ticks "${AGENT_CPU:-0}" \
  '{kernel: $kernel, cpus: $ncpu, rounds: $rounds, failures: $failures, fapolicyd: $fa,
    agent_cpu_ticks: $agent_ticks, runs: .}' "$RUNS" >"$OUT"
echo "| workload in the container | off | enforce | measure | fapolicyd (chroot, off -> on) |"
echo "|---|---|---|---|---|"
for n in "${NAMES[@]}"; do
  fa="n/a"
  [ "$FA_STATUS" != ran ] || fa="$(fmt "$(med "$n" fa-off)" 1e6) ms, **$(fmt "$(med "$n" fa-ratio)" 1 2)x**"
  echo "| ${TITLE[$n]} | $(fmt "$(med "$n" off)" 1e6) ms | **$(fmt "$(med "$n" enforce-ratio)" 1 3)x** | **$(fmt "$(med "$n" measure-ratio)" 1 3)x** | $fa |"
done
echo
echo "$ROUNDS interleaved rounds after a warm-up; medians; ratios within a round. $(nproc) CPUs, kernel $(uname -r). Runs: $OUT"
if [ "$FAILURES" -ne 0 ]; then
  say "$FAILURES workload runs failed"
  exit 1
fi
