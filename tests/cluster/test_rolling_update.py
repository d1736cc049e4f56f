"""A rolling update on a real single-node cluster (tests/cluster/cluster.sh: kubelet,
API server, scheduler, DaemonSet controller, containerd and runc built from pinned
sources) never loses the resource: while the plugin's DaemonSet rolls (maxSurge: 1),
VM-like pods keep coming, and every one is admitted and gets its fd.

The node has no IOMMUFD kernel: /dev/iommu is a stand-in character device and the
plugin runs --rlimit-mode=best-effort, so nothing here is claimed about the ioctl
(that is tests/vm's job). The consumer behaves as KubeVirt 1.9's virt-launcher
(tests/cluster/consumer): one connect, one recvmsg, one ACK byte.

Run with Debian's /usr/bin/python3 -m pytest tests/cluster (root; tests/cluster/run.sh).
"""

import json
import os
import subprocess
import threading
import time

import pytest

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


def plugin_overlay(tmp, extra_args=()):
    """deploy/ with the imported image (never pulled) and best-effort RLIMIT_MODE."""
    version = run("sed", "-n", r"s/^ *version *: *'\([^']*\)'.*/\1/p", os.path.join(ROOT, "meson.build")).stdout.split()[0]
    env = [{"name": "IOMMUFD_DP_RLIMIT_MODE", "value": "best-effort"}]
    patch = [
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": e} for e in env
    ] + [{"op": "replace", "path": "/spec/template/spec/containers/0/imagePullPolicy", "value": "Never"}]
    for a in extra_args:
        patch.append({"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": a})
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
        f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                "resources:\n  - %s\n" % os.path.relpath(os.path.join(ROOT, "deploy"), tmp) +
                "images:\n  - name: iommufd-device-plugin\n    newName: docker.io/library/iommufd-device-plugin\n"
                "    newTag: %s\n" % version +
                "patches:\n  - target: {kind: DaemonSet, name: %s}\n    patch: '%s'\n" % (DS, json.dumps(patch)))
    return tmp, "docker.io/library/iommufd-device-plugin:%s" % version


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    bindir = run(os.path.join(HERE, "build.sh"), timeout=3600).stdout.strip().splitlines()[-1]
    run("make", "-C", ROOT, "image", timeout=1800)
    consumer_tar = str(tmp_path_factory.mktemp("consumer") / "consumer.tar")
    run(os.path.join(HERE, "consumer", "build-image.sh"), consumer_tar, timeout=1800)
    run(CLUSTER, "up", timeout=600)
    try:
        for line in run(CLUSTER, "env").stdout.splitlines():
            k, v = line.replace("export ", "", 1).split("=", 1)
            os.environ[k] = v.replace("$PATH", os.environ["PATH"])
        arch = run("dpkg", "--print-architecture").stdout.strip()
        overlay, image = plugin_overlay(str(tmp_path_factory.mktemp("overlay")))
        run(CLUSTER, "import-image", os.path.join(ROOT, "build-image", "iommufd-device-plugin-%s.tar" % arch), image)
        run(CLUSTER, "import-image", consumer_tar, CONSUMER_IMAGE)
        kubectl("apply", "-k", overlay)
        kubectl("-n", NAMESPACE, "rollout", "status", "ds/" + DS, "--timeout=180s", timeout=200)
        wait_until(lambda: allocatable() == DEVICES, 120, "the node to advertise %d devices" % DEVICES)
        yield bindir
    finally:
        run(CLUSTER, "down", check=False, timeout=300)


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


def rollout(restart_cmd, prefix):
    before = allocatable()
    assert before == DEVICES
    stream = PodStream(prefix)
    try:
        time.sleep(3)
        restart_cmd()
        kubectl("-n", NAMESPACE, "rollout", "status", "ds/" + DS, "--timeout=300s", timeout=320)
        time.sleep(5)  # pods keep coming after the old pod's exit
    finally:
        stream.stop()
    assert not stream.errors, stream.errors[:3]
    results = outcomes(stream.names, 300)
    received = sum(1 for r in results.values() if r == "received")
    bad = {n: r for n, r in results.items() if r != "received"}
    undecided = [n for n in stream.names if n not in results]
    print("%s: %d pods created during the rollout, %d got their fd, %d refused or failed, %d undecided"
          % (prefix, len(stream.names), received, len(bad), len(undecided)))
    kubectl("delete", "pods", "-l", "app=vm-like", "--wait=true", "--timeout=120s", timeout=150, check=False)
    assert not bad, bad
    assert not undecided, undecided
    assert received == len(stream.names) > 0
    wait_until(lambda: allocatable() == DEVICES, 60, "allocatable back at %d" % DEVICES)


def test_kubectl_rollout_restart_under_a_stream_of_vm_pods_refuses_none(cluster):
    rollout(lambda: kubectl("-n", NAMESPACE, "rollout", "restart", "ds/" + DS), "rr")


def test_plugin_pod_sigkilled_with_offers_pending_new_pods_still_get_fds(cluster):
    stream = PodStream("kill", delay=8)
    try:
        time.sleep(4)
        pod = kubectl("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=" + DS, "-o",
                      "jsonpath={.items[0].metadata.name}").stdout
        kubectl("-n", NAMESPACE, "delete", "pod", pod, "--grace-period=0", "--force", check=False)
        wait_until(lambda: kubectl("-n", NAMESPACE, "rollout", "status", "ds/" + DS, "--timeout=5s",
                                   check=False).returncode == 0, 180, "the DaemonSet to be ready again")
        time.sleep(5)
    finally:
        stream.stop()
    results = outcomes(stream.names, 300)
    print("sigkill: %d pods, outcomes %s" % (len(stream.names),
                                             sorted(set(results.values()))))
    kubectl("delete", "pods", "-l", "app=vm-like", "--wait=true", "--timeout=120s", timeout=150, check=False)
    # Pods admitted after the new instance registered must all get their fd; a pod
    # admitted while no plugin was registered is refused by the kubelet (reported).
    late = stream.names[len(stream.names) // 2:]
    assert all(results.get(n) == "received" for n in late), {n: results.get(n) for n in late}
