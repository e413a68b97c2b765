#!/usr/bin/env bash
# Remote attestation end to end (privileged: CI runs as root): ctrust-verifier (SQLite)
# challenges a real ctrustd (embedded swtpm host TPM, swtpm vTPMs) over mutual TLS while
# runc runs busybox containers. Checked:
#   - registration: an unpinned EK is refused with its fingerprint; pinned, the AK is
#     activated (MakeCredential/ActivateCredential) and the TLS key bound by an AK quote;
#   - trust: a container that ran only listed files is affirming, and so is the host
#     (its ctrustd binary and configuration match the reference values);
#   - distrust: an unlisted exec in a measure container gives contraindicated with the
#     entry and rule; a log entry tampered on disk is caught by the replay;
#   - EAR: the signed result verifies with the verifier's published key (PyJWT);
#   - history, webhooks on every change of verdict, Prometheus metrics;
#   - a verifier restart resumes incrementally (only new entries are verified);
#   - an agent restart is detected (agent-restart, agent-gap);
#   - the APIs: no client certificate, no access; oversized and malformed messages refused;
#   - `ctrust attest` one-shot: verdict, reasons, exit codes.
source "$(dirname "$0")/lib.sh"

: "${CTRUSTD:?set CTRUSTD}"
: "${CTRUST_VERIFIER:?set CTRUST_VERIFIER}"
CTRUST=$(readlink -f "$CTRUST")
CTRUSTD=$(readlink -f "$CTRUSTD")
CTRUST_VERIFIER=$(readlink -f "$CTRUST_VERIFIER")
need=(runc swtpm swtpm_setup jq busybox curl python3)
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
/usr/bin/python3 -c "import jwt" 2>/dev/null || missing+=(python3-jwt)
why=""
[ "$(id -u)" -eq 0 ] || why="needs root (fanotify permission events, containers)"
((${#missing[@]} == 0)) || why="missing ${missing[*]} (scripts/setup installs them)"
if [ -n "$why" ]; then
  echo "attest test: $why" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

export TSS2_LOG=all+none
SOCK=$WORK/ctrustd.sock
STATE=$WORK/state
VSTATE=$WORK/vstate
AGENT_PID=""
VERIFIER_PID=""
HOOK_PID=""
MOUNTS=()
CONTAINERS=()
APORT=$(free_port)
VPORT=$(free_port)
HPORT=$(free_port)
AGENT_URL=https://127.0.0.1:$APORT
VURL=https://127.0.0.1:$VPORT

cleanup() {
  set +e
  for id in "${CONTAINERS[@]}"; do
    runc kill "$id" KILL >/dev/null 2>&1
    runc delete -f "$id" >/dev/null 2>&1
  done
  for p in "$AGENT_PID" "$VERIFIER_PID" "$HOOK_PID"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  pkill -f "swtpm socket.*$WORK" 2>/dev/null
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- image and policies --------------------------------------------------------------------
IMG=$WORK/image
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,opt/bin}
chmod 1777 "$IMG/tmp"
cp "$(command -v busybox)" "$IMG/bin/busybox"
for a in sh true echo cat cp sleep; do ln -s busybox "$IMG/bin/$a"; done
cp "$IMG/bin/busybox" "$IMG/opt/bin/true"  # listed content at another path: a new entry when run
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$WORK/key.pub" >/dev/null
for mode in enforce measure; do
  "$CTRUST" policy create --from "$IMG" --name "web-$mode" --issuer tests --mode "$mode" \
    --any-image --out "$WORK/web-$mode.json" >/dev/null
  jq 'del(.allow[].paths)' "$WORK/web-$mode.json" >"$WORK/p.new" && mv "$WORK/p.new" "$WORK/web-$mode.json"
  "$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/web-$mode.json" >/dev/null
done

# --- a webhook receiver ----------------------------------------------------------------------
/usr/bin/python3 "$CTRUST_TESTS/cli/helpers/webhook_sink.py" "$HPORT" "$WORK/webhooks.jsonl" &
HOOK_PID=$!

# --- the verifier --------------------------------------------------------------------------
cat >"$WORK/ctrustd.toml" <<EOF
state_dir = "$STATE"
socket = "$SOCK"
[vtpm]
pool = 1
[policies]
trust = ["$WORK/key.pub"]
[containers]
annotations_may_weaken = true
[api]
listen = "127.0.0.1:$APORT"
client_ca = ["$VSTATE/tls/ca.pem"]
agent_id = "node-1"
EOF
ctrustd_digest=sha256:$(sha256sum "$CTRUSTD" | cut -d' ' -f1)
config_digest=sha256:$(sha256sum "$WORK/ctrustd.toml" | cut -d' ' -f1)
cat >"$WORK/verifier.toml" <<EOF
state_dir = "$VSTATE"
listen = "127.0.0.1:$VPORT"
[attestation]
interval = 1
concurrency = 4
[trust]
policy_trust = ["$WORK/key.pub"]
[reference]
agent_binaries = ["$ctrustd_digest"]
agent_configs = ["$config_digest"]
[webhooks]
urls = ["http://127.0.0.1:$HPORT/events"]
EOF
start_verifier() {
  "$CTRUST_VERIFIER" --config "$WORK/verifier.toml" "$@" >>"$WORK/verifier.log" 2>&1 &
  VERIFIER_PID=$!
  wait_ready ctrust-verifier "$VERIFIER_PID" "$WORK/verifier.log" verifier_up "$VSTATE" "$VURL"
}
start_agent() {
  "$CTRUSTD" --config "$WORK/ctrustd.toml" >>"$WORK/ctrustd.log" 2>&1 &
  AGENT_PID=$!
  wait_ready ctrustd "$AGENT_PID" "$WORK/ctrustd.log" "$CTRUST" ps --socket "$SOCK"
}
V=("$CTRUST" verifier --url "$VURL" --verifier-state "$VSTATE")
start_verifier
check "the verifier made its CA" test -s "$VSTATE/tls/ca.pem"
start_agent
for mode in enforce measure; do
  check "agent loads web-$mode" "$CTRUST" policy load --socket "$SOCK" "$WORK/web-$mode.json"
  check "verifier adds web-$mode" "${V[@]}" policy add "$WORK/web-$mode.json"
done
"$CTRUST" policy create --from "$IMG" --name web-x --issuer tests --any-image --out "$WORK/unsigned.json" >/dev/null
check_exit "the verifier refuses an unsigned policy" 1 "${V[@]}" policy add "$WORK/unsigned.json"
cp "$WORK/.err" "$WORK/last.err"
check "... saying so" grep -q "not signed" "$WORK/last.err"

for serial in 3 2; do
  "$CTRUST" policy create --from "$IMG" --name web-roll --issuer tests --any-image --serial "$serial" \
    --out "$WORK/roll$serial.json" >/dev/null
  "$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/roll$serial.json" >/dev/null
done
check "the verifier adds serial 3" "${V[@]}" policy add "$WORK/roll3.json"
check_exit "serial 2 after it is a rollback, refused" 1 "${V[@]}" policy add "$WORK/roll2.json"
cp "$WORK/.err" "$WORK/last.err"
check "... saying so" grep -q "rollback" "$WORK/last.err"
check "a mapping keyed AGENT/ID" "${V[@]}" map container node-1/other web-roll
check "... is listed" sh -c "\"\$@\" mappings | jq -e '.mappings[] | select(.key == \"node-1/other\")'" _ "${V[@]}"
check "... and removed" "${V[@]}" unmap container node-1/other
check_exit "... once" 1 "${V[@]}" unmap container node-1/other

# --- registration --------------------------------------------------------------------------
check_exit "an unpinned EK is refused" 1 "${V[@]}" register "$AGENT_URL"
PIN=$(grep -o 'sha256:[0-9a-f]\{64\}' "$WORK/.err" | head -1)
check "... naming its fingerprint" test -n "$PIN"
check "registered with the EK pinned" "${V[@]}" register "$AGENT_URL" --ek-pin "$PIN"
cp "$WORK/.out" "$WORK/last.out"
check "... as node-1" grep -q "registered node-1" "$WORK/last.out"

# --- containers ----------------------------------------------------------------------------
bundle() {  # ID POLICY
  local id=$1 pol=$2 b=$WORK/bundles/$1
  mkdir -p "$b/rootfs" "$b/upper" "$b/work"
  mount -t overlay overlay -o "lowerdir=$IMG,upperdir=$b/upper,workdir=$b/work" "$b/rootfs"
  MOUNTS+=("$b/rootfs")
  (cd "$b" && runc spec)
  jq --arg c "$CTRUST" --arg s "$SOCK" --arg p "$pol" '
    .process.terminal = false | .process.args = ["/bin/sleep", "600"] |
    .root = {"path": "rootfs", "readonly": false} |
    .annotations = {"io.ctrust.policy": $p} |
    .linux.namespaces |= map(select(.type != "network")) |
    .hooks = {"createRuntime": [{"path": $c, "args": ["ctrust", "hook", "createRuntime", "--socket", $s]}],
              "poststop": [{"path": $c, "args": ["ctrust", "hook", "poststop", "--socket", $s]}]}
  ' "$b/config.json" >"$b/config.new" && mv "$b/config.new" "$b/config.json"
  CONTAINERS+=("$id")
  (cd "$b" && runc run -d "$id" </dev/null >/dev/null 2>"$WORK/$id.err")
}
check "container web (enforce) starts" bundle web web-enforce
check "container job (measure) starts" bundle job web-measure
check "a listed exec in web" runc exec web /bin/echo hello
check "a listed exec in job" runc exec job /bin/true
# busybox picks the applet by its name: a changed copy named "true" is an unlisted "true".
cp "$IMG/bin/busybox" "$WORK/bundles/job/rootfs/tmp/true"
echo "not listed" >>"$WORK/bundles/job/rootfs/tmp/true"
chmod 755 "$WORK/bundles/job/rootfs/tmp/true"
check "an unlisted exec runs in measure mode" runc exec job /tmp/true

verdict() {  # JSON-of-agent CONTAINER: the container's verdict
  jq -r --arg c "$2" '.containers[] | select(.id == $c) | .verdict' "$1"
}
"${V[@]}" --json attest node-1 >"$WORK/a1.json" 2>"$WORK/a1.err" || true
check_eq "host affirming (reference values match)" "$(jq -r .verdict "$WORK/a1.json")" affirming
check_eq "web affirming" "$(verdict "$WORK/a1.json" web)" affirming
check_eq "job contraindicated" "$(verdict "$WORK/a1.json" job)" contraindicated
check_eq "... for the unlisted digest" \
  "$(jq -r '.containers[] | select(.id == "job") | .reasons[0].rule' "$WORK/a1.json")" unknown-digest
check "... at /tmp/true" grep -q "/tmp/true" <(jq -r '.containers[] | select(.id=="job") | .reasons[0].message' "$WORK/a1.json")
check_eq "web judged by its policy" "$(jq -r '.containers[] | select(.id == "web") | .policy' "$WORK/a1.json")" web-enforce@1

# --- the EAR ---------------------------------------------------------------------------------
"${V[@]}" result node-1 --jwt >"$WORK/ear.jwt"
curl -s --cacert "$VSTATE/tls/ca.pem" --cert "$VSTATE/tls/client.pem" --key "$VSTATE/tls/client.key" \
  "$VURL/v1/ear-key" >"$WORK/jwks.json"
cat >"$WORK/ear.py" <<'EOF'
import json, sys, jwt
jwks = json.load(open(sys.argv[1]))
key = jwt.PyJWK(jwks["keys"][0]).key
claims = jwt.decode(open(sys.argv[2]).read().strip(), key, algorithms=["ES256"])
print(json.dumps(claims))
EOF
check "the EAR verifies with PyJWT and the published key" /usr/bin/python3 "$WORK/ear.py" "$WORK/jwks.json" "$WORK/ear.jwt"
/usr/bin/python3 "$WORK/ear.py" "$WORK/jwks.json" "$WORK/ear.jwt" >"$WORK/claims.json" || true
check_eq "EAR profile" "$(jq -r .eat_profile "$WORK/claims.json")" "tag:github.com,2023:veraison/ear"
check_eq "EAR: web affirming" "$(jq -r '.submods["container:web"]["ear.status"]' "$WORK/claims.json")" affirming
check_eq "EAR: job contraindicated" "$(jq -r '.submods["container:job"]["ear.status"]' "$WORK/claims.json")" contraindicated
check_eq "EAR: job's executables claim" \
  "$(jq -r '.submods["container:job"]["ear.trustworthiness-vector"].executables' "$WORK/claims.json")" 96
sed 's/\(.*\)\.\(.*\)\.\(.*\)/\1.\2X.\3/' "$WORK/ear.jwt" >"$WORK/bad.jwt"
check_exit "a tampered EAR does not verify" 1 /usr/bin/python3 "$WORK/ear.py" "$WORK/jwks.json" "$WORK/bad.jwt"

# --- tampering with a log on the host --------------------------------------------------------
LOG=$STATE/containers/web/measurements.bin
size0=$(stat -c %s "$LOG")
check "a new exec in web" runc exec web /opt/bin/true
size=$(stat -c %s "$LOG")
# The entry is in the log before the exec may proceed: tampering with the last record below
# must hit this new, not yet attested, entry.
[ "$size" -gt "$size0" ] && pass || fail "the exec added no entry to web's log ($size0 -> $size bytes)"
# The last record ends with its file name: change one of its bytes.
printf 'X' | dd of="$LOG" bs=1 seek=$((size - 2)) conv=notrunc status=none
rc=0
"${V[@]}" --json attest node-1 >"$WORK/a2.json" 2>"$WORK/a2.err" || rc=$?
if [ "$(verdict "$WORK/a2.json" web)" != contraindicated ]; then
  # What the round said, to tell a round that did not happen from one that missed it.
  echo "attest after the tampering: exit $rc: $(head -c 1000 "$WORK/a2.err")" >&2
  jq -c '{verdict, containers: [.containers[]? | {id, verdict, reasons}]}' "$WORK/a2.json" >&2 || true
fi
check_eq "a tampered entry makes web contraindicated" "$(verdict "$WORK/a2.json" web)" contraindicated
check_eq "... because the log does not replay to the quote" \
  "$(jq -r '.containers[] | select(.id == "web") | .reasons[0].code' "$WORK/a2.json")" log-replay

# --- history, webhooks, metrics ---------------------------------------------------------------
check "history lists web's change" sh -c "\"\$@\" --json history --agent node-1 --container web | jq -e '.events | length >= 2'" _ "${V[@]}"
for _ in $(seq 50); do grep -q '"container":"web","ear"' "$WORK/webhooks.jsonl" 2>/dev/null && break; sleep 0.1; done
check "a webhook event for web's change" sh -c "grep '\"container\":\"web\"' '$WORK/webhooks.jsonl' | grep -q contraindicated"
check "a webhook event for job" grep -q '"container":"job"' "$WORK/webhooks.jsonl"
"${V[@]}" metrics >"$WORK/metrics.txt"
check "metrics count attestations" grep -q '^ctrust_verifier_attestations_total{result="verified"} [1-9]' "$WORK/metrics.txt"
check "metrics count entries" grep -q '^ctrust_verifier_log_entries_verified_total [1-9]' "$WORK/metrics.txt"

# --- the verifier restarts and resumes -------------------------------------------------------
kill "$VERIFIER_PID" && wait "$VERIFIER_PID" 2>/dev/null || true
VERIFIER_PID=""
start_verifier --paused
check "job ran one more listed exec" runc exec job /bin/echo again
"${V[@]}" --json attest node-1 >"$WORK/a3.json" 2>/dev/null || true
"${V[@]}" metrics >"$WORK/metrics2.txt"
entries=$(awk '/^ctrust_verifier_log_entries_verified_total /{print $2}' "$WORK/metrics2.txt")
total=$(jq '([.containers[].log_entries] | add) + .host_log_entries' "$WORK/a3.json")
check "after a restart only new entries are verified ($entries of $total)" test "${entries:-999}" -lt "$total"
check_eq "job is still contraindicated (sticky)" "$(verdict "$WORK/a3.json" job)" contraindicated

# --- ctrust attest, one shot -----------------------------------------------------------------
A=("$CTRUST" attest --agent "$AGENT_URL" --verifier-state "$VSTATE" --ek-pin "$PIN"
  --policy "$WORK/web-enforce.json" --policy "$WORK/web-measure.json" --policy-trust "$WORK/key.pub"
  --reference-binary "$ctrustd_digest" --reference-config "$config_digest")
check_exit "ctrust attest: job is not trusted (exit 1)" 1 "${A[@]}" --container job
cp "$WORK/.out" "$WORK/last.out"
check "... and says why" grep -q "unknown-digest" "$WORK/last.out"
check_exit "ctrust attest without the EK pin: not trusted" 1 \
  "$CTRUST" attest --agent "$AGENT_URL" --verifier-state "$VSTATE"
cp "$WORK/.err" "$WORK/last.err"
check "... saying the EK is not trusted" grep -q "not trusted" "$WORK/last.err"
check "a fresh container" bundle fresh web-enforce
check "a listed exec in fresh" runc exec fresh /bin/true
check_exit "ctrust attest: fresh is affirming (exit 0)" 0 "${A[@]}" --container fresh
cp "$WORK/.out" "$WORK/last.out"
check "... verdict printed" grep -q "verdict: affirming" "$WORK/last.out"
"${A[@]}" --container fresh --json >"$WORK/one.json" || true
check_eq "ctrust attest --json" "$(jq -r .verdict "$WORK/one.json")" affirming

# --- the agent restarts ----------------------------------------------------------------------
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
"${V[@]}" --json attest node-1 >"$WORK/a4.json" 2>/dev/null || true
check_eq "an agent that is down is unreachable" "$(jq -r .status "$WORK/a4.json")" unreachable
start_agent
"${V[@]}" --json attest node-1 >"$WORK/a5.json" 2>/dev/null || true
check "the restart is reported" sh -c "jq -r '.last_reasons[].code' '$WORK/a5.json' | grep -q agent-restart"
check "... and the gap in job's log" sh -c "jq -r '.containers[] | select(.id==\"job\") | .reasons[].code' '$WORK/a5.json' | grep -q agent-gap"

# --- the APIs refuse what they must ----------------------------------------------------------
refused() { ! "$@" >/dev/null 2>&1; }  # the TLS handshake (or the first read) fails
check "no client certificate: no access to the agent" refused curl -skf --max-time 5 "$AGENT_URL/v1/health"
check "no client certificate: no access to the verifier" refused \
  curl -sf --max-time 5 --cacert "$VSTATE/tls/ca.pem" "$VURL/v1/agents"
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/rogue.key" --public-out "$WORK/rogue.pub" >/dev/null
openssl req -new -x509 -key "$WORK/rogue.key" -subj /CN=rogue -days 1 -out "$WORK/rogue.pem" 2>/dev/null
check "a certificate from another CA: no access" refused \
  curl -skf --max-time 5 --cert "$WORK/rogue.pem" --key "$WORK/rogue.key" "$AGENT_URL/v1/health"
C=(curl -sk --max-time 10 --cert "$VSTATE/tls/client.pem" --key "$VSTATE/tls/client.key" -o "$WORK/resp" -w '%{http_code}')
check_eq "the verifier's certificate is let in" "$("${C[@]}" "$AGENT_URL/v1/health")" 200
head -c 300000 /dev/zero | tr '\0' ' ' >"$WORK/big.json"
check_eq "an oversized challenge is refused" "$("${C[@]}" -X POST --data-binary @"$WORK/big.json" "$AGENT_URL/v1/challenge")" 413
check_eq "a malformed challenge is refused" "$("${C[@]}" -X POST --data '{"version":1,"nonce":"00"}' "$AGENT_URL/v1/challenge")" 400
check "... with a clear error" grep -q "nonce must be 64 lowercase hex" "$WORK/resp"
check_eq "a challenge with an unknown member is refused" \
  "$("${C[@]}" -X POST --data '{"version":1,"nonce":"'"$(printf '%064d' 0)"'","host_log_offset":0,"containers":[],"extra":1}' "$AGENT_URL/v1/challenge")" 400
check_eq "a bad activation is refused" \
  "$("${C[@]}" -X POST --data '{"version":1,"credential_blob":"AAAA","secret":"AAAA"}' "$AGENT_URL/v1/activate")" 400
check_eq "a malformed registration is refused" \
  "$("${C[@]}" --cacert "$VSTATE/tls/ca.pem" -X POST --data '[1]' "$VURL/v1/agents")" 400

check "the agent served without errors" sh -c "! grep -q 'api: .*failed' '$WORK/ctrustd.log'"
finish
