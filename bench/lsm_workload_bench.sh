#!/usr/bin/env bash
# What each enforcement backend costs real work (issue 16): the workloads of
# bench/workload_bench.sh in a runc container of the same python3 image, with no agent, under
# ctrustd with enforcement.backend = "fanotify" and with "bpf-lsm", in enforce. This machine's
# kernel refuses BPF LSM programs, so everything runs in a QEMU guest booted with Debian 12's
# own kernel (as tests/cli/lsm_agent_test.sh does). The guest is emulated (TCG): report ratios
# to "off" within a round, never times. Rounds are interleaved, the order alternating; each
# variant starts its agent and container afresh and warms up before it is timed
# (bench/guest/lsm_workload.sh).
#
#   bench/lsm_workload_bench.sh [BUILD_DIR]   (default build/default; BENCH_ROUNDS, default 3;
#                                            VM_SMP, the guest's vCPUs, default 2)
# Writes build/bench/lsm_workload.json (every run) and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/default}
export CTRUST=$(readlink -f "$build/src/cmd/ctrust/ctrust")
export CTRUSTD=$(readlink -f "$build/src/cmd/ctrustd/ctrustd")
export CTRUST_HOOK=$(readlink -f "$build/src/cmd/ctrust-hook/ctrust-hook")
export CTRUST_TESTS=$PWD/tests
ROUNDS=${BENCH_ROUNDS:-3}
OUT=${BENCH_OUT:-build/bench/lsm_workload.json}
PY=python3.11
for t in qemu-system-x86_64 busybox cpio runc swtpm swtpm_setup certtool gcc jq ldd "/usr/bin/$PY" "$CTRUST" "$CTRUSTD"; do
  command -v "$t" >/dev/null || { echo "lsm_workload_bench: missing $t" >&2; exit 1; }
done
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/ctrust-lsm-bench.XXXXXX)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
say() { echo "lsm_workload_bench: $(date -u +%T) $*" >&2; }
source tests/cli/vm_lib.sh
vm_kernel

# --- the image: busybox, python3 with its standard library (as workload_bench.sh builds it) ----
root=$WORK/root
IMG=$root/img
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,scratch,usr/bin,usr/lib,usr/local/bin}
chmod 1777 "$IMG/tmp"
cp "$(command -v busybox)" "$IMG/bin/busybox"
for a in sh true cat wc find rm mkdir echo sleep; do ln -s busybox "$IMG/bin/$a"; done
echo "root:x:0:0:root:/:/bin/sh" >"$IMG/etc/passwd"
gcc -static -O2 -o "$IMG/usr/local/bin/timeit" bench/timeit.c
cp "/usr/bin/$PY" "$IMG/usr/bin/python3"
cp -a "/usr/lib/$PY" "$IMG/usr/lib/"
rm -rf "$IMG/usr/lib/$PY/test" "$IMG/usr/lib/$PY"/__pycache__
{
  ldd "/usr/bin/$PY"
  for so in "/usr/lib/$PY"/lib-dynload/*.so; do ldd "$so"; done
} | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | sort -u | while read -r lib; do
  cp --parents -L "$lib" "$IMG/"
done
say "image: $(du -sh "$IMG" | cut -f1)"

GW=$root/work
mkdir -p "$GW"
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$GW/key.pub" >/dev/null
"$CTRUST" policy create --from "$IMG" --name wl-enforce --issuer bench --mode enforce --any-image \
  --out "$GW/wl-enforce.json" >/dev/null
jq 'del(.allow[].paths)' "$GW/wl-enforce.json" >"$WORK/p.json" && mv "$WORK/p.json" "$GW/wl-enforce.json"
"$CTRUST" policy sign --key "$WORK/key.pem" "$GW/wl-enforce.json" >/dev/null
cat >"$GW/ctrustd.toml.in" <<EOF
state_dir = "@STATE@"
socket = "/work/ctrustd.sock"
log_level = "warn"
[vtpm]
pool = 0  # made when a container starts: no manufacturing beside the timed runs
[policies]
trust = ["/work/key.pub"]
[enforcement]
backend = "@BACKEND@"
EOF
echo "$ROUNDS" >"$GW/rounds"
echo "$PY" >"$GW/py"

vm_guest_base "$root"
vm_agent_stack "$root"
cp bench/guest/lsm_workload.sh "$root/bench.sh"
vm_init "$root" 'sh /bench.sh'
vm_initramfs "$root" "$WORK/initrd.gz"
say "booting the guest ($ROUNDS rounds)"
vm_boot "$WORK/initrd.gz" 3072 $((1200 * (ROUNDS + 1))) || { tail -20 "$WORK/serial.out" >&2; exit 1; }
section RUN >"$WORK/run.out"
if grep '^fail ' "$WORK/run.out" >&2 || ! grep -q '^bench: done' "$WORK/run.out"; then
  say "the guest's run did not complete: $(tail -5 "$WORK/run.out")"
  exit 1
fi

# --- results -----------------------------------------------------------------------------------
awk '$1 == "run" { printf "{\"bench\":\"%s\",\"variant\":\"%s\",\"round\":%d,\"value\":%s}\n", $2, $3, $4, $5 }' \
  "$WORK/run.out" | jq -s --arg kernel "$(basename "$VM_KERNEL")" --argjson rounds "$ROUNDS" \
  --argjson smp "${VM_SMP:-2}" --arg accel "$VM_ACCEL" \
  '{guest_kernel: $kernel, accel: $accel, vcpus: $smp, rounds: $rounds, runs: .}' >"$OUT"
ratio() {  # WORKLOAD VARIANT: the median over rounds of VARIANT / off within a round
  jq -r --arg b "$1" --arg v "$2" '
    [.runs[] | select(.bench == $b)] | group_by(.round) |
    map((map(select(.variant == $v)) | .[0].value) / (map(select(.variant == "off")) | .[0].value)) |
    sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end |
    . * 1000 | round / 1000' "$OUT"
}
echo "| workload in the container | fanotify / off | bpf-lsm / off |"
echo "|---|---|---|"
for n in python-imports read-stdlib exec-true-200 tmpfs-files-2000 pipeline-100; do
  echo "| $n | **$(ratio "$n" fanotify)x** | **$(ratio "$n" bpf-lsm)x** |"
done
echo
echo "$ROUNDS interleaved rounds in a QEMU ($VM_ACCEL) guest of $(basename "$VM_KERNEL"), ${VM_SMP:-2} vCPUs; medians of within-round ratios. Runs: $OUT"
