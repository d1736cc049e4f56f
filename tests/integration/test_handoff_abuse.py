"""Issue 3: hostile socket peers and volume must not block, crash or leak the daemon."""

import os
import random
import select
import time

from harness import deadline, settle_fds, stable_fd_count, wait_until
from kubelet import DevicePluginClient
from receiver import allocate_socket, assert_is_dev_null, connect, kubevirt_receive, receive_on


def assert_grpc_serves(env):
    with DevicePluginClient(env.plugin_socket) as c:
        assert c.get_device_plugin_options().get_preferred_allocation_available


def test_peer_that_connects_and_never_reads_blocks_neither_allocate_nor_grpc(env):
    env.start("--devices", "3")
    client = env.client()
    hostile_path = allocate_socket(client, "iommufd0")
    with connect(hostile_path):
        other = allocate_socket(client, "iommufd1")
        assert_is_dev_null(kubevirt_receive(other))
        assert_grpc_serves(env)


def test_silent_peer_is_cut_at_ack_timeout_and_the_offer_stays(env):
    # An offer serves several peers at once, so a silent one delays nobody; what the
    # flag decides is when the daemon cuts it. The offer's TTL (9 s, under the 10 s
    # default ACK timeout) is the sentinel: the cut must come first, the offer must
    # still be there for a real receiver, and the daemon must say it was the 1 s one.
    plugin = env.start("--devices", "3", "--ack-timeout", "1s", "--handoff-ttl", "9s")
    path = allocate_socket(env.client(), "iommufd0")
    with connect(path, timeout=30) as silent:
        taken = receive_on(silent)  # takes the fd, never acknowledges
        os.close(taken.fd)
        assert silent.recv(1) == b"", "the daemon closes a peer that does not acknowledge"
        assert os.path.exists(path), "the silent peer was cut after the TTL, not at --ack-timeout"
    wait_until(lambda: "did not acknowledge on %s within 1000 ms" % path in plugin.stderr_text(), 10,
               what="the daemon's log of the cut")
    assert_is_dev_null(kubevirt_receive(path))


def hung_up(sock, timeout):
    """Whether the daemon closed its end within timeout seconds (POLLHUP; the fd
    message left unread does not wake poll, POLLIN is not asked for)."""
    p = select.poll()
    p.register(sock, 0)  # POLLHUP and POLLERR are always reported
    end = time.monotonic() + deadline(timeout)
    while time.monotonic() < end:
        if any(ev & select.POLLHUP for _, ev in p.poll(100)):
            return True
    return False


def test_peer_sending_garbage_does_not_crash_or_block_the_daemon(env):
    plugin = env.start("--devices", "3")
    client = env.client()
    base = stable_fd_count(plugin)
    path = allocate_socket(client, "iommufd0")
    with_socket = stable_fd_count(plugin)
    for _ in range(5):
        with connect(path, timeout=30) as s:
            try:
                s.sendall(random.Random(3).randbytes(65536))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon refused it mid-way
            # Hang up only after the daemon's verdict: a peer that closes with the fd
            # still unread looks to SIOCOUTQ like one that took it (its queue is freed).
            assert hung_up(s, 30), "the daemon keeps a peer that sent garbage"
    assert plugin.alive()
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd1")))
    assert_grpc_serves(env)
    # Garbage sent before taking the fd is no ACK (the SIOCOUTQ check): the offer
    # stays, nothing leaks, and a real receiver still gets the fd.
    assert os.path.exists(path), plugin.stderr_text()[-4000:]
    settle_fds(plugin, with_socket)
    assert_is_dev_null(kubevirt_receive(path))
    settle_fds(plugin, base)


def test_1000_connects_leave_the_socket_usable_and_leak_no_fds(env):
    plugin = env.start("--devices", "3")
    client = env.client()
    path = allocate_socket(client, "iommufd0")
    base = stable_fd_count(plugin)
    for _ in range(1000):
        connect(path).close()
    settle_fds(plugin, base)
    assert_grpc_serves(env)
    assert_is_dev_null(kubevirt_receive(path))


def test_110_allocations_and_handoffs_return_fds_and_memory_to_baseline(env, sanitized):
    plugin = env.start()
    client = env.client()
    warm = allocate_socket(client, "iommufd0")
    assert_is_dev_null(kubevirt_receive(warm))
    wait_until(lambda: not os.path.exists(warm), 5, what="the warm-up socket consumed")
    base, rss = stable_fd_count(plugin), plugin.rss_kib()
    for i in range(110):
        assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd%d" % i)))
    wait_until(lambda: not [f for f in env.socket_files() if f.endswith(".sock")], 5,
               what=lambda: "every socket consumed, left: %r" % env.socket_files())
    settle_fds(plugin, base)
    growth = plugin.rss_kib() - rss
    assert growth < (16384 if sanitized else 1024), "RSS grew by %d KiB" % growth
