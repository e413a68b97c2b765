#!/bin/bash
# Runs a test binary against a PostgreSQL server of its own:
#   run_pg_test.sh BINARY [ARGS...]
# Starts pg_server.sh in a fresh temp dir on a free port, runs BINARY with CTRUST_TEST_PG_URL
# set, and always stops the server and removes the dir. If the server cannot be started the
# test is skipped (exit 77), except with CI=true, where that is a failure.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/ctrust-pg.XXXXXX") || exit 1
cleanup() {
  bash "$here/pg_server.sh" stop "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

url=""
for attempt in 1 2 3 4 5; do
  port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
  if url=$(bash "$here/pg_server.sh" start "$dir" "$port" 2>"$dir.err"); then
    break
  fi
  url=""
done
if [ -z "$url" ]; then
  reason=$(tail -n 1 "$dir.err" 2>/dev/null)
  rm -f "$dir.err"
  if [ "${CI:-}" = true ]; then
    echo "FAIL: cannot start a PostgreSQL server (needed in CI): $reason" >&2
    exit 1
  fi
  echo "SKIP: cannot start a PostgreSQL server: $reason"
  exit 77
fi
rm -f "$dir.err"

CTRUST_TEST_PG_URL=$url "$@"
