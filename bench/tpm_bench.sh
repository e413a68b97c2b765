#!/usr/bin/env bash
# TPM and vTPM figures (issue 4): bench/bench_tpm (Google Benchmark, BENCH_RUNS repetitions,
# medians) and, as the reference, the same jobs done with tpm2-tools processes: one
# tpm2_checkquote per verification and one tpm2_quote per quote, against a swtpm.
#   bench/tpm_bench.sh [BUILD_DIR]   (default: build/default)
set -euo pipefail
build=${1:-build/default}
runs=${BENCH_RUNS:-5}
work=$(mktemp -d /tmp/ctrust-tpm-bench.XXXXXX)
export TSS2_LOG=all+none
sock=$work/tpm.sock
mkdir -p "$work/state"
swtpm socket --tpm2 --server "type=unixio,path=$sock" --ctrl "type=unixio,path=$sock.ctrl" \
  --tpmstate "dir=$work/state" --flags not-need-init,startup-clear --daemon --pid "file=$work/pid"
trap 'kill "$(cat "$work/pid")" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
export TPM2TOOLS_TCTI="swtpm:path=$sock"

"$build/bench/bench_tpm" --benchmark_repetitions="$runs" --benchmark_report_aggregates_only=true \
  --benchmark_format=json --benchmark_out="$work/gb.json" --benchmark_out_format=json >/dev/null

ctrust=$build/src/cmd/ctrust/ctrust
"$ctrust" tpm ak --tcti "$TPM2TOOLS_TCTI" --public "$work/ak.pem" >/dev/null
# median_ms CMD...: median wall time of 21 runs, in milliseconds.
median_ms() {
  for _ in $(seq 21); do
    s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(((e - s) / 1000))
  done | sort -n | sed -n 11p | awk '{printf "%.2f", $1 / 1000}'
}
"$ctrust" tpm quote --tcti "$TPM2TOOLS_TCTI" -l sha256:10 -q 00 -m "$work/m" -s "$work/s" -o "$work/p" >/dev/null
tq=$(median_ms tpm2_quote -c 0x81010002 -l sha256:10 -q 00 -m "$work/m2" -s "$work/s2" -o "$work/p2")
cq=$(median_ms "$ctrust" tpm quote --tcti "$TPM2TOOLS_TCTI" -l sha256:10 -q 00 -m "$work/m" \
  -s "$work/s" -o "$work/p")
tcq=$(median_ms tpm2_checkquote -u "$work/ak.pem" -m "$work/m" -s "$work/s" -f "$work/p" -q 00)
ccq=$(median_ms "$ctrust" tpm checkquote -u "$work/ak.pem" -m "$work/m" -s "$work/s" -f "$work/p" -q 00)

jq -r '.benchmarks[] | select(.aggregate_name == "median") |
  "| \(.run_name) \(.label // "") | \(.real_time * 1000 | round / 1000) \(.time_unit) wall, \(.cpu_time * 1000 | round / 1000) \(.time_unit) CPU" +
  (if .items_per_second then " | \(.items_per_second | round) per second per core |" else " | |" end)' "$work/gb.json"
echo "| process per quote: tpm2_quote | $tq ms | ctrust tpm quote: $cq ms |"
echo "| process per verification: tpm2_checkquote | $tcq ms | ctrust tpm checkquote: $ccq ms |"
