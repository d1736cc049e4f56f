"""SIGTERM / SIGINT: devices withdrawn on every open stream, streams end OK, socket removed, exit 0."""

import os
import signal
import time

import grpc
import pytest

from harness import wait_until
from kubelet import DevicePluginClient


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_sends_empty_device_list_ends_streams_ok_removes_socket_exits_0_within_1s(env, sig):
    plugin = env.start("--devices", "3")
    clients = [DevicePluginClient(env.plugin_socket) for _ in range(2)]
    calls = [clients[0].list_and_watch(), clients[0].list_and_watch(), clients[1].list_and_watch()]
    for call in calls:
        assert len(next(call).devices) == 3
    t0 = time.monotonic()
    plugin.signal(sig)
    for call in calls:
        last = next(call)
        assert len(last.devices) == 0
        with pytest.raises(StopIteration):
            next(call)
        assert call.code() == grpc.StatusCode.OK
    rc = plugin.wait(timeout=2)
    elapsed = time.monotonic() - t0
    assert rc == 0
    assert elapsed <= 1.0, "shutdown took %.2fs" % elapsed
    assert not os.path.exists(env.plugin_socket)
    for c in clients:
        c.close()


def test_sigterm_without_clients_exits_0_and_removes_socket(env):
    plugin = env.start("--devices", "3")
    t0 = time.monotonic()
    plugin.signal(signal.SIGTERM)
    assert plugin.wait(timeout=2) == 0
    assert time.monotonic() - t0 <= 1.0
    assert not os.path.exists(env.plugin_socket)


def test_sigterm_while_waiting_for_kubelet_exits_0(env):
    plugin = env.start(start_kubelet=False, wait_register=False)
    wait_until(lambda: os.path.exists(env.plugin_socket), 5, what="the daemon's socket")
    plugin.signal(signal.SIGTERM)
    assert plugin.wait(timeout=2) == 0
    assert env.kubelet.register_count == 0
