#!/usr/bin/env bash
# The verifier at fleet scale (BENCHMARKS.md, "verifier at fleet scale"): bench/fleet_bench
# (simulated agents + the real verifier in one process) against SQLite and against a
# throwaway PostgreSQL 15 server (tests/store/pg_server.sh, started and stopped here).
# Builds nothing: build the fleet_bench target first.
#   bench/fleet_bench.sh [BUILD_DIR]   (default build/default; from the repository root)
# Each round runs SQLite, then PostgreSQL (the order alternates between rounds); the table
# gives the median over rounds per store. Writes build/bench/fleet.json (every run) and
# prints a Markdown table.
# Environment: FLEET_ROUNDS (1), FLEET_AGENTS (1000), FLEET_CONTAINERS (10),
# FLEET_INTERVAL (10), FLEET_SECONDS (60), FLEET_WARMUP (25), FLEET_CONCURRENCY (32; a
# list sweeps), FLEET_STORES ("sqlite postgresql"), FLEET_PG_PORT (54329), FLEET_OUT
# (build/bench/fleet.json), FLEET_ARGS (more fleet_bench options), FLEET_PERF (seconds of
# `perf record -g` during each measured window; 0 = none, the default, as perf costs CPU
# the verifier competes for).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/default}
BIN=$(readlink -f "$build/bench/fleet_bench" || true)
[ -n "$BIN" ] && [ -x "$BIN" ] || {
  echo "fleet_bench.sh: no $build/bench/fleet_bench (cmake --build $build --target fleet_bench)" >&2
  exit 1
}
command -v jq >/dev/null || { echo "fleet_bench.sh: needs jq" >&2; exit 1; }
ROUNDS=${FLEET_ROUNDS:-1}
AGENTS=${FLEET_AGENTS:-1000}
CONTAINERS=${FLEET_CONTAINERS:-10}
INTERVAL=${FLEET_INTERVAL:-10}
SECS=${FLEET_SECONDS:-60}
WARMUP=${FLEET_WARMUP:-25}
CONCURRENCY=${FLEET_CONCURRENCY:-32}
STORES=${FLEET_STORES:-"sqlite postgresql"}
PG_PORT=${FLEET_PG_PORT:-54329}
OUT=${FLEET_OUT:-build/bench/fleet.json}
PERF=${FLEET_PERF:-0}
read -r -a EXTRA <<<"${FLEET_ARGS:-}"

mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/ctrust-fleet-bench.XXXXXX)
chmod 755 "$WORK"  # the PostgreSQL server runs as its own user, under $WORK/pg
RUNS=$WORK/runs.jsonl
: >"$RUNS"
PG_DIR=$WORK/pg
PG_URL=""
cleanup() {
  if [ -n "$PG_URL" ]; then tests/store/pg_server.sh stop "$PG_DIR" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ " $STORES " == *" postgresql "* ]]; then
  PG_URL=$(tests/store/pg_server.sh start "$PG_DIR" "$PG_PORT")
  echo "fleet_bench.sh: PostgreSQL at $PG_URL (data in $PG_DIR)"
fi

# run STORE CONCURRENCY ROUND
run() {
  local store=$1 conc=$2 round=$3 url=sqlite ext=()
  if [ "$store" = postgresql ]; then
    url=$PG_URL
    ext=(--external-comm postgres)
  fi
  local json=$WORK/run-$store-$conc-$round.json
  local args=(--agents "$AGENTS" --containers "$CONTAINERS" --interval "$INTERVAL"
    --seconds "$SECS" --warmup "$WARMUP" --concurrency "$conc" --store "$url"
    --label "$store-c$conc-r$round" --json "$json" "${ext[@]}" "${EXTRA[@]}")
  echo "== $store, concurrency $conc, round $round: fleet_bench ${args[*]}"
  "$BIN" "${args[@]}" &
  local pid=$!
  if [ "$PERF" != 0 ] && command -v perf >/dev/null; then
    # Into the measured window: start-up, warm-up, then PERF seconds.
    sleep $((WARMUP + 15))
    perf record -F 499 -g -p "$pid" -o "$WORK/perf-$store-$conc-$round.data" -- sleep "$PERF" \
      >/dev/null 2>&1 || true
  fi
  wait "$pid"
  if [ "$PERF" != 0 ] && [ -f "$WORK/perf-$store-$conc-$round.data" ]; then
    local report=${OUT%.json}-perf-$store-c$conc-r$round.txt
    perf report -i "$WORK/perf-$store-$conc-$round.data" --stdio --no-children \
      --sort dso,symbol -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -80 >"$report"
    echo "   profile: $report"
  fi
  jq -c . "$json" >>"$RUNS"
}

read -r -a store_list <<<"$STORES"
for ((r = 1; r <= ROUNDS; r++)); do
  for conc in $CONCURRENCY; do
    order=("${store_list[@]}")
    if ((r % 2 == 0)); then
      # Alternate the order between rounds.
      mapfile -t order < <(printf '%s\n' "${store_list[@]}" | tac)
    fi
    for store in "${order[@]}"; do
      run "$store" "$conc" "$r"
    done
  done
done

jq -s '{machine: {cores: (.[0].cpu.cores), kernel: "'"$(uname -r)"'"}, runs: .}' "$RUNS" >"$OUT"
echo
echo "Verifier at fleet scale: $AGENTS agents x $CONTAINERS containers every $INTERVAL s" \
  "(target $(jq -n "$AGENTS / $INTERVAL") attestations/s), ${SECS} s measured after" \
  "${WARMUP} s warm-up; median of $ROUNDS round(s). One process holds the simulated agents" \
  "and the verifier on $(nproc) cores: CPU is split per thread; PostgreSQL's server" \
  "processes are counted separately. All CPU figures are % of one core."
echo
jq -r -s '
  def med: sort | if length == 0 then null
           elif length % 2 == 1 then .[length / 2 | floor]
           else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def r1: . * 10 | round / 10;
  "| store | concurrency | attestations/s | kept up (runs) | max lag s | early challenges | p50 ms | p99 ms | verifier CPU % | agents CPU % | postgres CPU % | process CPU % | machine busy % | verifier ms/att | RSS MB | verdicts |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  (group_by(.store, .concurrency)[] |
    "| \(.[0].store) | \(.[0].concurrency) | \(map(.attestations_per_s) | med | r1) | "
    + "\(map(select(.kept_up)) | length)/\(length) | \(map(.max_lag_s) | med | r1) | "
    + "\(map(.early_challenges) | med) | "
    + "\(map(.latency_s.p50 * 1000) | med | r1) | \(map(.latency_s.p99 * 1000) | med | r1) | "
    + "\(map(.cpu.verifier_pct) | med | r1) | \(map(.cpu.agents_pct) | med | r1) | "
    + "\(if .[0].cpu.external_comm == "" then "-" else (map(.cpu.external_pct) | med | r1) end) | "
    + "\(map(.cpu.process_pct) | med | r1) | \(map(.cpu.machine_busy_pct) | med | r1) | "
    + "\(map(.cpu.verifier_ms_per_attestation) | med | . * 100 | round / 100) | \(map(.memory_mb.rss_end) | med | r1) | "
    + "\(.[-1].verdicts.containers | tostring) |")' "$RUNS"
echo
echo "Latency: the verifier's ctrust_verifier_attestation_seconds histogram (challenge to stored"
echo "result), interpolated within its buckets. Early challenges: an agent challenged sooner than"
echo "interval - 1 s after the previous challenge. Written: $OUT"
