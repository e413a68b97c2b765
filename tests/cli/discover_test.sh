#!/usr/bin/env bash
# Discovery (docs/AGENT.md, "Containers found without a hook"), privileged, with real runc
# containers whose config.json has no ctrust hook at all: their cgroups are made below a
# cgroup ctrustd is told to watch (containers.discover), and the exec gate holds each new
# cgroup's first exec until the agent has registered the container from runc's own state.
# Written as the attacks first; checked:
#   - a container started with plain `runc run` is registered before its first instruction
#     (enforce from its annotation), its first program is in its log, a listed program runs
#     and an unlisted one is denied, and the log replays to its vTPM;
#   - an unlisted first program never runs in enforce (killed before its first instruction:
#     the file it would write is not there), and is measured before it runs in measure;
#   - a script as the first program is judged, not only its interpreter;
#   - a container whose registration is refused (a policy that is not loaded) never runs;
#   - a process below the watched cgroup that no runtime accounts for is refused (also when a
#     stale state file names its pid, reused), and one
#     in the host's mount namespace (the runtime's own) is not held at all;
#   - with containers.discover_unknown = "admit" that process runs, reported as unmanaged.
source "$(dirname "$0")/lib.sh"

: "${CTRUSTD:?set CTRUSTD to the ctrustd binary}"
CTRUST=$(readlink -f "$CTRUST")
CTRUSTD=$(readlink -f "$CTRUSTD")
need=(runc swtpm swtpm_setup evmctl jq busybox unshare)
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
why=""
[ "$(id -u)" -eq 0 ] || why="needs root (BPF, fanotify, containers)"
((${#missing[@]} == 0)) || why="missing ${missing[*]} (scripts/setup installs them)"
if [ -n "$why" ]; then
  echo "discover test: $why" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

source "$(dirname "$0")/agent_lib.sh"

# runc with a state directory of the test's own: what discovery reads.
RUNC_ROOT=$WORK/runc-root
mkdir -p "$RUNC_ROOT"
rc() { runc --root "$RUNC_ROOT" "$@"; }
# The watched cgroup, made for this run in the cgroup v2 hierarchy, removed at the end.
CG2=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
[ -n "$CG2" ] || { echo "discover test: no cgroup v2 hierarchy mounted" >&2; exit 1; }
WATCHED=/ctrust-discover-$$
mkdir "$CG2$WATCHED"
remove_watched() {
  for d in "$CG2$WATCHED"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  rmdir "$CG2$WATCHED" 2>/dev/null
}
trap 'cleanup; remove_watched' EXIT

IMG=$WORK/image
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,unlisted,scratch,vol}
chmod 1777 "$IMG/tmp"
cp "$BB" "$IMG/bin/busybox"
for a in sh true false echo cat sleep touch; do ln -s busybox "$IMG/bin/$a"; done
printf '#!/bin/sh\ntouch /tmp/listed-script-ran\nexec sleep 600\n' >"$IMG/bin/listed.sh"
chmod 755 "$IMG/bin/listed.sh"
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$WORK/key.pub" >/dev/null
make_policy() {  # NAME MODE
  "$CTRUST" policy create --from "$IMG" --name "$1" --issuer tests --mode "$2" --any-image \
    --out "$WORK/$1.json" >/dev/null
  jq 'del(.allow[].paths)' "$WORK/$1.json" >"$WORK/$1.json.new"
  mv "$WORK/$1.json.new" "$WORK/$1.json"
  "$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/$1.json" >/dev/null
}
make_policy bb enforce
make_policy bb-measure measure
# Added after the policies: not listed. The program leaves a file behind if it runs at all.
cp "$BB" "$IMG/unlisted/busybox"
echo "not in the policy" >>"$IMG/unlisted/busybox"
chmod 755 "$IMG/unlisted/busybox"
printf '#!/bin/sh\ntouch /tmp/unlisted-script-ran\n' >"$IMG/unlisted/script.sh"
chmod 755 "$IMG/unlisted/script.sh"
VOLUME=$WORK/volume
mkdir -p "$VOLUME"

write_config "discover = [\"$WATCHED\"]
runtime_roots = [\"$RUNC_ROOT\"]"
start_agent
for p in bb bb-measure; do check "policy load $p" "$CTRUST" policy load --socket "$SOCK" "$WORK/$p.json"; done

# A bundle without any hook, its cgroup below the watched one. ARGS is a JSON array.
plain_bundle() {  # ID POLICY ARGS
  BUNDLE_JQ="del(.hooks) | .linux.cgroupsPath = \"$WATCHED/$1\" | .process.args = $3" \
    bundle runc "$1" "{\"io.ctrust.policy\": \"$2\"}"
  CONTAINERS+=("rc:$1")
}
upper() { echo "$WORK/bundles/$1/upper"; }  # what the container wrote
host_log_names() {  # ID: the names in its log, also after it stopped
  "$CTRUST" log show --json "$STATE/containers/$1/measurements.bin" | jq -r '.[].name' || true
}

# --- registered before its first instruction, no hook ------------------------------------
plain_bundle d1 bb '["/bin/sleep", "600"]'
check "d1: config.json has no hook" test "$(jq '.hooks // {} | length' "$WORK/bundles/d1/config.json")" = 0
check "d1: runc run -d of a hookless bundle" sh -c "cd '$WORK/bundles/d1' && runc --root '$RUNC_ROOT' run -d d1 </dev/null >'$WORK/d1.out' 2>&1"
check_eq "d1: registered by discovery, in enforce" "$(settle d1 .mode enforce)" enforce
check_eq "d1: its cgroup is the one runc made" "$(info d1 .gate.cgroup)" "$CG2$WATCHED/d1"
check "d1: its first program is in its log before anything else ran" \
  sh -c "'$CTRUST' log show --socket '$SOCK' --container d1 --json | jq -e '[.[].name] | index(\"/bin/busybox\")' >/dev/null"
check_eq "d1: the process runs (not left stopped)" \
  "$(awk '{print $3}' "/proc/$(info d1 .pid)/stat")" S
expect rc d1 "a listed program" ok /bin/true
expect rc d1 "an unlisted program" denied /unlisted/busybox true
replays d1

# --- an unlisted first program ----------------------------------------------------------
plain_bundle d2 bb '["/unlisted/busybox", "touch", "/tmp/d2-ran"]'
code=0
(cd "$WORK/bundles/d2" && rc run d2 </dev/null >"$WORK/d2.out" 2>&1) || code=$?
check_eq "d2 (enforce): an unlisted first program is killed before it runs" "$code" 137
check "d2: ... so it wrote nothing" test ! -e "$(upper d2)/tmp/d2-ran"
check_eq "d2: not measured as run" "$(host_log_names d2 | grep -cx /unlisted/busybox || true)" 0
check "d2: the agent says so" grep -q "d2: pid .*/unlisted/busybox held by discovery until registered: killed" "$WORK/ctrustd.log"

plain_bundle d3 bb-measure '["/unlisted/busybox", "touch", "/tmp/d3-ran"]'
code=0
(cd "$WORK/bundles/d3" && rc run d3 </dev/null >"$WORK/d3.out" 2>&1) || code=$?
check_eq "d3 (measure): the unlisted first program runs" "$code" 0
check "d3: ... and did its work" test -e "$(upper d3)/tmp/d3-ran"
check_eq "d3: ... measured before it ran (first after the agent's own entries)" \
  "$(host_log_names d3 | grep -v '^boot_aggregate$\|^ctrust:' | head -1)" /unlisted/busybox

# --- a script as the first program ------------------------------------------------------
plain_bundle d4 bb '["/unlisted/script.sh"]'
code=0
(cd "$WORK/bundles/d4" && rc run d4 </dev/null >"$WORK/d4.out" 2>&1) || code=$?
check_eq "d4: an unlisted script run by a listed interpreter is killed" "$code" 137
check "d4: ... before it ran" test ! -e "$(upper d4)/tmp/unlisted-script-ran"
plain_bundle d5 bb '["/bin/listed.sh"]'
check "d5: a listed script runs" sh -c "cd '$WORK/bundles/d5' && runc --root '$RUNC_ROOT' run -d d5 </dev/null >'$WORK/d5.out' 2>&1"
check_eq "d5: registered" "$(settle d5 .mode enforce)" enforce
for _ in $(seq 50); do [ -e "$(upper d5)/tmp/listed-script-ran" ] && break; sleep 0.1; done
check "d5: ... and ran" test -e "$(upper d5)/tmp/listed-script-ran"
check "d5: the script is in the log" sh -c "'$CTRUST' log show --socket '$SOCK' --container d5 --json | jq -e '[.[].name] | index(\"/bin/listed.sh\")' >/dev/null"

# --- a container the agent refuses -------------------------------------------------------
plain_bundle d6 no-such-policy '["/bin/touch", "/tmp/d6-ran"]'
code=0
(cd "$WORK/bundles/d6" && rc run d6 </dev/null >"$WORK/d6.out" 2>&1) || code=$?
check_eq "d6: a container whose registration is refused (unknown policy) is killed" "$code" 137
check "d6: ... before it ran" test ! -e "$(upper d6)/tmp/d6-ran"
check "d6: ... and the agent says why" grep -q "registering container d6: .*no-such-policy" "$WORK/ctrustd.log"

# --- what is not a runtime's container ----------------------------------------------------
# A process that moves itself below the watched cgroup and execs in a mount namespace of its
# own: no runtime state names it.
stray() {  # NAME: exit code of the stray process
  mkdir -p "$CG2$WATCHED/$1"
  local code=0
  unshare -m --propagation private sh -c "echo \$\$ >'$CG2$WATCHED/$1/cgroup.procs' && exec '$BB' touch '$WORK/$1-ran'" \
    || code=$?
  echo "$code"
}
check_eq "a stray process below the watched cgroup is refused (killed)" "$(stray stray1)" 137
check "... before it ran" test ! -e "$WORK/stray1-ran"
check "... and the agent says why" grep -q "discovery: pid .*no container of the runtimes" "$WORK/ctrustd.log"
check_eq "ctrust ps counts what discovery did" \
  "$("$CTRUST" ps --socket "$SOCK" --json | jq -c '.discovery | [.registered, .refused, .admitted, .unknown]')" \
  '[5,2,0,"refuse"]'
# A stale state file (a container long gone, its pid reused by the stray process, a bundle
# that still exists): the start time it recorded is not the process's, so it names nobody.
mkdir -p "$CG2$WATCHED/ghost" "$RUNC_ROOT/ghost"
code=0
unshare -m --propagation private sh -c "
  printf '{\"init_process_pid\": %d, \"init_process_start\": 1, \"config\": {\"labels\": [\"bundle=%s\"]}}' \$\$ '$WORK/bundles/d1' >'$RUNC_ROOT/ghost/state.json'
  echo \$\$ >'$CG2$WATCHED/ghost/cgroup.procs' && exec '$BB' touch '$WORK/ghost-ran'" || code=$?
rm -rf "$RUNC_ROOT/ghost"
check_eq "a stray process a stale state file names by its reused pid is refused" "$code" 137
check "... never taken for that container" sh -c "! grep -q 'container ghost\|ghost: registered' '$WORK/ctrustd.log'"
# In the host's mount namespace (the runtime's own execs): not held.
mkdir -p "$CG2$WATCHED/host-ns"
code=0
sh -c "echo \$\$ >'$CG2$WATCHED/host-ns/cgroup.procs' && exec '$BB' touch '$WORK/host-ns-ran'" || code=$?
check_eq "an exec in the host's mount namespace below the watched cgroup is not held" "$code" 0

# --- discover_unknown = "admit" -----------------------------------------------------------
for c in d1 d5; do rc kill "$c" KILL >/dev/null 2>&1; rc delete -f "$c" >/dev/null 2>&1; done
kill "$AGENT_PID" && wait "$AGENT_PID" 2>/dev/null
AGENT_PID=""
write_config "discover = [\"$WATCHED\"]
runtime_roots = [\"$RUNC_ROOT\"]
discover_unknown = \"admit\""
start_agent
check_eq "admit: a stray process runs" "$(stray stray2)" 0
check "... reported as unmanaged" grep -q "discovery: pid .*admitted unmeasured" "$WORK/ctrustd.log"
check_eq "... and counted" "$("$CTRUST" ps --socket "$SOCK" --json | jq '.discovery.admitted')" 1

finish
