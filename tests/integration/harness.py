"""The daemon-side harness of the integration tests: process wrapper, per-test world, helpers.

PLUGIN_BIN / RECEIVE_BIN select the binaries (default: <repo>/build/...), so the
same suite runs against the normal and the sanitizer build. Every daemon started
through ``Plugin`` has its stderr captured to a file; at teardown the daemon is
stopped with SIGTERM (so LeakSanitizer runs at exit) and the test FAILS if the
daemon died unexpectedly or printed a sanitizer report.
"""

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from kubelet import REPO, WAIT_SCALE, DevicePluginClient, FakeKubelet, deadline, is_sanitized  # noqa: F401

DEFAULT_SOCKET_NAME = "kubevirt-iommufd.sock"  # --socket-name: KubeVirt's, never registered by us
# The two names an instance of ours serves beside it (the second during a rolling update).
SLOT_NAMES = ("kubevirt-iommufd-0.sock", "kubevirt-iommufd-1.sock")
DEFAULT_RESOURCE = "devices.kubevirt.io/iommufd"
CONTAINER_SOCKET = "/var/run/kubevirt/iommufd.sock"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "ERROR: ")


def _bin(env_name, name):
    return os.path.abspath(os.environ.get(env_name) or os.path.join(REPO, "build", name))


PLUGIN_BIN = _bin("PLUGIN_BIN", "iommufd-device-plugin")
# A command the daemon runs under, e.g. valgrind (scripts/check.sh); its reports must
# contain "ERROR: " to fail the test, like the sanitizers' (valgrind --error-markers).
PLUGIN_WRAPPER = shlex.split(os.environ.get("PLUGIN_WRAPPER", ""))
RECEIVE_BIN = _bin("RECEIVE_BIN", "iommufd-receive")


def child_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    return env


def sanitizer_report(text):
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


def wait_until(predicate, timeout, interval=0.01, what="condition"):
    """Polls predicate until it returns a truthy value (returned) or fails after timeout
    (scaled for this run, see kubelet.WAIT_SCALE)."""
    timeout = deadline(timeout)
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what() if callable(what) else what))
        time.sleep(interval)


def stable_fd_count(plugin, quiet=0.3, timeout=5.0):
    """The daemon's fd count once it has not changed for `quiet` seconds (closes are asynchronous)."""
    end = time.monotonic() + deadline(timeout)
    last, since = plugin.fd_count(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.02)
        now = plugin.fd_count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return last


def settle_fds(plugin, expected, timeout=5.0):
    """Waits until the daemon's fd count is back to `expected`."""
    wait_until(lambda: plugin.fd_count() == expected, timeout,
               what=lambda: "fd count back to %d (now %d: %r)" % (expected, plugin.fd_count(), plugin.fd_targets()))


class Plugin:
    """One run of the daemon binary."""

    def __init__(self, args, workdir, binary=PLUGIN_BIN):
        self.args = PLUGIN_WRAPPER + [binary] + list(args)
        self.stderr_path = os.path.join(workdir, "plugin-%d.stderr" % int(time.monotonic() * 1e6))
        with open(self.stderr_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=child_env()
            )
        self.pid = self.proc.pid
        self.expected_exit = False

    def alive(self):
        return self.proc.poll() is None

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def fd_targets(self):
        out = []
        for fd in os.listdir("/proc/%d/fd" % self.pid):
            try:
                out.append((int(fd), os.readlink("/proc/%d/fd/%s" % (self.pid, fd))))
            except FileNotFoundError:
                pass
        return sorted(out)

    def status_kib(self, field):
        """A /proc/PID/status figure in KiB: "VmRSS" (now), "VmHWM" (the peak)."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError("no %s for pid %d" % (field, self.pid))

    def rss_kib(self):
        return self.status_kib("VmRSS")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=5.0):
        """Waits for the exit this test expects; returns the exit code."""
        self.expected_exit = True
        return self.proc.wait(timeout=deadline(timeout))

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        """Teardown: SIGTERM (exit handlers and LeakSanitizer run), SIGKILL if it hangs.

        Returns a list of problems (empty when all is well).
        """
        problems = []
        if self.proc.poll() is not None and not self.expected_exit:
            problems.append("daemon died during the test with exit code %s" % self.proc.returncode)
        if self.proc.poll() is None:
            # A first signal drains pending handoff sockets (up to --drain-timeout); the
            # second exits at once. Two different signals, so they cannot merge.
            self.proc.send_signal(signal.SIGTERM)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=deadline(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("daemon ignored SIGTERM for 10 s at teardown")
        report = sanitizer_report(self.stderr_text())
        if report:
            problems.append("sanitizer report in the daemon's stderr:\n" + "\n".join(report[:20]))
        if problems:
            tail = self.stderr_text()[-6000:]
            problems.append("--- daemon stderr (tail) ---\n" + tail)
        return problems


class Env:
    """A per-test world: a kubelet directory with a fake kubelet, a socket directory, daemons."""

    def __init__(self):
        # Short paths: sun_path is 108 bytes and pytest's tmp_path can be long.
        self.tmp = tempfile.mkdtemp(prefix="it-", dir="/tmp")
        self.kubelet_dir = os.path.join(self.tmp, "dp")
        self.socket_dir = os.path.join(self.tmp, "fd")  # the daemon creates it
        os.makedirs(self.kubelet_dir)
        self.kubelet = FakeKubelet(self.kubelet_dir)
        self.plugins = []
        self.clients = []
        self.socket_name = DEFAULT_SOCKET_NAME

    @property
    def plugin_socket(self):
        """The DevicePlugin socket the kubelet was last told about: --socket-name, or the
        alternate name a newer instance serves beside an older one (a rolling update)."""
        history = self.kubelet.history
        name = history[-1].endpoint if history else self.slot_name(0)
        return os.path.join(self.kubelet_dir, name)

    def slot_name(self, i):
        """The i-th of our two socket names for this env's --socket-name."""
        stem = self.socket_name[:-len(".sock")] if self.socket_name.endswith(".sock") else self.socket_name
        return "%s-%d%s" % (stem, i, ".sock" if self.socket_name.endswith(".sock") else "")

    @property
    def canonical_socket(self):
        """--socket-name in the kubelet dir: where KubeVirt's plugin serves."""
        return os.path.join(self.kubelet_dir, self.socket_name)

    def base_args(self, iommu_device="/dev/null", rlimit_mode="best-effort"):
        # On /dev/null IOMMU_OPTION fails with ENOTTY: the default --rlimit-mode required
        # would fail every Allocate, so tests that want the handoff ask for best-effort. A
        # test's own --rlimit-mode comes later on the command line and wins; None: the default.
        args = ["--kubelet-dir", self.kubelet_dir, "--socket-dir", self.socket_dir, "--iommu-device", iommu_device]
        return args + (["--rlimit-mode", rlimit_mode] if rlimit_mode else [])

    def start(self, *extra, iommu_device="/dev/null", rlimit_mode="best-effort", start_kubelet=True,
              wait_register=True):
        """Starts the daemon (and the fake kubelet first); by default waits for its Register."""
        if not os.path.exists(PLUGIN_BIN):
            pytest.skip("daemon binary not built: %s (set PLUGIN_BIN)" % PLUGIN_BIN)
        if start_kubelet and not self.kubelet.running:
            self.kubelet.start()
        plugin = Plugin(self.base_args(iommu_device, rlimit_mode) + list(extra), self.tmp)
        self.plugins.append(plugin)
        if wait_register:
            try:
                self.registration = self.kubelet.wait_register(timeout=10)
            except Exception:
                raise AssertionError(
                    "daemon did not register within 10 s; alive=%s\n%s" % (plugin.alive(), plugin.stderr_text()[-4000:])
                )
            wait_until(lambda: os.path.exists(self.plugin_socket), 5, what="the daemon's socket")
        return plugin

    def client(self, **kw):
        """A DevicePlugin client, already connected (so fd baselines include its connection)."""
        c = DevicePluginClient(self.plugin_socket, **kw)
        self.clients.append(c)
        c.wait_ready(timeout=5)
        return c

    def socket_files(self):
        """The files in the socket dir: the top level, and the sockets in the daemons'
        instance dirs (their lock and endpoint record are bookkeeping, not listed)."""
        out = []
        try:
            entries = os.listdir(self.socket_dir)
        except FileNotFoundError:
            return []
        for name in entries:
            path = os.path.join(self.socket_dir, name)
            if not os.path.isdir(path):
                out.append(name)
                continue
            try:
                out += [f for f in os.listdir(path) if f not in (".lock", "endpoint", ".endpoint", "alive")]
            except FileNotFoundError:
                pass
        return sorted(out)

    def instance_dirs(self):
        """The daemons' instance dirs in the socket dir."""
        try:
            return sorted(os.path.join(self.socket_dir, n) for n in os.listdir(self.socket_dir)
                          if os.path.isdir(os.path.join(self.socket_dir, n)) and not n.startswith("."))
        except FileNotFoundError:
            return []

    def teardown(self):
        for c in self.clients:
            c.close()
        problems = []
        for p in self.plugins:
            problems += p.stop()
        self.kubelet.stop()
        if not problems:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems
