"""Issue 10: never strand a starting VM.

Every moment between an Allocate and qemu's connect is a promise: the socket the
kubelet mounted into the container must answer. These tests take the situations a
node operator meets (a SIGTERM during a VM start, a second instance beside a live one,
a crash before the container exists, KubeVirt's own plugin on the same socket path)
and check that the consumer still gets its fd, with real processes, real sockets and
the socket file bind-mounted as runc mounts it (an empty file in the container's root
with the socket file bind-mounted onto it).
"""

import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import shutil

import grpc
import pytest

from harness import DEFAULT_RESOURCE, wait_until
from foreign_plugin import ForeignPlugin
from kubelet import FakePodResources
from receiver import allocate_socket, assert_is_dev_null, kubevirt_receive

RECEIVED = re.compile(r"fd=\d+ rdev=1:3 ")  # /dev/null, as the tests' --iommu-device


class Container:
    """A container's mount of one handoff socket, made as runc makes it, in a mount
    namespace of its own; connect_after() runs iommufd-receive there later."""

    def __init__(self, receive_bin, socket_path, delay):
        self.root = tempfile.mkdtemp(prefix="ctr-", dir="/tmp")
        target = os.path.join(self.root, "iommufd.sock")
        open(target, "w").close()
        ready = os.path.join(self.root, "mounted")
        script = ('mount --bind "$1" "$2" && touch "$4" && sleep "$5" && '
                  'exec "$3" --socket "$2" --timeout 10')
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", socket_path, target,
             receive_bin, ready, str(delay)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: os.path.exists(ready) or self.proc.poll() is not None, 10, what="the bind mount")
        if not os.path.exists(ready):
            out, err = self.proc.communicate()
            shutil.rmtree(self.root, ignore_errors=True)
            raise AssertionError("cannot bind-mount %s: %s" % (socket_path, err))

    def result(self, timeout):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
        return self.proc.returncode, out, err


ALTERNATE_SOCKET_NAME = "kubevirt-iommufd-1.sock"  # our second name (harness.SLOT_NAMES)


def lines(plugin, pattern):
    return [l for l in plugin.stderr_text().splitlines() if re.search(pattern, l)]


def fast_kill(plugin):
    plugin.signal(signal.SIGKILL)
    plugin.wait(10)


# -- 1. drain on SIGTERM ---------------------------------------------------------------

@pytest.mark.parametrize("delay", [0.5, 20], ids=["0.5s", "20s"])
def test_sigterm_keeps_serving_a_mounted_socket_until_the_vm_connects(env, receive_bin, delay):
    plugin = env.start("--devices", "3")
    client = env.client()
    stream = client.list_and_watch()
    assert len(next(stream).devices) == 3
    path = allocate_socket(client, "iommufd0")
    container = Container(receive_bin, path, delay)  # the container exists: its mount is made
    plugin.signal(signal.SIGTERM)
    # Advertising stops at once: the stream ends OK (no empty list), our socket goes.
    with pytest.raises(StopIteration):
        next(stream)
    assert stream.code() == grpc.StatusCode.OK
    wait_until(lambda: not os.path.exists(env.plugin_socket), 10, what="the DevicePlugin socket to go")
    rc, out, err = container.result(timeout=delay + 30)
    assert rc == 0, err
    assert RECEIVED.search(out), out
    # Nothing pending any more: exit 0, saying what the drain did.
    assert plugin.wait(timeout=20) == 0
    assert lines(plugin, r"drained 1 \(1 handed over, 0 withdrawn\), abandoned 0"), plugin.stderr_text()[-2000:]


def test_second_signal_exits_at_once_during_a_drain(env):
    plugin = env.start("--devices", "2")
    allocate_socket(env.client(), "iommufd0")
    plugin.signal(signal.SIGTERM)
    wait_until(lambda: lines(plugin, r"draining: serving 1 pending"), 10, what="the drain to start")
    assert plugin.alive()
    plugin.signal(signal.SIGINT)
    assert plugin.wait(timeout=10) == 0
    assert lines(plugin, r"received Interrupt again: exiting now")
    assert lines(plugin, r"abandoned 1")


def test_drain_deadline_abandons_an_unclaimed_offer_and_exits_0(env):
    plugin = env.start("--devices", "2", "--drain-timeout", "1s")
    path = allocate_socket(env.client(), "iommufd0")
    plugin.signal(signal.SIGTERM)
    assert plugin.wait(timeout=20) == 0
    assert lines(plugin, r"--drain-timeout \(1\.0 s\) passed with 1 handoff socket")
    assert lines(plugin, r"drained 0 \(0 handed over, 0 withdrawn\), abandoned 1")
    # Left on disk for the next instance, which serves it again.
    assert os.path.exists(path)
    env.kubelet.drain()
    env.start("--devices", "2")
    assert_is_dev_null(kubevirt_receive(path))


def test_drain_ends_when_the_pending_offers_pod_is_gone(env):
    pods = FakePodResources(os.path.join(env.tmp, "pod-resources.sock"))
    pods.start()
    try:
        pods.hold("vms", "virt-launcher-a", "compute", DEFAULT_RESOURCE, ["iommufd0"])
        plugin = env.start("--devices", "2", "--pod-resources-socket", pods.socket_path,
                           "--pod-resources-interval", "200ms", "--pod-resources-grace", "0s")
        path = allocate_socket(env.client(), "iommufd0")
        plugin.signal(signal.SIGTERM)
        wait_until(lambda: lines(plugin, r"draining: serving 1 pending"), 10, what="the drain to start")
        pods.clear()  # the VM's pod is deleted: nobody will come
        assert plugin.wait(timeout=20) == 0
        assert lines(plugin, r"drained 1 \(0 handed over, 1 withdrawn\), abandoned 0")
        assert not os.path.exists(path)
    finally:
        pods.stop()


# -- 2. a second instance beside a live one --------------------------------------------

class InodeWatch:
    """Samples which inodes the DevicePlugin socket path names, every few ms."""

    def __init__(self, path):
        self.path, self.inodes = path, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.inodes.add(os.stat(self.path).st_ino)
            except FileNotFoundError:
                pass
            time.sleep(0.002)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.inodes


def test_new_instance_beside_a_live_one_takes_over_and_the_old_one_keeps_its_offers(env):
    """A rolling update as the kubelet (1.37) needs it: the new instance registers on the
    alternate name (two endpoints on one path would leave the kubelet stuck), the old
    one's stream stays open and silent until it exits, and ends with no empty list."""
    old = env.start("--devices", "4")
    old_stream = env.client().list_and_watch()
    assert len(next(old_stream).devices) == 4
    old_path = allocate_socket(env.client(), "iommufd1")
    before = env.kubelet.register_count
    new = env.start("--devices", "4")  # waits for its Register
    assert env.registration.endpoint == ALTERNATE_SOCKET_NAME
    assert env.kubelet.register_count - before == 1
    assert old.alive() and new.alive()
    assert lines(new, r"serving .*%s beside it" % ALTERNATE_SOCKET_NAME)
    wait_until(lambda: lines(old, r"a newer instance of this plugin took over"), 10,
               what="the old instance to step aside")
    # The old one stopped listening and removed its own socket file.
    wait_until(lambda: not os.path.exists(os.path.join(env.kubelet_dir, env.slot_name(0))), 10,
               what="the old instance's socket to go")
    new_stream = env.client().list_and_watch()
    assert len(next(new_stream).devices) == 4
    # Every new Allocate goes to the new instance...
    new_path = allocate_socket(env.client(), "iommufd2")
    assert os.path.dirname(new_path) != os.path.dirname(old_path)
    assert_is_dev_null(kubevirt_receive(new_path))
    assert lines(new, r"allocated iommufd2")
    assert not lines(old, r"allocated iommufd2")
    # ...and the old one still hands over what it offered.
    assert_is_dev_null(kubevirt_receive(old_path))
    old.signal(signal.SIGTERM)
    assert old.wait(timeout=20) == 0
    # The old stream carried nothing after the takeover and ended with no empty list.
    with pytest.raises(StopIteration):
        next(old_stream)
    # The new instance's socket, stream and registration are untouched by the old one's exit.
    assert os.path.exists(env.plugin_socket)
    assert env.client().get_device_plugin_options() is not None
    assert env.kubelet.register_count - before == 1
    assert new.alive()


def test_the_next_update_takes_the_first_name_again(env):
    first = env.start("--devices", "2")
    second = env.start("--devices", "2")
    assert env.registration.endpoint == ALTERNATE_SOCKET_NAME
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=20) == 0
    third = env.start("--devices", "2")
    assert env.registration.endpoint == env.slot_name(0)
    wait_until(lambda: lines(second, r"a newer instance of this plugin took over"), 10,
               what="the second instance to step aside")
    wait_until(lambda: not os.path.exists(os.path.join(env.kubelet_dir, ALTERNATE_SOCKET_NAME)), 10,
               what="the second instance's socket to go")
    assert_is_dev_null(kubevirt_receive(allocate_socket(env.client(), "iommufd0")))
    assert lines(third, r"allocated iommufd0")
    assert third.alive() and second.alive()


def test_an_old_instance_that_exits_with_offers_left_hands_them_to_the_new_one(env):
    old = env.start("--devices", "4", "--drain-timeout", "1s")
    path = allocate_socket(env.client(), "iommufd1")
    new = env.start("--devices", "4")
    old.signal(signal.SIGTERM)
    assert old.wait(timeout=20) == 0  # the drain timed out: nobody came in 1 s
    # The VM's container connects later: the running new instance serves the path now.
    wait_until(lambda: lines(new, r"an instance beside us exited with unclaimed handoff sockets: "
                                  r"re-served 1"), 10, what="the new instance to re-serve the socket")
    assert_is_dev_null(kubevirt_receive(path))


# -- 3. a crash between Allocate and container creation ---------------------------------

def test_sigkill_before_the_container_exists_then_restart_the_container_still_gets_its_fd(env, receive_bin):
    first = env.start("--devices", "2")
    path = allocate_socket(env.client(), "iommufd0")
    fast_kill(first)  # OOM-killed while the VM's image is still being pulled
    env.kubelet.drain()
    second = env.start("--devices", "2")
    assert lines(second, r"re-serving .*iommufd0.* with a fresh iommufd")
    # Now the container is created: runc bind-mounts the path the Allocate answer named.
    rc, out, err = Container(receive_bin, path, 0).result(timeout=30)
    assert rc == 0, err
    assert RECEIVED.search(out), out
    wait_until(lambda: not os.path.exists(path), 10, what="the consumed socket to go")


def test_a_live_instances_sockets_are_not_touched_by_a_new_one(env):
    first = env.start("--devices", "2")
    path = allocate_socket(env.client(), "iommufd0")
    ino = os.stat(path).st_ino
    second = env.start("--devices", "2")
    assert os.stat(path).st_ino == ino
    assert not lines(second, r"re-serving")
    assert_is_dev_null(kubevirt_receive(path))
    wait_until(lambda: lines(first, r"handed the fd of iommufd0"), 10, what="the first instance's hand-over")


# -- 4. coexistence with KubeVirt's own plugin -------------------------------------------

def metrics_text(address):
    import urllib.request
    with urllib.request.urlopen("http://%s/metrics" % address, timeout=5) as r:
        return r.read().decode()


def healthz(address, path="/healthz"):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://%s%s" % (address, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


CONFLICT = r"another device plugin serves .*kubevirt-iommufd\.sock"


def test_foreign_plugin_started_after_us_is_reported_and_we_do_not_fight(env):
    """KubeVirt's plugin binds --socket-name, which we never register: we end our stream
    (the kubelet drops our endpoint alone, so its Register on its own path goes through),
    stop serving ours, report it, and serve and register again once it is gone."""
    address = "127.0.0.1:%d" % free_port()
    plugin = env.start("--devices", "2", "--metrics-address", address)
    ours = env.plugin_socket
    stream = env.client().list_and_watch(timeout=60)  # a failure, never a hang
    assert len(next(stream).devices) == 2
    before = env.kubelet.register_count
    foreign = ForeignPlugin(env.kubelet_dir, env.socket_name, DEFAULT_RESOURCE)
    watch = InodeWatch(env.canonical_socket)
    foreign.start()
    try:
        # Our stream ends (no empty list) and our socket goes: the kubelet drops us.
        with pytest.raises(StopIteration):
            next(stream)
        wait_until(lambda: not os.path.exists(ours), 10, what="our socket to go")
        time.sleep(10)
        inodes = watch.stop()
        assert plugin.alive()
        assert foreign.serves == 1, "we took the path %d times" % (foreign.serves - 1)
        assert len(inodes) == 1, inodes
        assert env.kubelet.register_count - before == 1  # the foreign plugin's
        assert len(lines(plugin, CONFLICT)) == 1
        assert re.search(r"^iommufd_device_plugin_socket_conflict 1$", metrics_text(address), re.M)
        status, body = healthz(address)
        assert status == 503 and "another device plugin" in body, (status, body)
        assert healthz(address, "/livez") == (200, "ok\n")  # no restart would help
    finally:
        foreign.stop()
    # The path is free again: we serve ours and register.
    wait_until(lambda: lines(plugin, r"is free again: serving"), 30, what="serving again")
    wait_until(lambda: healthz(address)[0] == 200, 30, what="/healthz ready again")
    assert env.kubelet.history[-1].endpoint == env.slot_name(0)
    assert env.client().get_device_plugin_options() is not None


def test_a_foreign_socket_that_listens_a_moment_after_its_bind_is_still_seen(env):
    """Between a server's bind() (the file appears: inotify) and its listen() a connect
    is refused; we look again instead of taking it for a dead socket."""
    plugin = env.start("--devices", "2")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(env.canonical_socket)
        time.sleep(0.3)  # the window the bug lived in; its length decides nothing here
        s.listen(8)
        wait_until(lambda: lines(plugin, CONFLICT), 30, what="the conflict to be seen")
    finally:
        s.close()


def test_foreign_plugin_already_serving_is_never_removed(env):
    foreign = ForeignPlugin(env.kubelet_dir, env.socket_name, DEFAULT_RESOURCE)
    env.kubelet.start()
    foreign.start()
    try:
        ino = foreign.inode
        plugin = env.start("--devices", "2", wait_register=False)
        wait_until(lambda: lines(plugin, CONFLICT), 10, what="the conflict to be reported")
        time.sleep(3)
        assert os.stat(env.canonical_socket).st_ino == ino
        assert foreign.serves == 1
        assert plugin.alive()
        assert all(r.endpoint == env.socket_name for r in env.kubelet.history)
        assert env.kubelet.register_count == 1  # the foreign plugin's only
        assert not os.path.exists(os.path.join(env.kubelet_dir, env.slot_name(0)))
    finally:
        foreign.stop()


def test_kubelet_restart_is_still_told_apart_from_a_foreign_plugin(env):
    plugin = env.start("--devices", "2")
    env.kubelet.drain()
    env.kubelet.restart()
    env.kubelet.wait_register(timeout=10)
    assert plugin.alive()
    assert not lines(plugin, CONFLICT)
    assert env.client().get_device_plugin_options() is not None


# -- 5. held offers are kept -----------------------------------------------------------------

def test_held_offer_outlives_a_short_ttl_and_goes_once_its_pod_is_gone(env):
    pods = FakePodResources(os.path.join(env.tmp, "pod-resources.sock"))
    pods.start()
    try:
        pods.hold("vms", "virt-launcher-a", "compute", DEFAULT_RESOURCE, ["iommufd0"])
        plugin = env.start("--devices", "2", "--handoff-ttl", "1s", "--pod-resources-socket", pods.socket_path,
                           "--pod-resources-interval", "200ms", "--pod-resources-grace", "0s")
        path = allocate_socket(env.client(), "iommufd0")
        pods.wait_calls(3, timeout=20)
        time.sleep(3)  # three TTLs
        assert os.path.exists(path)
        assert not lines(plugin, r"nobody took the fd of iommufd0")
        pods.clear()
        wait_until(lambda: not os.path.exists(path), 20, what="the socket of the gone pod to go")
        assert lines(plugin, r"withdrawing the unclaimed fd of iommufd0")
    finally:
        pods.stop()


def test_reallocation_still_replaces_the_older_offer_at_once(env):
    env.start("--devices", "2")
    client = env.client()
    first = allocate_socket(client, "iommufd0")
    second = allocate_socket(client, "iommufd0")
    assert not os.path.exists(first)
    assert_is_dev_null(kubevirt_receive(second))


# -- 7. fd exhaustion never parks a starting VM -----------------------------------------

def test_fd_exhaustion_by_grpc_connections_does_not_park_waiting_consumers(env):
    import resource

    plugin = env.start("--devices", "6")
    client = env.client()
    paths = [allocate_socket(client, "iommufd%d" % i) for i in range(5)]
    _, hard = resource.prlimit(plugin.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(plugin.pid, resource.RLIMIT_NOFILE, (plugin.fd_count() + 4, hard))
    # Fill the daemon's fds with connections to its gRPC socket, until it stops accepting.
    held = []
    for _ in range(64):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(env.plugin_socket)
        held.append(s)
    wait_until(lambda: lines(plugin, r"cannot accept on .*kubevirt-iommufd-0\.sock: .*\(EMFILE\)"), 10,
               what="the gRPC listener to run out of fds")
    results = [None] * 5

    def consume(i):
        try:
            got = kubevirt_receive(paths[i], timeout=30)
            results[i] = got.fd >= 0
            got.close()
        except Exception as e:  # recorded, asserted below
            results[i] = e

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    wait_until(lambda: lines(plugin, r"cannot accept on .*iommufd\d-\d+\.sock"), 10,
               what="a handoff listener to run out of fds")
    for s in held:
        s.close()
    for t in threads:
        t.join(timeout=40)
    if results != [True] * 5:
        print(plugin.stderr_text())
    assert results == [True] * 5, results
    # Logged once per listener and episode, not every retry.
    assert len(lines(plugin, r"cannot accept on .*kubevirt-iommufd-0\.sock")) == 1
    resource.prlimit(plugin.pid, resource.RLIMIT_NOFILE, (1024, hard))
