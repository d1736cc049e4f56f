"""Issue 3: hostile socket peers and volume must not block, crash or leak the daemon."""

import os
import random
import socket

from harness import settle_fds, stable_fd_count, wait_until
from kubelet import DevicePluginClient
from receiver import allocate_socket, assert_is_dev_null, connect, kubevirt_receive


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


def test_silent_peer_on_the_same_socket_delays_receiver_at_most_ack_timeout(env):
    env.start("--devices", "3", "--ack-timeout", "1s")
    path = allocate_socket(env.client(), "iommufd0")
    with connect(path):
        assert_is_dev_null(kubevirt_receive(path, timeout=10))


def test_peer_sending_garbage_does_not_crash_or_block_the_daemon(env):
    plugin = env.start("--devices", "3")
    client = env.client()
    base = stable_fd_count(plugin)
    path = allocate_socket(client, "iommufd0")
    with_socket = stable_fd_count(plugin)
    for _ in range(5):
        try:
            with connect(path, timeout=2) as s:
                s.sendall(random.Random(3).randbytes(65536))
        except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError, FileNotFoundError, socket.timeout):
            pass
    assert plugin.alive()
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd1")))
    assert_grpc_serves(env)
    if os.path.exists(path):
        settle_fds(plugin, with_socket)
    else:  # a garbage byte counted as an ACK: consumed, but nothing may leak
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
