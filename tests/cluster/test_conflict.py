"""KubeVirt's own iommufd plugin (virt-handler, IOMMUFD feature gate) on the same socket
name and resource as ours, on a real kubelet: we report it (log, metric, /healthz 503 and
so the pod NotReady through the API), never take its path, and serve again when it
leaves. The KubeVirt side is a stand-in (tests/integration/foreign_plugin.py: virt-handler
cannot run here); the kubelet, the API server and our DaemonSet are real."""

import os
import sys
import time

from clusterlib import (DEVICES, NAMESPACE, PodStream, RESOURCE, allocatable, kubectl, plugin_log, plugin_pods,
                        wait_until)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from foreign_plugin import ForeignPlugin  # noqa: E402

KUBELET_DIR = "/var/lib/kubelet/device-plugins"
THEIR_DEVICES = 7


def plugin_pod():
    pods = plugin_pods()
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def metric(name):
    pod = plugin_pod()["metadata"]["name"]
    text = kubectl("get", "--raw", "/api/v1/namespaces/%s/pods/%s:9110/proxy/metrics" % (NAMESPACE, pod)).stdout
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("%s not in the scrape" % name)


def test_a_kubevirt_like_plugin_is_reported_not_fought_and_we_serve_again_when_it_leaves(cluster):
    kv = ForeignPlugin(KUBELET_DIR, "kubevirt-iommufd.sock", RESOURCE, THEIR_DEVICES)
    kv.start()
    try:
        wait_until(lambda: kv.registered, 60, "the KubeVirt-like plugin's Register to be accepted")
        # Reported: the log line, the metric, /healthz 503 and so the pod NotReady.
        wait_until(lambda: "another device plugin serves" in plugin_log(), 60, "our conflict log line")
        assert metric("iommufd_device_plugin_socket_conflict") == 1
        wait_until(lambda: not ready(plugin_pod()), 120, "our pod to turn NotReady")
        # The kubelet serves the resource from the other plugin now.
        wait_until(lambda: allocatable() == THEIR_DEVICES, 120, "allocatable from the other plugin")
        # No fight: its socket stays its own (it rebinds whenever it is replaced).
        inode = kv.inode
        time.sleep(15)
        assert kv.serves == 1 and os.stat(kv.path).st_ino == inode
        assert kv.registrations == 1
    finally:
        kv.stop()
    # It left: we serve and register again, turn Ready, and a VM gets its fd from us.
    wait_until(lambda: ready(plugin_pod()), 180, "our pod Ready again")
    wait_until(lambda: allocatable() == DEVICES, 120, "allocatable %d again" % DEVICES)
    assert metric("iommufd_device_plugin_socket_conflict") == 0
    stream = PodStream("after-kv", period=1)
    time.sleep(3)
    stream.stop()
    results = stream.finish(300)
    assert results and all(r == "received" for r in results.values()), results
