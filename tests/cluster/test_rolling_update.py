"""A rolling update on a real single-node cluster (tests/cluster/cluster.sh: kubelet,
API server, scheduler, DaemonSet controller, containerd and runc built from pinned
sources) never loses the resource: while the plugin's DaemonSet rolls (maxSurge: 1),
VM-like pods keep coming, and every one is admitted and gets its fd.

The node has no IOMMUFD kernel: /dev/iommu is a stand-in character device and the
plugin runs --rlimit-mode=best-effort, so nothing here is claimed about the ioctl
(that is tests/vm's job). The consumer behaves as KubeVirt 1.9's virt-launcher
(tests/cluster/consumer): one connect, one recvmsg, one ACK byte.
"""

import os
import time

import pytest

from clusterlib import DEVICES, DS, NAMESPACE, PodStream, allocatable, kubectl, plugin_pods, run, wait_until


def kubelet_log_lines():
    state = os.environ.get("IOMMUFD_CLUSTER_STATE", "/var/lib/iommufd-cluster")
    with open(os.path.join(state, "logs", "kubelet.log"), errors="replace") as f:
        return f.read().splitlines()


def check_stream(stream, label):
    """Every pod of the stream was admitted and got its fd; prints the counts."""
    results = stream.finish(300)
    received = sum(1 for r in results.values() if r == "received")
    bad = {n: r for n, r in results.items() if r != "received"}
    undecided = [n for n in stream.names if n not in results]
    print("\n%s: %d pods created, %d got their fd, %d refused or failed, %d undecided"
          % (label, len(stream.names), received, len(bad), len(undecided)))
    assert not stream.errors, stream.errors[:3]
    assert not bad, bad
    assert not undecided, undecided
    assert received == len(stream.names) > 0


LAST_GONE = "Last device plugin for this resource disconnected"  # kubelet -v 2
CONNECTED = "Device plugin connected"


def stamp(line):
    """The klog time of a kubelet log line, in seconds of the day."""
    h, m, sec = line.split()[1].split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def windows_at_zero(lines):
    """[seconds] from each moment the kubelet dropped the resource's last endpoint (its
    devices all unhealthy: allocatable 0) to the next endpoint connecting."""
    out, since = [], None
    for line in lines:
        if "devices.kubevirt.io/iommufd" not in line:
            continue
        if LAST_GONE in line:
            since = stamp(line)
        elif CONNECTED in line and since is not None:
            out.append(stamp(line) - since)
            since = None
    return out


def rollout(restart_cmd, prefix):
    assert allocatable() == DEVICES
    log_before = len(kubelet_log_lines())
    stream = PodStream(prefix)
    try:
        time.sleep(3)
        restart_cmd()
        kubectl("-n", NAMESPACE, "rollout", "status", "ds/" + DS, "--timeout=300s", timeout=320)
        # Pods keep coming until the old pod is gone, and a while after.
        wait_until(lambda: len(plugin_pods()) == 1, 120, "the old plugin pod to be gone")
        time.sleep(5)
    finally:
        stream.stop()
    check_stream(stream, prefix)
    assert allocatable() == DEVICES
    # The kubelet never held the resource without an endpoint: never a moment at 0.
    lines = kubelet_log_lines()[log_before:]
    assert any(CONNECTED in l for l in lines), "kubelet -v 2 log lines missing"
    assert not [l for l in lines if LAST_GONE in l]


def test_kubectl_rollout_restart_under_a_stream_of_vm_pods_refuses_none(cluster):
    rollout(lambda: kubectl("-n", NAMESPACE, "rollout", "restart", "ds/" + DS), "rr")


def test_an_image_change_under_a_stream_of_vm_pods_refuses_none(plugin):
    """A new release: the pod template changes (here its image reference, to the same
    image under a second name, as a registry mirror would give it)."""
    other = plugin.image.replace(":", "-mirror:", 1)
    run("ctr", "images", "tag", "--force", plugin.image, other)  # CONTAINERD_ADDRESS/_NAMESPACE: cluster.sh env
    rollout(lambda: kubectl("-n", NAMESPACE, "set", "image", "ds/" + DS, "%s=%s" % (DS, other)), "img")


@pytest.mark.parametrize("mode", ["plugin-watcher", "both"])
def test_rolling_update_with_registration_through_the_plugin_watcher(plugin, mode):
    """plugins_registry: the new instance's registration socket and endpoint sit beside
    the old ones' (the kubelet keys endpoints by path), and the kubelet's watcher never
    sees a temporary name (they start with '.', which it skips)."""
    plugin.deploy(flags={"registration": mode}, components=["plugin-watcher"])
    log_before = len(kubelet_log_lines())
    rollout(lambda: kubectl("-n", NAMESPACE, "rollout", "restart", "ds/" + DS), "pw-" + mode)
    # The watcher sees the hidden temporary name appear; it stats it before it looks at
    # the name, so once per takeover it logs that the stat failed (the name is gone by
    # then). What it must never do is try to register it (the old '<name>.<pid>.new' was
    # retried until the kubelet restarted).
    temp = [l for l in kubelet_log_lines()[log_before:] if ".new" in l]
    tried = [l for l in temp if "Error when handling create event" not in l]
    assert not tried, tried[:5]


def test_plugin_pod_force_deleted_with_offers_pending_new_pods_still_get_fds(cluster):
    """The plugin pod force-deleted (grace 0) while pods wait for their fd: the DaemonSet
    starts a new one at once. Pods allocated before are re-served by the new instance
    (rescue) or drained by the old; a pod admitted while no instance was registered may
    be refused by the kubelet: those are counted and printed, and the pods created after
    the new instance registered must all get their fd."""
    log_before = len(kubelet_log_lines())
    stream = PodStream("kill", delay=8)
    try:
        time.sleep(4)
        kubectl("-n", NAMESPACE, "delete", "pod", plugin_pods()[0]["metadata"]["name"], "--grace-period=0", "--force", check=False)
        kubectl("-n", NAMESPACE, "rollout", "status", "ds/" + DS, "--timeout=300s", timeout=320)
        wait_until(lambda: allocatable() == DEVICES, 120, "allocatable back at %d" % DEVICES)
        first_after = len(stream.names)
        time.sleep(8)
    finally:
        stream.stop()
    results = stream.finish(300)
    counts = {}
    for r in results.values():
        counts[r] = counts.get(r, 0) + 1
    print("\nforce-delete: %d pods; %s; resource at 0 for %s s" % (
        len(stream.names), counts, windows_at_zero(kubelet_log_lines()[log_before:])))
    late = stream.names[first_after:]
    assert late and all(results.get(n) == "received" for n in late), {n: results.get(n) for n in late}
