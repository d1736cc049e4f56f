"""What a node operator does to a node that runs VMs, on a real kubelet: restart the
kubelet, and lose the plugin's process (SIGKILL, as an OOM kill) while VM pods wait for
their fd. (The node's /dev/iommu is a stand-in; see test_rolling_update.py.)"""

import os
import signal

from clusterlib import (CLUSTER, DEVICES, NAMESPACE, allocatable, create_vm_pods, kubectl, plugin_log,
                        plugin_pods, pod_phase, run, wait_outcomes, wait_until)


def test_kubelet_restart_with_vm_pods_pending_and_running(cluster):
    running = create_vm_pods("kr-running", 1, delay=0)
    assert wait_outcomes(running, 180) == {running[0]: "received"}
    # Admitted and allocated, their containers connect 40 s after they start.
    pending = create_vm_pods("kr-pending", 2, delay=40)
    wait_until(lambda: all(pod_phase(n) == "Running" for n in pending), 180, "the pending pods to run")
    registered_before = plugin_log().count("registered again with the kubelet")
    run(CLUSTER, "restart-kubelet", timeout=400)
    wait_until(lambda: plugin_log().count("registered again with the kubelet") > registered_before, 120,
               "our Register after the kubelet's restart")
    wait_until(lambda: allocatable() == DEVICES, 180, "allocatable %d after the restart" % DEVICES)
    results = wait_outcomes(pending, 240)
    assert results == {n: "received" for n in pending}, results
    assert pod_phase(running[0]) == "Running"
    after = create_vm_pods("kr-after", 1, delay=0)
    assert wait_outcomes(after, 180) == {after[0]: "received"}
    kubectl("delete", "pods", "-l", "app=vm-like", "--wait=true", "--timeout=120s", timeout=150)


def plugin_host_pid():
    """The pid, in the host's namespace, of the one plugin process on the node."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except (OSError, ValueError):
            continue
        if not entry.isdigit() or os.path.basename(argv0) != b"iommufd-device-plugin":
            continue
        with open("/proc/%s/cgroup" % entry) as f:
            if "kubepods" in f.read():  # the pod's, not a host process's
                pids.append(int(entry))
    assert len(pids) == 1, pids
    return pids[0], plugin_pods()[0]["metadata"]["name"]


def test_plugin_process_sigkilled_with_offers_pending(cluster):
    """An OOM kill: the container restarts in the same pod, the new instance re-serves the
    dead one's offers at the same paths with fresh fds. The VM containers here are created
    after the crash (an init container runs first), so they mount the re-served sockets
    and get their fd. A container that had already mounted the old socket before the
    crash cannot be helped (docs/operations.md): not this test's case."""
    pods = create_vm_pods("oom", 2, delay=2, init_wait=25)
    wait_until(lambda: "allocated iommufd" in plugin_log() and plugin_log().count("allocated iommufd") >= 2,
               180, "both Allocates")
    pid, pod = plugin_host_pid()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: "re-serving" in kubectl("-n", NAMESPACE, "logs", pod, check=False).stdout, 180,
               "the restarted container to re-serve the dead instance's offers")
    results = wait_outcomes(pods, 300)
    assert results == {n: "received" for n in pods}, results
    wait_until(lambda: allocatable() == DEVICES, 180, "allocatable %d" % DEVICES)
    after = create_vm_pods("oom-after", 1, delay=0)
    assert wait_outcomes(after, 180) == {after[0]: "received"}
    kubectl("delete", "pods", "-l", "app=vm-like", "--wait=true", "--timeout=120s", timeout=150)
