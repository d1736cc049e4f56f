"""Issue 21: the chart keys an operator expects of a node agent's chart (NVIDIA's
k8s-device-plugin and the Helm community's names), each rendered with a value set and
its effect checked in the output; the image repository and the alerts' runbook base
are required; "default" is refused unless asked; NOTES.txt tells how to check a node;
the rules the chart ships are the kustomize component's."""

import filecmp
import os
import re
import shlex
import signal
import subprocess
import tempfile
import threading

import pytest
import yaml

from k8s_validate import daemonset_errors, schema_errors
from test_helm import CHART, IMAGE, METRICS, RELEASE, RUNBOOKS, helm, helm_template  # noqa: F401
from test_manifests import (DEPLOY, PLUGIN_BIN, REPO, combined, daemonset, env_of, objects_errors,  # noqa: F401
                            plugin_container, render, rendered)

GPU_TAINTS = {"nvidia.com/gpu", "amd.com/gpu"}


def pod_spec(objects):
    return daemonset(objects)["spec"]["template"]["spec"]


def one(objects, kind):
    (obj,) = [o for o in objects if o["kind"] == kind]
    return obj


# key=value -> what the rendered objects must then show. Each is also rendered without
# the value (the default) and must not show it, so a key the template ignores fails.
KEYS = {
    "global.imageRegistry=ignored.example": lambda o: daemonset(o) is not None,
    "nameOverride=iommufd": lambda o: daemonset(o)["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "iommufd",
    "fullnameOverride=dp": lambda o: daemonset(o)["metadata"]["name"] == "dp",
    "namespaceOverride=kubevirt": lambda o: all(x["metadata"]["namespace"] == "kubevirt" for x in o),
    "imagePullSecrets[0].name=pull": lambda o: pod_spec(o)["imagePullSecrets"] == [{"name": "pull"}],
    "podLabels.team=virt": lambda o: daemonset(o)["spec"]["template"]["metadata"]["labels"]["team"] == "virt",
    "podAnnotations.owner=virt": lambda o: daemonset(o)["spec"]["template"]["metadata"]["annotations"] == {"owner": "virt"},
    "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=gpu,"
    "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists":
        lambda o: pod_spec(o)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "gpu",
    "updateStrategy.type=OnDelete,updateStrategy.rollingUpdate=null": lambda o: daemonset(o)["spec"]["updateStrategy"] == {"type": "OnDelete"},
    "podSecurityContext.seccompProfile.type=Unconfined": lambda o: pod_spec(o)["securityContext"] == {"seccompProfile": {"type": "Unconfined"}},
    "securityContext.readOnlyRootFilesystem=false": lambda o: plugin_container(o)["securityContext"]
    == {"privileged": True, "runAsUser": 0, "readOnlyRootFilesystem": False},
    "runtimeClassName=runc": lambda o: pod_spec(o)["runtimeClassName"] == "runc",
    "priorityClassName=": lambda o: "priorityClassName" not in pod_spec(o),
    "metrics.bindAddress=[::]": lambda o: {e["name"]: e.get("value") for e in plugin_container(o)["env"]}
    ["IOMMUFD_DP_METRICS_ADDRESS"] == "[::]:9110",
    "iommufdNodeSelector.enabled=true": lambda o: pod_spec(o)["nodeSelector"]
    == {"kubernetes.io/os": "linux", "feature.node.kubernetes.io/kernel-config.IOMMUFD": "true"},
}


def shows(check, objects):
    try:
        return check(objects)
    except (KeyError, IndexError, TypeError):
        return False


@pytest.mark.parametrize("setting", sorted(KEYS))
def test_each_key_changes_what_it_names(helm, setting):  # noqa: F811
    """A key=value (or several, comma-separated, as --set takes them)."""
    check = KEYS[setting]
    objects = helm_template(helm, [setting])
    errors = objects_errors(objects)
    assert not errors, "\n".join(errors)
    assert shows(check, objects), "%s did not reach the output" % setting
    if not setting.startswith("global."):
        default = helm_template(helm, [])
        assert not shows(check, default), "the default already shows %s: the test proves nothing" % setting


def test_pod_labels_cannot_steal_the_selector(helm):  # noqa: F811
    objects = helm_template(helm, ["podLabels.app\\.kubernetes\\.io/name=other", "podLabels.x=y"])
    ds = daemonset(objects)
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert labels["x"] == "y" and ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert not schema_errors(ds) and not daemonset_errors(ds)


def test_the_pod_ip_bind_address_gets_the_pod_ip(helm):  # noqa: F811
    container = plugin_container(helm_template(helm, ["metrics.bindAddress=$(POD_IP)"]))
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["IOMMUFD_DP_METRICS_ADDRESS"]["value"] == "$(POD_IP):9110"
    names = [e["name"] for e in container["env"]]
    assert names.index("POD_IP") < names.index("IOMMUFD_DP_METRICS_ADDRESS"), "$(VAR) sees only earlier variables"


def test_monitoring_objects_carry_the_release_label_hook(helm):  # noqa: F811
    objects = helm_template(helm, METRICS + ["metrics.additionalLabels.release=kps", "networkPolicy.enabled=true"])
    for kind in ("PodMonitor", "PrometheusRule"):
        assert one(objects, kind)["metadata"]["labels"]["release"] == "kps", kind
    assert "release" not in daemonset(objects)["metadata"]["labels"]
    assert "release" not in one(objects, "NetworkPolicy")["metadata"]["labels"]


def test_gpu_nodes_are_tolerated_by_default_in_both(helm, rendered):  # noqa: F811
    """Chart and kustomize, the device plugin's DaemonSet and the DRA driver's."""
    for objects in (helm_template(helm), rendered("deploy"), helm_template(helm, ["mode=dra"]),
                    rendered("deploy/dra")):
        taints = {t["key"] for t in pod_spec(objects)["tolerations"]
                  if t.get("operator") == "Exists" and t.get("effect") == "NoSchedule"}
        assert GPU_TAINTS <= taints


def test_chart_yaml_names_a_home_and_its_sources():
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    urls = [chart.get("home")] + (chart.get("sources") or [])
    assert len(urls) >= 2 and all(u and u.startswith("https://") for u in urls), urls
    assert not [u for u in urls if "example." in u or ".invalid" in u], urls


def test_the_image_repository_is_required(helm):  # noqa: F811
    result = helm_template(helm, [], image=False, check=False)
    assert result.returncode != 0 and "image.repository is required" in result.stderr, result.stderr
    assert one(helm_template(helm, ["image.repository=r.example/x", "image.tag=1.2"]), "DaemonSet")
    container = plugin_container(helm_template(helm, ["image.repository=r.example/x", "image.tag=1.2"]))
    assert container["image"] == "r.example/x:1.2"
    # kustomize's base names a host that cannot resolve, not docker.io/library/...
    assert plugin_container(render(os.path.join(DEPLOY, "base")))["image"].startswith("set-your-registry.invalid/")


def container_named(objects, name):
    (container,) = [c for o in objects if o["kind"] == "DaemonSet"
                    for c in o["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return container


def dra_container(objects):
    return container_named(objects, "iommufd-dra-driver")


def test_the_dra_driver_has_an_image_of_its_own(helm):  # noqa: F811
    """Issue 23 Must 1: the DRA driver's image is not the device plugin's (nodes that never
    run DRA never pull mbedTLS): dra.image, required with mode dra or both."""
    for mode in ("dra", "both"):
        result = helm_template(helm, ["mode=" + mode, IMAGE], image=False, check=False)
        assert result.returncode != 0 and "dra.image.repository is required with mode " + mode in result.stderr, (
            mode, result.stderr)
    dra = ["dra.image.repository=r.example/d", "dra.image.tag=1.3", "dra.image.pullPolicy=Always"]
    objects = helm_template(helm, ["mode=both", "image.repository=r.example/x", "image.tag=1.2"] + dra)
    assert dra_container(objects)["image"] == "r.example/d:1.3"
    assert dra_container(objects)["imagePullPolicy"] == "Always"
    assert container_named(objects, "iommufd-device-plugin")["image"] == "r.example/x:1.2"
    assert container_named(objects, "iommufd-device-plugin")["imagePullPolicy"] == "IfNotPresent"
    # mode dra needs no device plugin image; the device plugin's mode no DRA image.
    assert dra_container(helm_template(helm, ["mode=dra"] + dra, image=False))["image"] == "r.example/d:1.3"
    assert daemonset(helm_template(helm, []))
    # kustomize's deploy/dra names the DRA driver's image under the placeholder host.
    assert dra_container(render(os.path.join(DEPLOY, "dra")))["image"] == "set-your-registry.invalid/iommufd-dra-driver:0.1.0"


def test_the_default_namespace_is_refused_unless_asked(helm):  # noqa: F811
    for namespace in (None, "default"):
        result = helm_template(helm, [], namespace=namespace, check=False)
        assert result.returncode != 0 and 'namespace "default"' in result.stderr, result.stderr
    objects = helm_template(helm, ["allowDefaultNamespace=true"], namespace="default")
    assert daemonset(objects)["metadata"]["namespace"] == "default"
    # namespaceOverride counts, not the release's namespace.
    assert helm_template(helm, ["namespaceOverride=default"], check=False).returncode != 0


def test_one_value_sets_every_runbook_url_and_is_required(helm):  # noqa: F811
    base = "https://git.example.org/virt/iommufd-device-plugin/-/blob/v0.1.0/docs/operations.md"
    rule = one(helm_template(helm, METRICS + ["metrics.alerts.runbookBaseURL=" + base]), "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert alerts and all(r["annotations"]["runbook_url"] == "%s#%s" % (base, r["alert"].lower()) for r in alerts)
    without = [v for v in METRICS if "runbookBaseURL" not in v]
    result = helm_template(helm, without, check=False)
    assert result.returncode != 0 and "runbookBaseURL is required" in result.stderr, result.stderr


def test_one_configmap_sets_every_runbook_url_for_kustomize(tmp_path, rendered):  # noqa: F811
    base = "https://git.example.org/virt/iommufd-device-plugin/-/blob/v0.1.0/docs/operations.md"
    (tmp_path / "runbooks.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "iommufd-device-plugin-runbooks",
                     "annotations": {"config.kubernetes.io/local-config": "true"}},
        "data": {"baseURL": base}}))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(os.path.join(DEPLOY, "base"), tmp_path), "runbooks.yaml"],
        "components": [os.path.relpath(os.path.join(DEPLOY, "components", "metrics"), tmp_path)]}))
    objects = render(str(tmp_path))
    assert not [o for o in objects if o["kind"] == "ConfigMap"], "the local ConfigMap must not be applied"
    rule = one(objects, "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert all(r["annotations"]["runbook_url"] == "%s#%s" % (base, r["alert"].lower()) for r in alerts)
    # The shipped overlay's own is the placeholder the chart's tests use, nothing of example.com.
    for r in [r for g in one(rendered("deploy/overlays/metrics"), "PrometheusRule")["spec"]["groups"] for r in g["rules"]]:
        assert r["annotations"]["runbook_url"].startswith(RUNBOOKS + "#")


def test_the_chart_renames_the_daemonsets_the_absent_plugin_alert_watches(helm):  # noqa: F811
    """Both programs' DaemonSets, as the chart names them (the DRA driver's: <fullname>-dra)."""
    objects = helm_template(helm, METRICS + ["fullnameOverride=dp"])
    (rule,) = [r for g in one(objects, "PrometheusRule")["spec"]["groups"] for r in g["rules"]
               if r["alert"] == "IommufdPluginNotReady"]
    assert rule["expr"].count('daemonset=~"dp|dp-dra"') == 2, rule["expr"]
    assert "iommufd-device-plugin" not in rule["expr"] and "iommufd-dra-driver" not in rule["expr"]


def test_the_chart_ships_the_kustomize_rules():
    ours = os.path.join(CHART, "files", "prometheusrule.yaml")
    theirs = os.path.join(DEPLOY, "components", "metrics", "prometheusrule.yaml")
    assert not os.path.islink(ours), "a symlink makes every helm command print a notice"
    assert filecmp.cmp(ours, theirs, shallow=False), "cp %s %s" % (theirs, ours)


def notes(helm, namespace, values=()):  # noqa: F811
    args = [helm, "install", "--dry-run=client", RELEASE, CHART, "--namespace", namespace, "--set", IMAGE]
    for v in values:
        args += ["--set", v]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


def test_notes_tell_how_to_check_a_node(helm):  # noqa: F811
    text = notes(helm, "kube-system")
    for want in ("kubectl -n kube-system get pods -o wide -l app.kubernetes.io/instance=" + RELEASE,
                 "iommu is missing", "device_present", "devices\\.kubevirt\\.io/iommufd", "kube-system does"):
        assert want in text, "NOTES.txt lacks %r:\n%s" % (want, text)
    own = notes(helm, "virt", ["iommufdNodeSelector.enabled=true"])
    assert "kubectl label namespace virt pod-security.kubernetes.io/enforce=privileged" in own, own
    assert "feature.node.kubernetes.io/kernel-config.IOMMUFD=true" in own, own


def documented_log_greps(helm):  # noqa: F811
    """The `logs POD | grep ...` commands of install.md's "Check a node" and of the
    rendered NOTES.txt, each as (where, argv)."""
    with open(os.path.join(REPO, "docs", "install.md")) as f:
        install = f.read()
    greps = []
    for where, text in (("docs/install.md", install), ("NOTES.txt", notes(helm, "kube-system"))):
        found = re.findall(r"logs POD \| (grep [^\n]*)", text)
        assert len(found) == 1, "%s: one `logs POD | grep` expected, found %r" % (where, found)
        greps.append((where, shlex.split(found[0])))
    return greps


def daemon_log(env, device):
    """The log of the daemon started with the DaemonSet's environment and this device
    node (below a temporary root: the pod's /host/dev, with nothing in it, when device
    is the DaemonSet's), up to its metrics line (logged after the device check), then
    stopped."""
    with tempfile.TemporaryDirectory(prefix="dp-notes-", dir="/tmp") as tmp:
        if device.startswith("/host/"):
            os.makedirs(tmp + os.path.dirname(device))
            device = tmp + device
        args = [PLUGIN_BIN, "--kubelet-dir", tmp, "--socket-dir", tmp + "/fd", "--plugins-registry-dir", tmp,
                "--plugin-dir", tmp + "/plugin", "--pod-resources-socket", tmp + "/pr.sock",
                "--metrics-address", tmp + "/metrics.sock", "--selinux", "off", "--iommu-device", device]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUFD_DP_")}
        proc = subprocess.Popen(args, env=dict(clean, **env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        log = []
        watchdog = threading.Timer(120, proc.kill)  # a generous bound, not a timing claim
        watchdog.start()
        try:
            for line in proc.stderr:
                log.append(line)
                if "serving /metrics" in line:
                    proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            watchdog.cancel()
        assert any("serving /metrics" in line for line in log), "the daemon did not start:\n" + "".join(log)
        return "".join(log)


def test_the_documented_grep_finds_the_daemons_missing_device_warning(helm):  # noqa: F811
    """"Check a node" (install.md, NOTES.txt) tells operators to grep the pod's log for the
    missing-device warning: the grep must find the daemon's real line, as the DaemonSet
    runs it (the node's /dev at /host/dev), and nothing on a node that has the device."""
    env = env_of(plugin_container(helm_template(helm)))
    device = env.pop("IOMMUFD_DP_IOMMU_DEVICE")
    assert device == "/host/dev/iommu", device
    missing, present = daemon_log(env, device), daemon_log(env, "/dev/null")
    for where, argv in documented_log_greps(helm):
        found = subprocess.run(argv, input=missing, capture_output=True, text=True, timeout=30)
        assert found.returncode == 0 and device + " is missing" in found.stdout, \
            "%s: %s finds nothing in the log of a node without the device:\n%s" % (where, shlex.join(argv), missing)
        quiet = subprocess.run(argv, input=present, capture_output=True, text=True, timeout=30)
        assert quiet.returncode == 1 and not quiet.stdout, "%s: %s matches a working node's log:\n%s" % (
            where, shlex.join(argv), quiet.stdout)
