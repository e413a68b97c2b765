#!/usr/bin/env bash
# deploy/kubernetes without a cluster (docs/runtimes/kubernetes.md):
#   1. every manifest, and the Secrets that deploy/kubernetes/make-secrets writes, validate
#      offline against the Kubernetes API schema (types, required fields, enums, and no field
#      the API does not know); a misspelt field and a wrong type are caught;
#   2. scripts/images builds the ctrustd and ctrust-verifier images from this build's
#      binaries (no base image, no registry); they load into podman;
#   3. `podman kube play` runs the DaemonSet's pod (its init container installs ctrust-runtime
#      and ctrust-hook in the node's /opt/ctrust, here a private directory) and the verifier
#      Deployment's pod, from the manifests themselves (tests/kubernetes/podify.py says what
#      a cluster would supply and this machine cannot: node paths, an embedded TPM, test
#      ports, a PostgreSQL server of the test's own, Secrets as files);
#   4. a runc container created through the ctrust-runtime that the init container
#      installed, as containerd's shim calls it on a node: registered with the played agent,
#      a listed program runs, an unlisted one is denied (enforce), and the verifier in the
#      played pod attests the agent (host affirming, reference values from the image) and the
#      container (affirming), then, after a measure-mode container ran an unlisted program,
#      that container contraindicated.
# Nothing under /etc or /opt is changed: podman, the node directories and PostgreSQL live in
# $WORK, and the installed files are used through a private mount namespace.
source "$(dirname "$0")/lib.sh"

: "${CTRUSTD:?set CTRUSTD to the ctrustd binary}"
CTRUST=$(readlink -f "$CTRUST")
CTRUSTD=$(readlink -f "$CTRUSTD")
ROOT=$(cd "$CTRUST_TESTS/.." && pwd)
BUILD=$(cd "$(dirname "$CTRUSTD")/../../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
need=(podman catatonit runc umoci skopeo patchelf node jq busybox swtpm swtpm_setup unshare curl)
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
[ -x "$PGBIN/initdb" ] || missing+=(postgresql)
[ -d "$ROOT/tests/kubernetes/node_modules/kubernetes-models" ] || missing+=("tests/kubernetes/node_modules")
/usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
why=""
[ "$(id -u)" -eq 0 ] || why="needs root (privileged pods, mounts, PostgreSQL as postgres)"
((${#missing[@]} == 0)) || why="missing ${missing[*]} (scripts/setup installs them)"
if [ -n "$why" ]; then
  echo "kubernetes test: $why" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi

export TSS2_LOG=all+none
N=$WORK/node  # the node's directories: what hostPath volumes name
PGDIR=$(mktemp -d /tmp/ctrust-pg.XXXXXX)  # outside $WORK, which the postgres user cannot enter
PGPORT=$(free_port)
APORT=$(free_port)
VPORT=$(free_port)
MOUNTS=()
CONTAINERS=()
export CONTAINERS_CONF=$WORK/containers.conf
PM=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --storage-driver overlay
    --cgroup-manager cgroupfs --events-backend none --runtime runc)
cleanup() {
  set +e
  for c in "${CONTAINERS[@]}"; do
    runc kill "$c" KILL >/dev/null 2>&1
    runc delete -f "$c" >/dev/null 2>&1
  done
  "${PM[@]}" pod rm -f -a -t 5 >/dev/null 2>&1
  "${PM[@]}" rm -f -a >/dev/null 2>&1
  pkill -f "swtpm socket.*$N" 2>/dev/null
  bash "$CTRUST_TESTS/store/pg_server.sh" stop "$PGDIR" >/dev/null 2>&1
  rm -rf "$PGDIR"
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null; done
  grep " $WORK/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$N" "$WORK/podman"
printf '[containers]\ndefault_ulimits = []\n' >"$CONTAINERS_CONF"

# --- 1. the manifests validate offline ---------------------------------------------------------
VALIDATE=(node "$ROOT/tests/kubernetes/validate.mjs")
check "make-secrets writes the Secrets" "$ROOT/deploy/kubernetes/make-secrets" --out "$WORK/secrets.yaml" \
  --ca-key-out "$WORK/ca.key" --ctrust "$CTRUST" --san verifier.example
check_eq "... private (0600), the CA key apart" "$(stat -c %a "$WORK/secrets.yaml") $(stat -c %a "$WORK/ca.key")" "600 600"
check "... without the CA's private key" sh -c "! grep -q 'ca.key' '$WORK/secrets.yaml'"
check_exit "... and never over an existing file" 1 "$ROOT/deploy/kubernetes/make-secrets" \
  --out "$WORK/secrets.yaml" --ca-key-out "$WORK/ca2.key" --ctrust "$CTRUST"
MANIFESTS=("$ROOT"/deploy/kubernetes/*.yaml)
check "the manifests and Secrets validate against the Kubernetes API schema" \
  "${VALIDATE[@]}" "${MANIFESTS[@]}" "$WORK/secrets.yaml"
check_eq "... every object" "$(grep -o '[0-9]* object' "$WORK/.out")" "13 object"
sed 's/hostPID: true/hostPid: true/' "$ROOT/deploy/kubernetes/agent.yaml" >"$WORK/typo.yaml"
check_exit "a misspelt field is caught" 1 "${VALIDATE[@]}" "$WORK/typo.yaml"
cp "$WORK/.err" "$WORK/typo.err"
check "... by name" grep -q 'unknown field "hostPid"' "$WORK/typo.err"
sed 's/replicas: 2/replicas: two/' "$ROOT/deploy/kubernetes/verifier.yaml" >"$WORK/type.yaml"
check_exit "a wrong type is caught" 1 "${VALIDATE[@]}" "$WORK/type.yaml"
cp "$WORK/.err" "$WORK/type.err"
check "... naming the path" grep -q '/spec/replicas: must be integer' "$WORK/type.err"
sed 's/mountPropagation: HostToContainer/mountPropagation: Both/' "$ROOT/deploy/kubernetes/agent.yaml" >"$WORK/enum.yaml"
check_exit "a value outside an enum is caught" 1 "${VALIDATE[@]}" "$WORK/enum.yaml"
sed 's/^kind: RuntimeClass/kind: RuntimeKlass/' "$ROOT/deploy/kubernetes/runtimeclass.yaml" >"$WORK/kind.yaml"
check_exit "an unknown kind is caught" 1 "${VALIDATE[@]}" "$WORK/kind.yaml"
printf 'a: 1\na: 2\n' >"$WORK/dup.yaml"
check_exit "duplicate keys are caught" 1 "${VALIDATE[@]}" "$WORK/dup.yaml"

# --- 2. the images -----------------------------------------------------------------------------
check "scripts/images builds both images" "$ROOT/scripts/images" --build-dir "$BUILD" --out "$WORK/images"
for i in ctrustd ctrust-verifier; do
  check "podman loads $i" "${PM[@]}" load -q -i "$WORK/images/$i.tar"
done
check_eq "the images have one layer each, and no base" \
  "$("${PM[@]}" image inspect localhost/ctrust/ctrustd:0.1.0 localhost/ctrust/ctrust-verifier:0.1.0 |
    jq -r '[.[].RootFS.Layers | length] | join(" ")')" "1 1"
check_eq "the verifier's image runs as a user, the agent's as root" \
  "$("${PM[@]}" image inspect localhost/ctrust/ctrust-verifier:0.1.0 localhost/ctrust/ctrustd:0.1.0 |
    jq -r '[.[].Config.User] | join(" ")')" "65532:65532 0:0"
check "ctrust-verifier runs in its image" "${PM[@]}" run --rm --network none \
  localhost/ctrust/ctrust-verifier:0.1.0 --version
check "ctrustd runs in its image" "${PM[@]}" run --rm --network none localhost/ctrust/ctrustd:0.1.0 --version

# --- 3. the pods -------------------------------------------------------------------------------
# The test's image for the containers on the "node", and the policy the agent gets from the
# ctrust-policies ConfigMap.
IMG=$WORK/image
mkdir -p "$IMG"/{bin,proc,sys,dev,tmp,etc,opt}
chmod 1777 "$IMG/tmp"
cp "$(command -v busybox)" "$IMG/bin/busybox"
for a in sh true cat ls sleep; do ln -s busybox "$IMG/bin/$a"; done
echo "root:x:0:0:root:/:/bin/sh" >"$IMG/etc/passwd"
"$CTRUST" key generate --type ecdsa-p256 --out "$WORK/key.pem" --public-out "$WORK/key.pub" >/dev/null
for mode in enforce measure; do
  "$CTRUST" policy create --from "$IMG" --name "k8s-$mode" --issuer tests --mode "$mode" \
    --any-image --out "$WORK/k8s-$mode.json" >/dev/null
  jq 'del(.allow[].paths)' "$WORK/k8s-$mode.json" >"$WORK/p.json" && mv "$WORK/p.json" "$WORK/k8s-$mode.json"
  "$CTRUST" policy sign --key "$WORK/key.pem" "$WORK/k8s-$mode.json" >/dev/null
done
# Added after the policies, changed: not listed. busybox runs the applet its name says.
cp "$(command -v busybox)" "$IMG/opt/true"
printf "x" >>"$IMG/opt/true"

# The ConfigMaps' own configuration files, with the trial settings a test needs.
yaml_value() {  # FILE CONFIGMAP KEY
  /usr/bin/python3 -c 'import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == sys.argv[2]:
        sys.stdout.write(d["data"][sys.argv[3]])' "$@"
}
yaml_value "$ROOT/deploy/kubernetes/agent.yaml" ctrustd-config ctrustd.toml |
  sed -e 's|^tcti = .*|tcti = "embedded"|' -e "s|^listen = .*|listen = \"127.0.0.1:$APORT\"|" \
    -e 's|^trust = \[\]|trust = ["/etc/ctrust/policies/signer.pem"]|' \
    -e 's|^agent_id = .*|agent_id = "node-1"|' >"$WORK/ctrustd.toml"
check_eq "the agent's trial settings took" "$(grep -c -E '^(tcti = "embedded"|listen = "127.0.0.1|trust = \["/etc|agent_id = "node-1")' "$WORK/ctrustd.toml")" 4
STORE=$(bash "$CTRUST_TESTS/store/pg_server.sh" start "$PGDIR" "$PGPORT") || exit 1
yaml_value "$ROOT/deploy/kubernetes/verifier.yaml" ctrust-verifier-config verifier.toml |
  sed -e "s|^store = .*|store = \"$STORE\"|" -e "s|^listen = .*|listen = \"127.0.0.1:$VPORT\"|" \
    -e 's|^interval = .*|interval = 1|' \
    -e 's|^policy_trust = .*|policy_trust = ["/etc/ctrust/config/signer.pem"]|' \
    -e "s|^agent_binaries = .*|agent_binaries = [\"$(cat "$WORK/images/ctrustd.sha256" 2>/dev/null)\"]|" \
    -e "s|^agent_configs = .*|agent_configs = [\"sha256:$(sha256sum "$WORK/ctrustd.toml" | cut -d' ' -f1)\"]|" \
    >"$WORK/verifier.toml"
check_eq "the verifier's trial settings took" "$(grep -c -E '^(store = "postgresql|listen = "127.0.0.1|interval = 1$|policy_trust = \["/etc|agent_binaries = \["sha256:|agent_configs = \["sha256:)' "$WORK/verifier.toml")" 6

mkdir -p "$WORK/bundles"
PODIFY=(/usr/bin/python3 "$ROOT/tests/kubernetes/podify.py" --secrets-dir "$WORK/secret-files")
check "the agent's pod from the DaemonSet" "${PODIFY[@]}" --workload DaemonSet/ctrustd \
  --hostpath "/var/lib/ctrust=$N/var/lib/ctrust" --hostpath "/run/ctrust=$N/run/ctrust" \
  --hostpath "/opt/ctrust=$N/opt/ctrust" --hostpath "/run/containerd=$N/run/containerd" \
  --hostpath "/var/lib/containerd=$N/var/lib/containerd" --add-hostpath "$WORK/bundles" \
  --config "ctrustd-config/ctrustd.toml=$WORK/ctrustd.toml" \
  --config "ctrust-policies/k8s-enforce.json=$WORK/k8s-enforce.json" \
  --config "ctrust-policies/k8s-measure.json=$WORK/k8s-measure.json" \
  --config "ctrust-policies/signer.pem=$WORK/key.pub" \
  "${MANIFESTS[@]}" "$WORK/secrets.yaml"
cp "$WORK/.out" "$WORK/agent-pod.yaml"
check "the verifier's pod from the Deployment" "${PODIFY[@]}" --workload Deployment/ctrust-verifier \
  --config "ctrust-verifier-config/verifier.toml=$WORK/verifier.toml" \
  --config "ctrust-verifier-config/signer.pem=$WORK/key.pub" \
  "${MANIFESTS[@]}" "$WORK/secrets.yaml"
cp "$WORK/.out" "$WORK/verifier-pod.yaml"
check_eq "the played pod spec is the DaemonSet's (privileged, host PID and network)" \
  "$(/usr/bin/python3 -c 'import sys, yaml
p = list(yaml.safe_load_all(open(sys.argv[1])))[-1]["spec"]
print(p["hostPID"], p["hostNetwork"], p["containers"][0]["securityContext"]["privileged"], p["initContainers"][0]["name"])' "$WORK/agent-pod.yaml")" \
  "True True True install-node"

SOCK=$N/run/ctrust/ctrustd.sock
# Debian 12's podman (4.3) ignores hostPID (it reads it from 4.5 on): the agent's pod is
# played with a containers.conf whose default PID namespace is the host's, which is what
# hostPID asks for; checked below from inside the pod.
printf '[containers]\ndefault_ulimits = []\npidns = "host"\n' >"$WORK/containers-hostpid.conf"
check "podman kube play: the agent's pod" env CONTAINERS_CONF="$WORK/containers-hostpid.conf" \
  "${PM[@]}" kube play --network host "$WORK/agent-pod.yaml"
agent_up() { "$CTRUST" ps --socket "$SOCK" >/dev/null 2>&1; }
for _ in $(seq 300); do agent_up && break; sleep 0.1; done
if agent_up; then pass; else
  fail "the played agent did not start: $("${PM[@]}" logs ctrustd-ctrustd 2>&1 | tail -20)"
fi
check_eq "the agent's pod is in the host's PID namespace" \
  "$("${PM[@]}" exec ctrustd-ctrustd /usr/libexec/ctrust/busybox readlink /proc/1/ns/pid 2>&1)" \
  "$(readlink /proc/1/ns/pid)"
NODE_ID=$(ls "$N/opt/ctrust" | grep -v '^bin$' || true)
check_eq "the init container installed the node files" \
  "$(readlink "$N/opt/ctrust/bin/ctrust-runtime") $(readlink "$N/opt/ctrust/bin/ctrust-hook")" \
  "../$NODE_ID/bin/ctrust-runtime ../$NODE_ID/bin/ctrust-hook"
"${PM[@]}" logs ctrustd-ctrustd >"$WORK/agent-pod.log" 2>&1 || true
check_eq "the agent loaded both signed policies from the ConfigMap" \
  "$(grep -o 'policy k8s-[a-z]* loaded from /etc/ctrust/policies/[a-z0-9-]*.json' "$WORK/agent-pod.log" | sort | tr '\n' ' ')" \
  "policy k8s-enforce loaded from /etc/ctrust/policies/k8s-enforce.json policy k8s-measure loaded from /etc/ctrust/policies/k8s-measure.json "
check "podman kube play: the verifier's pod" "${PM[@]}" kube play --network host "$WORK/verifier-pod.yaml"
mkdir -p "$WORK/admin/tls"
cp "$WORK/secret-files/ctrust-verifier-tls/"* "$WORK/admin/tls/"
VURL=https://127.0.0.1:$VPORT
for _ in $(seq 300); do verifier_up "$WORK/admin" "$VURL" >/dev/null && break; sleep 0.1; done
if verifier_up "$WORK/admin" "$VURL" >/dev/null; then pass; else
  fail "the played verifier did not start: $("${PM[@]}" logs ctrust-verifier-ctrust-verifier 2>&1 | tail -20)"
fi
# make-secrets named the Service in the server certificate: a client that reaches the
# verifier by that name (as the agents' operators and relying parties in the cluster do)
# checks it.
check "the verifier answers as ctrust-verifier.ctrust-system.svc (certificate name checked)" \
  curl -sf --resolve "ctrust-verifier.ctrust-system.svc:$VPORT:127.0.0.1" \
  --cacert "$WORK/admin/tls/ca.pem" --cert "$WORK/admin/tls/client.pem" --key "$WORK/admin/tls/client.key" \
  "https://ctrust-verifier.ctrust-system.svc:$VPORT/v1/health"
check "... and as the extra --san name" \
  curl -sf --resolve "verifier.example:$VPORT:127.0.0.1" \
  --cacert "$WORK/admin/tls/ca.pem" --cert "$WORK/admin/tls/client.pem" --key "$WORK/admin/tls/client.key" \
  "https://verifier.example:$VPORT/v1/health"
check_exit "... but not as a name it does not have" 60 \
  curl -sf --resolve "other.example:$VPORT:127.0.0.1" \
  --cacert "$WORK/admin/tls/ca.pem" --cert "$WORK/admin/tls/client.pem" --key "$WORK/admin/tls/client.key" \
  "https://other.example:$VPORT/v1/health"
check_eq "the verifier runs as uid 65532 in its pod" \
  "$("${PM[@]}" top ctrust-verifier-ctrust-verifier huser 2>/dev/null | tail -1)" 65532

# --- 4. a container through the installed ctrust-runtime, attested -----------------------------
# The node's /opt/ctrust is $N/opt/ctrust: the installed files (their loader is
# /opt/ctrust/ID/lib/...) run in a mount namespace where it is there.
cat >"$WORK/runtime.toml" <<EOF
runtime = "$(command -v runc)"
socket = "$SOCK"
timeout = 60
EOF
node_runtime() {
  unshare -m --propagation private /bin/sh -c \
    'mount -t tmpfs ctrust-test-opt /opt && mkdir /opt/ctrust && mount --bind "$1" /opt/ctrust &&
     shift && exec /opt/ctrust/bin/ctrust-runtime "$@"' node_runtime "$N/opt/ctrust" \
    --ctrust-config "$WORK/runtime.toml" "$@"
}
bundle() {  # ID POLICY
  local b=$WORK/bundles/$1
  mkdir -p "$b/rootfs" "$b/upper" "$b/work"
  mount -t overlay overlay -o "lowerdir=$IMG,upperdir=$b/upper,workdir=$b/work" "$b/rootfs"
  MOUNTS+=("$b/rootfs")
  (cd "$b" && runc spec)
  jq --arg p "$2" '.process.terminal = false | .process.args = ["/bin/sleep", "600"] |
    .root = {"path": "rootfs", "readonly": false} | .annotations = {"io.ctrust.policy": $p} |
    .linux.namespaces |= map(select(.type != "network"))' "$b/config.json" >"$b/config.new"
  mv "$b/config.new" "$b/config.json"
}
judged() {
  local rc=0
  "$@" </dev/null >"$WORK/.j.out" 2>"$WORK/.j.err" || rc=$?
  echo "$rc"
}
registered() { "$CTRUST" ps --socket "$SOCK" --json | jq -r --arg id "$1" '[.containers[] | select(.id == $id)] | length'; }
bundle web k8s-enforce
CONTAINERS+=(web)
check "create through the installed ctrust-runtime (the CRI shim's call)" \
  node_runtime create --bundle "$WORK/bundles/web" web
check_eq "web: registered with the played agent while created" \
  "$(registered web) $(runc state web | jq -r .status)" "1 created"
check "start" node_runtime start web
check_eq "web: a listed program runs" "$(judged runc exec web /bin/sh -c true)" 0
check_eq "web: an unlisted program is denied" "$(judged runc exec web /bin/sh -c /opt/true)" 126
# The hook way (`run`: create and start in one runtime call) with the installed ctrust-hook.
bundle job k8s-measure
CONTAINERS+=(job)
run_job() { (cd "$WORK/bundles/job" && node_runtime run -d job </dev/null); }
check "run through the installed ctrust-runtime and ctrust-hook" run_job
check_eq "... its hook is the installed one" "$(jq -r '.hooks.createRuntime[0].path' "$WORK/bundles/job/config.json")" \
  "/opt/ctrust/$NODE_ID/bin/ctrust-hook"
check_eq "job: registered" "$(registered job)" 1

V=("$CTRUST" verifier --url "$VURL" --verifier-state "$WORK/admin")
check "the verifier adds the policies" "${V[@]}" policy add "$WORK/k8s-enforce.json"
"${V[@]}" policy add "$WORK/k8s-measure.json" >/dev/null 2>&1 || true
"${V[@]}" register "https://127.0.0.1:$APORT" >/dev/null 2>"$WORK/reg.err" || true
PIN=$(grep -o 'sha256:[0-9a-f]\{64\}' "$WORK/reg.err" | head -1)
check "the played verifier registers the played agent (EK pinned)" \
  "${V[@]}" register "https://127.0.0.1:$APORT" --ek-pin "$PIN"
verdict() { jq -r --arg c "$2" '.containers[] | select(.id == $c) | .verdict' "$1"; }
"${V[@]}" --json attest node-1 >"$WORK/a1.json" 2>"$WORK/a1.err" || true
check_eq "host affirming (the image's ctrustd, the ConfigMap's configuration)" \
  "$(jq -r .verdict "$WORK/a1.json")" affirming
check_eq "web affirming (its denial was enforced)" "$(verdict "$WORK/a1.json" web)" affirming
check_eq "job affirming (it ran only listed programs so far)" "$(verdict "$WORK/a1.json" job)" affirming
check_eq "job: an unlisted program runs in measure mode" "$(judged runc exec job /bin/sh -c /opt/true)" 0
"${V[@]}" --json attest node-1 >"$WORK/a2.json" 2>"$WORK/a2.err" || true
check_eq "job contraindicated at the next attestation" "$(verdict "$WORK/a2.json" job)" contraindicated
check_eq "web still affirming" "$(verdict "$WORK/a2.json" web)" affirming
# The verifier keeps attesting on its own schedule (interval 1 s): the store says so.
check_eq "the verifier's store holds the agent as attested" \
  "$(runuser -u postgres -- "$PGBIN/psql" -h "$PGDIR" -p "$PGPORT" -d ctrust_test -tAq \
    -c "SELECT count(*) FROM agents WHERE id = 'node-1' AND updated_at > 0")" 1
check "the agent's pod logs no error" sh -c "! '${PM[0]}' ${PM[*]:1} logs ctrustd-ctrustd 2>&1 | grep -q ': error:'"
check "the verifier's pod logs no error" sh -c "! '${PM[0]}' ${PM[*]:1} logs ctrust-verifier-ctrust-verifier 2>&1 | grep -q ': error:'"

finish
