"""Shared helpers of the real-cluster tests: kubectl, waits, the plugin's overlay, VM-like
pods (KubeVirt's virt-launcher receive, tests/cluster/consumer) and their outcomes."""

import json
import os
import re
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLUSTER = os.path.join(HERE, "cluster.sh")
RESOURCE = "devices.kubevirt.io/iommufd"
CONSUMER_IMAGE = "localhost/iommufd-consumer:test"
NAMESPACE = "kube-system"
DS = "iommufd-device-plugin"
DEVICES = 110


def run(*cmd, check=True, timeout=600, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), p.returncode, p.stdout[-3000:],
                                                          p.stderr[-3000:]))
    return p


def kubectl(*args, check=True, input=None, timeout=120):
    return run("kubectl", *args, check=check, input=input, timeout=timeout)


def wait_until(cond, timeout, what, interval=0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %ds waiting for %s" % (timeout, what))


def allocatable():
    node = os.environ["IOMMUFD_CLUSTER_NODE"]
    out = kubectl("get", "node", node, "-o", "json").stdout
    return int(json.loads(out)["status"].get("allocatable", {}).get(RESOURCE, "0"))


def plugin_image():
    """The name `make image`'s archive is imported under (deploy/ names iommufd-device-plugin)."""
    with open(os.path.join(ROOT, "meson.build")) as f:
        for line in f:
            m = re.match(r"\s*version\s*:\s*'([^']*)'", line)
            if m:
                return "docker.io/library/iommufd-device-plugin:%s" % m.group(1)
    raise AssertionError("no version in meson.build")


def plugin_overlay(tmp, flags=None):
    """deploy/ with the imported image (never pulled), best-effort RLIMIT_MODE (the node's
    /dev/iommu is a stand-in without the ioctl), and flags ({"registration": "both"}) set
    as the daemon's IOMMUFD_DP_* variables."""
    image = plugin_image()
    name, tag = image.rsplit(":", 1)
    flags = dict({"rlimit-mode": "best-effort"}, **(flags or {}))
    env = [{"name": "IOMMUFD_DP_" + k.upper().replace("-", "_"), "value": v} for k, v in sorted(flags.items())]
    patch = [{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": e} for e in env]
    patch.append({"op": "replace", "path": "/spec/template/spec/containers/0/imagePullPolicy", "value": "Never"})
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                "resources:\n  - %s\n" % os.path.relpath(os.path.join(ROOT, "deploy"), tmp) +
                "images:\n  - name: iommufd-device-plugin\n    newName: %s\n    newTag: %s\n" % (name, tag) +
                "patches:\n  - target: {kind: DaemonSet, name: %s}\n    patch: '%s'\n" % (DS, json.dumps(patch)))
    return tmp, image


def vm_pod(name, delay):
    """A pod as virt-launcher's: uid 107, no capabilities, one iommufd, connects late."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "vm-like"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 107, "runAsGroup": 107, "runAsNonRoot": True},
            "containers": [{
                "name": "compute", "image": CONSUMER_IMAGE, "imagePullPolicy": "Never",
                "args": [str(delay)],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "resources": {"limits": {RESOURCE: "1"}},
            }],
        },
    }


class PodStream:
    """Creates a VM-like pod every `period` seconds until stopped."""

    def __init__(self, prefix, period=0.5, delay=5):
        self.prefix, self.period, self.delay = prefix, period, delay
        self.names, self.errors = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        i = 0
        while not self._stop.is_set():
            name = "%s-%03d" % (self.prefix, i)
            i += 1
            p = kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, self.delay)), check=False)
            if p.returncode == 0:
                self.names.append(name)
            else:
                self.errors.append(p.stderr)
            self._stop.wait(self.period)

    def stop(self):
        self._stop.set()
        self._thread.join()


def pod_outcome(name):
    """'received', 'refused: <reason>', or None while undecided."""
    pod = json.loads(kubectl("get", "pod", name, "-o", "json").stdout)
    status = pod.get("status", {})
    if status.get("phase") == "Failed":
        return "refused: %s %s" % (status.get("reason"), status.get("message"))
    if status.get("phase") != "Running":
        return None
    log = kubectl("logs", name, check=False).stdout
    for line in log.splitlines():
        if line.startswith("iommufd: received"):
            return "received"
        if line.startswith("iommufd: error") or line.startswith("iommufd: socket absent"):
            return "failed: " + line
    return None


def outcomes(names, timeout):
    results = {}
    end = time.monotonic() + timeout
    while time.monotonic() < end and len(results) < len(names):
        for n in names:
            if n not in results:
                r = pod_outcome(n)
                if r is not None:
                    results[n] = r
        time.sleep(1)
    return results




def plugin_pods(selector="app.kubernetes.io/name=" + DS):
    """The plugin's pods (JSON objects) that the selector picks, not being deleted."""
    items = json.loads(kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def plugin_log(pod, *args):
    return kubectl("-n", NAMESPACE, "logs", pod, *args, check=False).stdout


def pod_events(name, namespace="default"):
    """[(type, reason, message)] of the events about pod `name`, as the API server has them."""
    out = kubectl("-n", namespace, "get", "events", "--field-selector",
                  "involvedObject.kind=Pod,involvedObject.name=" + name, "-o", "json").stdout
    return [(e.get("type"), e.get("reason"), e.get("message")) for e in json.loads(out)["items"]]


def delete_vm_pod(name):
    kubectl("delete", "pod", name, "--ignore-not-found", "--wait=true", "--timeout=120s", timeout=150, check=False)
