"""Issue 5 (faults): fds, socket directory, device, kubelet and peers failing at run time.

Each fault must give a clear error where one is due, leave the daemon running, and be
recovered from once the cause is gone.
"""

import contextlib
import os
import queue
import random
import resource
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

import grpc
import pytest

import h2raw
from harness import settle_fds, stable_fd_count, wait_until
from kubelet import KUBELET_SOCKET, DevicePluginClient
from receiver import allocate_socket, assert_is_dev_null, connect, kubevirt_receive, receive_on, ACK

# The daemon names the errno in its messages (src/basic/error_text.c), whatever the libc:
# the tests look for the name, not a libc's wording.
TOO_MANY_FILES = "(EMFILE)"
NO_SPACE = "(ENOSPC)"
READ_ONLY = "(EROFS)"


# -- helpers -------------------------------------------------------------------------------

def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def limit_fds(plugin, n):
    """Sets the daemon's soft RLIMIT_NOFILE (the hard one stays, so it can be raised again)."""
    _, hard = resource.prlimit(plugin.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(plugin.pid, resource.RLIMIT_NOFILE, (n, hard))


def handoff_sockets(env):
    return [f for f in env.socket_files() if f.endswith(".sock")]


def allocate_until_refused(client, first, count):
    """Allocates iommufd<first>.. one by one until one fails; returns (paths, the RpcError)."""
    paths = []
    for i in range(first, first + count):
        try:
            paths.append(allocate_socket(client, "iommufd%d" % i))
        except grpc.RpcError as err:
            return paths, err
    raise AssertionError("%d allocations succeeded; none was refused" % count)


def exhaust_fds(plugin, client, first, offers):
    """Caps the daemon's fds so exactly `offers` more offers (2 fds each) fit, makes them,
    and checks that the next Allocate is refused for want of fds. Returns the socket paths."""
    limit = stable_fd_count(plugin) + 2 * offers
    limit_fds(plugin, limit)
    paths, err = allocate_until_refused(client, first, offers + 5)
    assert len(paths) == offers, "%d offers fit under the limit, want %d" % (len(paths), offers)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert TOO_MANY_FILES in err.details(), err.details()
    assert plugin.fd_count() == limit, "the daemon should be exactly at its fd limit"
    assert plugin.alive()
    return paths


def receive_in_background(path, timeout):
    """Runs kubevirt_receive(path) in a thread; the returned queue gets its result or exception."""
    out = queue.Queue()

    def run():
        try:
            out.put(kubevirt_receive(path, timeout=timeout))
        except Exception as e:  # noqa: BLE001 - handed to the test thread
            out.put(e)

    threading.Thread(target=run, daemon=True).start()
    return out


def result_of(q, timeout):
    got = q.get(timeout=timeout)
    if isinstance(got, Exception):
        raise got
    return got


@contextlib.contextmanager
def tmpfs_at(path, options):
    """A tmpfs mounted at path for the duration (lazily unmounted even if the daemon still uses it)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "it-faults", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def remount(path, options):
    subprocess.run(["mount", "-o", "remount," + options, path], check=True)


class StreamReader:
    """Reads a ListAndWatch stream in a thread, so updates can be awaited with a timeout."""

    def __init__(self, client):
        self.call = client.list_and_watch()
        self.updates = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for resp in self.call:
                self.updates.put(resp)
        except grpc.RpcError as err:
            self.updates.put(err)

    def next(self, timeout=5.0):
        got = self.updates.get(timeout=timeout)
        if isinstance(got, grpc.RpcError):
            raise got
        return got

    def cancel(self):
        self.call.cancel()


def healths(resp):
    return {d.health for d in resp.devices}


# -- file descriptors exhausted ---------------------------------------------------------------

def test_fd_exhaustion_refuses_allocate_with_resource_exhausted_and_recovers_after_a_handoff(env):
    plugin = env.start("--devices", "110")
    client = env.client()
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd0")))
    # A consumer connected before the exhaustion: its ACK is what frees fds later.
    early = allocate_socket(client, "iommufd1")
    before = stable_fd_count(plugin)
    early_peer = connect(early)
    wait_until(lambda: plugin.fd_count() == before + 1, 5, what="the daemon accepting the early consumer")
    paths = exhaust_fds(plugin, client, 2, offers=4)
    # Requests that need no fd are still answered on the open connection.
    assert client.get_device_plugin_options().get_preferred_allocation_available
    # A consumer of a later offer now waits: accepting it needs an fd.
    waiting = receive_in_background(paths[0], timeout=20)
    with early_peer:
        got = receive_on(early_peer)
        early_peer.sendall(ACK)
    assert_is_dev_null(got)
    # Consuming the early offer freed its fds: the waiting consumer is served ...
    assert_is_dev_null(result_of(waiting, 20))
    # ... and Allocate works again, end to end.
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd100")))
    for path in paths[1:]:
        assert_is_dev_null(kubevirt_receive(path))
    assert plugin.alive()


def test_fd_exhaustion_frees_up_when_an_unclaimed_handoff_expires(env):
    plugin = env.start("--devices", "110", "--handoff-ttl", "4s")
    client = env.client()
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd0")))
    first = allocate_socket(client, "iommufd1")  # expires 2 s before the others
    time.sleep(2)
    paths = exhaust_fds(plugin, client, 2, offers=3)
    # This consumer cannot be accepted until the first offer expires and frees its fds;
    # then it must be served (its own offer has 2 s left at that point).
    waiting = receive_in_background(paths[0], timeout=15)
    assert_is_dev_null(result_of(waiting, 15))
    wait_until(lambda: not os.path.exists(first), 5, what="the first offer expired")
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd50")))
    assert plugin.alive()


def test_multi_container_allocate_failing_half_way_leaves_no_sockets_behind(env):
    plugin = env.start("--devices", "110")
    client = env.client()
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd0")))
    base = stable_fd_count(plugin)
    limit_fds(plugin, base + 2 * 2)  # room for two offers
    with pytest.raises(grpc.RpcError) as err:
        client.allocate(["iommufd1"], ["iommufd2"], ["iommufd3"], ["iommufd4"])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert TOO_MANY_FILES in err.value.details()
    # The kubelet got an error: no container will ever come for the sockets made before it.
    assert handoff_sockets(env) == []
    settle_fds(plugin, base)
    limit_fds(plugin, 1024)
    resp = client.allocate(["iommufd1"], ["iommufd2"])
    for c in resp.container_responses:
        assert_is_dev_null(kubevirt_receive(c.mounts[0].host_path))


def accept_failures(plugin, env):
    """The daemon's log lines for a failing accept on the DevicePlugin socket."""
    return [l for l in plugin.stderr_text().splitlines()
            if "cannot accept on " + env.plugin_socket in l and TOO_MANY_FILES in l]


def test_grpc_accept_at_fd_limit_pauses_without_spinning_and_serves_the_client_later(env):
    plugin = env.start("--devices", "110")
    client = env.client()
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd0")))
    early = allocate_socket(client, "iommufd1")
    before = stable_fd_count(plugin)
    early_peer = connect(early)
    wait_until(lambda: plugin.fd_count() == before + 1, 5, what="the daemon accepting the early consumer")
    exhaust_fds(plugin, client, 2, offers=3)
    cpu0 = cpu_seconds(plugin.pid)
    late = DevicePluginClient(env.plugin_socket)
    env.clients.append(late)
    ready = grpc.channel_ready_future(late.channel)
    time.sleep(2)  # the new connection waits in the backlog while accept fails with EMFILE
    assert not ready.done(), "the connection cannot have been accepted without a free fd"
    used = cpu_seconds(plugin.pid) - cpu0
    assert used < 0.5, "the daemon used %.2f s of CPU in 2 s at its fd limit: spinning on accept" % used
    retries = accept_failures(plugin, env)
    assert len(retries) == 1, "the failing accept is logged once per episode, not per retry:\n" + "\n".join(retries)
    with early_peer:
        receive_on(early_peer).close()
        early_peer.sendall(ACK)
    ready.result(timeout=10)
    assert late.get_device_plugin_options().get_preferred_allocation_available
    assert accept_failures(plugin, env) == retries, "the episode ended without another line"


# -- the socket directory ---------------------------------------------------------------------

def test_socket_dir_deleted_at_run_time_is_recreated_by_the_next_allocate(env):
    plugin = env.start("--devices", "4")
    client = env.client()
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd0")))
    # The daemon unlinks a consumed socket once it reads the ACK: let that happen first.
    wait_until(lambda: env.socket_files() == [], 5, what="the consumed socket to go")
    shutil.rmtree(env.socket_dir)
    path = allocate_socket(client, "iommufd1")
    st = os.stat(env.socket_dir)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert os.path.dirname(os.path.dirname(path)) == env.socket_dir
    assert_is_dev_null(kubevirt_receive(path))
    assert plugin.alive()


def test_read_only_socket_dir_fails_allocate_clearly_and_recovers_when_writable(env):
    with tmpfs_at(env.socket_dir, "mode=0700,size=1m"):
        plugin = env.start("--devices", "4")
        client = env.client()
        assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd0")))
        remount(env.socket_dir, "ro")
        with pytest.raises(grpc.RpcError) as err:
            client.allocate(["iommufd1"])
        assert err.value.code() != grpc.StatusCode.OK
        assert READ_ONLY in err.value.details() and env.socket_dir in err.value.details(), err.value.details()
        assert plugin.alive()
        remount(env.socket_dir, "rw")
        assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd1")))


def test_full_socket_dir_fails_allocate_with_resource_exhausted_and_recovers_when_space_is_back(env):
    # nr_inodes: the root directory takes one, the daemon's instance dir and its lock
    # two more, every socket another.
    with tmpfs_at(env.socket_dir, "mode=0700,size=1m,nr_inodes=6"):
        plugin = env.start("--devices", "20")
        client = env.client()
        paths, err = allocate_until_refused(client, 0, 20)
        assert len(paths) >= 1
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        assert NO_SPACE in err.details() and env.socket_dir in err.details(), err.details()
        assert plugin.alive()
        # A consumed socket gives its inode back.
        assert_is_dev_null(kubevirt_receive(paths[0]))
        assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd19")))
        # So does more room.
        paths, err = allocate_until_refused(client, 10, 8)
        remount(env.socket_dir, "nr_inodes=64")
        assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd18")))
        for path in paths:
            assert_is_dev_null(kubevirt_receive(path))


# -- the device vanishing and returning ---------------------------------------------------------

def mknod_null(path):
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))


@pytest.mark.parametrize("policy", ["allow", "unhealthy"])
def test_device_vanishing_and_returning_mid_run_is_followed_live(env, policy):
    dev = os.path.join(env.tmp, "devdir", "iommu")
    os.makedirs(os.path.dirname(dev))
    mknod_null(dev)
    plugin = env.start("--devices", "3", "--missing-device", policy, iommu_device=dev)
    client = env.client()
    stream = StreamReader(client)
    assert healths(stream.next()) == {"Healthy"}
    for cycle in range(5):
        outstanding = allocate_socket(client, "iommufd0")
        os.unlink(dev)
        if policy == "unhealthy":
            assert healths(stream.next()) == {"Unhealthy"}
            with pytest.raises(grpc.RpcError) as err:
                client.allocate(["iommufd1"])
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert dev in err.value.details()
        else:
            # Nothing to report: the devices stay Healthy; the pod runs without iommufd, even
            # when the Allocate comes before inotify has told the daemon.
            assert len(client.allocate(["iommufd1"]).container_responses[0].mounts) == 0
            with DevicePluginClient(env.plugin_socket) as fresh:
                call = fresh.list_and_watch()
                assert healths(next(call)) == {"Healthy"}
                call.cancel()
        # The fd of an allocation made before the device vanished is still handed over.
        assert_is_dev_null(kubevirt_receive(outstanding))
        mknod_null(dev)
        if policy == "unhealthy":
            back = stream.next()
            assert healths(back) == {"Healthy"} and len(back.devices) == 3
        wait_until(lambda: len(client.allocate(["iommufd2"]).container_responses[0].mounts) == 1, 5,
                   what="Allocate with a socket once the device is back (cycle %d)" % cycle)
        assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd2")))
    stream.cancel()
    assert plugin.alive()


# -- the kubelet restarting, hanging up, and the plugin itself being killed ---------------------

def _kubelet_restart(env):
    env.kubelet.restart()
    req = env.kubelet.wait_register(timeout=10)
    assert req.endpoint == env.slot_name(0)
    wait_until(lambda: os.path.exists(env.plugin_socket), 5, what="the daemon's socket after the restart")
    with DevicePluginClient(env.plugin_socket) as c:  # the new kubelet's stream
        call = c.list_and_watch()
        assert len(next(call).devices) == 3
        call.cancel()


def test_100_kubelet_restarts_each_reregister_without_fd_or_memory_growth(env, sanitized):
    plugin = env.start("--devices", "3")
    stream = StreamReader(env.client())
    assert len(stream.next().devices) == 3
    for _ in range(10):
        _kubelet_restart(env)
    fds, rss = stable_fd_count(plugin), plugin.rss_kib()
    registered = env.kubelet.register_count
    for _ in range(100):
        _kubelet_restart(env)
    assert env.kubelet.register_count == registered + 100
    # The stream opened before all this is still served (no update was due on it).
    assert stream.updates.empty()
    assert env.client().get_device_plugin_options() is not None
    stream.cancel()
    env.clients[-1].close()
    env.clients.pop()
    settle_fds(plugin, fds)
    growth = plugin.rss_kib() - rss
    assert growth < (16384 if sanitized else 512), "RSS grew by %d KiB over 100 kubelet restarts" % growth


def test_plugin_killed_with_sigkill_has_its_sockets_served_again_and_registers_again(env):
    first = env.start("--devices", "4")
    client = env.client()
    stale = [allocate_socket(client, "iommufd%d" % i) for i in range(3)]
    first.signal(signal.SIGKILL)
    first.wait()
    assert all(os.path.exists(p) for p in stale) and os.path.exists(env.plugin_socket)
    with pytest.raises(ConnectionRefusedError):  # nobody listens on the stale socket
        connect(env.plugin_socket).close()
    env.kubelet.drain()
    second = env.start("--devices", "4")  # waits for its Register
    assert env.registration.endpoint == env.slot_name(0)
    # The dead instance's offers are served again at the same paths, with fresh fds.
    assert handoff_sockets(env) == sorted(os.path.basename(p) for p in stale)
    for path in stale:
        assert_is_dev_null(kubevirt_receive(path))
    wait_until(lambda: handoff_sockets(env) == [], 10, what="the consumed sockets to go")
    assert env.client().get_device_plugin_options() is not None
    assert_is_dev_null(kubevirt_receive(allocate_socket(env.client(), "iommufd0")))
    assert second.alive()


class HangingUpKubelet:
    """A kubelet.sock that accepts and misbehaves: closes at once, answers garbage,
    reads the request and closes, or never answers. Counts the connections it got."""

    def __init__(self, path, mode):
        self.path, self.mode = path, mode
        self.accepted = 0
        self._stop = threading.Event()
        self._held = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.accepted += 1
            conn.settimeout(1)
            try:
                if self.mode == "garbage":
                    conn.sendall(random.Random(self.accepted).randbytes(512))
                elif self.mode == "read-then-close":
                    conn.recv(65536)
                elif self.mode == "silent":
                    self._held.append(conn)
                    continue
            except OSError:
                pass
            conn.close()

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        for c in self._held:
            c.close()
        os.unlink(self.path)


@pytest.mark.parametrize("mode", ["close", "garbage", "read-then-close", "silent"])
def test_kubelet_hanging_up_mid_register_is_retried_with_backoff_until_a_real_one_answers(env, mode):
    kubelet_sock = os.path.join(env.kubelet_dir, KUBELET_SOCKET)
    bad = HangingUpKubelet(kubelet_sock, mode)
    try:
        plugin = env.start("--devices", "3", start_kubelet=False, wait_register=False)
        # "silent" needs the 5 s Register timeout to pass before the second attempt.
        wait_until(lambda: bad.accepted >= 2 or not plugin.alive(), 15, what="a retried Register")
        time.sleep(2)
        assert plugin.alive()
        # Exponential backoff from 5 ms: a handful of attempts, not a spin.
        assert bad.accepted <= 15, "%d Register attempts in about 3 s: no backoff" % bad.accepted
    finally:
        bad.stop()
    env.kubelet.start()
    req = env.kubelet.wait_register(timeout=5)
    assert req.endpoint == env.slot_name(0)
    assert env.client().get_device_plugin_options() is not None
    assert plugin.alive()


# -- a peer holding many idle gRPC connections ------------------------------------------------

def test_500_idle_connections_leave_an_established_client_served_and_fds_return_to_baseline(env):
    plugin = env.start("--devices", "4")
    client = env.client()
    assert client.get_device_plugin_options() is not None
    base = stable_fd_count(plugin)
    idle = []
    try:
        for _ in range(500):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(env.plugin_socket)
            idle.append(s)
        # Served within the calls' own deadlines while the 500 wait.
        assert client.get_device_plugin_options(timeout=5) is not None
        assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd0")))
        assert plugin.alive()
        # The daemon caps its connections (128); the rest are refused, not queued forever.
        wait_until(lambda: plugin.fd_count() <= base + 128, 5,
                   what=lambda: "at most 128 connections held (fds %d, base %d)" % (plugin.fd_count(), base))
    finally:
        for s in idle:
            s.close()
    settle_fds(plugin, base)
    with DevicePluginClient(env.plugin_socket) as fresh:
        assert fresh.get_device_plugin_options() is not None


def test_the_grpc_backlog_holds_500_waiting_peers_whatever_the_libc(env):
    """A peer that finds the loop busy waits in the listen backlog; with musl's SOMAXCONN
    (128) the release build refused the 130th non-blocking connect with EAGAIN (a loaded
    CI run's gRPC client then failed 'recvmsg: Invalid argument'). The daemon is stopped,
    so nothing is accepted: every connect below stays in the backlog."""
    with open("/proc/sys/net/core/somaxconn") as f:
        peers = min(500, int(f.read()) - 1)  # the kernel's cap; 4096 by default
    plugin = env.start("--devices", "4")
    waiting = []
    plugin.signal(signal.SIGSTOP)
    try:
        for _ in range(peers):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            waiting.append(s)
            s.connect(env.plugin_socket)  # BlockingIOError (EAGAIN) once the backlog is full
    finally:
        plugin.signal(signal.SIGCONT)
        for s in waiting:
            s.close()
    with DevicePluginClient(env.plugin_socket) as fresh:
        assert fresh.get_device_plugin_options(timeout=10) is not None


def test_new_client_is_served_while_128_idle_connections_are_held(env):
    """At the cap the oldest silent connection makes room: idle peers cannot lock out a kubelet."""
    env.start("--devices", "4")
    idle = []
    try:
        for _ in range(200):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(env.plugin_socket)
            idle.append(s)
        with DevicePluginClient(env.plugin_socket) as fresh:
            assert fresh.get_device_plugin_options(timeout=10) is not None
    finally:
        for s in idle:
            s.close()


def test_at_the_cap_with_every_connection_busy_a_new_client_waits_and_is_served_when_one_closes(env):
    """128 connections each carrying a call cannot be evicted: the next peer waits in the
    listen backlog (it is not refused) and is served as soon as one of them closes."""
    env.start("--devices", "4")
    busy = []
    try:
        for _ in range(128):
            c = h2raw.RawConnection(env.plugin_socket)
            c.handshake()
            c.send(h2raw.frame(h2raw.HEADERS, h2raw.FLAG_END_HEADERS, 1,
                               h2raw.grpc_request_headers("/v1beta1.DevicePlugin/ListAndWatch")))
            c.send(h2raw.frame(h2raw.DATA, h2raw.FLAG_END_STREAM, 1, h2raw.grpc_message(b"")))
            busy.append(c)
            # The call is open once its response headers come: the connection is busy.
            deadline = time.monotonic() + 20
            while True:
                f = c.read_frame(deadline)
                assert f is not None, "busy connection %d was closed" % len(busy)
                if f[0] == h2raw.HEADERS and f[2] == 1:
                    break
        waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        waiting.settimeout(60)
        waiting.connect(env.plugin_socket)  # queued in the backlog, not accepted
        waiting.sendall(h2raw.PREFACE + h2raw.settings())
        # The old daemon accepted and closed it at once ("refusing a connection"); a
        # held listener leaves it unanswered. The sentinel that the daemon is alive and
        # serving meanwhile: the busy connections still answer a PING.
        busy[0].send(h2raw.frame(h2raw.PING, 0, 0, b"sentinel"))
        deadline = time.monotonic() + 20
        while True:
            f = busy[0].read_frame(deadline)
            assert f is not None, "no PING answer on a busy connection"
            if f[0] == h2raw.PING and f[1] & h2raw.FLAG_ACK:
                break
        waiting.setblocking(False)
        try:
            got = waiting.recv(1)
        except BlockingIOError:
            got = None
        except ConnectionResetError:
            got = b""
        assert got is None, "the waiting client was accepted and %s" % ("closed" if got == b"" else "answered")
        busy.pop().close()
        waiting.setblocking(True)
        assert waiting.recv(9), "the waiting client was never served after a connection closed"
        waiting.close()
    finally:
        for c in busy:
            c.close()
