"""A rolling update on a real single-node cluster (tests/cluster/cluster.sh: kubelet,
API server, scheduler, DaemonSet controller, containerd and runc built from pinned
sources) never loses the resource: while the plugin's DaemonSet rolls (maxSurge: 1),
VM-like pods keep coming, and every one is admitted and gets its fd.

The node has no IOMMUFD kernel: /dev/iommu is a stand-in character device and the
plugin runs --rlimit-mode=best-effort, so nothing here is claimed about the ioctl
(that is tests/vm's job). The consumer behaves as KubeVirt 1.9's virt-launcher
(tests/cluster/consumer): one connect, one recvmsg, one ACK byte.
"""

import time

from clusterlib import DEVICES, DS, NAMESPACE, PodStream, allocatable, kubectl, outcomes, wait_until


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


def test_plugin_pod_force_deleted_with_offers_pending_new_pods_still_get_fds(cluster):
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
