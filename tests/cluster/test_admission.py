"""--rlimit-mode=required on a node whose kernel cannot set IOMMU_OPTION_RLIMIT_MODE: the
plugin's Allocate fails (FAILED_PRECONDITION) and the real kubelet refuses to admit the
VM-like pod; what an operator then sees through the API server (the pod's status and
its events) is what docs/operations.md's troubleshooting section quotes.

The node has no IOMMUFD kernel: /dev/iommu is a stand-in character device (1:3, the
/dev/null numbers), on which the ioctl fails with ENOTTY, the same errno a kernel
without IOMMU_OPTION gives. Nothing here is claimed about the ioctl on a real iommufd
(that is tests/vm's job).
"""

import json

from clusterlib import DEVICES, allocatable, delete_vm_pod, kubectl, plugin_log, plugin_pods, pod_events, \
    vm_pod, wait_until


def test_required_rlimit_mode_without_the_option_refuses_admission_with_the_reason(plugin):
    plugin.deploy(flags={"rlimit-mode": "required"})
    pods = plugin_pods()
    assert len(pods) == 1
    env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
    assert env["IOMMUFD_DP_RLIMIT_MODE"] == "required", env
    name = "admission-vm"
    delete_vm_pod(name)
    kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, 0)))
    try:
        def failed():
            p = json.loads(kubectl("get", "pod", name, "-o", "json").stdout)
            assert p["status"].get("phase") != "Running", "admitted: %s" % kubectl("logs", name, check=False).stdout
            return p["status"] if p["status"].get("phase") == "Failed" else None

        status = wait_until(failed, 300, "%s to be refused" % name, interval=1)
        reason, message = status.get("reason"), status.get("message", "")
        print("pod status: phase=%s reason=%s message=%r" % (status["phase"], reason, message))
        assert reason == "UnexpectedAdmissionError", status
        assert "Allocate failed due to rpc error: code = FailedPrecondition" in message, message
        assert "IOMMU_OPTION_RLIMIT_MODE" in message and "ENOTTY" in message, message
        # The container never ran, so no consumer output at all.
        assert not status.get("containerStatuses") or all(
            "running" not in c.get("state", {}) for c in status["containerStatuses"]), status
        assert "iommufd: received" not in kubectl("logs", name, check=False).stdout

        events = wait_until(lambda: [e for e in pod_events(name) if e[1] == "UnexpectedAdmissionError"], 120,
                            "the UnexpectedAdmissionError event")
        for e in pod_events(name):
            print("event: %s %s %s" % e)
        kind, _, text = events[0]
        assert kind == "Warning" and "IOMMU_OPTION_RLIMIT_MODE" in text and "ENOTTY" in text, events
        describe = kubectl("describe", "pod", name).stdout
        print("kubectl describe pod %s, from Status:\n%s" % (name, describe[describe.find("\nStatus:"):]))
        assert "UnexpectedAdmissionError" in describe[describe.find("\nEvents:"):], describe

        log = plugin_log(plugin_pods()[0]["metadata"]["name"])
        failures = [l for l in log.splitlines() if "Allocate failed: " in l]
        assert failures and "IOMMU_OPTION_RLIMIT_MODE" in failures[-1], log[-3000:]
        print("plugin: %s" % failures[-1])
        # The refusal cost the node nothing: every device is still allocatable.
        wait_until(lambda: allocatable() == DEVICES, 120, "allocatable back at %d" % DEVICES)
    finally:
        delete_vm_pod(name)
