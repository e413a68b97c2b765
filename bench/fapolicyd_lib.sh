# fapolicyd as the benchmarks' enforcement peer (sourced by agent_bench.sh and
# workload_bench.sh). It runs in a private mount namespace of its own, its configuration,
# trust file and run directory bind-mounted there, so it watches only that namespace's
# mounts: only what is entered into the namespace is intercepted, never the rest of the host.
# Trusted files (size and SHA-256, integrity = sha256) may run; other execs are denied;
# every open is allowed (but still asked about, as fapolicyd does).

# fa_start DIR WATCH_FS TRUSTED_FILE...: configures fapolicyd under DIR and starts it; sets
# FA_PID, and returns non-zero if it did not say it listens within 30 s (DIR/log says why).
fa_start() {
  local dir=$1 watch=$2
  shift 2
  mkdir -p "$dir/etc/rules.d" "$dir/lib" "$dir/run/fapolicyd"
  # uid/gid root: as its own user fapolicyd stops at "Cannot change to uid 103" when the
  # bounding set lacks CAP_SYS_RESOURCE, which it keeps (so in this VM).
  sed -e 's/^permissive.*/permissive = 0/' -e 's/^trust =.*/trust = file/' \
    -e 's/^integrity.*/integrity = sha256/' -e 's/^do_stat_report.*/do_stat_report = 0/' \
    -e "s/^watch_fs.*/watch_fs = $watch/" -e 's/^uid.*/uid = root/' -e 's/^gid.*/gid = root/' \
    /etc/fapolicyd/fapolicyd.conf >"$dir/etc/fapolicyd.conf"
  local f
  for f in "$@"; do
    echo "$f $(stat -c %s "$f") $(sha256sum "$f" | cut -d' ' -f1)"
  done >"$dir/etc/fapolicyd.trust"
  printf '%s\n' 'allow perm=any all : trust=1' 'deny_audit perm=execute all : all' \
    'allow perm=open all : all' >"$dir/etc/compiled.rules"
  cp "$dir/etc/compiled.rules" "$dir/etc/rules.d/50-bench.rules"
  chown -R fapolicyd:fapolicyd "$dir/lib" "$dir/run/fapolicyd" 2>/dev/null || true
  chmod 644 "$dir"/etc/*.rules "$dir/etc/fapolicyd.conf" "$dir/etc/fapolicyd.trust"
  unshare -m --propagation private sh -c 'mount --bind "$1/etc" /etc/fapolicyd &&
    mount --bind "$1/lib" /var/lib/fapolicyd && mount --bind "$1/run" /run &&
    exec fapolicyd --debug-deny' fa "$dir" >"$dir/log" 2>&1 &
  FA_PID=$!
  for _ in $(seq 300); do
    kill -0 "$FA_PID" 2>/dev/null || return 1
    grep -qi "starting to listen" "$dir/log" && return 0
    sleep 0.1
  done
  return 1
}

# in_fa CMD...: runs CMD in fapolicyd's mount namespace.
in_fa() { nsenter --mount="/proc/$FA_PID/ns/mnt" -- "$@"; }
