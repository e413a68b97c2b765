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

# A TCP port on 127.0.0.1 that is free now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
