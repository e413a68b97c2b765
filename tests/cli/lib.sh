# Shared helpers for the CLI tests: a check counter, a temp dir, and the final
# "N passed, N failed" line that CI reads.
set -euo pipefail

: "${CTRUST:?set CTRUST to the ctrust binary}"
PASSED=0
FAILED=0
WORK=$(mktemp -d /tmp/ctrust-cli-test.XXXXXX)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

pass() { PASSED=$((PASSED + 1)); }
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL: $*" >&2
}

# check NAME CMD...: the command must succeed.
check() {
  local name=$1
  shift
  if "$@" >"$WORK/.out" 2>"$WORK/.err"; then pass; else
    fail "$name (exit $?): $(head -c 2000 "$WORK/.err")"
  fi
}

# check_exit NAME CODE CMD...: the command must exit with CODE.
check_exit() {
  local name=$1 want=$2
  shift 2
  local rc=0
  "$@" >"$WORK/.out" 2>"$WORK/.err" || rc=$?
  if [ "$rc" -eq "$want" ]; then pass; else
    fail "$name: exit $rc, expected $want: $(head -c 2000 "$WORK/.err")"
  fi
}

# check_eq NAME GOT WANT
check_eq() {
  if [ "$2" == "$3" ]; then pass; else
    fail "$1: got [$2], want [$3]"
  fi
}

# wait_ready WHAT PID LOG CMD...: waits up to 15 s for CMD to succeed while process PID
# lives; if it does not, prints LOG's tail and fails.
wait_ready() {
  local what=$1 pid=$2 log=$3
  shift 3
  for _ in $(seq 300); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "$what did not start:" >&2
  tail -20 "$log" >&2
  return 1
}

# verifier_up STATE URL: the verifier of state directory STATE answers /v1/health at URL.
verifier_up() {
  [ -f "$1/tls/client.pem" ] &&
    curl -sf --cacert "$1/tls/ca.pem" --cert "$1/tls/client.pem" --key "$1/tls/client.key" "$2/v1/health"
}

# A TCP port on 127.0.0.1 that is free now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
