#!/usr/bin/env bash
# ctrustd with real containers (privileged: CI runs as root). A busybox image with a few
# dynamic binaries and a static helper is run by runc and crun (bundles whose hooks call
# `ctrust hook`) and by podman (hooks.d). Checked, in enforce mode unless said otherwise:
#   - a listed binary runs, an unlisted one is denied; audit and measure run and log it;
#   - a listed binary changed after its digest was cached (write, truncate, rename-over,
#     a writable shared mmap, overlay copy-up) never runs on the stale digest; a file
#     mapped writable while it is executed is denied (enforce) or a violation (measure);
#   - an unlisted binary does not run through ld.so, from a tmpfs, from a volume, through
#     /proc/self/fd; a replaced shared library is caught; scripts follow docs/AGENT.md;
#   - every container's log replays to its vTPM's PCR 10 (evmctl ima_measurement on the
#     PCR values read from that vTPM), and the host log to the host TPM's PCR;
#   - two containers of one image get separate logs and vTPMs;
#   - a refused start: a policy that does not list the image, an annotation that weakens.
source "$(dirname "$0")/lib.sh"

: "${CTRUSTD:?set CTRUSTD to the ctrustd binary}"
# The hooks run from the runtime's working directory: absolute paths.
CTRUST=$(readlink -f "$CTRUST")
CTRUSTD=$(readlink -f "$CTRUSTD")
: "${CTRUST_HOOK:?set CTRUST_HOOK to the ctrust-hook binary}"
CTRUST_HOOK=$(readlink -f "$CTRUST_HOOK")
need=(runc crun podman swtpm swtpm_setup evmctl gcc jq busybox)
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
why=""
[ "$(id -u)" -eq 0 ] || why="needs root (fanotify permission events, containers)"
((${#missing[@]} == 0)) || why="missing ${missing[*]} (scripts/setup installs them)"
if [ -n "$why" ]; then
  echo "agent test: $why" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

source "$(dirname "$0")/agent_lib.sh"


# --- the image ---------------------------------------------------------------------------
IMG=$WORK/image
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,opt,vol,scratch,usr/local/bin,lib64,lib/x86_64-linux-gnu}
chmod 1777 "$IMG/tmp"
cp "$BB" "$IMG/bin/busybox"
for a in sh true false echo cat ls cp mv rm chmod sleep truncate; do ln -s busybox "$IMG/bin/$a"; done
mkdir -p "$IMG/opt/bb"
cp "$BB" "$IMG/opt/bb/busybox"  # a lower-layer copy for the copy-up case
gcc -static -O2 -o "$IMG/usr/local/bin/ctrust-test-helper" "$CTRUST_TESTS/cli/helpers/ctrust-test-helper.c"
# Dynamic binaries and what ld.so loads for them.
cp /bin/true "$IMG/bin/dyntrue"
cp /lib64/ld-linux-x86-64.so.2 "$IMG/lib64/"
cp /lib/x86_64-linux-gnu/libc.so.6 "$IMG/lib/x86_64-linux-gnu/"
printf '#!/bin/sh\nexit 0\n' >"$IMG/bin/listed.sh"
chmod 755 "$IMG/bin/listed.sh"
echo "root:x:0:0:root:/:/bin/sh" >"$IMG/etc/passwd"

"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$WORK/key.pub" >/dev/null
# make_policy NAME MODE [create args]: a signed policy of the image as it is now; its
# digests are allowed at any path unless PATHS=1 (then only where the image has them).
make_policy() {
  local name=$1 mode=$2
  shift 2
  "$CTRUST" policy create --from "$IMG" --name "$name" --issuer tests --mode "$mode" \
    --out "$WORK/$name.json" "$@" >/dev/null
  if [ -z "${PATHS:-}" ]; then
    jq 'del(.allow[].paths)' "$WORK/$name.json" >"$WORK/$name.json.new"
    mv "$WORK/$name.json.new" "$WORK/$name.json"
  fi
  "$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/$name.json" >/dev/null
}
make_policy bb enforce --any-image
PATHS=1 make_policy bb-paths enforce --any-image
make_policy bb-audit audit --any-image
make_policy bb-measure measure --any-image

# Files the policies do not list, added after they were made.
mkdir -p "$IMG/unlisted"
cp "$BB" "$IMG/unlisted/true"
echo "not in the policy" >>"$IMG/unlisted/true"
cp /bin/true "$IMG/unlisted/dyntrue"
echo "not in the policy" >>"$IMG/unlisted/dyntrue"
printf '#!/bin/sh\nexit 0\n# not listed\n' >"$IMG/unlisted/script.sh"
printf 'exit 0\n' >"$IMG/unlisted/plain.sh"  # no #!: read by sh as data
chmod 755 "$IMG"/unlisted/*
# An image-bound policy: it lists the final image's digest, nothing else runs under it.
make_policy bb-bound enforce
VOLUME=$WORK/volume
mkdir -p "$VOLUME/unlisted" "$VOLUME/listed"
cp "$IMG/unlisted/true" "$VOLUME/unlisted/true"
cp "$BB" "$VOLUME/listed/true"

# --- the agent ---------------------------------------------------------------------------
write_config
start_agent
for p in bb bb-paths bb-audit bb-measure bb-bound; do
  check "policy load $p" "$CTRUST" policy load --socket "$SOCK" "$WORK/$p.json"
done
# What the agent refuses to load: unsigned, signed by a key it does not trust, an older serial.
"$CTRUST" policy create --from "$IMG" --name bb --issuer tests --any-image \
  --out "$WORK/unsigned.json" >/dev/null
check_exit "an unsigned policy is refused" 3 "$CTRUST" policy load --socket "$SOCK" "$WORK/unsigned.json"
cp "$WORK/.err" "$WORK/refused.err"
check "... saying why" grep -q "not signed" "$WORK/refused.err"
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/other.pem" --public-out "$WORK/other.pub" >/dev/null
cp "$WORK/unsigned.json" "$WORK/other.json"
"$CTRUST" policy sign --key "$WORK/other.pem" "$WORK/other.json" >/dev/null
check_exit "a policy from an untrusted signer is refused" 3 \
  "$CTRUST" policy load --socket "$SOCK" "$WORK/other.json"
"$CTRUST" policy create --from "$IMG" --name bb-roll --issuer tests --any-image --serial 2 \
  --out "$WORK/roll2.json" >/dev/null
"$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/roll2.json" >/dev/null
"$CTRUST" policy create --from "$IMG" --name bb-roll --issuer tests --any-image --serial 1 \
  --out "$WORK/roll1.json" >/dev/null
"$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/roll1.json" >/dev/null
check "serial 2 loads" "$CTRUST" policy load --socket "$SOCK" "$WORK/roll2.json"
check_exit "serial 1 after it is a rollback, refused" 3 \
  "$CTRUST" policy load --socket "$SOCK" "$WORK/roll1.json"
cp "$WORK/.err" "$WORK/refused.err"
check "... saying so" grep -q "rollback refused" "$WORK/refused.err"

# --- enforce, with runc ------------------------------------------------------------------
R=runc
ID=enf-runc
check "$R run with the hook" run_container $R $ID '{"io.ctrust.policy": "bb"}'
check_eq "$ID: mode" "$(info $ID .mode)" "enforce"
check_eq "$ID: policy" "$(info $ID .policy)" "bb"
check_eq "$ID: image digest is the image's" "$(info $ID .image)" \
  "$("$CTRUST" image digest "$IMG" --json | jq -r .digest)"
expect $R $ID "listed binary runs" ok /bin/true
timeout 20 "$CTRUST" events --follow --json --count 1 --socket "$SOCK" >"$WORK/events.out" &
events_pid=$!
sleep 0.3
expect $R $ID "unlisted binary is denied" denied /unlisted/true
wait "$events_pid" || true
check_eq "events --follow reports the denial" \
  "$(jq -r '"\(.container) \(.kind) \(.path) \(.judged)"' "$WORK/events.out")" \
  "enf-runc denied /unlisted/true unknown-digest"
check_exit "events without --follow is a usage error" 2 "$CTRUST" events --socket "$SOCK"
expect $R $ID "listed dynamic binary runs (ld.so and libc listed)" ok /bin/dyntrue
expect $R $ID "unlisted binary through ld.so" fails /lib64/ld-linux-x86-64.so.2 /unlisted/dyntrue
# Unlisted content made inside the container (an unlisted ELF file cannot even be opened
# for reading in enforce, so it is made from a listed one).
MK='mkdir -p $D && cp /bin/busybox $D/busybox && echo x >> $D/busybox'
expect $R $ID "unlisted binary made on a tmpfs" denied "D=/scratch/u; $MK; \$D/busybox true"
expect $R $ID "unlisted binary made in /tmp (overlay upper)" denied "D=/tmp/u; $MK; \$D/busybox true"
expect $R $ID "unlisted binary made in /dev/shm is not runnable" denied "D=/dev/shm/u; $MK; \$D/busybox true"
check_eq "$ID: the root, the tmpfs mounts and the volume are marked (not noexec /dev/shm)" \
  "$(info $ID '[.mounts[].destination] | join(" ")')" "/ /dev /scratch /vol"
expect $R $ID "unlisted binary on a volume" denied /vol/unlisted/true
expect $R $ID "listed binary on a volume runs" ok /vol/listed/true
expect $R $ID "an unlisted ELF file cannot be opened, so not run through /proc/self/fd" fails \
  "exec 3</unlisted/true && /proc/self/fd/3"
expect $R $ID "a listed binary runs through /proc/self/fd" ok "exec 3</bin/dyntrue && /proc/self/fd/3"
expect $R $ID "listed script runs" ok /bin/listed.sh
expect $R $ID "unlisted #! script read by sh" fails sh /unlisted/script.sh
expect $R $ID "unlisted #! script run directly" denied /unlisted/script.sh
expect $R $ID "a file without #! is data to sh (docs/AGENT.md)" ok sh /unlisted/plain.sh

# Changed after the digest was cached: never run on the stale digest.
expect $R $ID "copy of busybox runs (cached)" ok "mkdir /tmp/w && cp /bin/busybox /tmp/w/ && /tmp/w/busybox true && /tmp/w/busybox true"
expect $R $ID "... appended to by write(): denied" denied "echo x >> /tmp/w/busybox; /tmp/w/busybox true"
expect $R $ID "copy runs (cached)" ok "mkdir /tmp/t && cp /bin/busybox /tmp/t/ && /tmp/t/busybox true"
# busybox truncate opens with O_NONBLOCK, which a held lease answers with EAGAIN (once:
# the lease is gone then); docs/AGENT.md says so.
expect $R $ID "... truncate(): denied" denied \
  "for i in 1 2 3 4 5 6 7 8 9 10; do truncate -s 1000000 /tmp/t/busybox 2>/dev/null && break; sleep 0.1; done; /tmp/t/busybox true"
expect $R $ID "copy runs (cached)" ok "mkdir /tmp/r && cp /bin/busybox /tmp/r/ && /tmp/r/busybox true"
expect $R $ID "... renamed over by an unlisted file: denied" denied \
  "cp /bin/busybox /tmp/r2 && echo x >> /tmp/r2 && mv /tmp/r2 /tmp/r/busybox; /tmp/r/busybox true"
expect $R $ID "copy runs (cached)" ok "mkdir /tmp/m && cp /bin/busybox /tmp/m/ && /tmp/m/busybox true"
expect $R $ID "... changed through a shared writable mmap: denied" denied \
  "ctrust-test-helper mmapwrite /tmp/m/busybox && /tmp/m/busybox true"
HOLD='ctrust-test-helper mmaphold /tmp/h/busybox 5 > /tmp/h.out & for i in $(seq 100); do grep -q mapped /tmp/h.out && break; sleep 0.05; done'
expect $R $ID "copy runs (cached)" ok "mkdir /tmp/h && cp /bin/busybox /tmp/h/ && /tmp/h/busybox true"
expect $R $ID "... executed while mapped writable: denied" denied "$HOLD; /tmp/h/busybox true"
expect $R $ID "lower-layer copy runs (cached)" ok "/opt/bb/busybox true"
expect $R $ID "... copied up and changed: denied" denied "echo x >> /opt/bb/busybox; /opt/bb/busybox true"
# The new libc was made by cp: its first open found an empty data file, whose later opens
# are not asked about (docs/EXEC_PATH.md, "Cost"); the exec gate kills dyntrue when ld.so
# maps it: a violation record, not a denial.
expect $R $ID "replaced shared library is caught" fails \
  "cp /lib/x86_64-linux-gnu/libc.so.6 /tmp/libc && echo x >> /tmp/libc && mv /tmp/libc /lib/x86_64-linux-gnu/libc.so.6; /bin/dyntrue"
check_eq "$ID: every denial counted" "$(info $ID .counts.denials)" 14
check_eq "$ID: ... and the gate's kill is a violation" "$(settle $ID .counts.violations 1)" 1
# A memfd is on no filesystem fanotify can mark: the exec gate kills it before it runs, and
# the log gets a violation record.
expect $R $ID "a memfd exec is killed" fails "ctrust-test-helper memfdexec /bin/busybox sleep 3"
check_eq "$ID: the memfd exec is a violation" "$(settle $ID .counts.violations 2)" 2
check_eq "$ID: ... with a violation record in the log" \
  "$("$CTRUST" log show --socket "$SOCK" --container $ID --json | jq '[.[] | select(.violation)] | length')" 2
names=$(log_names $ID)
check_eq "$ID: log starts with boot_aggregate, image, policy" "$(head -3 <<<"$names" | tr '\n' ' ')" \
  "boot_aggregate ctrust:image ctrust:policy:bb "
check_eq "$ID: what ran is logged" "$(grep -c -x -e /bin/busybox -e /bin/dyntrue -e /lib64/ld-linux-x86-64.so.2 <<<"$names")" 3
check_eq "$ID: nothing denied is logged" "$(grep -c /unlisted/ <<<"$names" || true)" 0
replays $ID

ID=paths-runc
check "$R run with a path-bound policy" run_container $R $ID '{"io.ctrust.policy": "bb-paths"}'
expect $R $ID "listed binary at its path runs" ok /bin/busybox true
expect $R $ID "listed content at another path is denied (wrong-path)" denied \
  "mkdir /tmp/p && cp /bin/busybox /tmp/p/ && /tmp/p/busybox true"

# --- audit and measure --------------------------------------------------------------------
ID=aud-runc
check "$R run in audit" run_container $R $ID '{"io.ctrust.policy": "bb-audit"}'
expect $R $ID "audit: unlisted binary runs" ok /unlisted/true
check_eq "$ID: counted as would-deny" "$(info $ID .counts.would_deny)" 1
check_eq "$ID: audit logs it" "$(log_names $ID | grep -c -x /unlisted/true)" 1
replays $ID
ID=meas-runc
check "$R run in measure" run_container $R $ID '{"io.ctrust.policy": "bb-measure"}'
expect $R $ID "measure: unlisted binary runs" ok /unlisted/true
expect $R $ID "measure: runs while mapped writable" ok \
  "mkdir /tmp/h && cp /bin/busybox /tmp/h/ && $HOLD; /tmp/h/busybox true"
check_eq "$ID: measure logs it" "$(log_names $ID | grep -c -x /unlisted/true)" 1
check_eq "$ID: a violation is recorded for the writable mapping" "$(info $ID .counts.violations)" 1
check_eq "$ID: the violation record follows the measurement" \
  "$("$CTRUST" log show --socket "$SOCK" --container $ID --json | jq -r '[.[] | select(.name == "/tmp/h/busybox") | .violation] | join(" ")')" \
  "false true"
expect $R $ID "measure: changed through mmap runs and is measured again" ok \
  "mkdir /tmp/m && cp /bin/busybox /tmp/m/ && /tmp/m/busybox true && ctrust-test-helper mmapwrite /tmp/m/busybox && /tmp/m/busybox true"
check_eq "$ID: both contents of /tmp/m/busybox are logged" "$(log_names $ID | grep -c -x /tmp/m/busybox)" 2
expect $R $ID "measure: a memfd exec runs" ok "ctrust-test-helper memfdexec /bin/busybox sleep 0.5"
# The gate reports it; the agent measures it from the running process (/proc/PID/exe).
memfd_logged() { log_names $ID | grep -c '^/memfd:payload' || true; }
for _ in $(seq 60); do [ "$(memfd_logged)" -ge 1 ] && break; sleep 0.05; done
check_eq "$ID: ... and is measured into the log" "$(memfd_logged)" 1
replays $ID

# --- two containers of one image -----------------------------------------------------------
ID2=enf-runc-2
check "a second container of the same image" run_container $R $ID2 '{"io.ctrust.policy": "bb"}'
expect $R $ID2 "listed binary runs" ok /bin/true
check "separate logs" test "$(info enf-runc .log)" != "$(info $ID2 .log)"
check "separate vTPMs" test "$(info enf-runc .vtpm.ak_name)" != "$(info $ID2 .vtpm.ak_name)"
replays $ID2

# --- refused starts ------------------------------------------------------------------------
# A file in the container's upper layer before the start: another image digest.
EXTRA=1 check_exit "policy not listing the image: start refused" 1 run_container $R bound-bad \
  '{"io.ctrust.policy": "bb-bound"}'
check "policy listing the image: start allowed" run_container $R bound-ok '{"io.ctrust.policy": "bb-bound"}'
check_exit "unknown policy: start refused" 1 run_container $R nopol '{"io.ctrust.policy": "nosuch"}'
check_exit "bad mode annotation: start refused" 1 run_container $R badmode '{"io.ctrust.mode": "lax"}'

# --- the image cache: a layer's file rewritten on the host between two starts --------------
# Image files are hashed once and kept under a read lease (docs/AGENT.md, "The image cache"):
# the rewrite breaks it, so the next start's image digest is the new one, never the cached.
cp -a "$IMG" "$WORK/img2"
img2_digest() { "$CTRUST" image digest "$WORK/img2" --json | jq -r .digest; }
IMG=$WORK/img2 check "cache-a runs over a copy of the image" run_container runc cache-a '{"io.ctrust.policy": "bb"}'
check_eq "cache-a: its image digest" "$(info cache-a .image)" "$(img2_digest)"
n=$("$CTRUST" ps --socket "$SOCK" --json | jq -r .cache.image_entries)
[ "${n:-0}" -gt 0 ] && pass || fail "no image file was cached ($n)"
echo "added on the host" >>"$WORK/img2/etc/passwd"
IMG=$WORK/img2 check "cache-b runs over it" run_container runc cache-b '{"io.ctrust.policy": "bb"}'
check_eq "cache-b: the rewritten file's digest, not the cached one" "$(info cache-b .image)" "$(img2_digest)"
check "... another image digest than cache-a's" test "$(info cache-a .image)" != "$(info cache-b .image)"

# --- crun ----------------------------------------------------------------------------------
R=crun
ID=enf-crun
check "crun run with the hook" run_container $R $ID '{"io.ctrust.policy": "bb"}'
expect $R $ID "crun: listed binary runs" ok /bin/true
expect $R $ID "crun: unlisted binary is denied" denied /unlisted/true
expect $R $ID "crun: unlisted binary made on a tmpfs" denied "D=/scratch/u; $MK; \$D/busybox true"
replays $ID

# --- stop: the books are closed when the container's last process exits -----------------
# gone ID: waits up to 5 s for the agent to close the container's books (status "stopped").
gone() {
  for _ in $(seq 100); do
    [ "$(cat "$STATE/containers/$1/status" 2>/dev/null)" = stopped ] && break
    sleep 0.05
  done
  cat "$STATE/containers/$1/status" 2>/dev/null || true
}
# stopped_records ID: how many container-stopped records the host log has for ID.
stopped_records() {
  "$CTRUST" log show --json "$STATE/host/measurements.bin" |
    jq -r '.[] | select(.name == "ctrust:container-stopped") | .buf' |
    python3 -c 'import json, sys; print(sum(json.loads(bytes.fromhex(l))["container"] == sys.argv[1] for l in sys.stdin))' "$1"
}
for c in runc:enf-runc crun:enf-crun; do
  rt=${c%%:*}
  id=${c#*:}
  "$rt" kill "$id" KILL >/dev/null 2>&1 || true
  check_eq "$id: books closed when its last process exited, no poststop hook" "$(gone "$id")" stopped
  check_eq "$id: gone from ps" "$(info "$id" .id)" ""
  check_eq "$id: one container-stopped host record" "$(stopped_records "$id")" 1
  check "$rt delete" "$rt" delete "$id"
  check "$id: log kept" test -s "$STATE/containers/$id/measurements.bin"
done
# A set-up of an earlier version, with a poststop hook: it finds the books closed, quietly.
POSTSTOP=1 check "a container with a poststop hook too" run_container runc post-runc '{"io.ctrust.policy": "bb"}'
runc kill post-runc KILL >/dev/null 2>&1 || true
check_eq "post-runc: closed when its last process exited" "$(gone post-runc)" stopped
rc=0
runc delete post-runc >"$WORK/post.out" 2>"$WORK/post.err" || rc=$?
check_eq "post-runc: delete runs the poststop hook, which succeeds" "$rc" 0
check_eq "post-runc: ... and says nothing" "$(cat "$WORK/post.err")" ""
check_eq "post-runc: one container-stopped host record, not two" "$(stopped_records post-runc)" 1
# The attack on "a container ends when its first process exits": without a PID namespace
# the first process can leave a child behind, which runs an unlisted program after the
# first process is gone (runc keeps such processes until `runc delete`). The container is
# still enforced then: it ends when its cgroup has no process left.
mkdir -p "$WORK/out-orphan"
BUNDLE_JQ='.linux.namespaces |= map(select(.type != "pid")) |
  .process.args = ["/bin/sh", "-c", "(sleep 1; /unlisted/true; echo $? >/out/rc; /bin/true; echo $? >/out/rc2) & exit 0"] |
  .mounts += [{"destination": "/out", "type": "bind", "source": "'"$WORK/out-orphan"'", "options": ["rbind", "rw"]}]' \
  check "a container whose first process leaves a child behind" run_container runc orphan-runc '{"io.ctrust.policy": "bb"}'
for _ in $(seq 100); do runc state orphan-runc 2>/dev/null | grep -q '"stopped"' && break; sleep 0.05; done
check_eq "orphan-runc: its first process exited" "$(runc state orphan-runc | jq -r .status)" stopped
check_eq "orphan-runc: still registered while its child lives" "$(info orphan-runc .mode)" enforce
for _ in $(seq 100); do [ -s "$WORK/out-orphan/rc2" ] && break; sleep 0.05; done
check_eq "orphan-runc: the child's unlisted program is denied" "$(cat "$WORK/out-orphan/rc" 2>/dev/null)" 126
check_eq "orphan-runc: ... and a listed one runs" "$(cat "$WORK/out-orphan/rc2" 2>/dev/null)" 0
check_eq "orphan-runc: closed once the child exited too" "$(gone orphan-runc)" stopped
check_eq "orphan-runc: the denial is counted in its final record" \
  "$(jq -r .counts.denials "$STATE/containers/orphan-runc/container.json")" 1
runc delete orphan-runc >/dev/null 2>&1 || true

# --- containers the agent did not start -------------------------------------------------
bundle runc nohook
jq 'del(.hooks)' "$WORK/bundles/nohook/config.json" >"$WORK/nohook.json"
mv "$WORK/nohook.json" "$WORK/bundles/nohook/config.json"
CONTAINERS+=("runc:nohook")
check "a container without the hook starts" sh -c "cd $WORK/bundles/nohook && runc run -d nohook </dev/null >/dev/null 2>&1"
nohook_pid=$(runc state nohook | jq -r .pid)
check_eq "ps reports it as unmanaged" \
  "$("$CTRUST" ps --socket "$SOCK" --json | jq --argjson p "$nohook_pid" '[.unmanaged[] | select(.pid == $p)] | length')" 1

# --- kill -9 of the agent, then a restart --------------------------------------------------
R=runc
ID=gap-runc
check "$R run before the crash" run_container $R $ID '{"io.ctrust.policy": "bb"}'
check "a second one, whose vTPM will die while the agent is down" run_container $R gap2-runc \
  '{"io.ctrust.policy": "bb"}'
expect $R $ID "runs before the crash" ok "/bin/true && /bin/dyntrue"
before=$("$CTRUST" log show --socket "$SOCK" --container $ID --json | jq length)
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=""
expect $R $ID "the container lives on without the agent" ok /bin/true
check_exit "a new container is refused while the agent is down (fail-closed hook)" 1 \
  run_container $R down-runc '{"io.ctrust.policy": "bb"}'
pkill -9 -f "swtpm socket.*$(readlink -f "$STATE/vtpm/containers/gap2-runc")" || true
start_agent
check_eq "the running container is watched again (adopted)" "$(info $ID .mode)" enforce
expect $R $ID "unlisted binary is denied again after the restart" denied /unlisted/true
expect $R $ID "listed binary runs after the restart" ok /bin/true
names_after=$("$CTRUST" log show --json "$STATE/containers/$ID/measurements.bin" | jq -r '.[].name')
check_eq "no acknowledged entry lost, and the gap recorded after them" \
  "$(sed -n "$((before + 1))p" <<<"$names_after")" "ctrust:agent-gap"
check_eq "... as a violation record" \
  "$("$CTRUST" log show --json "$STATE/containers/$ID/measurements.bin" | jq -r ".[$before].violation")" true
check_eq "what was logged before is not logged again" "$(grep -c -x /bin/busybox <<<"$names_after")" 1
replays $ID
check "the host log records the gap" sh -c "'$CTRUST' log show --json '$STATE/host/measurements.bin' | jq -e 'any(.[]; .name == \"ctrust:agent-gap\")' >/dev/null"
gap2_pid=$(runc state gap2-runc | jq -r .pid)
check_eq "a container whose vTPM died meanwhile is not adopted: reported as unmanaged" \
  "$("$CTRUST" ps --socket "$SOCK" --json | jq --argjson p "$gap2_pid" '[.unmanaged[] | select(.pid == $p)] | length')" 1
check_eq "... and its status is orphaned" "$(cat "$STATE/containers/gap2-runc/status")" orphaned
for id in $ID gap2-runc; do
  runc kill $id KILL >/dev/null 2>&1 || true
  check_eq "$id: its books are closed when it stops, after the restart" "$(gone $id)" stopped
  check "$id: runc delete" runc delete $id
  for _ in $(seq 100); do [ -e "$STATE/vtpm/containers/$id" ] || break; sleep 0.05; done
  check "$id: its vTPM is destroyed (after the answer)" test ! -e "$STATE/vtpm/containers/$id"
done
check "new containers are measured again after the restart" run_container $R after-runc '{"io.ctrust.policy": "bb"}'
expect $R after-runc "listed binary runs after the restart" ok /bin/true
expect $R after-runc "unlisted binary is denied after the restart" denied /unlisted/true

# --- 20 containers at once, 10,000 execs ---------------------------------------------------
R=runc
storm=()
for i in $(seq 1 20); do
  run_container $R "storm-$i" '{"io.ctrust.policy": "bb"}' || fail "storm-$i did not start"
  storm+=("storm-$i")
done
pids=()
for id in "${storm[@]}"; do
  timeout 300 runc exec "$id" /bin/sh -c \
    'i=0; while [ $i -lt 500 ]; do /bin/true || exit 1; i=$((i + 1)); done' \
    >/dev/null 2>"$WORK/$id.storm.err" </dev/null &
  pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
check_eq "storm: 20 x 500 execs all ran (no deadlock, no denial)" "$ok" 20
short=0
for id in "${storm[@]}"; do
  log_names "$id" | grep -q -x /bin/busybox || short=$((short + 1))
done
check_eq "storm: every container's log has what it ran" "$short" 0
check "storm: verdicts were cached in the kernel" \
  test "$("$CTRUST" ps --socket "$SOCK" --json | jq .cache.kernel)" -gt 0
replayed=0
for id in "${storm[@]}"; do
  tcti=$(info "$id" .vtpm.tcti)
  pcr_file 10 "$("$CTRUST" tpm pcrread --tcti "$tcti" sha256:10 --json | jq -r '.sha256["10"]')" >"$WORK/s.pcrs"
  "$CTRUST" log verify --pcrs "sha256,$WORK/s.pcrs" "$(info "$id" .log)" >/dev/null 2>&1 && replayed=$((replayed + 1))
done
check_eq "storm: every container's log replays to its vTPM" "$replayed" 20
rss=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT_PID/status")
check "storm: agent memory bounded (${rss} KiB < 256 MiB)" test "$rss" -lt 262144
for id in "${storm[@]}"; do runc kill "$id" KILL >/dev/null 2>&1 || true; done
for id in "${storm[@]}"; do
  for _ in $(seq 100); do runc state "$id" 2>/dev/null | grep -q '"stopped"' && break; sleep 0.05; done
  runc delete "$id" >/dev/null 2>&1 || fail "storm: delete $id"
done

# --- the host log --------------------------------------------------------------------------
HT="swtpm:path=$STATE/host/host-tpm/tpm.sock"
hs1=$("$CTRUST" tpm pcrread --tcti "$HT" sha1:13 --json | jq -r '.sha1["13"]')
hs256=$("$CTRUST" tpm pcrread --tcti "$HT" sha256:13 --json | jq -r '.sha256["13"]')
pcr_file 13 "$hs1" >"$WORK/host.sha1.pcrs"
pcr_file 13 "$hs256" >"$WORK/host.sha256.pcrs"
# The host log through the agent: it is PCR 13's record, not PCR 10's; a PCR file whose PCR 10
# holds the kernel's IMA value is no concern of it, while an emptied host log would be.
sed "s/^PCR-10: .*/PCR-10: $(printf '%064d' 1)/" "$WORK/host.sha256.pcrs" >"$WORK/host+ima.sha256.pcrs"
check "host log via --container host: PCR 10 is not its business" "$CTRUST" log verify \
  --socket "$SOCK" --container host --pcrs "$WORK/host+ima.sha256.pcrs"
: >"$WORK/emptied.log"
check_exit "... but an emptied host log against PCR 13 fails (--log-pcr 13)" 1 "$CTRUST" log verify \
  --log-pcr 13 --pcrs "$WORK/host.sha256.pcrs" "$WORK/emptied.log"
check "host log replays to the host TPM's PCR 13" "$CTRUST" log verify \
  --pcrs "$WORK/host.sha1.pcrs" --pcrs "$WORK/host.sha256.pcrs" "$STATE/host/measurements.bin"
hnames=$("$CTRUST" log show --json "$STATE/host/measurements.bin" | jq -r '.[].name')
check_eq "host log: agent start records" "$(head -2 <<<"$hnames" | tr '\n' ' ')" "ctrustd ctrustd-config "
check "host log: container created" grep -q -x "ctrust:container-created" <<<"$hnames"
check "host log: container stopped" grep -q -x "ctrust:container-stopped" <<<"$hnames"

# --- podman --------------------------------------------------------------------------------
PM=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --storage-driver overlay
    --hooks-dir "$WORK/hooks.d" --cgroup-manager cgroupfs --events-backend none --runtime runc)
mkdir -p "$WORK/hooks.d"
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = []
EOF
export CONTAINERS_CONF=$WORK/containers.conf
# podman runs the small ctrust-hook (the same hook as `ctrust hook`, which runc and crun run).
jq -n --arg c "$CTRUST_HOOK" --arg s "$SOCK" '{
  "version": "1.0.0",
  "hook": {"path": $c, "args": ["ctrust-hook", "createRuntime", "--socket", $s]},
  "when": {"always": true}, "stages": ["createRuntime"]}' >"$WORK/hooks.d/ctrust-create.json"
tar -C "$IMG" -cf "$WORK/image.tar" .
check "podman import" "${PM[@]}" import "$WORK/image.tar" localhost/ctrust-test:1
pm_run() {  # NAME ANNOTATION COMMAND: exit code of `podman run`
  local rc=0
  "${PM[@]}" run --rm --network none --name "$1" --annotation "$2" localhost/ctrust-test:1 \
    /bin/sh -c "$3" >"$WORK/.pm.out" 2>"$WORK/.pm.err" </dev/null || rc=$?
  [ "$rc" -eq 0 ] || head -c 600 "$WORK/.pm.err" >&2
  echo "$rc"
}
check_eq "podman: listed binary runs" "$(pm_run pm1 io.ctrust.policy=bb /bin/true)" 0
rc=$(pm_run pm2 io.ctrust.policy=bb /unlisted/true)
check "podman: unlisted binary is denied (exit $rc)" test "$rc" -ne 0
check "podman: the denial names the file" grep -q "Operation not permitted" "$WORK/.pm.err"
for _ in $(seq 50); do
  [ "$("$CTRUST" ps --socket "$SOCK" --json | jq '[.containers[] | select(.id | length == 64)] | length')" = 0 ] && break
  sleep 0.1
done
check_eq "podman: its containers' books are closed (no container left)" \
  "$("$CTRUST" ps --socket "$SOCK" --json | jq '[.containers[] | select(.id | length == 64)] | length')" 0
check_eq "podman: audit runs it" "$(pm_run pm3 io.ctrust.policy=bb-audit /unlisted/true)" 0

finish
