"""Issue 3: the iommufd fd is handed to the container over the allocated socket (with /dev/null).

/dev/null stands in for /dev/iommu: IOMMU_OPTION on it fails with ENOTTY, exactly like a
kernel without IOMMUFD's RLIMIT_MODE option.
"""

import os
import re
import subprocess

import grpc
import pytest

from harness import settle_fds, stable_fd_count, wait_until
from receiver import allocate_socket, assert_is_dev_null, connect, kubevirt_receive, receive_on

ENOTTY_CAUSE = re.compile(r"\(ENOTTY\)")


def test_kubevirt_receiver_gets_the_iommu_device_fd(env):
    env.start("--devices", "3")
    path = allocate_socket(env.client(), "iommufd1")
    assert_is_dev_null(kubevirt_receive(path))


def test_socket_is_consumed_after_ack(env):
    env.start("--devices", "3")
    path = allocate_socket(env.client(), "iommufd0")
    assert_is_dev_null(kubevirt_receive(path))
    wait_until(lambda: not os.path.exists(path), 5, what="the consumed socket to disappear")
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        connect(path).close()


def test_peer_disconnecting_before_reading_does_not_consume_socket(env):
    env.start("--devices", "3")
    path = allocate_socket(env.client(), "iommufd0")
    connect(path).close()
    assert_is_dev_null(kubevirt_receive(path))


def test_peer_taking_fd_without_ack_does_not_consume_socket(env):
    env.start("--devices", "3")
    path = allocate_socket(env.client(), "iommufd0")
    with connect(path) as s:
        got = receive_on(s)
        got.close()
    assert os.path.exists(path)
    assert_is_dev_null(kubevirt_receive(path))


def test_peer_that_never_acks_is_dropped_after_ack_timeout_and_socket_stays(env):
    env.start("--devices", "3", "--ack-timeout", "500ms")
    path = allocate_socket(env.client(), "iommufd0")
    with connect(path, timeout=5) as s:
        receive_on(s).close()
        assert s.recv(1) == b"", "the daemon should close the connection of a peer that never ACKs"
    assert os.path.exists(path)
    assert_is_dev_null(kubevirt_receive(path))


def test_each_container_of_an_allocation_gets_its_own_working_socket(env):
    env.start("--devices", "4")
    resp = env.client().allocate(["iommufd2"], ["iommufd3"])
    paths = [c.mounts[0].host_path for c in resp.container_responses]
    assert len(set(paths)) == 2
    for p in paths:
        assert_is_dev_null(kubevirt_receive(p))


def test_best_effort_allocate_succeeds_and_logs_enotty_cause_once(env):
    plugin = env.start("--devices", "5", "--rlimit-mode", "best-effort")
    client = env.client()
    for i in range(5):
        path = allocate_socket(client, "iommufd%d" % i)
        assert_is_dev_null(kubevirt_receive(path))
    lines = [line for line in plugin.stderr_text().splitlines() if ENOTTY_CAUSE.search(line)]
    assert len(lines) == 1, "ENOTTY cause logged %d times:\n%s" % (len(lines), "\n".join(lines))


def test_required_rlimit_mode_fails_allocate_with_the_ioctl_reason(env):
    env.start("--devices", "3", "--rlimit-mode", "required")
    with pytest.raises(grpc.RpcError) as err:
        env.client().allocate(["iommufd0"])
    assert err.value.code() != grpc.StatusCode.OK
    assert "IOMMU_OPTION" in err.value.details() and ENOTTY_CAUSE.search(err.value.details()), \
        err.value.details()
    assert [f for f in env.socket_files() if f.endswith(".sock")] == []


def test_rlimit_mode_defaults_to_required(env):
    plugin = env.start("--devices", "3", rlimit_mode=None)
    assert "--rlimit-mode" not in plugin.args
    with pytest.raises(grpc.RpcError) as err:
        env.client().allocate(["iommufd0"])
    details = err.value.details()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (err.value.code(), details)
    assert "IOMMU_OPTION" in details and ENOTTY_CAUSE.search(details), details
    assert [f for f in env.socket_files() if f.endswith(".sock")] == []
    # Logged once, by the layer that failed the Allocate, with the reason it sent.
    lines = [l for l in plugin.stderr_text().splitlines() if "IOMMU_OPTION_RLIMIT_MODE" in l]
    assert len(lines) == 1 and "Allocate failed: " + details in lines[0], lines


def test_unclaimed_socket_disappears_after_handoff_ttl(env):
    plugin = env.start("--devices", "3", "--handoff-ttl", "1s")
    client = env.client()
    base = stable_fd_count(plugin)
    path = allocate_socket(client, "iommufd0")
    assert os.path.exists(path)
    wait_until(lambda: not os.path.exists(path), 5, what="the socket to expire after the TTL")
    settle_fds(plugin, base)


def test_reallocating_a_device_replaces_its_old_socket(env):
    plugin = env.start("--devices", "3")
    client = env.client()
    old = allocate_socket(client, "iommufd1")
    after_first = stable_fd_count(plugin)
    old_ino = os.stat(old).st_ino
    new = allocate_socket(client, "iommufd1")
    if new == old:
        assert os.stat(new).st_ino != old_ino
    else:
        assert not os.path.exists(old)
    assert [f for f in env.socket_files() if "iommufd1" in f] == [os.path.basename(new)]
    assert stable_fd_count(plugin) == after_first
    assert_is_dev_null(kubevirt_receive(new))


def test_iommufd_receive_cli_prints_rlimit_mode_and_rdev_of_dev_null(env, receive_bin):
    env.start("--devices", "2")
    path = allocate_socket(env.client(), "iommufd0")
    r = subprocess.run([receive_bin, "--socket", path], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert "rlimit_mode=" in r.stdout
    assert "rdev=1:3" in r.stdout
    wait_until(lambda: not os.path.exists(path), 5, what="the socket consumed by iommufd-receive")


def test_iommufd_receive_cli_installs_the_fd_for_a_command(env, receive_bin):
    env.start("--devices", "2")
    path = allocate_socket(env.client(), "iommufd1")
    r = subprocess.run(
        [receive_bin, "--socket", path, "--fd", "7", "--", "stat", "-L", "-c", "%t:%T", "/proc/self/fd/7"],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1:3"
