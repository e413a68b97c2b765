#!/usr/bin/env bash
# Verifiers that survive each other (issue 13, docs/VERIFIER.md "Several verifiers"): three
# ctrust-verifier processes share one real PostgreSQL server and four real ctrustd agents
# (embedded swtpm host TPMs) under leases of 5 s, attesting each agent every second. Then the
# verifier holding the most agents is killed with SIGKILL (no chance to release anything).
# Checked:
#   - before: every agent is trusted, and the verifiers share them fairly (none holds more
#     than ceil(agents / verifiers) = 2; a verifier above its share gives agents back);
#   - the dead verifier's agents are left alone while its leases run (no attestation done by
#     two verifiers at once), then taken over by the survivors within the lease time (plus one
#     interval and one attestation), and attested again and again;
#   - nothing goes back: sampled every half second throughout, an agent's stored attestation
#     time and the TPM clock of its last quote never decrease, and a trusted agent stays
#     trusted;
#   - the killed verifier started again (same id) gets its share back from the others;
#   - nothing is lost or done twice: each agent has exactly one verdict event (its first
#     verdict) in the store and one webhook, before and after the failover, and no verifier
#     logged an error or counted an attestation that failed or lost its lease.
source "$(dirname "$0")/lib.sh"

: "${CTRUSTD:?set CTRUSTD}"
: "${CTRUST_VERIFIER:?set CTRUST_VERIFIER}"
CTRUST=$(readlink -f "$CTRUST")
CTRUSTD=$(readlink -f "$CTRUSTD")
CTRUST_VERIFIER=$(readlink -f "$CTRUST_VERIFIER")
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
missing=()
for t in swtpm swtpm_setup jq curl python3 runuser; do command -v "$t" >/dev/null || missing+=("$t"); done
[ -x "$PGBIN/initdb" ] || missing+=(postgresql)
why=""
[ "$(id -u)" -eq 0 ] || why="needs root (the agents' fanotify groups; PostgreSQL runs as postgres)"
((${#missing[@]} == 0)) || why="missing ${missing[*]} (scripts/setup installs them)"
if [ -n "$why" ]; then
  echo "verifier HA test: $why" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

export TSS2_LOG=all+none
AGENTS=(node-1 node-2 node-3 node-4)
VERIFIERS=(v1 v2 v3)
LEASE=5
declare -A AGENT_PID VPID VPORT APORT
PGDIR=$(mktemp -d /tmp/ctrust-pg.XXXXXX)  # outside $WORK, which the postgres user cannot enter
PGPORT=$(free_port)
HPORT=$(free_port)
HOOK_PID=""

cleanup() {
  set +e
  for p in "${VPID[@]}" "${AGENT_PID[@]}" "$HOOK_PID"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  pkill -f "swtpm socket.*$WORK" 2>/dev/null
  bash "$CTRUST_TESTS/store/pg_server.sh" stop "$PGDIR" >/dev/null 2>&1
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$PGDIR"
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

STORE=$(bash "$CTRUST_TESTS/store/pg_server.sh" start "$PGDIR" "$PGPORT") || exit 1
sql() { runuser -u postgres -- "$PGBIN/psql" -h "$PGDIR" -p "$PGPORT" -d ctrust_test -tAq -F ' ' -c "$1"; }

/usr/bin/python3 "$CTRUST_TESTS/cli/helpers/webhook_sink.py" "$HPORT" "$WORK/webhooks.jsonl" &
HOOK_PID=$!

# --- the verifiers: one CA and EAR key for all (the first makes them, the others copy) -------
config_digests=()
for a in "${AGENTS[@]}"; do
  APORT[$a]=$(free_port)
  mkdir -p "$WORK/$a"
  cat >"$WORK/$a/ctrustd.toml" <<EOF
state_dir = "$WORK/$a/state"
socket = "$WORK/$a/ctrustd.sock"
[vtpm]
pool = 0
[enforcement]
bpf = false
[api]
listen = "127.0.0.1:${APORT[$a]}"
client_ca = ["$WORK/v1/tls/ca.pem"]
agent_id = "$a"
EOF
  config_digests+=("\"sha256:$(sha256sum "$WORK/$a/ctrustd.toml" | cut -d' ' -f1)\"")
done
ctrustd_digest=sha256:$(sha256sum "$CTRUSTD" | cut -d' ' -f1)
start_verifier() {  # ID
  local v=$1
  VPORT[$v]=$(free_port)
  mkdir -p "$WORK/$v"
  cat >"$WORK/$v.toml" <<EOF
state_dir = "$WORK/$v"
listen = "127.0.0.1:${VPORT[$v]}"
store = "$STORE"
id = "$v"
[attestation]
interval = 1
lease = $LEASE
concurrency = 1
[reference]
agent_binaries = ["$ctrustd_digest"]
agent_configs = [$(IFS=,; echo "${config_digests[*]}")]
[webhooks]
urls = ["http://127.0.0.1:$HPORT/events"]
EOF
  "$CTRUST_VERIFIER" --config "$WORK/$v.toml" >>"$WORK/$v.log" 2>&1 &
  VPID[$v]=$!
  wait_ready "ctrust-verifier $v" "${VPID[$v]}" "$WORK/$v.log" verifier_up "$WORK/$v" "https://127.0.0.1:${VPORT[$v]}"
}
check "verifier v1 starts on PostgreSQL" start_verifier v1
for v in v2 v3; do
  mkdir -p "$WORK/$v"
  cp -a "$WORK/v1/tls" "$WORK/v1/ear-key.pem" "$WORK/$v/"
  check "verifier $v starts on the same database, with v1's CA" start_verifier $v
done

# --- the agents, registered through v1 ---------------------------------------------------------
start_agent() {  # NAME
  local a=$1
  "$CTRUSTD" --config "$WORK/$a/ctrustd.toml" >>"$WORK/$a/ctrustd.log" 2>&1 &
  AGENT_PID[$a]=$!
  wait_ready "ctrustd $a" "${AGENT_PID[$a]}" "$WORK/$a/ctrustd.log" "$CTRUST" ps --socket "$WORK/$a/ctrustd.sock"
}
V=("$CTRUST" verifier --url "https://127.0.0.1:${VPORT[v1]}" --verifier-state "$WORK/v1")
for a in "${AGENTS[@]}"; do
  check "agent $a starts" start_agent "$a"
  "${V[@]}" register "https://127.0.0.1:${APORT[$a]}" >/dev/null 2>"$WORK/reg.err" || true
  pin=$(grep -o 'sha256:[0-9a-f]\{64\}' "$WORK/reg.err" | head -1)
  check "agent $a registered (EK pinned)" "${V[@]}" register "https://127.0.0.1:${APORT[$a]}" --ek-pin "$pin"
done

# --- sampling: every half second, each agent's row ---------------------------------------------
# Columns: sample time, agent, owner, lease_until, updated_at, status, host TPM clock.
QUERY="SELECT extract(epoch FROM clock_timestamp())::bigint, id, coalesce(nullif(owner, ''), '-'),
  lease_until, updated_at, status, coalesce((state::json->'host'->>'clock'), '0') FROM agents ORDER BY id"
sample() { sql "$QUERY" >"$WORK/last" && cat "$WORK/last" >>"$WORK/samples"; }
rows_now() { sql "$QUERY"; }
wait_until() {  # SECONDS CONDITION-COMMAND...: sample until the condition holds
  local deadline=$((SECONDS + $1))
  shift
  while ((SECONDS < deadline)); do
    sample
    "$@" && return 0
    sleep 0.5
  done
  return 1
}
all_trusted() { [ "$(rows_now | awk '$6 == "trusted"' | wc -l)" -eq "${#AGENTS[@]}" ]; }
check "every agent is attested and trusted" wait_until 60 all_trusted
# A few rounds with all three, so that the claims settle.
for _ in $(seq 8); do sample; sleep 0.5; done
rows_now >"$WORK/before"
check_eq "every agent is held by a verifier" "$(awk '$3 != "-"' "$WORK/before" | wc -l)" "${#AGENTS[@]}"
# Fair shares: none holds more than ceil(4 / 3) = 2.
most=$(awk '{print $3}' "$WORK/before" | sort | uniq -c | sort -rn | awk 'NR == 1 {print $1}')
[ "$most" -le 2 ] && pass || fail "the agents are not shared fairly: $(cat "$WORK/before")"
echo "holders before the kill: $(awk '{print $2 "=" $3}' "$WORK/before" | tr '\n' ' ')" >&2
events_before=$(sql "SELECT agent_id, count(*) FROM events GROUP BY agent_id ORDER BY agent_id")

# --- kill -9 the verifier that holds the most agents -------------------------------------------
victim=$(awk '$3 != "-" {print $3}' "$WORK/before" | sort | uniq -c | sort -rn | awk 'NR == 1 {print $2}')
check "a verifier holds agents" test -n "$victim"
kill -9 "${VPID[$victim]}"
wait "${VPID[$victim]}" 2>/dev/null || true
VPID[$victim]=""
killed_at=$(date +%s)
rows_now >"$WORK/at-kill"
orphans=$(awk -v v="$victim" '$3 == v {print $2}' "$WORK/at-kill")
lease_end=$(awk -v v="$victim" '$3 == v {print $4}' "$WORK/at-kill" | sort -n | tail -1)
echo "killed $victim at $killed_at holding: $(echo $orphans) (leases end by $lease_end)" >&2
check "the killed verifier held agents" test -n "$orphans"
taken_over() {  # every orphan owned by a survivor and attested after its lease ended
  local a row
  for a in $orphans; do
    row=$(awk -v a="$a" '$2 == a' "$WORK/last")
    [ "$(echo "$row" | awk '{print $3}')" != "$victim" ] || return 1
    [ "$(echo "$row" | awk '{print $3}')" != "-" ] || return 1
    [ "$(echo "$row" | awk '{print $5}')" -gt "$killed_at" ] || return 1
  done
}
# The lease, plus one interval and one attestation.
budget=$((lease_end - killed_at + 3))
start=$SECONDS
if wait_until $((budget + 10)) taken_over; then
  took=$((SECONDS - start))
  ((took <= budget)) && pass || fail "the survivors took over in $took s; the lease allowed $budget s"
else
  fail "the dead verifier's agents were not taken over: $(rows_now)"
fi
# Whoever attested an orphan after the kill did so once its lease had ended (the store's
# claim is atomic): no attestation by two verifiers at once.
for a in $orphans; do
  first=$(awk -v a="$a" -v t="$killed_at" '$2 == a && $5 > t {print $5}' "$WORK/samples" | sort -n | head -1)
  lease=$(awk -v a="$a" '$2 == a {print $4}' "$WORK/at-kill")
  [ -n "$first" ] && [ "$first" -ge "$lease" ] && pass ||
    fail "$a was attested at ${first:-never} after the kill, while $victim's lease ran until $lease"
done
# And the survivors keep attesting them.
for _ in $(seq 6); do sample; sleep 0.5; done
for a in $orphans; do
  n=$(awk -v a="$a" -v t="$killed_at" '$2 == a && $5 > t {print $5}' "$WORK/samples" | sort -u | wc -l)
  [ "$n" -ge 2 ] && pass || fail "$a attested only $n time(s) after the takeover"
done

# --- the killed verifier comes back (same id): the others give it its share -----------------------
check "$victim starts again" start_verifier "$victim"
rejoined() { awk -v v="$victim" '$3 == v' "$WORK/last" | grep -q . &&
  [ "$(awk '{print $3}' "$WORK/last" | sort | uniq -c | sort -rn | awk 'NR == 1 {print $1}')" -le 2 ]; }
check "... and holds its share again within a lease" wait_until $((LEASE + 10)) rejoined
for _ in $(seq 6); do sample; sleep 0.5; done
echo "holders at the end: $(awk '{print $2 "=" $3}' "$WORK/last" | tr '\n' ' ')" >&2

# --- nothing went back, nothing was lost or done twice -------------------------------------------
for a in "${AGENTS[@]}"; do
  bad=$(awk -v a="$a" '$2 == a {
      if ($5 < u) print "updated_at " u " -> " $5;
      if ($7 + 0 < c) print "TPM clock " c " -> " $7;
      if (trusted && $6 != "trusted") print "status trusted -> " $6;
      u = $5; c = $7 + 0; if ($6 == "trusted") trusted = 1 }' "$WORK/samples" | head -3)
  [ -z "$bad" ] && pass || fail "$a went back: $bad"
done
check_eq "one verdict event per agent, none added by the failover" \
  "$(sql "SELECT agent_id, count(*) FROM events GROUP BY agent_id ORDER BY agent_id")" "$events_before"
check_eq "... exactly one each" \
  "$(sql "SELECT count(*) FROM (SELECT agent_id FROM events GROUP BY agent_id HAVING count(*) = 1) o")" "${#AGENTS[@]}"
sleep 0.5
for a in "${AGENTS[@]}"; do
  check_eq "one webhook for $a" "$(jq -r --arg a "$a" 'select(.agent == $a) | .agent' "$WORK/webhooks.jsonl" | wc -l)" 1
done
for v in "${VERIFIERS[@]}"; do
  errs=$(grep -E '(error|critical)' "$WORK/$v.log" | head -3 || true)
  [ -z "$errs" ] && pass || fail "verifier $v logged errors: $errs"
done
for v in "${VERIFIERS[@]}"; do
  curl -s --cacert "$WORK/$v/tls/ca.pem" --cert "$WORK/$v/tls/client.pem" --key "$WORK/$v/tls/client.key" \
    "https://127.0.0.1:${VPORT[$v]}/metrics" >"$WORK/$v.metrics"
  count() { awk -v r="result=\"$1\"" 'index($0, "ctrust_verifier_attestations_total{" r "}") == 1 {print $2}' "$WORK/$v.metrics"; }
  awk -v n="$(count verified)" 'BEGIN {exit !(n > 0)}' && pass || fail "verifier $v verified no attestation"
  check_eq "verifier $v: no attestation failed or lost its lease" "$(count error)" 0
done
finish
