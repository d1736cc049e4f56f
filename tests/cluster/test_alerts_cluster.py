"""The alert rules (deploy/components/metrics/prometheusrule.yaml) on the metrics of the
plugin pod RUNNING in the real cluster, scraped through the API server's pod proxy
(as docs/install.md's migration loop does): every metric, label and label value the
rules select is in that scrape, and Prometheus's rule engine (promtool test rules),
fed series built from two real scrapes taken before and after a VM-like pod got its
fd, fires only what this node deserves.

The checks are tests/deploy/test_alerts.py's own functions (selectors, selector_errors,
promtool_test), run here on the cluster pod's scrape instead of a locally run plugin.

The node has no IOMMUFD kernel: /dev/iommu is a stand-in character device (1:3) and
the plugin runs with --rlimit-mode=best-effort, so every Allocate counts
rlimit_mode_outcomes_total{outcome="unsupported"} (ENOTTY) and IommufdRlimitModeNotSet
rightly fires for it; every other alert must stay quiet on this otherwise healthy
node. Nothing is claimed about the ioctl on a real iommufd.
"""

import json
import math
import os
import shutil
import sys

import pytest
import yaml

from clusterlib import NAMESPACE, ROOT, delete_vm_pod, kubectl, plugin_pods, run, vm_pod, wait_until

sys.path.insert(0, os.path.join(ROOT, "tests", "deploy"))
import test_alerts as alerts  # noqa: E402  (tests/deploy: the rules' checks, shared)

ALERTS = [r["alert"] for r in alerts.alert_rules()]
P = "iommufd_device_plugin_"


def promtool():
    """As tests/deploy/run.sh finds it: $PROMTOOL, PATH, else Debian bookworm's package unpacked."""
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        found = run(os.path.join(ROOT, "tests", "deploy", "debian-tool.sh"), "prometheus", "bookworm", "promtool",
                    timeout=900).stdout.strip().splitlines()[-1]
    return found


def scrape(pod):
    return kubectl("get", "--raw", "/api/v1/namespaces/%s/pods/%s:9110/proxy/metrics" % (NAMESPACE, pod)).stdout


def value(samples, name, **labels):
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items()))


@pytest.fixture(scope="module")
def running_plugin(cluster):
    pods = plugin_pods()
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]["metadata"]["name"], pods[0]["metadata"]["uid"]


@pytest.mark.parametrize("alert", ALERTS)
def test_every_rule_selects_only_what_the_cluster_pod_exports(running_plugin, alert):
    exported = alerts.series_labels(scrape(running_plugin[0]))
    assert P + "registered" in exported, sorted(exported)
    rule = next(r for r in alerts.alert_rules() if r["alert"] == alert)
    assert alerts.selectors(rule["expr"]), "the rule selects no metric at all"
    errors = alerts.selector_errors(rule["expr"], exported)
    assert not errors, "\n".join(errors)


def promql_series(name, labels):
    return "%s{%s}" % (name, ",".join("%s=%s" % (k, json.dumps(v)) for k, v in sorted(labels.items())))


def promql_value(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return repr(float(v))


def series_from(before, after, extra):
    """promtool input series: each real sample, labelled as a PodMonitor would (extra),
    at `before`'s value for minutes 0-9 and `after`'s for 10-24 ("_": not exported yet)."""
    old = {promql_series(n, dict(l, **extra)): v for n, l, v in before}
    new = {promql_series(n, dict(l, **extra)): v for n, l, v in after}
    return {s: " ".join(["_" if s not in old else promql_value(old[s])] * 10 + [promql_value(v)] * 15)
            for s, v in new.items()}


def test_on_the_cluster_pods_real_scrapes_only_the_stand_ins_rlimit_alert_fires(running_plugin, tmp_path,
                                                                                 monkeypatch):
    pod, uid = running_plugin
    monkeypatch.setattr(alerts, "PROMTOOL", promtool())
    before = alerts.samples(scrape(pod))
    assert value(before, P + "registered") == 1
    name = "alerts-vm"
    delete_vm_pod(name)
    kubectl("create", "-f", "-", input=json.dumps(vm_pod(name, 0)))
    try:
        def consumed():
            now = alerts.samples(scrape(pod))
            done = value(now, P + "handoffs_total", outcome="consumed") > value(before, P + "handoffs_total",
                                                                                outcome="consumed")
            return now if done else None

        wait_until(lambda: "iommufd: received fd=" in kubectl("logs", name, check=False).stdout, 300,
                   "%s to receive its fd" % name, interval=2)
        after = wait_until(consumed, 120, "the plugin to count %s's handoff" % name, interval=2)
    finally:
        delete_vm_pod(name)
    assert [p["metadata"]["uid"] for p in plugin_pods()] == [uid], "the plugin pod changed between the scrapes"
    rose = {o: value(after, P + "rlimit_mode_outcomes_total", outcome=o) -
            value(before, P + "rlimit_mode_outcomes_total", outcome=o)
            for o in ("set", "unsupported", "no_capability", "failed")}
    # One Allocate on the stand-in under best-effort: ENOTTY, counted as unsupported.
    assert rose == {"set": 0, "unsupported": 1, "no_capability": 0, "failed": 0}, rose

    extra = {"namespace": NAMESPACE, "pod": pod}
    series = series_from(before, after, extra)
    with open(alerts.RULES) as f:
        rules = yaml.safe_load(f)
    firing = {a: [] for a in ALERTS}
    firing["IommufdRlimitModeNotSet"] = [dict(extra, outcome="unsupported", severity="critical")]
    result = alerts.promtool_test(tmp_path, rules, firing, series)
    assert result.returncode == 0, result.stdout + result.stderr
    print("promtool on %d real series of %s: %s" % (len(series), pod, result.stdout.strip().splitlines()[-1]))
    # The same evaluation can fail: expecting the rlimit alert quiet must be refused.
    result = alerts.promtool_test(tmp_path, rules, dict(firing, IommufdRlimitModeNotSet=[]), series)
    assert result.returncode != 0 and "IommufdRlimitModeNotSet" in result.stdout + result.stderr
