"""SIGTERM / SIGINT: every open stream ends OK with no last (empty) device list, socket
removed, exit 0. No empty list: the kubelet applies a list to the resource name, so during
a rolling update it would zero the newer instance's devices; a stream's end is what tells
the kubelet this endpoint is gone."""

import os
import signal

import grpc
import pytest

from harness import wait_until
from kubelet import DevicePluginClient


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_streams_ok_without_an_empty_list_removes_socket_exits_0_at_once(env, sig):
    # A drain timeout no test waits for: exiting proves nothing waited for it.
    plugin = env.start("--devices", "3", "--drain-timeout", "10m")
    clients = [DevicePluginClient(env.plugin_socket) for _ in range(2)]
    calls = [clients[0].list_and_watch(), clients[0].list_and_watch(), clients[1].list_and_watch()]
    for call in calls:
        assert len(next(call).devices) == 3
    plugin.signal(sig)
    for call in calls:
        with pytest.raises(StopIteration):  # no further message: the stream just ends
            next(call)
        assert call.code() == grpc.StatusCode.OK
    assert plugin.wait(timeout=5) == 0
    log = plugin.stderr_text()
    # Every connection closed by itself: the 800 ms shutdown deadline never had to cut one.
    assert "shut down cleanly" in log
    assert "did not close in time" not in log
    assert not os.path.exists(env.plugin_socket)
    for c in clients:
        c.close()


def test_sigterm_without_clients_exits_0_and_removes_socket(env):
    plugin = env.start("--devices", "3", "--drain-timeout", "10m")
    plugin.signal(signal.SIGTERM)
    assert plugin.wait(timeout=5) == 0
    assert "shut down cleanly" in plugin.stderr_text()
    assert "did not close in time" not in plugin.stderr_text()
    assert not os.path.exists(env.plugin_socket)


def test_sigterm_while_waiting_for_kubelet_exits_0(env):
    plugin = env.start(start_kubelet=False, wait_register=False)
    wait_until(lambda: os.path.exists(env.plugin_socket), 5, what="the daemon's socket")
    plugin.signal(signal.SIGTERM)
    assert plugin.wait(timeout=2) == 0
    assert env.kubelet.register_count == 0
