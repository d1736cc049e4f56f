"""Issue 7: /metrics and /healthz on --metrics-address (TCP and unix socket), the HTTP
responder's limits, and --log-format=json.

The exposition is parsed with the official Prometheus client's parser (Debian's
python3-prometheus-client), so a format error fails here, not in somebody's Prometheus.
"""

import errno
import json
import os
import re
import socket
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import PLUGIN_BIN, PLUGIN_WRAPPER, REPO, settle_fds, stable_fd_count, wait_until
from receiver import allocate_socket, assert_is_dev_null, kubevirt_receive

PREFIX = "iommufd_device_plugin_"
# Every family /metrics must carry, with its type.
FAMILIES = {
    "build_info": "gauge",
    "registered": "gauge",
    "registrations": "counter",
    "reregistrations": "counter",
    "registration_failures": "counter",
    "socket_recreations": "counter",
    "device_present": "gauge",
    "allocations": "counter",
    "allocation_failures": "counter",
    "list_and_watch_streams_opened": "counter",
    "list_and_watch_streams": "gauge",
    "rlimit_mode_outcomes": "counter",
    "handoff_offers": "counter",
    "handoffs": "counter",
    "handoff_connections_failed": "counter",
    "handoff_pending_sockets": "gauge",
    "handoff_wait_seconds": "histogram",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(address, timeout):
    if isinstance(address, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(address)
    except BaseException:
        s.close()
        raise
    return s


def http_raw(address, request, timeout=10.0):
    """Sends request bytes, reads until the server closes; returns everything it sent."""
    with _connect(address, timeout) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and stopped reading; its answer is still there
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.1 (\d{3}) ", lines[0])
    assert match, "not an HTTP/1.1 status line: %r" % lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(match.group(1)), headers, body


def http_get(address, path, method="GET"):
    raw = http_raw(address, ("%s %s HTTP/1.1\r\nHost: plugin\r\nUser-Agent: test\r\n\r\n" % (method, path)).encode())
    status, headers, body = parse_response(raw)
    if method != "HEAD":
        assert int(headers["content-length"]) == len(body)
    return status, headers, body


def scrape(address):
    """The samples of /metrics as {(name, ((label, value), ...)): value}; checks the format."""
    status, headers, body = http_get(address, "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples[(PREFIX + name, tuple(sorted(labels.items())))]


def wait_serving(address, plugin):
    def up():
        assert plugin.alive(), "daemon exited:\n" + plugin.stderr_text()[-3000:]
        try:
            _connect(address, 1).close()
            return True
        except OSError:
            return False

    wait_until(up, 10, what="the metrics endpoint to accept connections")


def start_with_metrics(env, address, **kw):
    arg = address if isinstance(address, str) else "%s:%d" % address
    plugin = env.start("--devices", "3", "--metrics-address", arg, **kw)
    wait_serving(address, plugin)
    if kw.get("wait_register", True):
        # The kubelet has the Register request; the daemon marks itself registered
        # when the answer arrives, a moment later.
        wait_until(lambda: healthz(address) == 200, 5, what="/healthz 200 after Register")
    return plugin


def healthz(address):
    return http_get(address, "/healthz")[0]


def test_healthz_is_503_before_registration_and_200_after(env):
    address = ("127.0.0.1", free_port())
    plugin = start_with_metrics(env, address, start_kubelet=False, wait_register=False)
    status, _, body = http_get(address, "/healthz")
    assert status == 503 and b"not registered" in body
    assert value(scrape(address), "registered") == 0

    env.kubelet.start()
    env.kubelet.wait_register(timeout=10)
    wait_until(lambda: healthz(address) == 200, 5, what="/healthz to turn 200 after Register")
    samples = scrape(address)
    assert value(samples, "registered") == 1
    assert value(samples, "registrations_total") == 1
    assert plugin.alive()


def test_every_family_is_exposed_with_help_and_type(env):
    address = ("127.0.0.1", free_port())
    start_with_metrics(env, address)
    _, _, body = http_get(address, "/metrics")
    text = body.decode()
    for name, kind in FAMILIES.items():
        full = PREFIX + name + ("_total" if kind == "counter" else "")
        assert "# HELP %s " % full in text, full
        assert "# TYPE %s %s\n" % (full, kind) in text, full
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert families[PREFIX + name].type == kind
    build = families[PREFIX + "build_info"].samples[0]
    version = subprocess.run([PLUGIN_BIN, "--version"], capture_output=True, text=True).stdout.split()[-1]
    assert build.labels == {"version": version} and build.value == 1
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_max_fds",
                 "process_cpu_seconds", "process_start_time_seconds"):
        assert name in families, name


def test_process_max_fds_is_the_daemons_soft_nofile_limit(env):
    address = ("127.0.0.1", free_port())
    plugin = start_with_metrics(env, address)
    with open("/proc/%d/limits" % plugin.pid) as f:
        soft = next(l.split()[3] for l in f if l.startswith("Max open files"))
    samples = scrape(address)
    if PLUGIN_WRAPPER:
        # valgrind (scripts/check.sh) keeps a few fds of the limit for itself and shows
        # the daemon's getrlimit() that much less than /proc says.
        assert int(soft) - 64 <= samples[("process_max_fds", ())] <= int(soft)
    else:
        assert samples[("process_max_fds", ())] == int(soft)
    assert samples[("process_open_fds", ())] < int(soft)


def test_counters_move_after_allocate_and_handoff(env):
    address = ("127.0.0.1", free_port())
    start_with_metrics(env, address)
    before = scrape(address)
    client = env.client()
    stream = client.list_and_watch()
    next(iter(stream))
    path = allocate_socket(client, "iommufd1")

    mid = scrape(address)
    assert value(mid, "allocations_total") == value(before, "allocations_total") + 1
    # /dev/null stands in for /dev/iommu: the RLIMIT_MODE ioctl fails with ENOTTY.
    assert value(mid, "rlimit_mode_outcomes_total", outcome="unsupported") == 1
    assert value(mid, "rlimit_mode_outcomes_total", outcome="set") == 0
    assert value(mid, "handoff_offers_total") == 1
    assert value(mid, "handoff_pending_sockets") == 1
    assert value(mid, "list_and_watch_streams") == 1
    assert value(mid, "list_and_watch_streams_opened_total") == 1

    assert_is_dev_null(kubevirt_receive(path))
    wait_until(lambda: value(scrape(address), "handoff_pending_sockets") == 0, 5,
               what="the pending socket count to drop after the handoff")
    after = scrape(address)
    assert value(after, "handoffs_total", outcome="consumed") == 1
    assert value(after, "handoffs_total", outcome="expired") == 0
    # The wait from Allocate to the ACK: one observation, well under the top bucket.
    assert value(before, "handoff_wait_seconds_count") == 0
    assert value(after, "handoff_wait_seconds_count") == 1
    assert value(after, "handoff_wait_seconds_bucket", le="1800") == 1
    assert value(after, "handoff_wait_seconds_bucket", le="+Inf") == 1
    assert 0 < value(after, "handoff_wait_seconds_sum") < 1800

    stream.cancel()
    wait_until(lambda: value(scrape(address), "list_and_watch_streams") == 0, 5,
               what="the open stream gauge to drop after cancel")


def test_the_wait_histogram_has_the_buckets_operations_md_names(env):
    """Issue 21 Must 4: buckets from fractions of a second to many minutes (a VM start),
    and the ones docs/operations.md tells operators to expect."""
    with open(os.path.join(REPO, "docs", "operations.md")) as f:
        row = next(l for l in f if l.startswith("| `handoff_wait_seconds` |"))
    documented = [float(b) for b in re.search(r"Buckets ([\d., ]+) s;", row).group(1).split(",")]
    address = ("127.0.0.1", free_port())
    start_with_metrics(env, address, wait_register=False)
    exported = sorted(float(dict(labels)["le"]) for name, labels in scrape(address)
                      if name == PREFIX + "handoff_wait_seconds_bucket" and dict(labels)["le"] != "+Inf")
    assert exported == documented, "operations.md says %s" % row
    assert exported[0] <= 1 and exported[-1] >= 1800, exported


def test_failed_allocate_is_counted(env):
    address = ("127.0.0.1", free_port())
    start_with_metrics(env, address)
    with pytest.raises(Exception):
        env.client().allocate(["iommufd99"])
    assert value(scrape(address), "allocation_failures_total") == 1


def test_reregistration_after_kubelet_restart_is_counted(env):
    address = ("127.0.0.1", free_port())
    start_with_metrics(env, address)
    env.kubelet.restart()
    env.kubelet.wait_register(timeout=10)
    wait_until(lambda: value(scrape(address), "reregistrations_total") == 1, 5,
               what="reregistrations_total to reach 1")
    samples = scrape(address)
    assert value(samples, "registrations_total") == 2
    assert value(samples, "socket_recreations_total") == 1
    wait_until(lambda: healthz(address) == 200, 5, what="/healthz 200 after re-registering")


def test_metrics_and_healthz_over_a_unix_socket(env):
    path = os.path.join(env.tmp, "metrics.sock")
    plugin = start_with_metrics(env, path)
    wait_until(lambda: healthz(path) == 200, 5, what="/healthz 200 over the unix socket")
    path_alloc = allocate_socket(env.client(), "iommufd0")
    assert value(scrape(path), "handoff_pending_sockets") == 1
    assert_is_dev_null(kubevirt_receive(path_alloc))
    plugin.signal(15)
    assert plugin.wait(10) == 0
    assert not os.path.exists(path), "the daemon should remove its metrics socket at exit"


def test_a_stale_unix_socket_is_replaced(env):
    path = os.path.join(env.tmp, "metrics.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    start_with_metrics(env, path)
    assert healthz(path) == 200


def test_head_has_the_headers_of_get_and_no_body(env):
    address = ("127.0.0.1", free_port())
    start_with_metrics(env, address)
    raw = http_raw(address, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = parse_response(raw)
    assert status == 200 and body == b"" and headers["content-length"] == "3"


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"GET /metrics HTTP/1.1\r\n\r\n", 400),                        # HTTP/1.1 without Host
    (b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # two Hosts
    (b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400),            # space before the colon
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),  # obsolete line folding
    (b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),          # a TLS ClientHello
    (b"GET /metr\x00ics HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET http://plugin/healthz?x=1 HTTP/1.1\r\nHost: plugin\r\n\r\n", 200),  # absolute-form
    (b"GET /healthz HTTP/1.0\r\n\r\n", 200),                         # 1.0 needs no Host
])
def test_requests_get_the_status_the_rfc_asks_for(env, request_bytes, status):
    address = ("127.0.0.1", free_port())
    plugin = start_with_metrics(env, address)
    got, headers, _ = parse_response(http_raw(address, request_bytes))
    assert got == status
    assert headers["connection"] == "close"
    if status == 405:
        assert headers["allow"] == "GET, HEAD"
    assert plugin.alive()


def test_a_10_kib_request_line_gets_431_and_the_daemon_survives(env):
    address = ("127.0.0.1", free_port())
    plugin = start_with_metrics(env, address)
    huge = b"GET /" + b"a" * 10240 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, _, _ = parse_response(http_raw(address, huge))
    assert status == 431
    huge_header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"j" * 10240 + b"\r\n\r\n"
    assert parse_response(http_raw(address, huge_header))[0] == 431
    assert plugin.alive()
    assert healthz(address) == 200


def test_slow_and_idle_connections_are_cut_and_the_cap_holds(env):
    """16 connections at once; at the cap a new one evicts the oldest that has not sent
    a complete request head, and is served at once. An idle one is closed after 5 s, a
    half-sent request gets 408."""
    address = ("127.0.0.1", free_port())
    plugin = start_with_metrics(env, address)
    idle = [_connect(address, 15) for _ in range(15)]
    partial = _connect(address, 15)
    partial.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    # Accepted in order, so /healthz answered (a sentinel) means all of them are in;
    # reaching the cap evicted the oldest idle one each time, keeping a slot free.
    assert healthz(address) == 200
    assert idle[0].recv(1) == b"", "the oldest idle connection is evicted at the cap"
    assert idle[1].recv(1) == b"", "... and the next oldest for the next one"
    waiting = _connect(address, 15)
    waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while True:
        chunk = waiting.recv(4096)
        if not chunk:
            break
        answer += chunk
    assert parse_response(answer)[0] == 200
    assert idle[2].recv(1) == b"", "evicted for the connection after"

    got = b""
    while True:
        chunk = partial.recv(4096)
        if not chunk:
            break
        got += chunk
    assert parse_response(got)[0] == 408
    for s in idle[3:]:
        assert s.recv(1) == b"", "an idle connection should be closed at its deadline"
    for s in idle:
        s.close()
    partial.close()
    waiting.close()
    assert plugin.alive()


def armed_timerfds(pid):
    """The daemon's timerfds that are armed now, read from its own fdinfo."""
    armed = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) != "anon_inode:[timerfd]":
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                info = f.read()
        except FileNotFoundError:
            continue
        if "it_value: (0, 0)" not in info:
            armed.append(int(fd))
    return armed


def test_no_wakeups_while_idle_with_metrics_on(env):
    address = ("127.0.0.1", free_port())
    plugin = start_with_metrics(env, address)
    before = stable_fd_count(plugin)
    scrape(address)

    def switches():
        with open("/proc/%d/status" % plugin.pid) as f:
            return sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)

    # Idle means: the scrape's connection is closed (the daemon has read its EOF and
    # closed it, however late a loaded machine lets it) and no timer is armed. Only
    # then is any further wake-up the daemon's own doing.
    settle_fds(plugin, before, timeout=30)
    # Disarmed in the same callback that closed the connection: no waiting for it.
    assert armed_timerfds(plugin.pid) == [], "a timer outlived the connection it was for"
    first = switches()
    # Past the scrape connection's 5 s deadline: a timer left armed for it would fire.
    time.sleep(5.5)
    assert armed_timerfds(plugin.pid) == []
    assert switches() == first, "the daemon woke up while nothing happened"


def test_a_bad_metrics_address_fails_start_with_a_reason(env):
    env.kubelet.start()
    result = subprocess.run(
        [PLUGIN_BIN] + env.base_args() + ["--metrics-address", "nohost:9"],
        capture_output=True, text=True, timeout=10,
    )
    assert result.returncode == 1
    assert "cannot serve metrics on 'nohost:9'" in result.stderr


def test_a_taken_metrics_port_fails_start(env):
    env.kubelet.start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [PLUGIN_BIN] + env.base_args() + ["--metrics-address", "127.0.0.1:%d" % port],
            capture_output=True, text=True, timeout=10,
        )
    assert result.returncode == 1
    assert "(EADDRINUSE)" in result.stderr, result.stderr


def test_json_log_lines_are_one_object_each(env):
    # No drain: the pending socket would keep it for --drain-timeout.
    plugin = env.start("--devices", "3", "--log-format", "json", "--drain-timeout", "0")
    allocate_socket(env.client(), "iommufd0")
    # The kubelet has the Register request; the daemon logs once it reads the answer.
    wait_until(lambda: "registered with the kubelet" in plugin.stderr_text(), 10,
               what="the registration log line")
    plugin.signal(15)
    assert plugin.wait(10) == 0
    lines = plugin.stderr_text().splitlines()
    assert len(lines) >= 4
    for line in lines:
        entry = json.loads(line)
        assert set(entry) >= {"ts", "level", "caller", "msg"}, line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["ts"])
        assert entry["level"] in ("info", "warning", "error")
        assert re.fullmatch(r"[\w.]+\.c:\d+", entry["caller"])
    assert any("registered with the kubelet" in json.loads(l)["msg"] for l in lines)


def test_json_lines_carry_the_events_fields_as_keys(env):
    plugin = env.start("--devices", "3", "--log-format", "json", "--drain-timeout", "0")
    path = allocate_socket(env.client(), "iommufd2")
    assert_is_dev_null(kubevirt_receive(path))
    wait_until(lambda: "handed the fd of iommufd2" in plugin.stderr_text(), 10,
               what="the handoff audit line")
    entries = [json.loads(l) for l in plugin.stderr_text().splitlines()]
    allocated = next(e for e in entries if e["msg"].startswith("allocated iommufd2"))
    assert allocated["device"] == "iommufd2" and allocated["socket"] == path
    handed = next(e for e in entries if e["msg"].startswith("handed the fd of iommufd2"))
    assert handed["device"] == "iommufd2" and handed["socket"] == path
    assert handed["peer_pid"] > 0 and handed["uid"] == os.getuid()
    assert handed["pid"] == plugin.pid  # the daemon's own, as before
    registered = next(e for e in entries if e["msg"].startswith("registered with the kubelet"))
    assert registered["resource"] == "devices.kubevirt.io/iommufd"


def test_a_failed_allocate_logs_errno_and_reason_as_keys(env):
    """Issue 21 Must 4: the errno and the reason of a real failure are keys, not only text."""
    plugin = env.start("--devices", "3", "--log-format", "json")
    with pytest.raises(Exception):
        env.client().allocate(["iommufd99"])
    wait_until(lambda: "Allocate failed" in plugin.stderr_text(), 10, what="the Allocate failure line")
    entries = [json.loads(l) for l in plugin.stderr_text().splitlines()]
    (failed,) = [e for e in entries if e["msg"].startswith("Allocate failed")]
    assert failed["level"] == "error" and failed["errno"] == errno.EINVAL, failed
    assert 'unknown device id "iommufd99"' in failed["reason"] and failed["reason"] in failed["msg"], failed


def test_help_and_the_start_up_line_name_every_endpoint(env):
    """Issue 21: /livez (the liveness probe's) is named beside /metrics and /healthz."""
    help_text = subprocess.run([PLUGIN_BIN, "--help"], capture_output=True, text=True, timeout=30).stdout
    (line,) = [l for l in help_text.splitlines() if "--metrics-address" in l]
    assert all(path in line for path in ("/metrics", "/healthz", "/livez")), line
    address = ("127.0.0.1", free_port())
    plugin = start_with_metrics(env, address, wait_register=False)
    want = "serving /metrics, /healthz and /livez on 127.0.0.1:%d" % address[1]
    wait_until(lambda: want in plugin.stderr_text(), 10, what="the start-up line naming the endpoints")


def test_log_format_comes_from_the_environment_too(env):
    os.environ["IOMMUFD_DP_LOG_FORMAT"] = "json"
    try:
        plugin = env.start("--devices", "1")
    finally:
        del os.environ["IOMMUFD_DP_LOG_FORMAT"]
    plugin.signal(15)
    assert plugin.wait(10) == 0
    for line in plugin.stderr_text().splitlines():
        json.loads(line)


def test_json_logs_escape_quotes_controls_and_invalid_utf8(env):
    device = os.path.join(env.tmp.encode(), b'dev-"q"\\\t\xff')
    plugin = env.start("--devices", "1", "--log-format", "json", iommu_device=device.decode("utf-8", "surrogateescape"))
    plugin.signal(15)
    assert plugin.wait(10) == 0
    messages = [json.loads(line)["msg"] for line in plugin.stderr_text().splitlines()]
    assert any('dev-"q"\\\t\ufffd' in m for m in messages), messages


def test_healthz_follows_the_plugin_watcher_registration(env):
    from test_plugin_watcher import PluginWatcherClient, pr

    address = ("127.0.0.1", free_port())
    registry = os.path.join(env.tmp, "plugins_registry")
    plugin = env.start("--registration", "plugin-watcher", "--plugins-registry-dir", registry,
                       "--plugin-dir", os.path.join(env.tmp, "plugins", "kubevirt-iommufd"),
                       "--metrics-address", "%s:%d" % address, start_kubelet=False, wait_register=False)
    wait_serving(address, plugin)
    assert healthz(address) == 503
    samples = scrape(address)
    assert value(samples, "registered") == 0
    assert (PREFIX + "registrations_total", ()) not in samples, "no kubelet.sock path in this mode"

    watcher = PluginWatcherClient(os.path.join(registry, "kubevirt-iommufd.sock"))
    try:
        watcher.get_info(pr.InfoRequest(), timeout=5)
        watcher.notify(pr.RegistrationStatus(plugin_registered=True), timeout=5)
        assert healthz(address) == 200
        samples = scrape(address)
        assert value(samples, "registered") == 1
        assert value(samples, "plugin_watcher_info_requests_total") == 1
        assert value(samples, "plugin_watcher_registrations_total") == 1
        watcher.notify(pr.RegistrationStatus(plugin_registered=False, error="no"), timeout=5)
        assert healthz(address) == 503
        assert value(scrape(address), "plugin_watcher_registration_failures_total") == 1
    finally:
        watcher.close()
