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



def host_pids(program, in_cgroup="kubepods"):
    """Host pids of the processes named program (argv[0]'s base name) whose cgroup path
    names in_cgroup (default: any pod's), not one another suite runs outside the cluster."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0]
            with open("/proc/%s/cgroup" % pid) as f:
                cgroup = f.read()
        except OSError:
            continue  # gone meanwhile
        if os.path.basename(argv0) == program.encode() and in_cgroup in cgroup:
            pids.append(int(pid))
    return pids

def allocatable():
    node = os.environ["IOMMUFD_CLUSTER_NODE"]
    out = kubectl("get", "node", node, "-o", "json").stdout
    return int(json.loads(out)["status"].get("allocatable", {}).get(RESOURCE, "0"))


def plugin_image(program="iommufd-device-plugin"):
    """The name `make image`'s archive of program is imported under (deploy/ names
    iommufd-device-plugin, deploy/dra iommufd-dra-driver)."""
    with open(os.path.join(ROOT, "meson.build")) as f:
        for line in f:
            m = re.match(r"\s*version\s*:\s*'([^']*)'", line)
            if m:
                return "docker.io/library/%s:%s" % (program, m.group(1))
    raise AssertionError("no version in meson.build")


def plugin_overlay(tmp, flags=None, components=()):
    """deploy/ with the imported image (never pulled), best-effort RLIMIT_MODE (the node's
    /dev/iommu is a stand-in without the ioctl), deploy/components/<name> for each of
    components, and flags ({"registration": "both"}) set as IOMMUFD_DP_* variables."""
    image = plugin_image()
    name, tag = image.rsplit(":", 1)
    flags = dict({"rlimit-mode": "best-effort"}, **(flags or {}))
    env = [{"name": "IOMMUFD_DP_" + k.upper().replace("-", "_"), "value": v} for k, v in sorted(flags.items())]
    # A strategic merge patch: env entries merge by name, so a flag a component also
    # sets (plugin-watcher's IOMMUFD_DP_REGISTRATION) is overridden, not duplicated.
    patch = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": DS, "namespace": NAMESPACE},
             "spec": {"template": {"spec": {"containers": [
                 {"name": DS, "imagePullPolicy": "Never", "env": env}]}}}}
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                "resources:\n  - %s\n" % os.path.relpath(os.path.join(ROOT, "deploy"), tmp) +
                ("components:\n" + "".join("  - %s\n" % os.path.relpath(os.path.join(ROOT, "deploy", "components", c), tmp)
                                           for c in components) if components else "") +
                "images:\n  - name: set-your-registry.invalid/iommufd-device-plugin\n    newName: %s\n    newTag: %s\n" % (name, tag) +
                "patches:\n  - patch: '%s'\n" % json.dumps(patch))
    return tmp, image


def vm_pod(name, delay, init_wait=0):
    """A pod as virt-launcher's: uid 107, no capabilities, one iommufd, connects `delay`
    seconds after its container starts; with init_wait, an init container runs that long
    first, so the container (and its mount of the handoff socket) is created that much
    after the Allocate."""
    security = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsUser": 107, "runAsGroup": 107, "runAsNonRoot": True},
        "containers": [{
            "name": "compute", "image": CONSUMER_IMAGE, "imagePullPolicy": "Never",
            "args": [str(delay)], "securityContext": security,
            "resources": {"limits": {RESOURCE: "1"}},
        }],
    }
    if init_wait:
        spec["initContainers"] = [{
            "name": "wait", "image": CONSUMER_IMAGE, "imagePullPolicy": "Never",
            "args": [str(init_wait)], "env": [{"name": "CONSUMER_WAIT_ONLY", "value": "1"}],
            "securityContext": security,
        }]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "vm-like"}},
            "spec": spec}


def create_vm_pods(prefix, count, delay, init_wait=0):
    names = ["%s-%d" % (prefix, i) for i in range(count)]
    for n in names:
        kubectl("create", "-f", "-", input=json.dumps(vm_pod(n, delay, init_wait)))
    return names


def wait_outcomes(names, timeout):
    """{name: outcome} once every pod's outcome is known (pod_outcome), or at timeout."""
    results = {}
    end = time.monotonic() + timeout
    while len(results) < len(names) and time.monotonic() < end:
        for n in names:
            if n not in results:
                r = pod_outcome(n)
                if r is not None:
                    results[n] = r
        time.sleep(1)
    return results


def pod_phase(name):
    return json.loads(kubectl("get", "pod", name, "-o", "json").stdout).get("status", {}).get("phase")


class PodStream:
    """Creates a VM-like pod every `period` seconds until stopped, and reaps: each pod
    whose outcome is known (it got its fd, or was refused or failed) is recorded and
    deleted, so a long stream stays within the node's pod capacity."""

    def __init__(self, prefix, period=0.3, delay=5):
        self.prefix, self.period, self.delay = prefix, period, delay
        self.names, self.errors, self.results = [], [], {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._create, self._reap)]
        for t in self._threads:
            t.start()

    def _create(self):
        i = 0
        while not self._stop.is_set():
            name = "%s-%03d" % (self.prefix, i)
            i += 1
            p = kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, self.delay)), check=False)
            with self._lock:
                (self.names.append(name) if p.returncode == 0 else self.errors.append(p.stderr))
            self._stop.wait(self.period)

    def reap_once(self):
        with self._lock:
            pending = [n for n in self.names if n not in self.results]
        done = [n for n, r in ((n, pod_outcome(n)) for n in pending) if r is not None and
                self.results.setdefault(n, r)]
        if done:
            kubectl("delete", "pod", "--wait=false", *done, check=False)
        return len(pending) - len(done)

    def _reap(self):
        while not self._stop.is_set():
            self.reap_once()
            self._stop.wait(1)

    def stop(self):
        """Stops creating; the pods made so far are still reaped by finish()."""
        self._stop.set()
        for t in self._threads:
            t.join()

    def finish(self, timeout):
        """Waits until every pod's outcome is known (or timeout); returns {name: outcome}."""
        end = time.monotonic() + timeout
        while self.reap_once() and time.monotonic() < end:
            time.sleep(1)
        return dict(self.results)


def pod_outcome(name):
    """'received', 'refused: <reason> <message>', 'failed: <consumer line>', or None while
    undecided (and for a pod that no longer exists)."""
    p = kubectl("get", "pod", name, "-o", "json", check=False)
    if p.returncode != 0:
        return None
    status = json.loads(p.stdout).get("status", {})
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
def plugin_pods(selector="app.kubernetes.io/name=" + DS):
    """The plugin's pods (JSON objects) that the selector picks, not being deleted."""
    items = json.loads(kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def plugin_log(pod=None, *args):
    """The log of one plugin pod (default: the only one running)."""
    if pod is None:
        pods = plugin_pods()
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        pod = pods[0]["metadata"]["name"]
    return kubectl("-n", NAMESPACE, "logs", pod, *args, check=False).stdout


def pod_events(name, namespace="default"):
    """[(type, reason, message)] of the events about pod `name`, as the API server has them."""
    out = kubectl("-n", namespace, "get", "events", "--field-selector",
                  "involvedObject.kind=Pod,involvedObject.name=" + name, "-o", "json").stdout
    return [(e.get("type"), e.get("reason"), e.get("message")) for e in json.loads(out)["items"]]


def delete_vm_pod(name):
    kubectl("delete", "pod", name, "--ignore-not-found", "--wait=true", "--timeout=120s", timeout=150, check=False)
