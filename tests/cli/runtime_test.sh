#!/usr/bin/env bash
# ctrust-runtime (docs/RUNTIMES.md) with the engines that run it, for real:
#   1. runc through ctrust-runtime, from a bundle with no hooks of ctrust's: the container
#      is handed to ctrustd, an unlisted program is denied in enforce, the log replays to
#      the vTPM, `delete` closes its books; a bundle the hooks cannot be added to, or an
#      agent that is down, means no container;
#   2. Docker (Debian's docker.io), started here with a data root, exec root, socket and
#      daemon.json of its own: ctrust-runtime as the default runtime, an image loaded with
#      `docker load` from an archive built here, the same checks, and `docker rm` closing
#      the books;
#   3. containerd (Debian's), started with a configuration and directories of its own,
#      `ctr run --runc-binary ctrust-runtime`: the same checks.
# Nothing under /etc is read or changed: every daemon gets its files from $WORK.
source "$(dirname "$0")/lib.sh"

: "${CTRUSTD:?set CTRUSTD to the ctrustd binary}"
: "${CTRUST_RUNTIME_BIN:?set CTRUST_RUNTIME_BIN to the ctrust-runtime binary}"
CTRUST=$(readlink -f "$CTRUST")
CTRUSTD=$(readlink -f "$CTRUSTD")
CTRUST_HOOK=$(readlink -f "$CTRUST_HOOK")
SHIM=$(readlink -f "$CTRUST_RUNTIME_BIN")
need=(runc swtpm swtpm_setup evmctl jq busybox dockerd containerd ctr)
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
why=""
[ "$(id -u)" -eq 0 ] || why="needs root (fanotify permission events, BPF, container engines)"
((${#missing[@]} == 0)) || why="missing ${missing[*]} (scripts/setup installs them)"
if [ -n "$why" ]; then
  echo "runtime test: $why" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
source "$(dirname "$0")/agent_lib.sh"
# Debian's docker client: /usr/local/bin may hold another one.
DOCKER=/usr/bin/docker
DOCKERD_PID=""
CONTAINERD_PID=""
engines_down() {
  set +e
  if [ -n "$DOCKERD_PID" ]; then
    DOCKER_HOST=unix://$WORK/docker.sock "$DOCKER" rm -f $("$DOCKER" -H "unix://$WORK/docker.sock" ps -aq 2>/dev/null) >/dev/null 2>&1
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -n "$CONTAINERD_PID" ]; then
    ctr -a "$WORK/containerd/containerd.sock" -n ctrust-test tasks kill -s KILL ctr1 >/dev/null 2>&1
    kill "$CONTAINERD_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$CONTAINERD_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  # The shims outlive their daemon by design; these are ours alone.
  pkill -f "containerd-shim.*$WORK" 2>/dev/null
  pkill -f "containerd-shim-runc-v2 -namespace ctrust-test" 2>/dev/null
  pkill -f "containerd-shim-runc-v2 -namespace ctrust-moby" 2>/dev/null
  grep " $WORK/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
  cleanup
}
trap engines_down EXIT

# --- the image, the policy, the agent --------------------------------------------------------
IMG=$WORK/image
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,opt,scratch,vol}
chmod 1777 "$IMG/tmp"
cp "$BB" "$IMG/bin/busybox"
for a in sh true cat ls sleep test; do ln -s busybox "$IMG/bin/$a"; done
echo "root:x:0:0:root:/:/bin/sh" >"$IMG/etc/passwd"
VOLUME=$WORK/volume
mkdir -p "$VOLUME"
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$WORK/key.pub" >/dev/null
"$CTRUST" policy create --from "$IMG" --name rt-enforce --issuer tests --mode enforce \
  --any-image --out "$WORK/rt.json" >/dev/null
jq 'del(.allow[].paths)' "$WORK/rt.json" >"$WORK/p.json" && mv "$WORK/p.json" "$WORK/rt.json"
"$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/rt.json" >/dev/null
# An unlisted program, added after the policy was made.
cp /bin/true "$IMG/opt/unlisted" 2>/dev/null || cp "$BB" "$IMG/opt/unlisted"
printf 'x' >>"$IMG/opt/unlisted"
chmod 755 "$IMG/opt/unlisted"

write_config 'default_policy = "rt-enforce"
default_mode = "enforce"'
start_agent
check "policy load" "$CTRUST" policy load --socket "$SOCK" "$WORK/rt.json"
cat >"$WORK/runtime.toml" <<EOF
runtime = "$(command -v runc)"
hook = "$CTRUST_HOOK"
socket = "$SOCK"
timeout = 30
EOF

# registered ID: whether ctrustd has container ID (0 or 1).
registered() { "$CTRUST" ps --socket "$SOCK" --json | jq -r --arg id "$1" '[.containers[] | select(.id == $id)] | length'; }
# judged COMMAND...: the exit status of COMMAND (126: the container's sh could not run it).
judged() {
  local rc=0
  "$@" </dev/null >"$WORK/.j.out" 2>"$WORK/.j.err" || rc=$?
  echo "$rc"
}

# --- 1. runc through ctrust-runtime -----------------------------------------------------------
BUNDLE_JQ='del(.hooks)'
bundle runc rt1
check_eq "the bundle has no hooks of ours" "$(jq -c '.hooks' "$WORK/bundles/rt1/config.json")" "null"
rc=0
(cd "$WORK/bundles/rt1" && "$SHIM" --ctrust-config "$WORK/runtime.toml" run -d rt1 </dev/null >"$WORK/rt1.out" 2>"$WORK/rt1.err") || rc=$?
check_eq "runc run through ctrust-runtime" "$rc" 0
CONTAINERS+=("runc:rt1")
check_eq "rt1: registered with ctrustd" "$(registered rt1)" 1
check_eq "rt1: its createRuntime hook was added, and no poststop hook" \
  "$(jq -r '[.hooks.createRuntime[0].path, (.hooks.poststop | length)] | join(" ")' "$WORK/bundles/rt1/config.json")" \
  "$CTRUST_HOOK 0"
check_eq "rt1: mode" "$(info rt1 .mode)" enforce
check_eq "rt1: a listed program runs" "$(judged runc exec rt1 /bin/sh -c true)" 0
check_eq "rt1: an unlisted program is denied" "$(judged runc exec rt1 /bin/sh -c /opt/unlisted)" 126
check_eq "rt1: the denial is ctrust's" "$(info rt1 .counts.denials)" 1
replays rt1
check "state passes through" "$SHIM" --ctrust-config "$WORK/runtime.toml" state rt1
check_eq "state is runc's" "$(jq -r .status "$WORK/.out")" running
check "kill passes through" "$SHIM" --ctrust-config "$WORK/runtime.toml" kill rt1 KILL
for _ in $(seq 50); do [ "$(runc state rt1 2>/dev/null | jq -r .status)" = stopped ] && break; sleep 0.1; done
# Before the delete: the agent closes the books when the container's cgroup empties.
for _ in $(seq 50); do [ "$(registered rt1)" = 0 ] && break; sleep 0.1; done
check_eq "rt1: unregistered when its last process exited (before delete)" "$(registered rt1)" 0
check_eq "rt1: its status is stopped" "$(cat "$STATE/containers/rt1/status")" stopped
check "delete passes through" "$SHIM" --ctrust-config "$WORK/runtime.toml" delete rt1
"$SHIM" --ctrust-config "$WORK/runtime.toml" --version >"$WORK/version.out" 2>&1 || true
if grep -q "^ctrust-runtime version" "$WORK/version.out" && grep -q "^runc version" "$WORK/version.out"; then
  pass
else
  fail "--version: $(cat "$WORK/version.out")"
fi

# create, then start, as engines call a runtime: no hook, no change to config.json; the
# created container is handed to ctrustd by ctrust-runtime itself before anything in it runs.
BUNDLE_JQ='del(.hooks)'
bundle runc rt3
before=$(sha256sum <"$WORK/bundles/rt3/config.json")
rc=0
"$SHIM" --ctrust-config "$WORK/runtime.toml" create --bundle "$WORK/bundles/rt3" rt3 </dev/null >/dev/null 2>"$WORK/rt3.err" || rc=$?
check_eq "create through ctrust-runtime" "$rc" 0
CONTAINERS+=("runc:rt3")
check_eq "rt3: registered while created, before start" "$(registered rt3) $(runc state rt3 | jq -r .status)" "1 created"
check_eq "rt3: config.json untouched (no hook)" "$(sha256sum <"$WORK/bundles/rt3/config.json")" "$before"
check_eq "rt3: no pid-file directory of ctrust-runtime's left behind" \
  "$(find /run /tmp -maxdepth 1 -name 'ctrust-runtime.*' 2>/dev/null | wc -l)" 0
check "start passes through" "$SHIM" --ctrust-config "$WORK/runtime.toml" start rt3
check_eq "rt3: a listed program runs" "$(judged runc exec rt3 /bin/sh -c true)" 0
check_eq "rt3: an unlisted program is denied" "$(judged runc exec rt3 /bin/sh -c /opt/unlisted)" 126
replays rt3
runc kill rt3 KILL >/dev/null 2>&1 || true
for _ in $(seq 50); do [ "$(registered rt3)" = 0 ] && break; sleep 0.1; done
check_eq "rt3: unregistered once stopped" "$(registered rt3)" 0
runc delete -f rt3 >/dev/null 2>&1 || true
# A container ctrustd refuses (a mode annotation it does not know) is deleted again.
BUNDLE_JQ='del(.hooks) | .annotations = {"io.ctrust.mode": "lax"}'
bundle runc rt4
rc=0
"$SHIM" --ctrust-config "$WORK/runtime.toml" --log "$WORK/rt4.log" --log-format json create \
  --bundle "$WORK/bundles/rt4" rt4 </dev/null >/dev/null 2>"$WORK/rt4.err" || rc=$?
check_eq "create of a container ctrustd refuses: exit 1" "$rc" 1
check_eq "... and the created container is deleted" "$(runc state rt4 >/dev/null 2>&1 && echo exists || echo none)" none
if grep -q "refused: .*io.ctrust.mode" "$WORK/rt4.err"; then pass; else fail "rt4: $(cat "$WORK/rt4.err")"; fi
check_eq "... and the engine's log says why" "$(jq -r .level "$WORK/rt4.log" 2>/dev/null | head -1 || true)" error

# What cannot be handed to ctrust does not start.
BUNDLE_JQ='del(.hooks)'
bundle runc rt2
cp "$WORK/bundles/rt2/config.json" "$WORK/bundles/rt2/config.json.good"
echo '{"ociVersion": 1}' >"$WORK/bundles/rt2/config.json"
rc=0
(cd "$WORK/bundles/rt2" && "$SHIM" --ctrust-config "$WORK/runtime.toml" --log "$WORK/rt2.log" --log-format json run -d rt2 </dev/null >/dev/null 2>"$WORK/rt2.err") || rc=$?
check_eq "a bundle that is no runtime spec: refused" "$rc" 1
check_eq "... and no container" "$(runc state rt2 >/dev/null 2>&1 && echo exists || echo none)" none
check_eq "... the engine's log says why, as JSON" "$(jq -r .level "$WORK/rt2.log" 2>/dev/null || true)" error
cp "$WORK/bundles/rt2/config.json.good" "$WORK/bundles/rt2/config.json"
sed "s|^hook = .*|hook = \"$WORK/no-such-hook\"|" "$WORK/runtime.toml" >"$WORK/nohook.toml"
rc=0
(cd "$WORK/bundles/rt2" && "$SHIM" --ctrust-config "$WORK/nohook.toml" run -d rt2 </dev/null >/dev/null 2>"$WORK/rt2.err") || rc=$?
check_eq "no hook program: refused" "$rc" 1
if grep -q "no-such-hook" "$WORK/rt2.err"; then pass; else fail "no hook: $(cat "$WORK/rt2.err")"; fi
for bad in "$WORK/no-such-runtime" "$SHIM"; do
  sed "s|^runtime = .*|runtime = \"$bad\"|" "$WORK/runtime.toml" >"$WORK/badrt.toml"
  rc=0
  "$SHIM" --ctrust-config "$WORK/badrt.toml" state rt2 >/dev/null 2>"$WORK/badrt.err" || rc=$?
  check_eq "runtime = $(basename "$bad"): refused" "$rc" 1
  if grep -q "runtime" "$WORK/badrt.err"; then pass; else fail "runtime $bad: $(cat "$WORK/badrt.err")"; fi
done
check_exit "a named configuration that is missing: refused" 1 \
  "$SHIM" --ctrust-config "$WORK/missing.toml" state rt2
sed -e "s|^socket = .*|socket = \"$WORK/nobody.sock\"|" -e 's/^timeout = .*/timeout = 1/' \
  "$WORK/runtime.toml" >"$WORK/down.toml"
rc=0
(cd "$WORK/bundles/rt2" && "$SHIM" --ctrust-config "$WORK/down.toml" run -d rt2 </dev/null >/dev/null 2>"$WORK/rt2.err") || rc=$?
check_eq "the agent down: the start fails" "$([ "$rc" -ne 0 ] && echo refused || echo started)" refused
runc delete -f rt2 >/dev/null 2>&1 || true
check_eq "... and nothing runs" "$(runc state rt2 >/dev/null 2>&1 && echo exists || echo none)" none
rc=0
"$SHIM" --ctrust-config "$WORK/down.toml" create --bundle "$WORK/bundles/rt2" rt2 </dev/null >/dev/null 2>"$WORK/rt2.err" || rc=$?
check_eq "the agent down: create fails" "$rc" 1
check_eq "... and the created container is deleted" "$(runc state rt2 >/dev/null 2>&1 && echo exists || echo none)" none

# --- 2. Docker -----------------------------------------------------------------------------------
mkdir -p "$WORK/docker/data" "$WORK/docker/exec"
cat >"$WORK/docker/daemon.json" <<EOF
{
  "runtimes": {"ctrust": {"path": "$SHIM", "runtimeArgs": ["--ctrust-config", "$WORK/runtime.toml"]}},
  "default-runtime": "ctrust"
}
EOF
dockerd --config-file "$WORK/docker/daemon.json" --data-root "$WORK/docker/data" \
  --exec-root "$WORK/docker/exec" -H "unix://$WORK/docker.sock" --pidfile "$WORK/docker/pid" \
  --iptables=false --ip-masq=false --bridge=none --containerd-namespace ctrust-moby \
  --containerd-plugins-namespace ctrust-moby-plugins --storage-driver overlay2 \
  >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
export DOCKER_HOST=unix://$WORK/docker.sock
for _ in $(seq 150); do "$DOCKER" version >/dev/null 2>&1 && break; sleep 0.2; done
check "dockerd is up" "$DOCKER" version
# An image archive built here (docker save format), loaded with docker load: no registry.
tar -C "$IMG" -cf "$WORK/rootfs.tar" .
check "docker import" "$DOCKER" import "$WORK/rootfs.tar" ctrust-test/busybox:1
check "docker save" "$DOCKER" save -o "$WORK/busybox-image.tar" ctrust-test/busybox:1
check "docker rmi" "$DOCKER" rmi ctrust-test/busybox:1
check "docker load" "$DOCKER" load -i "$WORK/busybox-image.tar"
check "docker run (default runtime ctrust)" "$DOCKER" run -d --name d1 --network none ctrust-test/busybox:1 /bin/sleep 600
D1=$("$DOCKER" inspect -f '{{.Id}}' d1 2>/dev/null || true)
check_eq "d1: the runtime is ctrust" "$("$DOCKER" inspect -f '{{.HostConfig.Runtime}}' d1 2>/dev/null || true)" ctrust
check_eq "d1: registered with ctrustd" "$(registered "$D1")" 1
check_eq "d1: a listed program runs" "$(judged "$DOCKER" exec d1 /bin/sh -c true)" 0
check_eq "d1: an unlisted program is denied" "$(judged "$DOCKER" exec d1 /bin/sh -c /opt/unlisted)" 126
check_eq "d1: the denial is ctrust's" "$(info "$D1" .counts.denials)" 1
replays "$D1"
check "docker rm -f" "$DOCKER" rm -f d1
for _ in $(seq 50); do [ "$(registered "$D1")" = 0 ] && break; sleep 0.1; done
check_eq "d1: unregistered once stopped" "$(registered "$D1")" 0
check "docker run --rm, in enforce" "$DOCKER" run --rm --network none ctrust-test/busybox:1 /bin/true
rc=0
"$DOCKER" run --rm --network none ctrust-test/busybox:1 /opt/unlisted >/dev/null 2>"$WORK/d2.err" || rc=$?
if [ "$rc" -ne 0 ] && grep -q "operation not permitted" "$WORK/d2.err"; then pass; else
  fail "docker run of an unlisted program: exit $rc: $(cat "$WORK/d2.err")"
fi
unset DOCKER_HOST

# --- 3. containerd -------------------------------------------------------------------------------
CD=$WORK/containerd
mkdir -p "$CD/root" "$CD/state"
cat >"$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CD/containerd.sock"
[ttrpc]
  address = "$CD/containerd.sock.ttrpc"
[debug]
  address = "$CD/debug.sock"
EOF
# The shim, and so ctrust-runtime, get containerd's environment: the configuration by file.
CTRUST_RUNTIME_CONFIG=$WORK/runtime.toml containerd --config "$CD/config.toml" >"$WORK/containerd.log" 2>&1 &
CONTAINERD_PID=$!
CTR=(ctr -a "$CD/containerd.sock" -n ctrust-test)
for _ in $(seq 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
check "containerd is up" "${CTR[@]}" version
check "ctr images import" "${CTR[@]}" images import "$WORK/busybox-image.tar"
IMAGE=$("${CTR[@]}" images ls -q | grep busybox | head -1 || true)
check "ctr run --runc-binary ctrust-runtime" "${CTR[@]}" run -d --runc-binary "$SHIM" "$IMAGE" ctr1 /bin/sleep 600
check_eq "ctr1: registered with ctrustd" "$(registered ctr1)" 1
check_eq "ctr1: a listed program runs" "$(judged "${CTR[@]}" tasks exec --exec-id e1 ctr1 /bin/true)" 0
check_eq "ctr1: an unlisted program is denied" "$(judged "${CTR[@]}" tasks exec --exec-id e2 ctr1 /bin/sh -c /opt/unlisted)" 126
check_eq "ctr1: the denial is ctrust's" "$(info ctr1 .counts.denials)" 1
replays ctr1
"${CTR[@]}" tasks kill -s KILL ctr1 >/dev/null 2>&1 || true
for _ in $(seq 50); do
  "${CTR[@]}" tasks delete ctr1 >/dev/null 2>&1 && break
  sleep 0.1
done
for _ in $(seq 50); do [ "$(registered ctr1)" = 0 ] && break; sleep 0.1; done
check_eq "ctr1: unregistered once stopped" "$(registered ctr1)" 0
"${CTR[@]}" containers delete ctr1 >/dev/null 2>&1 || true

finish
