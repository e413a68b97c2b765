# What the node agent's benchmarks share (sourced; bench/agent_bench.sh, workload_bench.sh,
# image_start_bench.sh): every run recorded as one JSON line in $RUNS, medians over them, and
# waiting for the agent's vTPM pool ($POOL vTPMs under $STATE, swtpm_setup of $WORK) to be
# full before a measured start.

# record BENCH VARIANT ROUND VALUE UNIT [EXTRA-JSON]: one run, into $RUNS.
record() {
  local extra=${6:-}
  [ -n "$extra" ] || extra='{}'
  jq -nc --arg b "$1" --arg v "$2" --argjson r "$3" --argjson x "$4" --arg u "$5" \
    --argjson e "$extra" '{bench: $b, variant: $v, round: $r, value: $x, unit: $u} + $e' >>"$RUNS"
}
# med BENCH VARIANT: the median of the recorded values (null if none).
med() {
  jq -s --arg b "$1" --arg v "$2" '[.[] | select(.bench == $b and .variant == $v) | .value] | sort |
    if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end' "$RUNS"
}
# fmt VALUE [SCALE] [DECIMALS]: VALUE / SCALE, or n/a.
fmt() { awk -v x="$1" -v s="${2:-1}" -v p="${3:-1}" 'BEGIN { if (x == "null" || x == "") print "n/a"; else printf "%.*f", p, x / s }'; }
# wait_pool: until the agent's vTPM pool is full again and no manufacture is running (a
# refill is about 0.9 s of swtpm_setup CPU per vTPM: never measured over).
wait_pool() {
  for _ in $(seq 600); do
    if ! pgrep -f "swtpm_setup.*$WORK" >/dev/null; then
      local made attached
      made=$(find "$STATE/vtpm/tpms" -mindepth 2 -maxdepth 2 -name vtpm.json 2>/dev/null | wc -l)
      attached=$(find "$STATE/vtpm/containers" -mindepth 1 -maxdepth 1 -type l 2>/dev/null | wc -l)
      if ((made - attached >= POOL)); then sleep 0.3; return 0; fi
    fi
    sleep 0.1
  done
  say "the vTPM pool did not refill"
  return 1
}
