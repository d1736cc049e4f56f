"""--expose-device-node with the shipped manifests, on the real cluster: the plugin (and
the DRA driver) open the node as /host/dev/iommu (the node's /dev mounted there), and a
VM-like pod still gets the node's own /dev/iommu, as the character device the node has,
where libvirt 12.9 looks for it (docs/install.md). The node's /dev/iommu is the
cluster's stand-in (char 1:3, tests/cluster/README.md); the pod's /dev is read from the
host through /proc/<consumer pid>/root, since the consumer image has no shell."""

import json
import os
import stat

from clusterlib import delete_vm_pod, host_pids, kubectl, vm_pod, wait_until
# dra_node is a fixture: imported, it is this module's too.
from test_dra import dra_node, dra_overlay, install_driver, require_driver, uninstall_driver  # noqa: F401

NODE = "/dev/iommu"
FAILED_CREATE = ("CreateContainerError", "CreateContainerConfigError", "RunContainerError", "StartError")


def received(name):
    """True once the pod's consumer got its fd; fails at once when the runtime refused
    to create its container (a DeviceSpec or CDI node it cannot find on the node)."""
    pod = json.loads(kubectl("get", "pod", name, "-o", "json").stdout)
    for c in pod["status"].get("containerStatuses", []):
        waiting = c.get("state", {}).get("waiting", {})
        assert waiting.get("reason") not in FAILED_CREATE, "%s: %s" % (name, waiting)
        terminated = c.get("state", {}).get("terminated")
        assert not terminated, "%s: %s" % (name, terminated)
    log = kubectl("logs", name, check=False).stdout
    assert not [l for l in log.splitlines() if l.startswith(("iommufd: error", "iommufd: socket absent"))], log
    return any(l.startswith("iommufd: received") for l in log.splitlines())


def consumer_pid(pod_uid):
    """The host pid of the pod's consumer (its cgroup path names the pod's uid, with '_'
    for '-' under the systemd driver)."""
    pids = host_pids("iommufd-consumer", pod_uid) + host_pids("iommufd-consumer", pod_uid.replace("-", "_"))
    assert len(pids) == 1, pids
    return pids[0]


def pod_device_node(name):
    """The st_mode and st_rdev of /dev/iommu in the pod's container, or None if absent."""
    wait_until(lambda: received(name), 300, "%s to receive its fd" % name, interval=2)
    uid = json.loads(kubectl("get", "pod", name, "-o", "json").stdout)["metadata"]["uid"]
    try:
        st = os.stat("/proc/%d/root%s" % (consumer_pid(uid), NODE), follow_symlinks=False)
    except FileNotFoundError:
        return None
    return st.st_mode, st.st_rdev


def assert_pod_has_the_nodes_device(name):
    got = pod_device_node(name)
    host = os.stat(NODE)
    assert got is not None, "%s: no %s in the container" % (name, NODE)
    mode, rdev = got
    assert stat.S_ISCHR(mode), oct(mode)
    assert (os.major(rdev), os.minor(rdev)) == (os.major(host.st_rdev), os.minor(host.st_rdev))
    print("%s: %s is char %d:%d, as on the node" % (name, NODE, os.major(rdev), os.minor(rdev)))


def test_expose_device_node_gives_a_vm_pod_the_nodes_dev_iommu(plugin):
    """deploy/ as shipped (IOMMUFD_DP_IOMMU_DEVICE=/host/dev/iommu) plus
    IOMMUFD_DP_EXPOSE_DEVICE_NODE=true. First the sentinel: without it the pod has no
    /dev/iommu, so the check below sees what the DeviceSpec adds."""
    name = "devnode-vm"
    delete_vm_pod(name)
    kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, 0)))
    try:
        assert pod_device_node(name) is None, "%s in a pod of the plugin without the flag" % NODE
    finally:
        delete_vm_pod(name)
    plugin.deploy({"expose-device-node": "true"})
    kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, 0)))
    try:
        assert_pod_has_the_nodes_device(name)
    finally:
        delete_vm_pod(name)
    # the plugin fixture puts the default DaemonSet back


def test_expose_device_node_through_dra_gives_a_vm_pod_the_nodes_dev_iommu(request, tmp_path):
    """deploy/dra as shipped plus IOMMUFD_DP_EXPOSE_DEVICE_NODE=true on the node labelled
    for DRA: the claim's CDI spec (deviceNodes path /dev/iommu, hostPath /dev/iommu)
    applied by containerd."""
    require_driver()
    request.getfixturevalue("dra_node")
    overlay = dra_overlay(str(tmp_path / "dra"), {"expose-device-node": "true"})
    name = "devnode-dra"
    try:
        install_driver(overlay)
        kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, 0)))
        assert_pod_has_the_nodes_device(name)
    finally:
        delete_vm_pod(name)
        uninstall_driver(overlay)
