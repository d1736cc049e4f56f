"""Issue 23 on the real cluster (tests/cluster/cluster.sh: Kubernetes 1.37, DRA GA,
KEP-5004's DRAExtendedResource on, containerd with CDI): the DRA variant of deploy/
(deploy/dra and the chart's mode=dra) and the driver it runs, iommufd-dra-driver.

What needs no driver runs always: the chart renders what kustomize renders, the API
server accepts every object, the RBAC grants what the driver needs and no more, the
node label moves a node between the two DaemonSets, and a hand-made ResourceSlice of
our driver makes the scheduler serve a plain `devices.kubevirt.io/iommufd: 1` through
DRA. The rest runs the driver from its own image (iommufd-dra-driver, built and
imported by the session). (/dev/iommu is a stand-in and the driver runs --rlimit-mode=best-effort, as for the
device plugin's tests.)"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from clusterlib import (CLUSTER, DEVICES, DS, NAMESPACE, PodStream, RESOURCE, ROOT, allocatable, create_vm_pods, host_pids, kubectl,
                        plugin_image, plugin_pods, pod_events, pod_outcome, pod_phase, run, vm_pod, wait_outcomes,
                        wait_until)

DRIVER = "iommufd.iommufd-device-plugin.github.io"  # --driver-name's default, the DeviceClass's name
MODE_LABEL = DRIVER + "/mode"
DRA_DS = "iommufd-dra-driver"
DRA_DIR = os.path.join(ROOT, "deploy", "dra")
CHART = os.path.join(ROOT, "deploy", "helm", "iommufd-device-plugin")
EXTENDED_CLAIM = "resource.kubernetes.io/extended-resource-claim"  # KEP-5004's annotation
OTHER_DRIVER = "other.iommufd-test.example"  # registered by nobody
STATE = os.environ.get("IOMMUFD_CLUSTER_STATE", "/var/lib/iommufd-cluster")


def node():
    return os.environ["IOMMUFD_CLUSTER_NODE"]


def driver_binary():
    arch = run("dpkg", "--print-architecture").stdout.strip()
    return os.path.join(ROOT, "build-image", arch, "bin", "iommufd-dra-driver")


def apply(obj):
    kubectl("apply", "-f", "-", input=json.dumps(obj))


def delete(kind, *names):
    kubectl("delete", kind, "--ignore-not-found", "--wait=true", "--timeout=120s", *names, timeout=150, check=False)


def get(kind, name, namespace=None):
    args = (["-n", namespace] if namespace else []) + ["get", kind, name, "-o", "json"]
    p = kubectl(*args, check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def our_slices(driver=DRIVER):
    items = json.loads(kubectl("get", "resourceslices", "-o", "json").stdout)["items"]
    return [s for s in items if s["spec"]["driver"] == driver]


def daemonset_pods(name):
    selector = "app.kubernetes.io/name=" + name
    items = json.loads(kubectl("-n", NAMESPACE, "get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def desired(name):
    ds = get("ds", name, NAMESPACE)
    return ds and ds["status"].get("desiredNumberScheduled")


def slice_obj(name, driver, pool, devices):
    """A ResourceSlice as a driver publishes one: devices {name: {attribute: value}}."""
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": name},
            "spec": {"driver": driver, "nodeName": node(),
                     "pool": {"name": pool, "generation": 1, "resourceSliceCount": 1},
                     "devices": [{"name": d, "attributes": a} for d, a in devices.items()]}}


def claim_obj(name, device_class, count=1, cel=None):
    request = {"deviceClassName": device_class, "allocationMode": "ExactCount", "count": count}
    if cel:
        request["selectors"] = [{"cel": {"expression": cel}}]
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"devices": {"requests": [{"name": "iommufd", "exactly": request}]}}}


def claim_pod(name, claim, delay=0):
    """vm_pod with the device from a ResourceClaim instead of the extended resource."""
    pod = vm_pod(name, delay)
    container = pod["spec"]["containers"][0]
    del container["resources"]["limits"]
    container["resources"]["claims"] = [{"name": "iommufd"}]
    pod["spec"]["resourceClaims"] = [{"name": "iommufd", "resourceClaimName": claim}]
    return pod


def warnings(name):
    return [(r, m) for t, r, m in pod_events(name) if t == "Warning"]


def label_node(value):
    if value:
        kubectl("label", "node", node(), "%s=%s" % (MODE_LABEL, value), "--overwrite")
    else:
        kubectl("label", "node", node(), MODE_LABEL + "-", check=False)


@pytest.fixture
def dra_node(plugin):
    """The node labelled for DRA: the device plugin's DaemonSet leaves it (its NotIn
    rule) and the node's allocatable of the resource falls to 0, which is what makes the
    scheduler use DRA there (KEP-5004). Afterwards the label goes and the plugin
    fixture puts the device plugin back (and waits for its 110 devices)."""
    assert allocatable() == DEVICES
    label_node("dra")
    try:
        wait_until(lambda: not plugin_pods(), 180, "the device plugin's pod to leave the node labelled dra")
        wait_until(lambda: desired(DS) == 0, 60, "the device plugin's DaemonSet to want 0 pods")
        wait_until(lambda: allocatable() == 0, 180, "allocatable %s 0 without the device plugin" % RESOURCE)
        yield node()
    finally:
        kubectl("delete", "pods", "-l", "app=vm-like", "--wait=true", "--timeout=120s", timeout=150, check=False)
        label_node(None)


def dra_overlay(tmp, flags=None):
    """deploy/dra with the imported image (never pulled) and best-effort RLIMIT_MODE
    (the stand-in /dev/iommu), as clusterlib.plugin_overlay does for deploy/. The
    driver runs on the pod network as shipped: its in-cluster configuration dials the
    kubernetes Service, which cluster.sh routes to the API server (no kube-proxy here,
    one DNAT rule instead)."""
    name, tag = plugin_image("iommufd-dra-driver").rsplit(":", 1)
    flags = dict({"rlimit-mode": "best-effort"}, **(flags or {}))
    env = [{"name": "IOMMUFD_DP_" + k.upper().replace("-", "_"), "value": v} for k, v in sorted(flags.items())]
    patch = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": DRA_DS, "namespace": NAMESPACE},
             "spec": {"template": {"spec": {"containers": [
                 {"name": DRA_DS, "imagePullPolicy": "Never", "env": env}]}}}}
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
        yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                        "resources": [os.path.relpath(DRA_DIR, tmp)],
                        "images": [{"name": "set-your-registry.invalid/iommufd-dra-driver", "newName": name,
                                    "newTag": tag}],
                        "patches": [{"patch": json.dumps(patch)}]}, f)
    return tmp


def helm_binary():
    return run("/usr/bin/python3", os.path.join(ROOT, "tests", "deploy", "npm_tool.py"), "helm",
               timeout=900).stdout.strip().splitlines()[-1]


def helm_template(*values, release="iommufd-device-plugin"):
    args = [helm_binary(), "template", release, CHART, "--namespace", NAMESPACE,
            "--set", "image.repository=set-your-registry.invalid/iommufd-device-plugin",
            "--set", "dra.image.repository=set-your-registry.invalid/iommufd-dra-driver"]
    for v in values:
        args += ["--set", v]
    return [d for d in yaml.safe_load_all(run(*args).stdout) if d]


HELM_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version",
               "helm.sh/chart")


def without_helm_labels(obj):
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    for labels in (obj["metadata"].get("labels"), spec.get("selector", {}).get("matchLabels"),
                   (spec.get("template") or {}).get("metadata", {}).get("labels")):
        for key in HELM_LABELS:
            (labels or {}).pop(key, None)
    return obj


# ------------------------------------------------------- without the driver ----

def test_chart_mode_dra_renders_what_kustomize_deploy_dra_renders():
    chart = {(o["kind"], o["metadata"]["name"]): without_helm_labels(o) for o in helm_template("mode=dra")}
    kustomize = {(o["kind"], o["metadata"]["name"]): o
                 for o in yaml.safe_load_all(run("kubectl", "kustomize", DRA_DIR).stdout) if o}
    assert set(chart) == set(kustomize) == {
        ("ServiceAccount", DRA_DS), ("ClusterRole", DRA_DS), ("ClusterRoleBinding", DRA_DS), ("Role", DRA_DS),
        ("RoleBinding", DRA_DS), ("DeviceClass", DRIVER), ("DaemonSet", DRA_DS)}
    for key, obj in chart.items():
        assert obj == kustomize[key], "%s %s differs from kustomize's" % key
    # mode=both: both DaemonSets, with opposite rules on the one label.
    both = [o for o in helm_template("mode=both") if o["kind"] == "DaemonSet"]
    rules = sorted(e["operator"] for ds in both for t in ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] for e in t["matchExpressions"]
        if e["key"] == MODE_LABEL and e["values"] == ["dra"])
    assert rules == ["In", "NotIn"], rules


def test_deploy_dra_and_the_chart_pass_the_api_servers_validation(cluster):
    """Server-side dry run, strict field validation: a field this API server does not
    know (extendedResourceName on an older one) is an error, not a silent drop."""
    out = kubectl("apply", "--dry-run=server", "--validate=strict", "-k", DRA_DIR).stdout
    for what in ("serviceaccount/%s" % DRA_DS, "clusterrole.rbac.authorization.k8s.io/%s" % DRA_DS,
                 "clusterrolebinding.rbac.authorization.k8s.io/%s" % DRA_DS,
                 "role.rbac.authorization.k8s.io/%s" % DRA_DS, "rolebinding.rbac.authorization.k8s.io/%s" % DRA_DS,
                 "deviceclass.resource.k8s.io/%s" % DRIVER, "daemonset.apps/%s" % DRA_DS):
        assert what in out, out
    # Another release name: the session's kustomize DaemonSet has another selector.
    rendered = "---\n".join(yaml.safe_dump(o) for o in helm_template("mode=both", release="dry"))
    out = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=rendered).stdout
    for what in ("deviceclass.resource.k8s.io/" + DRIVER, "daemonset.apps/dry-" + DRA_DS,
                 "daemonset.apps/dry-iommufd-device-plugin", "clusterrole.rbac.authorization.k8s.io/dry-" + DRA_DS):
        assert what in out, out
    print(out)


def test_rbac_grants_the_driver_what_it_asks_and_nothing_more(cluster):
    kubectl("apply", "-f", os.path.join(DRA_DIR, "rbac.yaml"))
    sa = "system:serviceaccount:%s:%s" % (NAMESPACE, DRA_DS)

    def can(*args):
        p = kubectl("auth", "can-i", "--as", sa, *args, check=False)
        return p.stdout.strip() == "yes"

    try:
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
            assert can(verb, "resourceslices.resource.k8s.io"), verb
        assert can("get", "resourceclaims.resource.k8s.io", "-n", "default")
        assert can("get", "pods", "-n", NAMESPACE)
        refused = [("list", "resourceclaims.resource.k8s.io", "-A"), ("update", "resourceclaims.resource.k8s.io"),
                   ("get", "pods", "-n", "default"), ("get", "secrets", "-n", NAMESPACE),
                   ("create", "deviceclasses.resource.k8s.io"), ("patch", "nodes")]
        for args in refused:
            assert not can(*args), args
    finally:
        kubectl("delete", "--ignore-not-found", "-f", os.path.join(DRA_DIR, "rbac.yaml"), check=False)


def test_the_mode_label_moves_a_node_between_the_two_daemonsets(dra_node, tmp_path):
    """The exclusivity rule itself, whatever the DRA pod then does: with the label the
    device plugin's DaemonSet wants no pod on the node and the DRA one wants one; without
    it, the other way round. Never both."""
    kubectl("apply", "-k", dra_overlay(str(tmp_path / "dra")))
    try:
        wait_until(lambda: desired(DRA_DS) == 1, 120, "the DRA DaemonSet to want the labelled node")
        assert desired(DS) == 0 and not plugin_pods()
        pods = wait_until(lambda: daemonset_pods(DRA_DS), 120, "the DRA DaemonSet's pod")
        assert [p["spec"]["nodeName"] for p in pods] == [node()]
        label_node(None)
        wait_until(lambda: desired(DRA_DS) == 0 and desired(DS) == 1, 120,
                   "the DaemonSets to swap when the label goes")
        wait_until(lambda: not daemonset_pods(DRA_DS), 180, "the DRA pod to leave the unlabelled node")
    finally:
        kubectl("delete", "--ignore-not-found", "--wait=true", "--timeout=120s", "-k", str(tmp_path / "dra"),
                timeout=150, check=False)


def test_a_handmade_slice_of_our_driver_serves_the_extended_resource_through_dra(dra_node):
    """KEP-5004 without our driver: our DeviceClass and a ResourceSlice made by hand
    (our driver's name, a pool of its own on this node). A pod asking for
    devices.kubevirt.io/iommufd: 1 is scheduled on a node whose allocatable has 0 of it,
    while its capacity still lists the resource (the kubelet never drops a device
    plugin's resource from capacity: docs/install.md's move): the scheduler made the
    pod's extended-resource claim and allocated one of the slice's devices; the kubelet
    then finds no such driver registered and says so in the pod's events.

    The slice names the node by nodeSelector, not nodeName: 30 s after the last plugin
    of a driver unregisters, the kubelet deletes every ResourceSlice with that driver and
    spec.nodeName (pkg/kubelet/cm/dra/plugin/dra_plugin_manager.go, sync and
    wipeResourceSlices; defaultWipingDelay in cm/dra/manager.go), and in the suite's
    order our driver ran in the test before: a nodeName slice made within those 30 s
    was deleted under the pod, which then stayed unscheduled (the stressed run of
    2026-12-07). The driver's own slice, which that wipe or the test's uninstall
    deletes, is waited for first so that the scheduler can only pick this one."""
    name = "dra-handmade"
    wait_until(lambda: not our_slices(), 120, "the ResourceSlices of an earlier driver of ours gone")
    node_status = json.loads(kubectl("get", "node", node(), "-o", "json").stdout)["status"]
    assert node_status["allocatable"].get(RESOURCE) == "0", node_status["allocatable"]
    assert RESOURCE in node_status["capacity"], (
        "the kubelet dropped %s from the node's capacity: docs/install.md says it keeps it" % RESOURCE,
        node_status["capacity"])
    handmade = slice_obj("iommufd-test-handmade", DRIVER, "iommufd-test-handmade", {"iommufd0": {}, "iommufd1": {}})
    del handmade["spec"]["nodeName"]
    handmade["spec"]["nodeSelector"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node()]}]}]}
    kubectl("apply", "-f", os.path.join(DRA_DIR, "deviceclass.yaml"))
    apply(handmade)
    try:
        kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, 0)))
        pod = wait_until(lambda: (lambda p: p if p["spec"].get("nodeName") else None)(get("pod", name, "default")),
                         120, "%s scheduled" % name)
        assert pod["spec"]["nodeName"] == node()
        status = wait_until(lambda: get("pod", name, "default")["status"].get("extendedResourceClaimStatus"), 60,
                            "the pod's extendedResourceClaimStatus")
        claim = get("resourceclaim", status["resourceClaimName"], "default")
        assert claim["metadata"]["annotations"].get(EXTENDED_CLAIM) == "true", claim["metadata"]
        results = claim["status"]["allocation"]["devices"]["results"]
        assert [(r["driver"], r["pool"]) for r in results] == [(DRIVER, "iommufd-test-handmade")], results
        assert results[0]["device"] in ("iommufd0", "iommufd1")
        assert [r["uid"] for r in claim["status"]["reservedFor"]] == [pod["metadata"]["uid"]]
        assert status["requestMappings"][0]["containerName"] == "compute", status
        events = wait_until(lambda: [w for w in warnings(name) if DRIVER in w[1]], 180,
                            "the kubelet's event naming the missing driver")
        assert pod_phase(name) == "Pending"
        print("\nextended-resource claim %s: %s\nkubelet: %s\nnode capacity %s, allocatable %s" % (
            claim["metadata"]["name"], results, events[0], node_status["capacity"][RESOURCE],
            node_status["allocatable"][RESOURCE]))
    finally:
        kubectl("delete", "pod", name, "--ignore-not-found", "--grace-period=0", "--force", check=False)
        delete("resourceslice", "iommufd-test-handmade")
        delete("deviceclass", DRIVER)


# ------------------------------------------------------------ with the driver ----

def require_driver():
    """The session built the driver's image; a missing binary is a failure, not a skip."""
    assert os.path.exists(driver_binary()), \
        "%s absent: scripts/image.sh built no iommufd-dra-driver for the DRA image" % driver_binary()


def install_driver(overlay):
    kubectl("apply", "-k", overlay)
    kubectl("-n", NAMESPACE, "rollout", "status", "ds/" + DRA_DS, "--timeout=300s", timeout=320)
    wait_until(lambda: our_slices(), 120, "the driver's ResourceSlice")


def uninstall_driver(overlay):
    """deploy/dra deleted, and whatever slice of ours is left (the uninstall test says
    whether the driver removes its own). The driver pod's state and log tail are printed
    first, for a failure's diagnosis."""
    for pod in daemonset_pods(DRA_DS):
        name = pod["metadata"]["name"]
        print("\n%s: %s %s\n%s" % (name, pod["status"].get("phase"), pod["status"].get("containerStatuses"),
                                    kubectl("-n", NAMESPACE, "logs", name, "--tail=40", check=False).stdout))
    kubectl("delete", "pods", "-l", "app=vm-like", "--wait=true", "--timeout=120s", timeout=150, check=False)
    kubectl("delete", "--ignore-not-found", "--wait=true", "--timeout=120s", "-k", overlay, timeout=150, check=False)
    for s in our_slices():
        delete("resourceslice", s["metadata"]["name"])


@pytest.fixture
def dra_driver(request, tmp_path, cluster):
    """deploy/dra applied (the imported image) on the node labelled for DRA, rolled out,
    its slice published; deleted afterwards. Skips before the node is relabelled, but
    after the session's cluster (which builds the image: before it, a fresh checkout has
    no build-image/ and every driver test would skip for want of a binary it is about to
    build)."""
    require_driver()
    request.getfixturevalue("dra_node")
    overlay = dra_overlay(str(tmp_path / "dra"))
    try:
        install_driver(overlay)
        yield overlay
    finally:
        uninstall_driver(overlay)


def driver_pod():
    pods = daemonset_pods(DRA_DS)
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def driver_host_pid():
    pids = host_pids("iommufd-dra-driver")
    assert len(pids) == 1, pids
    return pids[0]


def cdi_specs():
    """Our driver's CDI spec files in /var/run/cdi (kind <driver>/iommufd)."""
    found = []
    for f in sorted(os.listdir("/var/run/cdi")) if os.path.isdir("/var/run/cdi") else []:
        with open(os.path.join("/var/run/cdi", f), errors="replace") as spec:
            if DRIVER + "/iommufd" in spec.read():
                found.append(f)
    return found


def test_the_resourceslice_is_published_and_correct(dra_driver):
    slices = our_slices()
    assert len(slices) == 1, slices
    spec = slices[0]["spec"]
    assert spec["nodeName"] == node() and spec["pool"]["name"] == node()
    assert spec["pool"]["resourceSliceCount"] == 1
    devices = {d["name"]: d.get("attributes", {}) for d in spec["devices"]}
    assert set(devices) == {"iommufd%d" % i for i in range(DEVICES)}, sorted(devices)
    for name, attributes in devices.items():
        assert attributes.get("kernelRelease") == {"string": os.uname().release}, (name, attributes)
        assert attributes.get("rlimitMode") == {"string": "best-effort"}, (name, attributes)
        assert "bool" in attributes.get("rlimitModeSupported", {}), (name, attributes)
    owners = slices[0]["metadata"].get("ownerReferences", [])
    print("\nslice %s: %d devices, attributes %s, owners %s" % (
        slices[0]["metadata"]["name"], len(devices), devices["iommufd0"], owners))


def test_a_pod_asking_for_the_extended_resource_gets_its_fd_through_dra(dra_driver):
    name = "dra-extended"
    kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, 0)))
    assert wait_outcomes([name], 300) == {name: "received"}
    status = get("pod", name, "default")["status"]["extendedResourceClaimStatus"]
    claim = get("resourceclaim", status["resourceClaimName"], "default")
    assert [r["driver"] for r in claim["status"]["allocation"]["devices"]["results"]] == [DRIVER]
    assert cdi_specs(), "no CDI spec of ours in /var/run/cdi"


def test_a_pod_with_a_resourceclaim_of_our_deviceclass_gets_its_fd(dra_driver):
    apply(claim_obj("dra-claim", DRIVER))
    try:
        kubectl("create", "-f", "-", input=json.dumps(claim_pod("dra-claimed", "dra-claim")))
        assert wait_outcomes(["dra-claimed"], 300) == {"dra-claimed": "received"}
    finally:
        delete("pod", "dra-claimed")
        delete("resourceclaim", "dra-claim")


def test_rolling_update_under_a_stream_of_pods_refuses_none(dra_driver):
    stream = PodStream("dra-rr")
    try:
        time.sleep(3)
        kubectl("-n", NAMESPACE, "rollout", "restart", "ds/" + DRA_DS)
        kubectl("-n", NAMESPACE, "rollout", "status", "ds/" + DRA_DS, "--timeout=300s", timeout=320)
        wait_until(lambda: len(daemonset_pods(DRA_DS)) == 1, 120, "the old driver pod to be gone")
        time.sleep(5)
    finally:
        stream.stop()
    results = stream.finish(300)
    bad = {n: r for n, r in results.items() if r != "received"}
    print("\ndra rolling update: %d pods, %d bad" % (len(stream.names), len(bad)))
    assert not stream.errors, stream.errors[:3]
    assert not bad, bad
    assert len(results) == len(stream.names) > 0
    assert len(our_slices()) == 1


def test_driver_sigkilled_with_claims_prepared_not_taken(dra_driver):
    """The kubelet does not call Prepare again after a plugin restart: the new instance
    re-serves what the dead one prepared. The VM containers start after the crash (an
    init container runs first), so they mount the re-served sockets."""
    pods = create_vm_pods("dra-oom", 2, delay=2, init_wait=25)
    wait_until(lambda: len(cdi_specs()) >= 2, 180, "both claims prepared (their CDI specs written)")
    restarts = driver_pod()["status"]["containerStatuses"][0]["restartCount"]
    os.kill(driver_host_pid(), signal.SIGKILL)
    wait_until(lambda: driver_pod()["status"]["containerStatuses"][0]["restartCount"] > restarts, 120,
               "the driver's container restarted")
    assert wait_outcomes(pods, 300) == {n: "received" for n in pods}
    after = create_vm_pods("dra-oom-after", 1, delay=0)
    assert wait_outcomes(after, 180) == {after[0]: "received"}


def test_kubelet_restart_with_claims_pending_and_running(dra_driver):
    running = create_vm_pods("dra-kr-running", 1, delay=0)
    assert wait_outcomes(running, 180) == {running[0]: "received"}
    pending = create_vm_pods("dra-kr-pending", 2, delay=40)
    wait_until(lambda: all(pod_phase(n) == "Running" for n in pending), 180, "the pending pods to run")
    run(CLUSTER, "restart-kubelet", timeout=400)
    assert wait_outcomes(pending, 240) == {n: "received" for n in pending}
    assert pod_phase(running[0]) == "Running"
    after = create_vm_pods("dra-kr-after", 1, delay=0)
    assert wait_outcomes(after, 180) == {after[0]: "received"}


def test_bad_claims_get_clear_errors_in_the_pods_events(dra_driver):
    """Too many devices: the scheduler says so. A device our driver never published
    (a hand-made slice of our driver in a pool of its own): our Prepare names it. Another
    driver's device: the kubelet names the driver it has not got."""
    cases = []
    apply(claim_obj("dra-too-many", DRIVER, count=DEVICES + 1))
    apply(slice_obj("iommufd-test-unknown", DRIVER, "iommufd-test-unknown", {"bogus0": {"bogus": {"bool": True}}}))
    apply(claim_obj("dra-unknown", DRIVER, cel='"bogus" in device.attributes["%s"]' % DRIVER))
    apply({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": OTHER_DRIVER},
           "spec": {"selectors": [{"cel": {"expression": 'device.driver == "%s"' % OTHER_DRIVER}}]}})
    apply(slice_obj("iommufd-test-other", OTHER_DRIVER, node(), {"other0": {}}))
    apply(claim_obj("dra-other", OTHER_DRIVER))
    try:
        for pod, claim, reason, words in (("dra-bad-many", "dra-too-many", "FailedScheduling", "claim"),
                                          ("dra-bad-unknown", "dra-unknown", None, "bogus0"),
                                          ("dra-bad-other", "dra-other", None, OTHER_DRIVER)):
            kubectl("create", "-f", "-", input=json.dumps(claim_pod(pod, claim)))
            got = wait_until(lambda: [(r, m) for r, m in warnings(pod) if (reason is None or r == reason)
                                      and words in m], 180, "%s's event naming %s" % (pod, words))
            assert pod_phase(pod) == "Pending" and pod_outcome(pod) is None
            cases.append((pod, got[0]))
        for pod, event in cases:
            print("\n%s: %s" % (pod, event))
    finally:
        for pod in ("dra-bad-many", "dra-bad-unknown", "dra-bad-other"):
            kubectl("delete", "pod", pod, "--ignore-not-found", "--grace-period=0", "--force", check=False)
        delete("resourceclaim", "dra-too-many", "dra-unknown", "dra-other")
        delete("resourceslice", "iommufd-test-unknown", "iommufd-test-other")
        delete("deviceclass", OTHER_DRIVER)


def apiserver_pid():
    with open(os.path.join(STATE, "pids", "kube-apiserver")) as f:
        pid, exe = f.read().split()
    assert os.readlink("/proc/%s/exe" % pid) == exe
    return int(pid)


def test_the_api_server_away_for_a_while_loses_nothing(dra_driver):
    """A pod bound to the node, then the API server stopped (SIGSTOP: connections hang,
    as in a partition) for 45 s while its claim is to be prepared, then back: the pod
    gets its fd, the slice is as it was, the driver did not restart, a new pod works."""
    before = our_slices()[0]["spec"]["devices"]
    restarts = driver_pod()["status"]["containerStatuses"][0]["restartCount"]
    kubectl("create", "-f", "-", input=json.dumps(vm_pod("dra-away", 0)))
    wait_until(lambda: get("pod", "dra-away", "default")["spec"].get("nodeName"), 120, "dra-away bound")
    pid = apiserver_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(45)  # the outage itself, not a wait for an outcome
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_outcomes(["dra-away"], 300) == {"dra-away": "received"}
    wait_until(lambda: our_slices() and our_slices()[0]["spec"]["devices"] == before, 120, "the slice unchanged")
    assert driver_pod()["status"]["containerStatuses"][0]["restartCount"] == restarts
    after = create_vm_pods("dra-away-after", 1, delay=0)
    assert wait_outcomes(after, 180) == {after[0]: "received"}


def test_uninstall_deletes_the_slice(dra_driver):
    """The slice is the driver's; uninstalling it must not leave devices that nothing
    serves (a cluster-scoped ResourceSlice cannot be garbage-collected through a
    namespaced owner such as the DaemonSet: the driver must delete it, or name a
    cluster-scoped owner)."""
    kubectl("delete", "--wait=true", "--timeout=120s", "-k", dra_driver, timeout=150)
    wait_until(lambda: not daemonset_pods(DRA_DS), 180, "the driver's pod gone")
    wait_until(lambda: not our_slices(), 180, "the driver's ResourceSlice gone after uninstall")


# ------------------------------------------------------------------ the bench ----

PEER_DRIVER = "peer.iommufd-test.example"


def proc_figures(pid):
    """{VmRSS, VmHWM (KiB), Threads, cpu (s: utime + stime)} of a live process."""
    figures = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                figures[key] = int(value.split()[0])
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    figures["cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return figures


def prepare_and_unprepare(pid, driver, count, prefix, receives):
    """count claims of driver's class, one pod each, prepared (the pod runs) then all
    unprepared (pods and claims deleted); returns the process's figures before and after."""
    before = proc_figures(pid)
    names = []
    for i in range(count):
        apply(claim_obj("%s-%d" % (prefix, i), driver))
        pod = claim_pod("%s-%d" % (prefix, i), "%s-%d" % (prefix, i))
        if not receives:  # the peer hands over no fd: the container only has to start
            pod["spec"]["containers"][0]["env"] = [{"name": "CONSUMER_WAIT_ONLY", "value": "1"}]
            pod["spec"]["containers"][0]["args"] = ["3600"]
        kubectl("create", "-f", "-", input=json.dumps(pod))
        names.append(pod["metadata"]["name"])
    if receives:
        assert wait_outcomes(names, 600) == {n: "received" for n in names}
    else:
        wait_until(lambda: all(pod_phase(n) == "Running" for n in names), 600, "the %s pods running" % prefix)
    kubectl("delete", "pods", *names, "--wait=true", "--timeout=300s", timeout=330)
    delete("resourceclaim", *names)
    after = proc_figures(pid)
    return before, after


def test_dra_bench(request, tmp_path):
    """bench/dra/run.sh: the peer (build-peer.sh, a host process with the admin
    kubeconfig: it takes one) and ours (the DaemonSet), alone on the node in turn."""
    if os.environ.get("IOMMUFD_DRA_BENCH") != "1":
        pytest.skip("the DRA bench runs from bench/dra/run.sh (IOMMUFD_DRA_BENCH=1)")
    request.getfixturevalue("dra_node")
    count = int(os.environ.get("IOMMUFD_DRA_BENCH_PREPARES", "40"))
    rows = []
    peer = str(tmp_path / "peer-driver")
    run(os.path.join(ROOT, "bench", "dra", "build-peer.sh"), peer, timeout=1800)
    apply({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": PEER_DRIVER},
           "spec": {"selectors": [{"cel": {"expression": 'device.driver == "%s"' % PEER_DRIVER}}]}})
    # It makes the parent of its socket dir, not the dir (the e2e deployment mounts it).
    socket_dir = os.path.join("/var/lib/kubelet/plugins", PEER_DRIVER)
    os.makedirs(socket_dir, exist_ok=True)
    log = open(str(tmp_path / "peer.log"), "w")
    proc = subprocess.Popen([peer, "--kubeconfig", os.environ["KUBECONFIG"], "--drivername", PEER_DRIVER,
                             "kubelet-plugin", "--node-name", node(), "--num-devices", str(DEVICES)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def published():
            if proc.poll() is not None:
                with open(str(tmp_path / "peer.log")) as f:
                    raise AssertionError("the peer exited (%d):\n%s" % (proc.returncode, f.read()[-3000:]))
            return our_slices(PEER_DRIVER)

        wait_until(published, 120, "the peer's ResourceSlice")
        rows.append(("peer: k8s.io/kubernetes/test/e2e/dra/test-driver v1.37.2",)
                    + prepare_and_unprepare(proc.pid, PEER_DRIVER, count, "bench-peer", receives=False))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
        shutil.rmtree(socket_dir, ignore_errors=True)
        for s in our_slices(PEER_DRIVER):
            delete("resourceslice", s["metadata"]["name"])
        delete("deviceclass", PEER_DRIVER)
    ours_missing = not os.path.exists(driver_binary())
    if not ours_missing:
        overlay = dra_overlay(str(tmp_path / "dra"))
        try:
            install_driver(overlay)
            rows.append(("ours: iommufd-dra-driver",)
                        + prepare_and_unprepare(driver_host_pid(), DRIVER, count, "bench-ours", receives=True))
        finally:
            uninstall_driver(overlay)
    print("\n%d prepares each (one claim per pod, prepared, then all unprepared)" % count)
    print("| driver | VmRSS after (KiB) | VmHWM (KiB) | threads | CPU per prepare+unprepare (ms) |")
    print("|---|---|---|---|---|")
    for name, before, after in rows:
        print("| %s | %d | %d | %d | %.2f |" % (name, after["VmRSS"], after["VmHWM"], after["Threads"],
                                               1000 * (after["cpu"] - before["cpu"]) / count))
    if ours_missing:
        print("| ours: iommufd-dra-driver | not yet measured | | | |")
        pytest.skip("the peer measured; ours not built yet (%s absent)" % driver_binary())
