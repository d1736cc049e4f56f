"""The install paths of docs/install.md on a real single-node cluster
(tests/cluster/cluster.sh): `kubectl apply -k deploy/` and `helm install` of
deploy/helm/iommufd-device-plugin each give a ready DaemonSet whose pod is Ready only
once registered (readiness probe /healthz) and a node advertising 110
devices.kubevirt.io/iommufd; `helm uninstall` leaves on the node only what the
"Uninstall" section says; a VM-like pod placed by the real scheduler gets its fd and
the plugin names it from the kubelet's PodResources API.

The node has no IOMMUFD kernel: /dev/iommu is a stand-in character device (1:3) and
the plugin runs with --rlimit-mode=best-effort, so nothing here is claimed about the
IOMMU_OPTION ioctl (that is tests/vm's job). The consumer behaves as KubeVirt 1.9's
virt-launcher (tests/cluster/consumer).
"""

import datetime
import json
import os
import re

from clusterlib import (DEVICES, DS, NAMESPACE, RESOURCE, ROOT, allocatable, delete_vm_pod, host_pids, kubectl, plugin_image,
                        plugin_log, plugin_pods, pod_events, run, vm_pod, wait_until)

CHART = os.path.join(ROOT, "deploy", "helm", "iommufd-device-plugin")
RELEASE = "iommufd-device-plugin"  # the name docs/install.md uses
KUBELET_PLUGINS = "/var/lib/kubelet/device-plugins"
SOCKET_DIR = "/var/run/kubevirt/fd-sockets"


def helm(*args, timeout=600):
    binary = run("/usr/bin/python3", os.path.join(ROOT, "tests", "deploy", "npm_tool.py"), "helm",
                 timeout=900).stdout.strip().splitlines()[-1]
    return run(binary, *args, timeout=timeout)


def node():
    return os.environ["IOMMUFD_CLUSTER_NODE"]


def node_resource():
    """(capacity, allocatable) of the resource on the node; None where it is not listed."""
    status = json.loads(kubectl("get", "node", node(), "-o", "json").stdout)["status"]
    return status.get("capacity", {}).get(RESOURCE), status.get("allocatable", {}).get(RESOURCE)


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_ready_and_advertising(selector, daemonset=DS):
    """The DaemonSet rolled out, its one pod Running and Ready, Ready no earlier than the
    log's registration line, the probe is /healthz and answers ok through the API
    server, and the node advertises DEVICES."""
    kubectl("-n", NAMESPACE, "rollout", "status", "ds/" + daemonset, "--timeout=300s", timeout=320)
    ds = json.loads(kubectl("-n", NAMESPACE, "get", "ds", daemonset, "-o", "json").stdout)
    assert ds["status"]["numberReady"] == ds["status"]["desiredNumberScheduled"] == 1, ds["status"]
    pods = wait_until(lambda: [p for p in plugin_pods(selector) if p["status"].get("phase") == "Running"] or None,
                      300, "a running plugin pod (%s)" % selector)
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    pod = pods[0]
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == node()
    probe = pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz", probe

    def ready_since():
        p = json.loads(kubectl("-n", NAMESPACE, "get", "pod", name, "-o", "json").stdout)
        cond = [c for c in p["status"].get("conditions", []) if c["type"] == "Ready"]
        return cond and cond[0]["status"] == "True" and cond[0]["lastTransitionTime"]

    ready_at = parse_time(wait_until(ready_since, 300, "%s Ready" % name))
    registered = wait_until(lambda: [l for l in plugin_log(name, "--timestamps").splitlines()
                                     if "registered with the kubelet as %s" % RESOURCE in l], 120,
                            "the registration line in %s's log" % name)
    registered_at = parse_time(registered[0].split()[0]).replace(microsecond=0)
    # The kubelet's conditions have whole seconds; Ready may not come before registration.
    assert ready_at >= registered_at, (ready_at, registered[0])
    healthz = kubectl("get", "--raw", "/api/v1/namespaces/%s/pods/%s:9110/proxy/healthz" % (NAMESPACE, name))
    assert healthz.stdout.strip() == "ok", healthz.stdout
    wait_until(lambda: allocatable() == DEVICES, 120, "the node to advertise %d devices" % DEVICES)
    return name


def plugin_processes():
    """Pids of iommufd-device-plugin processes in the cluster's pod cgroups (not a plugin
    another test suite runs on this machine outside the cluster)."""
    return host_pids("iommufd-device-plugin")


def our_sockets():
    return sorted(f for f in os.listdir(KUBELET_PLUGINS) if f.startswith("kubevirt-iommufd"))


def test_kubectl_apply_k_deploy_gives_a_ready_daemonset_and_110_devices(cluster):
    """The fixture's `kubectl apply -k` of deploy/ (clusterlib.plugin_overlay: the
    imported image, pull policy Never, best-effort RLIMIT_MODE)."""
    name = assert_ready_and_advertising("app.kubernetes.io/name=" + DS)
    labels = plugin_pods()[0]["metadata"]["labels"]
    assert "app.kubernetes.io/managed-by" not in labels, labels
    assert our_sockets() == ["kubevirt-iommufd-0.sock"], our_sockets()
    print("kustomize: %s Ready, node allocatable %d" % (name, allocatable()))


def test_helm_install_then_uninstall_leaves_only_what_install_md_says(plugin):
    kubectl("-n", NAMESPACE, "delete", "ds", DS, "--cascade=foreground", "--wait=true", "--timeout=180s",
            timeout=200)
    wait_until(lambda: not plugin_pods() and not plugin_processes(), 180, "the kustomize DaemonSet's pod gone")
    wait_until(lambda: allocatable() == 0, 120, "allocatable 0 without a plugin")
    repository, tag = plugin_image().rsplit(":", 1)
    try:
        helm("install", RELEASE, CHART, "--namespace", NAMESPACE, "--set", "image.repository=" + repository,
             "--set", "image.tag=" + tag, "--set", "image.pullPolicy=Never", "--set", "rlimitMode=best-effort",
             "--wait", "--timeout", "5m")
        selector = "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s" % (DS, RELEASE)
        name = assert_ready_and_advertising(selector)
        pod = plugin_pods(selector)[0]
        assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["IOMMUFD_DP_RLIMIT_MODE"] == "best-effort", env
        assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"
        assert our_sockets() == ["kubevirt-iommufd-0.sock"], our_sockets()
        print("helm: %s Ready, node allocatable %d" % (name, allocatable()))

        helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
        def left():
            return kubectl("-n", NAMESPACE, "get", "daemonsets,pods,configmaps,secrets", "-l",
                           "app.kubernetes.io/instance=" + RELEASE, "-o", "name").stdout.split()

        wait_until(lambda: not left() and not plugin_processes(), 180, "the Helm release's objects and pod gone")
        releases = kubectl("-n", NAMESPACE, "get", "secrets", "-l", "owner=helm,name=" + RELEASE, "-o",
                           "name").stdout.split()
        assert not releases, releases
        # "the kubelet drops the resource from the node": allocatable 0 at once (the
        # kubelet keeps the capacity for its endpoint grace period, 5 minutes).
        wait_until(lambda: node_resource()[1] in (None, "0"), 120, "allocatable 0 after helm uninstall")
        capacity, alloc = node_resource()
        # Nothing of ours in the kubelet's device-plugins dir: only the kubelet's own files.
        assert not our_sockets(), our_sockets()
        # No instance dir is left in the socket dir (nothing was pending); the dir stays.
        assert os.path.isdir(SOCKET_DIR)
        assert os.listdir(SOCKET_DIR) == [], os.listdir(SOCKET_DIR)
        print("helm uninstall: capacity %s allocatable %s; %s: %s; %s: %s" % (
            capacity, alloc, KUBELET_PLUGINS, sorted(os.listdir(KUBELET_PLUGINS)), SOCKET_DIR,
            os.listdir(SOCKET_DIR)))
    finally:
        if kubectl("-n", NAMESPACE, "get", "ds", DS, "-l", "app.kubernetes.io/managed-by=Helm", "-o", "name",
                   check=False).stdout.strip():
            helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
    # the plugin fixture applies deploy/ again


def test_vm_like_pod_scheduled_on_the_node_gets_its_fd_and_the_plugin_names_it(cluster):
    """A pod as virt-launcher's (uid 107, no capabilities, requests 1), placed by the
    real scheduler: its container receives the fd, the plugin's audit line (from the
    kubelet's PodResources API, asked every 10 s while the socket is pending: the
    consumer waits 40 s before connecting) names it, and its events say where it went."""
    name = "install-vm"
    delete_vm_pod(name)
    kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, 40)))
    try:
        def received():
            log = kubectl("logs", name, check=False).stdout
            bad = [l for l in log.splitlines() if l.startswith(("iommufd: error", "iommufd: socket absent"))]
            assert not bad, log
            return [l for l in log.splitlines() if l.startswith("iommufd: received fd=")]

        got = wait_until(received, 300, "%s to receive its fd" % name, interval=2)
        pod = json.loads(kubectl("get", "pod", name, "-o", "json").stdout)
        assert pod["spec"]["nodeName"] == node()
        assert pod["spec"]["containers"][0]["resources"]["limits"][RESOURCE] == "1"
        assert pod["spec"]["securityContext"]["runAsUser"] == 107
        plugin = plugin_pods()[0]["metadata"]["name"]
        audit = re.compile(r"(iommufd\d+) \(socket (\S+)\) went to pod default/%s, container compute" % name)
        lines = wait_until(lambda: [m for m in map(audit.search, plugin_log(plugin).splitlines()) if m], 120,
                           "the plugin's audit line for %s" % name)
        device, socket = lines[0].group(1), lines[0].group(2)
        assert "allocated %s: handoff socket %s" % (device, socket) in plugin_log(plugin)
        events = pod_events(name)
        scheduled = [m for t, r, m in events if r == "Scheduled"]
        assert scheduled == ["Successfully assigned default/%s to %s" % (name, node())], events
        describe = kubectl("describe", "pod", name).stdout
        assert re.search(r"^Node:\s+%s/" % re.escape(node()), describe, re.M), describe
        assert "Successfully assigned default/%s to %s" % (name, node()) in describe
        print("%s: %s; plugin: %s" % (name, got[0], lines[0].group(0)))
    finally:
        delete_vm_pod(name)
