"""Issue 13: the alert rules (deploy/components/metrics/prometheusrule.yaml, also the
chart's) name only what the plugin exports: a running plugin is scraped, and every
metric, label and label value each rule's expression selects must be among its
series. Every runbook_url must point at a heading of docs/operations.md."""

import os
import re
import socket
import subprocess
import sys
import urllib.parse

import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RULES = os.path.join(REPO, "deploy", "components", "metrics", "prometheusrule.yaml")
OPERATIONS = os.path.join(REPO, "docs", "operations.md")
PLUGIN_BIN = os.environ.get("PLUGIN_BIN", os.path.join(REPO, "build", "iommufd-device-plugin"))
PROMTOOL = os.environ.get("PROMTOOL")

# PromQL words that are not metric names (prometheus/promql/parser/lex.go: key, and the
# aggregators and functions, which are always followed by '(' and skipped as such).
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "atan2", "inf", "nan"}
# These take a parenthesised list of label names, not expressions.
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(r'''\s+|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|\{[^}]*\}|\[[^\]]*\]|[0-9][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*|.''')
MATCHER = re.compile(r'''\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"\s*,?''')


def selectors(expr):
    """The vector selectors of a PromQL expression: [(metric, [(label, op, value)])]."""
    tokens = [t for t in TOKEN.findall(expr) if not t.isspace()]
    found = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", t):
            if t in LABEL_LISTS and following == "(":
                i = tokens.index(")", i)  # skip the label names
            elif t in KEYWORDS or following in ("(", "by", "without"):
                pass  # an operator, a modifier, a function or an aggregation (`sum by (x) (...)`)
            else:
                matchers = parse_matchers(following) if following.startswith("{") else []
                found.append((t, matchers))
        elif t.startswith("{"):  # {__name__="..."} without a name in front
            matchers = parse_matchers(t)
            names = [v for label, op, v in matchers if label == "__name__" and op == "="]
            if names:
                found.append((names[0], [m for m in matchers if m[0] != "__name__"]))
        i += 1
    return found


def parse_matchers(braces):
    body = braces[1:-1]
    out, pos = [], 0
    while pos < len(body.strip()):
        m = MATCHER.match(body, pos)
        assert m, "cannot parse label matchers %r" % braces
        out.append((m.group(1), m.group(2), m.group(3)))
        pos = m.end()
    return out


# kube-state-metrics' DaemonSet series the absent-plugin alert reads (its documented
# names and labels: kube-state-metrics docs/metrics/workload/daemonset-metrics.md), as
# it exports them for the kustomize base's DaemonSet.
KUBE_STATE_METRICS = {
    name: [{"namespace": "kube-system", "daemonset": "iommufd-device-plugin"}]
    for name in ("kube_daemonset_status_desired_number_scheduled", "kube_daemonset_status_number_ready")
}


def selector_errors(expr, series):
    """What expr selects that series ({metric: [label dicts]}) does not have, besides the
    kube-state-metrics series the absent-plugin alert reads (KUBE_STATE_METRICS), which no
    plugin exports."""
    series = dict(KUBE_STATE_METRICS, **series)
    errors = []
    for name, matchers in selectors(expr):
        if name not in series:
            errors.append("%r: no metric %s is exported" % (expr, name))
            continue
        for label, op, value in matchers:
            values = {s.get(label) for s in series[name]} - {None}
            if not values:
                errors.append("%r: %s has no label %s" % (expr, name, label))
            elif op == "=" and value not in values:
                errors.append("%r: %s{%s} is never %r (exported: %s)" % (expr, name, label, value, sorted(values)))
            elif op == "=~":
                # Each alternative of a plain alternation must exist; any regex must match something.
                wanted = value.split("|") if re.fullmatch(r"[a-zA-Z0-9_]+(\|[a-zA-Z0-9_]+)*", value) else [value]
                for alternative in wanted:
                    if not any(re.fullmatch(alternative, v) for v in values):
                        errors.append("%r: %s{%s} never matches %r (exported: %s)" % (expr, name, label, alternative, sorted(values)))
    return errors


def samples(body):
    """[(name, labels, value)] of a /metrics body (the Prometheus text format)."""
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(body)
            for s in family.samples]


def series_labels(body):
    """{metric: [labels of each series]} of a /metrics body."""
    series = {}
    for name, labels, _ in samples(body):
        series.setdefault(name, []).append(labels)
    return series


def alert_rules():
    with open(RULES) as f:
        rule = yaml.safe_load(f)
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def exported():
    """{metric: [labels of each series]} scraped from a running plugin, registered with
    the integration tests' kubelet."""
    if not os.path.exists(PLUGIN_BIN):
        pytest.fail("daemon binary not built: %s (set PLUGIN_BIN or build first)" % PLUGIN_BIN)
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    os.environ.setdefault("PLUGIN_BIN", PLUGIN_BIN)
    from harness import Env, wait_until

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = Env()
    try:
        env.start("--devices", "2", "--metrics-address", "127.0.0.1:%d" % port)

        def scrape():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    data = b""
                    while chunk := c.recv(65536):
                        data += chunk
            except OSError:
                return None
            head, _, body = data.partition(b"\r\n\r\n")
            return body.decode() if head.startswith(b"HTTP/1.1 200") else None

        body = wait_until(scrape, 10, what="/metrics")
    finally:
        problems = env.teardown()
    assert not problems, problems
    series = series_labels(body)
    assert "iommufd_device_plugin_registered" in series, sorted(series)
    return series


def test_the_expression_reader_finds_metrics_and_nothing_else():
    expr = ('sum by (outcome, pod) (rate(a_total{outcome=~"x|y", b!="c"}[5m] offset 1h)) > on (instance) '
            'group_left (node) b_info unless ignoring(job) {__name__="c_gauge"} == bool 1 and d')
    assert selectors(expr) == [("a_total", [("outcome", "=~", "x|y"), ("b", "!=", "c")]), ("b_info", []),
                               ("c_gauge", []), ("d", [])]


def test_a_rule_naming_what_is_not_exported_fails(exported):
    """The check itself must be able to fail: a wrong name, label and value."""
    assert selector_errors("increase(iommufd_device_plugin_allocation_failure_total[5m]) > 0", exported)
    assert selector_errors('iommufd_device_plugin_handoffs_total{reason="expired"}', exported)
    assert selector_errors('iommufd_device_plugin_handoffs_total{outcome="expird"}', exported)
    assert selector_errors('iommufd_device_plugin_rlimit_mode_outcomes_total{outcome=~"set|nope"}', exported)
    assert not selector_errors('iommufd_device_plugin_handoffs_total{outcome="expired"}', exported)


@pytest.mark.parametrize("alert", [r["alert"] for r in alert_rules()])
def test_every_rule_selects_only_what_the_plugin_exports(exported, alert):
    rule = next(r for r in alert_rules() if r["alert"] == alert)
    assert selectors(rule["expr"]), "the rule selects no metric at all"
    errors = selector_errors(rule["expr"], exported)
    assert not errors, "\n".join(errors)


def github_anchors(markdown):
    """The anchors GitHub gives a document's headings (lower case, punctuation dropped,
    spaces to '-', -1, -2... for repeats)."""
    anchors, seen = set(), {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else "%s-%d" % (slug, n))
    return anchors


def test_every_runbook_url_points_at_a_heading_of_operations_md():
    with open(OPERATIONS) as f:
        anchors = github_anchors(f.read())
    assert "upgrades-restarts-and-crashes-what-a-starting-vm-can-count-on" in anchors  # the slugs are GitHub's
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {"IommufdPluginNotRegistered", "IommufdRlimitModeNotSet",
                                           "IommufdHandoffsAbandoned", "IommufdUnauthorizedPeer",
                                           "IommufdPodResourcesFailing", "IommufdDeviceMissing"}
    for rule in rules:
        url = urllib.parse.urlparse(rule["annotations"]["runbook_url"])
        assert url.path.endswith("/docs/operations.md"), url
        assert url.fragment in anchors, "%s: no heading #%s in docs/operations.md" % (rule["alert"], url.fragment)
        assert url.fragment == rule["alert"].lower(), "each alert has its own heading"


DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
# monitoring.coreos.com/v1 PrometheusRule as the Prometheus Operator's CRD defines the
# fields used here (openAPIV3Schema); anything else is refused, so a typo cannot hide.
PROMETHEUSRULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object", "additionalProperties": False,
            "properties": {"groups": {"type": "array", "items": {
                "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": DURATION},
                    "rules": {"type": "array", "items": {
                        "type": "object", "required": ["expr"], "additionalProperties": False,
                        "properties": {
                            "alert": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                            "record": {"type": "string"},
                            "expr": {"type": ["string", "integer"]},
                            "for": {"type": "string", "pattern": DURATION},
                            "keep_firing_for": {"type": "string", "pattern": DURATION},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                    }},
                },
            }}},
        },
    },
}


def prometheusrule_errors(obj):
    from k8s_validate import check_types

    errors = ["PrometheusRule: %s at %s" % (e.message, "/".join(map(str, e.absolute_path)))
              for e in jsonschema.Draft7Validator(PROMETHEUSRULE_SCHEMA).iter_errors(obj)]
    check_types(obj.get("metadata"), "V1ObjectMeta", "PrometheusRule.metadata", errors)
    for group in (obj.get("spec") or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" in rule and "runbook_url" not in (rule.get("annotations") or {}):
                errors.append("PrometheusRule: alert %s has no runbook_url" % rule["alert"])
    return errors


def test_the_rule_file_is_a_valid_prometheusrule():
    with open(RULES) as f:
        rule = yaml.safe_load(f)
    assert not prometheusrule_errors(rule)
    bad = yaml.safe_load(yaml.safe_dump(rule))
    bad["spec"]["groups"][0]["rules"][0]["fro"] = "5m"
    assert prometheusrule_errors(bad), "the check must refuse an unknown field"


@pytest.mark.skipif(not PROMTOOL, reason="PROMTOOL unset (tests/deploy/run.sh sets it from Debian's prometheus package)")
def test_promtool_accepts_the_rules(tmp_path):
    """Prometheus's own parser on every expression (promtool check rules)."""
    with open(RULES) as f:
        rule = yaml.safe_load(f)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: %d rules found" % len(alert_rules()) in result.stdout, result.stdout


# Each alert evaluated by Prometheus's rule engine (promtool test rules) on series named
# as the plugin exports them: pod a is in trouble everywhere, pod b stands aside for a
# foreign plugin, pod c is well. Counters rise by one a minute where they should alert.
P = "iommufd_device_plugin_"
SERIES = {
    P + 'registered{pod="a"}': "0x25", P + 'socket_conflict{pod="a"}': "0x25",
    P + 'registered{pod="b"}': "0x25", P + 'socket_conflict{pod="b"}': "1x25",
    P + 'registered{pod="c"}': "1x25", P + 'socket_conflict{pod="c"}': "0x25",
    P + 'device_present{pod="a"}': "0x25", P + 'device_present{pod="c"}': "1x25",
    P + 'rlimit_mode_outcomes_total{pod="a",outcome="unsupported"}': "0+1x25",
    P + 'rlimit_mode_outcomes_total{pod="c",outcome="set"}': "0+1x25",
    P + 'allocation_failures_total{pod="a"}': "0+1x25",
    P + 'allocation_failures_total{pod="c"}': "0x25",
    P + 'handoffs_total{pod="a",outcome="expired"}': "0+1x25",
    P + 'handoffs_total{pod="a",outcome="abandoned"}': "0+1x25",
    P + 'handoffs_total{pod="c",outcome="abandoned"}': "0 1 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2",
    P + 'handoffs_total{pod="c",outcome="consumed"}': "0+1x25",
    P + 'handoff_connections_failed_total{pod="a",reason="unauthorized"}': "0+1x25",
    P + 'handoff_connections_failed_total{pod="c",reason="peer_gone"}': "0+1x25",
    P + 'pod_resources_list_failures_total{pod="a"}': "0+1x25",
    P + 'pod_resources_lists_total{pod="c"}': "0+1x25",
    P + 'handoff_rescues_total{pod="a",outcome="failed"}': "0+1x25",
    P + 'handoff_rescues_total{pod="c",outcome="ok"}': "0+1x25",
}
FIRING = {
    "IommufdPluginNotRegistered": [{"pod": "a", "severity": "critical"}],
    "IommufdSocketConflict": [{"pod": "b", "severity": "warning"}],
    "IommufdDeviceMissing": [{"pod": "a", "severity": "warning"}],
    "IommufdRlimitModeNotSet": [{"pod": "a", "outcome": "unsupported", "severity": "critical"}],
    "IommufdAllocationsFailing": [{"pod": "a", "severity": "warning"}],
    "IommufdHandoffsExpiring": [{"pod": "a", "outcome": "expired", "severity": "warning"}],
    "IommufdHandoffsAbandoned": [{"pod": "a", "outcome": "abandoned", "severity": "info"}],
    "IommufdUnauthorizedPeer": [{"pod": "a", "reason": "unauthorized", "severity": "warning"}],
    "IommufdPodResourcesFailing": [{"pod": "a", "severity": "warning"}],
    "IommufdRescueFailed": [{"pod": "a", "outcome": "failed", "severity": "warning"}],
}


def promtool_test(tmp_path, rules, firing, series=None):
    """promtool test rules: at 20m of 1m-spaced series ({series: values}, default
    SERIES), each alert of `firing` fires with exactly the labels listed."""
    # Without annotations: promtool compares them too, and they are prose.
    groups = yaml.safe_load(yaml.safe_dump(rules["spec"]["groups"]))
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in (series or SERIES).items()],
            "alert_rule_test": [{"eval_time": "20m", "alertname": name,
                                 "exp_alerts": [{"exp_labels": labels} for labels in alerts]}
                                for name, alerts in firing.items()],
        }],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    return subprocess.run([PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


# IommufdPluginNotReady: DaemonSet a (3 nodes wanted, 2 ready pods) fires, and so does
# the DRA driver's in d (2 wanted, none ready); b (2 of 2) and c (2 wanted, 1 ready for
# 5 minutes only, a rollout) do not, nor does another DaemonSet.
KSM = {
    'kube_daemonset_status_desired_number_scheduled{daemonset="iommufd-device-plugin",namespace="a"}': "3x25",
    'kube_daemonset_status_number_ready{daemonset="iommufd-device-plugin",namespace="a"}': "2x25",
    'kube_daemonset_status_desired_number_scheduled{daemonset="iommufd-device-plugin",namespace="b"}': "2x25",
    'kube_daemonset_status_number_ready{daemonset="iommufd-device-plugin",namespace="b"}': "2x25",
    'kube_daemonset_status_desired_number_scheduled{daemonset="iommufd-device-plugin",namespace="c"}': "2x25",
    'kube_daemonset_status_number_ready{daemonset="iommufd-device-plugin",namespace="c"}': "2x14 1x5 2x5",
    'kube_daemonset_status_desired_number_scheduled{daemonset="other",namespace="a"}': "3x25",
    'kube_daemonset_status_number_ready{daemonset="other",namespace="a"}': "0x25",
    'kube_daemonset_status_desired_number_scheduled{daemonset="iommufd-dra-driver",namespace="d"}': "2x25",
    'kube_daemonset_status_number_ready{daemonset="iommufd-dra-driver",namespace="d"}': "0x25",
}
SERIES.update(KSM)
FIRING["IommufdPluginNotReady"] = [{"daemonset": "iommufd-device-plugin", "namespace": "a", "severity": "warning"},
                                   {"daemonset": "iommufd-dra-driver", "namespace": "d", "severity": "warning"}]


def test_the_scenarios_use_exported_names_and_cover_every_alert(exported):
    assert set(FIRING) == {r["alert"] for r in alert_rules()}, "every alert needs its scenario"
    for series in SERIES:
        name = series.split("{")[0]
        assert name in dict(exported, **KUBE_STATE_METRICS), \
            "the scenario uses %s, which neither the plugin nor kube-state-metrics exports" % name


@pytest.mark.skipif(not PROMTOOL, reason="PROMTOOL unset (tests/deploy/run.sh sets it from Debian's prometheus package)")
def test_each_alert_fires_for_the_pod_in_trouble_and_no_other(tmp_path):
    with open(RULES) as f:
        rules = yaml.safe_load(f)
    result = promtool_test(tmp_path, rules, FIRING)
    assert result.returncode == 0, result.stdout + result.stderr
    # The evaluation can fail: expect the conflicting pod b to be reported as unregistered.
    wrong = dict(FIRING, IommufdPluginNotRegistered=FIRING["IommufdPluginNotRegistered"] + [
        {"pod": "b", "severity": "critical"}])
    result = promtool_test(tmp_path, rules, wrong)
    assert result.returncode != 0 and "IommufdPluginNotRegistered" in result.stdout + result.stderr
    # And for the absent plugin: the short dip of c (a rollout) must not count.
    wrong = dict(FIRING, IommufdPluginNotReady=FIRING["IommufdPluginNotReady"] + [
        {"daemonset": "iommufd-device-plugin", "namespace": "c", "severity": "warning"}])
    result = promtool_test(tmp_path, rules, wrong)
    assert result.returncode != 0 and "IommufdPluginNotReady" in result.stdout + result.stderr


@pytest.mark.skipif(not PROMTOOL, reason="PROMTOOL unset (tests/deploy/run.sh sets it from Debian's prometheus package)")
def test_device_missing_fires_only_after_ten_minutes_without_the_device(tmp_path):
    """Issue 19: a missing /dev/iommu under --missing-device=allow is an alert. A node
    whose device is back (pod c) or was gone less than 10 minutes (pod b) is quiet."""
    with open(RULES) as f:
        rules = yaml.safe_load(f)
    series = {P + 'device_present{pod="a"}': "1 1 1 1 1 0x20",
              P + 'device_present{pod="b"}': "1x12 0x12",
              P + 'device_present{pod="c"}': "0x5 1x20"}
    result = promtool_test(tmp_path, rules, {"IommufdDeviceMissing": [{"pod": "a", "severity": "warning"}]},
                           series)
    assert result.returncode == 0, result.stdout + result.stderr
