#!/bin/bash
# A throwaway PostgreSQL server for the store tests.
#
#   pg_server.sh start DIR PORT   initdb in DIR/data (once), start it on 127.0.0.1:PORT with its
#                                 unix socket in DIR, trust authentication, and a database
#                                 ctrust_test; prints the libpq URL on stdout
#   pg_server.sh stop DIR         stops it (nothing to do if it is not running)
#
# Run as root, the server runs as the `postgres` system user (PostgreSQL refuses root), so
# DIR is handed to that user.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

usage() {
  echo "usage: $0 start DIR PORT | stop DIR" >&2
  exit 2
}

# Runs a command as the server's user.
as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local dir=$1 port=$2
  [ -x "$PGBIN/initdb" ] || { echo "pg_server.sh: no PostgreSQL in $PGBIN" >&2; return 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "pg_server.sh: no postgres user" >&2; return 1; }
    chown postgres: "$dir"
    chmod 0700 "$dir"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_server_user "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
      --no-sync >"$dir/initdb.log" 2>&1 || {
      echo "pg_server.sh: initdb failed:" >&2
      cat "$dir/initdb.log" >&2
      return 1
    }
  fi
  # fsync stays on: the timings the tests print should mean something.
  as_server_user "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -h 127.0.0.1 -p $port -c max_connections=100" start >/dev/null || {
    echo "pg_server.sh: the server did not start:" >&2
    tail -n 20 "$dir/server.log" >&2 || true
    return 1
  }
  if ! as_server_user "$PGBIN/psql" -h "$dir" -p "$port" -U postgres -d postgres -tAq \
      -c "SELECT 1 FROM pg_database WHERE datname = 'ctrust_test'" | grep -q 1; then
    as_server_user "$PGBIN/createdb" -h "$dir" -p "$port" -U postgres ctrust_test
  fi
  echo "postgresql://postgres@127.0.0.1:$port/ctrust_test"
}

stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_server_user "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
