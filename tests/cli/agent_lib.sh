# What the privileged agent tests share (sourced after lib.sh): ctrustd started with a
# test-local configuration, runc/crun bundles over an overlay of $IMG whose hooks hand
# the container to it, and checks on what it logged. The sourcing test sets IMG and
# VOLUME before it calls bundle; BUNDLE_JQ (a jq filter) changes each bundle's config.json.

export TSS2_LOG=all+none
SOCK=$WORK/ctrustd.sock
STATE=$WORK/state
BB=$(command -v busybox)
AGENT_PID=""
MOUNTS=()
CONTAINERS=()

cleanup() {
  set +e
  for c in "${CONTAINERS[@]}"; do
    rt=${c%%:*}
    id=${c#*:}
    "$rt" kill "$id" KILL >/dev/null 2>&1
    "$rt" delete -f "$id" >/dev/null 2>&1
  done
  podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" rm -af >/dev/null 2>&1
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  # vTPMs and the embedded host TPM are swtpm daemons (they outlive an agent restart).
  pkill -f "swtpm socket.*$WORK" 2>/dev/null
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null; done
  umount -l "$WORK/podman/root/overlay" 2>/dev/null
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

write_config() {  # [extra TOML lines]
  cat >"$WORK/ctrustd.toml" <<EOF
state_dir = "$STATE"
socket = "$SOCK"
log_level = "info"
[vtpm]
pool = 2
[policies]
trust = ["$WORK/key.pub"]
[containers]
annotations_may_weaken = ${MAY_WEAKEN:-true}
$*
EOF
}
start_agent() {
  "$CTRUSTD" --config "$WORK/ctrustd.toml" >>"$WORK/ctrustd.log" 2>&1 &
  AGENT_PID=$!
  wait_ready ctrustd "$AGENT_PID" "$WORK/ctrustd.log" "$CTRUST" ps --socket "$SOCK"
}

# --- bundles -----------------------------------------------------------------------------
# bundle RUNTIME ID [annotation JSON]: an overlay root over the image (as podman has) and a
# config.json whose createRuntime hook hands the container to ctrustd (and, with POSTSTOP=1,
# a poststop hook as older set-ups have: ctrustd closes the books itself when the
# container's cgroup empties); the container sleeps, and each case runs inside it with
# `RUNTIME exec`.
bundle() {
  local rt=$1 id=$2 ann=${3:-"{}"}
  local b=$WORK/bundles/$id
  mkdir -p "$b/rootfs" "$b/upper" "$b/work" "$WORK/scratch-$id"
  mount -t overlay overlay -o "lowerdir=$IMG,upperdir=$b/upper,workdir=$b/work" "$b/rootfs"
  MOUNTS+=("$b/rootfs")
  (cd "$b" && runc spec)
  jq --arg c "$CTRUST" --arg s "$SOCK" --arg vol "$VOLUME" --argjson ann "$ann" \
    --arg poststop "${POSTSTOP:-}" '
    .process.terminal = false |
    .process.args = ["/bin/sleep", "600"] |
    .root = {"path": "rootfs", "readonly": false} |
    .annotations = $ann |
    .linux.namespaces |= map(select(.type != "network")) |
    .mounts += [{"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "nodev", "mode=1777", "size=16m"]},
                {"destination": "/vol", "type": "bind", "source": $vol,
                 "options": ["rbind", "ro"]}] |
    .hooks = {"createRuntime": [{"path": $c, "args": ["ctrust", "hook", "createRuntime",
                                                       "--socket", $s]}]} |
    if $poststop == "1" then
      .hooks.poststop = [{"path": $c, "args": ["ctrust", "hook", "poststop", "--socket", $s]}]
    else . end |
  '"${BUNDLE_JQ:-.}" "$b/config.json" >"$b/config.json.new"
  mv "$b/config.json.new" "$b/config.json"
}
# run_container RUNTIME ID [annotations]: starts it detached; fails if the start is refused.
run_container() {
  local rt=$1 id=$2
  bundle "$@"
  [ -z "${EXTRA:-}" ] || echo extra >"$WORK/bundles/$id/rootfs/extra"
  CONTAINERS+=("$rt:$id")
  local rc=0
  (cd "$WORK/bundles/$id" && "$rt" run -d "$id" </dev/null >"$WORK/$id.out" 2>"$WORK/$id.err") || rc=$?
  [ "$rc" -eq 0 ] || cat "$WORK/$id.err" >&2
  return "$rc"
}
in_c() {  # RUNTIME ID COMMAND: exit code of COMMAND run by sh inside the container
  local rt=$1 id=$2
  shift 2
  local rc=0
  "$rt" exec "$id" /bin/sh -c "$*" >"$WORK/.in.out" 2>"$WORK/.in.err" </dev/null || rc=$?
  echo "$rc"
}
# expect RUNTIME ID NAME WANT COMMAND: WANT is "ok" (exit 0), "denied" (exit 126: sh could
# not execute it, EPERM) or "fails" (not 0: e.g. ld.so or sh could not open a file).
expect() {
  local rt=$1 id=$2 name=$3 want=$4
  shift 4
  local rc
  rc=$(in_c "$rt" "$id" "$@")
  if [ "$want" = ok ] && [ "$rc" -eq 0 ]; then pass
  elif [ "$want" = denied ] && [ "$rc" -eq 126 ]; then pass
  elif [ "$want" = fails ] && [ "$rc" -ne 0 ]; then pass
  else fail "$rt $id: $name: exit $rc, expected $want: $(head -c 500 "$WORK/.in.err")"; fi
}
info() {  # ID JQ: a field of the container from ctrust ps --json
  "$CTRUST" ps --socket "$SOCK" --json | jq -r --arg id "$1" ".containers[] | select(.id == \$id) | $2" || true
}
# settle ID JQ WANT: waits up to 3 s for a field to reach WANT (the BPF observer reports an
# exec after it happened, asynchronously), then prints it.
settle() {
  local v
  for _ in $(seq 60); do
    v=$(info "$1" "$2")
    [ "$v" = "$3" ] && break
    sleep 0.05
  done
  echo "$v"
}
# crun refuses this machine's hybrid cgroup layout (cgroup v1 controllers beside an empty
# cgroup2 mount): run it where the cgroup2 mount is hidden.
crun() {
  unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"' crun "$@"
}

# pcr_file INDEX HEX: PCR-00 .. PCR-23 lines (evmctl reads them by position), zero but INDEX.
pcr_file() {
  local zero
  zero=$(printf '%*s' "${#2}" '' | tr ' ' 0)
  for i in $(seq 0 23); do
    if [ "$i" -eq "$1" ]; then printf 'PCR-%02d: %s\n' "$i" "$2"; else printf 'PCR-%02d: %s\n' "$i" "$zero"; fi
  done
}
# replays ID: the container's log replays to its vTPM's PCR 10, checked by evmctl.
replays() {
  local id=$1 tcti file
  tcti=$(info "$id" .vtpm.tcti || true)
  file=$(info "$id" .log || true)
  if [ -z "$tcti" ] || [ -z "$file" ]; then
    fail "$id: not registered, nothing to replay"
    return
  fi
  local s1 s256
  s1=$("$CTRUST" tpm pcrread --tcti "$tcti" sha1:10 --json | jq -r '.sha1["10"]' || true)
  s256=$("$CTRUST" tpm pcrread --tcti "$tcti" sha256:10 --json | jq -r '.sha256["10"]' || true)
  pcr_file 10 "$s1" >"$WORK/$id.sha1.pcrs"
  pcr_file 10 "$s256" >"$WORK/$id.sha256.pcrs"
  if evmctl ima_measurement --ignore-violations --pcrs "sha1,$WORK/$id.sha1.pcrs" \
    --pcrs "sha256,$WORK/$id.sha256.pcrs" "$file" -v 2>&1 | grep -q "Matched per TPM bank"; then
    pass
  else
    fail "$id: evmctl does not match the log to the vTPM's PCR 10"
  fi
  check "$id: ctrust log verify against the vTPM" "$CTRUST" log verify \
    --pcrs "$WORK/$id.sha1.pcrs" --pcrs "$WORK/$id.sha256.pcrs" "$file"
}
log_names() {  # ID: the names in the container's log, one per line
  "$CTRUST" log show --socket "$SOCK" --container "$1" --json | jq -r '.[].name' || true
}
