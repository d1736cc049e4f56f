"""Issue 7: the kustomizations in deploy/ render (with kustomize, Debian's package) and
every rendered object is valid Kubernetes (k8s_validate.py: the official client's typed
models with unknown-field checks, and the API server's rules for what we use); the
settings agree with the daemon (it is run with them) and with each other."""

import copy
import os
import re
import subprocess
import sys
import time

import jsonschema
import pytest
import yaml

from k8s_validate import daemonset_errors, schema_errors

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(REPO, "deploy")
KUSTOMIZE = os.environ.get("KUSTOMIZE", "kustomize")
PLUGIN_BIN = os.environ.get("PLUGIN_BIN", os.path.join(REPO, "build", "iommufd-device-plugin"))
COMPONENTS = sorted(os.listdir(os.path.join(DEPLOY, "components")))


def kustomizations():
    """Every directory under deploy/ with a kustomization of kind Kustomization."""
    found = []
    for dirpath, _, files in os.walk(DEPLOY):
        # The DRA driver's (deploy/dra) is another DaemonSet: tests/cluster/test_dra.py.
        if os.path.relpath(dirpath, DEPLOY).split(os.sep)[0] == "dra":
            continue
        if "kustomization.yaml" in files:
            with open(os.path.join(dirpath, "kustomization.yaml")) as f:
                if yaml.safe_load(f).get("kind", "Kustomization") == "Kustomization":
                    found.append(os.path.relpath(dirpath, REPO))
    return sorted(found)


def render(path):
    result = subprocess.run([KUSTOMIZE, "build", path], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, "kustomize build %s failed:\n%s" % (path, result.stderr)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def combined(tmp_path_factory):
    """All components at once on the base: they must compose."""
    d = tmp_path_factory.mktemp("combined")
    # The metrics component's runbook URL comes from the using kustomization: a copy.
    with open(os.path.join(DEPLOY, "overlays", "metrics", "runbooks.yaml")) as src, open(d / "runbooks.yaml", "w") as dst:
        dst.write(src.read())
    with open(d / "kustomization.yaml", "w") as f:
        yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(os.path.join(DEPLOY, "base"), d), "runbooks.yaml"],
            "components": [os.path.relpath(os.path.join(DEPLOY, "components", c), d) for c in COMPONENTS],
        }, f)
    return str(d)


VARIANTS = kustomizations() + ["<all components>"]


@pytest.fixture(scope="session")
def rendered(combined):
    cache = {}

    def get(variant):
        if variant not in cache:
            cache[variant] = render(combined if variant == "<all components>" else os.path.join(REPO, variant))
        return copy.deepcopy(cache[variant])

    return get


def daemonset(objects):
    sets = [o for o in objects if o["kind"] == "DaemonSet"]
    assert len(sets) == 1, "want one DaemonSet, got %d" % len(sets)
    return sets[0]


def plugin_container(objects):
    ds = daemonset(objects)
    return next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "iommufd-device-plugin")


def env_of(container):
    return {e["name"]: e["value"] for e in container.get("env", [])}


def objects_errors(objects):
    """Every problem of a rendered set of objects (kustomize's or Helm's): each object
    against its typed model, then the DaemonSet's own rules."""
    from test_alerts import prometheusrule_errors

    errors = []
    for obj in objects:
        if obj["kind"] == "PodMonitor":
            errors += podmonitor_errors(obj)
        elif obj["kind"] == "PrometheusRule":
            errors += prometheusrule_errors(obj)
        else:
            errors += schema_errors(obj)
    return errors + daemonset_errors(daemonset(objects))


def test_the_variants_are_the_ones_the_docs_name():
    assert set(VARIANTS) >= {"deploy", "deploy/base", "deploy/overlays/plugin-watcher",
                             "deploy/overlays/metrics", "deploy/overlays/selinux"}
    assert COMPONENTS == ["iommufd-node", "metrics", "network-policy", "plugin-watcher", "selinux"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_valid_kubernetes(rendered, variant):
    objects = rendered(variant)
    assert objects
    errors = objects_errors(objects)
    assert not errors, "\n".join(errors)


def test_the_validator_catches_what_the_api_server_would_refuse(rendered):
    """A validator that accepts anything proves nothing: break a DaemonSet on purpose."""
    good = daemonset(rendered("deploy"))
    assert not schema_errors(good)

    def broken(change):
        ds = copy.deepcopy(good)
        change(ds, ds["spec"]["template"]["spec"]["containers"][0])
        # As in test_every_object_is_valid_kubernetes: the rules run on schema-valid objects.
        return schema_errors(ds) or daemonset_errors(ds)

    assert any("unknown field 'imagePullPolicyy'" in e for e in broken(lambda ds, c: c.update(imagePullPolicyy="Always")))
    assert any("want int" in e for e in broken(lambda ds, c: c["ports"][0].update(containerPort="9110")))
    assert any("must not be `None`" in e for e in broken(lambda ds, c: c.pop("name")))
    assert any("names no volume" in e for e in broken(lambda ds, c: c["volumeMounts"][0].update(name="nope")))
    assert any("does not match" in e for e in broken(lambda ds, c: ds["spec"]["selector"]["matchLabels"].update(x="y")))
    assert any("exceeds its limit" in e for e in broken(lambda ds, c: c["resources"]["requests"].update(memory="1Gi")))
    assert any("names port" in e for e in broken(lambda ds, c: c["livenessProbe"]["httpGet"].update(port="http")))
    assert any("allowPrivilegeEscalation" in e for e in broken(lambda ds, c: c["securityContext"].update(allowPrivilegeEscalation=False)))
    assert any("hostPath type" in e for e in broken(lambda ds, c: ds["spec"]["template"]["spec"]["volumes"][0]["hostPath"].update(type="Dir")))


def daemon_accepts(variables, args=()):
    """Starts the daemon with these IOMMUFD_DP_* variables and arguments until it logs its
    effective configuration (every flag parsed and checked), then stops it; returns
    (True, log) or (False, log) if it exited first (exit 2: a bad setting). Not
    --version: that exits before the checks that combine flags (--socket-mode,
    --socket-owner, --allowed-uids). The paths it would touch are redirected to a
    temporary directory by flags, which win over the variables."""
    import signal
    import tempfile
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUFD_DP_")}
    env.update(variables)
    with tempfile.TemporaryDirectory(prefix="dp-cfg-", dir="/tmp") as tmp:
        redirect = ["--kubelet-dir", tmp, "--socket-dir", tmp + "/fd", "--plugins-registry-dir", tmp,
                    "--plugin-dir", tmp + "/plugin", "--pod-resources-socket", tmp + "/pr.sock",
                    "--iommu-device", "/dev/null", "--metrics-address", tmp + "/metrics.sock",
                    "--selinux", "off"]
        proc = subprocess.Popen([PLUGIN_BIN] + list(args) + redirect, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        log = []
        for line in proc.stderr:
            log.append(line)
            if "configuration: " in line:
                proc.send_signal(signal.SIGINT)
                proc.send_signal(signal.SIGTERM)
                proc.stderr.read()
                proc.wait(timeout=30)
                return True, "".join(log)
        proc.wait(timeout=30)
        return False, "".join(log) + "exit code %d" % proc.returncode


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_daemon_accepts_every_setting(rendered, variant):
    """Runs the daemon with the variant's environment and arguments: config errors exit 2."""
    if not os.path.exists(PLUGIN_BIN):
        pytest.fail("daemon binary not built: %s (set PLUGIN_BIN or build first)" % PLUGIN_BIN)
    container = plugin_container(rendered(variant))
    help_text = subprocess.run([PLUGIN_BIN, "--help"], capture_output=True, text=True).stdout
    for name in env_of(container):
        assert name.startswith("IOMMUFD_DP_"), "unexpected variable %s" % name
        flag = "--" + name[len("IOMMUFD_DP_"):].lower().replace("_", "-")
        assert flag + " " in help_text, "%s sets %s, which the daemon does not have" % (name, flag)
    accepted, log = daemon_accepts(env_of(container), container.get("args", []))
    assert accepted, log
    # The check can fail: one bad value among the variant's.
    accepted, log = daemon_accepts(dict(env_of(container), IOMMUFD_DP_SOCKET_MODE="0999"), container.get("args", []))
    assert not accepted and "--socket-mode" in log, log


@pytest.mark.parametrize("variant", VARIANTS)
def test_paths_the_kubelet_sees_are_the_paths_the_daemon_uses(rendered, variant):
    ds = daemonset(rendered(variant))
    spec = ds["spec"]["template"]["spec"]
    container = plugin_container([ds])
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    env = env_of(container)

    # The kubelet mounts the host path Allocate names into VM pods: same path both sides.
    socket_dir = env.get("IOMMUFD_DP_SOCKET_DIR", "/var/run/kubevirt/fd-sockets")
    assert mounts[socket_dir]["hostPath"] == {"path": socket_dir, "type": "DirectoryOrCreate"}
    kubelet_dir = env.get("IOMMUFD_DP_KUBELET_DIR", "/var/lib/kubelet/device-plugins")
    assert mounts[kubelet_dir]["hostPath"]["path"] == "/var/lib/kubelet/device-plugins"
    # The device is read from the node's live /dev.
    device = env["IOMMUFD_DP_IOMMU_DEVICE"]
    dev_mount = os.path.dirname(device)
    assert mounts[dev_mount]["hostPath"]["path"] == "/dev"
    # The private tmpfs for labelled nodes needs its mount point in an image without /run.
    assert "/run/iommufd-device-plugin" in mounts
    # With the plugin watcher the kubelet dials the endpoint by its absolute path.
    if env.get("IOMMUFD_DP_REGISTRATION", "kubelet-socket") != "kubelet-socket":
        for name in ("IOMMUFD_DP_PLUGINS_REGISTRY_DIR", "IOMMUFD_DP_PLUGIN_DIR"):
            assert mounts[env[name]]["hostPath"] == {"path": env[name], "type": "DirectoryOrCreate"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_hit_healthz_and_livez_on_the_metrics_port(rendered, variant):
    container = plugin_container(rendered(variant))
    port = int(env_of(container)["IOMMUFD_DP_METRICS_ADDRESS"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == port
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_placed_like_a_node_component(rendered, variant):
    ds = daemonset(rendered(variant))
    spec = ds["spec"]["template"]["spec"]
    assert ds["metadata"]["namespace"] == "kube-system"
    assert spec["priorityClassName"] == "system-node-critical"
    taints = {t["key"] for t in spec["tolerations"] if t.get("operator") == "Exists"}
    assert {"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"} <= taints
    # GPU nodes: VMs with passed-through GPUs are the plugin's users there (docs/install.md).
    assert {"nvidia.com/gpu", "amd.com/gpu"} <= taints
    wanted = {"kubernetes.io/os": "linux"}
    if variant == "<all components>":  # the iommufd-node component: NFD's label as well
        wanted["feature.node.kubernetes.io/kernel-config.IOMMUFD"] = "true"
    assert spec["nodeSelector"] == wanted
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostPID")
    strategy = ds["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    # The drain (--drain-timeout, 25 s by default) fits in the grace period.
    assert spec["terminationGracePeriodSeconds"] >= 30


def test_selinux_variant_forces_labels_and_runs_as_spc_t(rendered):
    container = plugin_container(rendered("deploy/overlays/selinux"))
    assert env_of(container)["IOMMUFD_DP_SELINUX"] == "on"
    assert container["securityContext"]["seLinuxOptions"] == {"type": "spc_t"}
    assert container["securityContext"]["privileged"] is True


def test_image_tag_is_the_release_version(rendered):
    with open(os.path.join(REPO, "meson.build")) as f:
        version = re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)
    image = plugin_container(rendered("deploy"))["image"]
    assert image.rsplit(":", 1)[1] == version


def test_memory_request_covers_the_measured_peak(rendered):
    """The request is sized from a measurement; measure again, so it cannot go stale:
    110 devices, 200 allocations and handoffs, 20 scrapes, then the peak RSS."""
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    os.environ.setdefault("PLUGIN_BIN", PLUGIN_BIN)
    from harness import Env
    from receiver import allocate_socket, kubevirt_receive
    import socket as socketlib

    with socketlib.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = Env()
    try:
        plugin = env.start("--devices", "110", "--metrics-address", "127.0.0.1:%d" % port)
        client = env.client()
        for i in range(200):
            kubevirt_receive(allocate_socket(client, "iommufd%d" % (i % 110))).close()
            if i % 10 == 0:
                with socketlib.create_connection(("127.0.0.1", port)) as c:
                    c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    while c.recv(65536):
                        pass
        time.sleep(0.1)
        with open("/proc/%d/status" % plugin.pid) as f:
            peak_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    finally:
        problems = env.teardown()
    assert not problems, problems
    from kubernetes.utils import parse_quantity
    resources = plugin_container(rendered("deploy"))["resources"]
    request = parse_quantity(resources["requests"]["memory"])
    limit = parse_quantity(resources["limits"]["memory"])
    peak = peak_kib * 1024
    assert peak <= request, "peak RSS %d KiB is above the memory request %s" % (peak_kib, request)
    assert limit >= 4 * request


# The fields of monitoring.coreos.com/v1 PodMonitor this repository uses, as the
# Prometheus Operator's CRD defines them (its openAPIV3Schema); anything else is
# refused here so a typo cannot hide. metadata and selector go through the typed models.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
PODMONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"},
                                   "matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}


def test_the_network_policy_component_admits_only_prometheus_to_the_metrics_port(rendered):
    """Issue 19 Must 3, the kustomize twin of the chart's networkPolicy (test_helm.py):
    one NetworkPolicy beside the DaemonSet that selects its pods and admits only a
    listed peer, to the port named metrics (an empty peer would admit everybody)."""
    objects = rendered("<all components>")
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert len(policies) == 1, "want the network-policy component's one NetworkPolicy"
    (policy,), ds = policies, daemonset(objects)
    assert policy["metadata"]["namespace"] == ds["metadata"]["namespace"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector and selector.items() <= ds["spec"]["template"]["metadata"]["labels"].items(), \
        "the policy must select the plugin's pods"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert [p["name"] for p in plugin_container(objects)["ports"]] == ["metrics"]
    assert rule.get("from") and all(rule["from"]), "no peer, or an empty one, admits everybody"


def podmonitor_errors(obj):
    from k8s_validate import check_types

    errors = ["PodMonitor: %s at %s" % (e.message, "/".join(map(str, e.absolute_path)))
              for e in jsonschema.Draft7Validator(PODMONITOR_SCHEMA).iter_errors(obj)]
    check_types(obj.get("metadata"), "V1ObjectMeta", "PodMonitor.metadata", errors)
    check_types(obj.get("spec", {}).get("selector"), "V1LabelSelector", "PodMonitor.spec.selector", errors)
    return errors


def test_podmonitor_scrapes_the_plugin_pods_metrics_port(rendered):
    objects = rendered("deploy/overlays/metrics")
    monitor = next(o for o in objects if o["kind"] == "PodMonitor")
    assert not podmonitor_errors(monitor)
    bad = copy.deepcopy(monitor)
    bad["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
    assert podmonitor_errors(bad), "the PodMonitor check must refuse an unknown field"

    ds = daemonset(objects)
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert monitor["metadata"]["namespace"] == ds["metadata"]["namespace"]
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert labels[key] == value
    ports = {p["name"] for p in plugin_container(objects)["ports"]}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9110"
