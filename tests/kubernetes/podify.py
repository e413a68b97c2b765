#!/usr/bin/env python3
"""Turns one workload of deploy/kubernetes (a DaemonSet or Deployment) into the Pod that its
controller would start, for `podman kube play` on this machine (tests/cli/kubernetes_test.sh).

The pod spec is the manifest's own. Only what a cluster would supply and this machine cannot
is replaced, each by a flag:
  --hostpath OLD=NEW      a hostPath volume's node path (the test's private node directories)
  --add-hostpath PATH     one more hostPath volume, mounted at the same path in every container
                          (where the test keeps its bundles, as /run/containerd on a node)
  --config NAME/KEY=FILE  a ConfigMap value (trial settings: an embedded TPM, test ports)
  (ports)                 container port declarations are dropped: the pod is played with
                          podman's --network host, where podman 4.3 refuses them
  --secrets-dir DIR       Secrets: podman 4.3's `kube play` crashes on secret volumes, so each
                          Secret's keys are written to DIR/NAME/KEY (mode as the volume's
                          defaultMode) and the volume becomes a hostPath to that directory;
                          secretKeyRef environment values become plain values
Writes to stdout the ConfigMaps the pod uses, then the Pod. Exit 1 with a message when the
workload, a ConfigMap or a Secret it names is missing.
"""
import argparse
import base64
import copy
import os
import sys

import yaml


def fail(msg):
    print(f"podify: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", required=True, help="KIND/NAME, e.g. DaemonSet/ctrustd")
    ap.add_argument("--hostpath", action="append", default=[])
    ap.add_argument("--add-hostpath", action="append", default=[])
    ap.add_argument("--config", action="append", default=[])
    ap.add_argument("--secrets-dir", required=True)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()

    docs = []
    for f in a.files:
        with open(f, encoding="utf-8") as fh:
            docs += [d for d in yaml.safe_load_all(fh) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    kind, name = a.workload.split("/", 1)
    w = by.get((kind, name)) or fail(f"no {kind} {name} in {a.files}")
    if kind not in ("DaemonSet", "Deployment", "StatefulSet"):
        fail(f"{kind} is not a workload with a pod template")
    tmpl = copy.deepcopy(w["spec"]["template"])
    spec = tmpl["spec"]
    meta = tmpl.get("metadata", {})
    meta["name"] = name
    # podman 4.3 removes a finished "once" init container while it may still be reported as
    # running ("container state improper"); "always" runs it at every pod start, as a
    # restarted pod's init containers run again in a cluster.
    meta.setdefault("annotations", {})["io.podman.annotations.init.container.type"] = "always"

    hostpaths = dict(s.split("=", 1) for s in a.hostpath)
    configs = {}
    for s in a.config:
        ref, path = s.split("=", 1)
        cm, key = ref.split("/", 1)
        with open(path, encoding="utf-8") as fh:
            configs.setdefault(cm, {})[key] = fh.read()

    containers = spec.get("initContainers", []) + spec["containers"]
    used_maps = []
    for v in spec.get("volumes", []):
        if "hostPath" in v and v["hostPath"]["path"] in hostpaths:
            v["hostPath"]["path"] = hostpaths[v["hostPath"]["path"]]
        elif "configMap" in v:
            used_maps.append(v["configMap"]["name"])
        elif "secret" in v:
            sname = v["secret"]["secretName"]
            sec = by.get(("Secret", sname)) or fail(f"no Secret {sname}")
            mode = v["secret"].get("defaultMode", 0o644)
            d = os.path.join(a.secrets_dir, sname)
            os.makedirs(d, exist_ok=True)
            for key, val in (sec.get("data") or {}).items():
                p = os.path.join(d, key)
                with open(p, "wb") as fh:
                    fh.write(base64.b64decode(val))
                os.chmod(p, mode)
            fs_group = spec.get("securityContext", {}).get("fsGroup")
            if fs_group is not None:  # what the kubelet does for fsGroup
                for key in sec.get("data") or {}:
                    os.chown(os.path.join(d, key), 0, fs_group)
            del v["secret"]
            v["hostPath"] = {"path": d, "type": "Directory"}
    for i, path in enumerate(a.add_hostpath):
        vname = f"test-hostpath-{i}"
        spec.setdefault("volumes", []).append(
            {"name": vname, "hostPath": {"path": path, "type": "Directory"}})
        for c in spec["containers"]:
            c.setdefault("volumeMounts", []).append(
                {"name": vname, "mountPath": path, "mountPropagation": "HostToContainer"})
    for c in containers:
        # Played with --network host (the node's network, as hostNetwork): podman 4.3 refuses
        # port declarations there ("PortMappings can only be used with Bridge or slirp4netns
        # networking"); they only document the ports, which the configuration sets.
        c.pop("ports", None)
        for probe in ("readinessProbe", "livenessProbe"):
            if "tcpSocket" in c.get(probe, {}) and isinstance(c[probe]["tcpSocket"]["port"], str):
                c.pop(probe)  # named ports are gone with the declarations
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                sec = by.get(("Secret", ref["name"])) or fail(f"no Secret {ref['name']}")
                e["value"] = base64.b64decode(sec["data"][ref["key"]]).decode()
                del e["valueFrom"]

    out = []
    for cm in used_maps:
        m = by.get(("ConfigMap", cm))
        if m is None:
            if cm in configs:
                m = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm}, "data": {}}
            else:
                continue  # optional and absent: podman leaves the volume empty
        m = copy.deepcopy(m)
        m.setdefault("data", {}).update(configs.pop(cm, {}))
        out.append(m)
    if configs:
        fail(f"--config names ConfigMaps the pod does not use: {sorted(configs)}")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    out.append(pod)
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
