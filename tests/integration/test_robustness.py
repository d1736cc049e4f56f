"""Hostile and sloppy gRPC clients: garbage, truncated frames, compression, huge messages, churn."""

import random

import grpc
import pytest

import h2raw
from harness import settle_fds, stable_fd_count
from kubelet import DevicePluginClient, allocate_request

OPTIONS_METHOD = "/v1beta1.DevicePlugin/GetDevicePluginOptions"


def assert_serves(env):
    """The daemon is alive and a fresh, proper client gets answers."""
    assert all(p.alive() for p in env.plugins)
    with DevicePluginClient(env.plugin_socket) as c:
        assert c.get_device_plugin_options().get_preferred_allocation_available
        call = c.list_and_watch()
        assert len(next(call).devices) > 0
        call.cancel()


@pytest.mark.parametrize("garbage", [
    random.Random(1).randbytes(4096),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00" * 65536,
    h2raw.PREFACE[:10],
    h2raw.PREFACE + random.Random(2).randbytes(1000),
], ids=["random", "http1", "zeros", "half-preface", "preface-then-random"])
def test_garbage_bytes_leave_daemon_serving(env, garbage):
    plugin = env.start("--devices", "2")
    base = stable_fd_count(plugin)
    with h2raw.RawConnection(env.plugin_socket) as conn:
        try:
            conn.send(garbage)
        except (BrokenPipeError, ConnectionResetError):
            pass
        conn.read_until_closed(timeout=1.0)
    assert_serves(env)
    settle_fds(plugin, base)


@pytest.mark.parametrize("tail", [
    h2raw.settings()[:5],                                           # frame header cut short
    h2raw.frame(h2raw.HEADERS, h2raw.FLAG_END_HEADERS, 1,
                h2raw.grpc_request_headers(OPTIONS_METHOD))[:20],   # HEADERS payload cut short
    h2raw.frame(h2raw.DATA, 0, 1, b"x" * 100)[:30],                  # DATA on an idle stream, cut short
], ids=["frame-header", "headers-payload", "data-payload"])
def test_truncated_http2_frames_leave_daemon_serving(env, tail):
    plugin = env.start("--devices", "2")
    base = stable_fd_count(plugin)
    with h2raw.RawConnection(env.plugin_socket) as conn:
        conn.send(h2raw.PREFACE + h2raw.settings() + tail)
        # While this connection hangs mid-frame, other clients are served.
        assert_serves(env)
    assert_serves(env)
    settle_fds(plugin, base)


def test_compressed_grpc_message_without_encoding_is_refused_not_answered(env):
    env.start("--devices", "2")
    with h2raw.RawConnection(env.plugin_socket) as conn:
        conn.handshake()
        headers = h2raw.grpc_request_headers(OPTIONS_METHOD)
        conn.send(h2raw.frame(h2raw.HEADERS, h2raw.FLAG_END_HEADERS, 1, headers))
        conn.send(h2raw.frame(h2raw.DATA, h2raw.FLAG_END_STREAM, 1, h2raw.grpc_message(b"", compressed=True)))
        frames, end = conn.wait_stream_end(1, timeout=5.0)
    assert end is not None, "the daemon neither ended the stream nor closed cleanly"
    data = [f for f in frames if f[0] == h2raw.DATA and f[2] == 1 and f[3]]
    assert data == [], "the daemon answered a compressed message it cannot decode"
    assert_serves(env)


def test_gzip_compressed_request_gets_error_status_and_daemon_survives(env):
    env.start("--devices", "2")
    client = env.client(compression=grpc.Compression.Gzip)
    # Large and repetitive so grpcio really compresses it (it sends small ones uncompressed).
    request = allocate_request(["iommufd0"] * 4000)
    with pytest.raises(grpc.RpcError) as err:
        client.allocate_raw(request)
    assert err.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL), err.value
    assert_serves(env)


def test_message_over_4_mib_is_resource_exhausted(env):
    env.start("--devices", "2")
    client = env.client(options=[("grpc.max_send_message_length", -1)])
    request = allocate_request(["x" * (5 * 1024 * 1024)])
    with pytest.raises(grpc.RpcError) as err:
        client.allocate_raw(request, timeout=20)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The same connection keeps working (flow control was not wedged by the discarded message).
    assert client.get_device_plugin_options().get_preferred_allocation_available
    assert_serves(env)


def _cycle(client):
    call = client.list_and_watch()
    assert len(next(call).devices) == 3
    call.cancel()


def test_1000_list_and_watch_open_cancel_cycles_leak_no_fds_or_memory(env, sanitized):
    # 10 connections x 100 cycles: one connection resetting 1000 streams back to back
    # trips nghttp2's rapid-reset (CVE-2023-44487) limiter, tested separately below.
    plugin = env.start("--devices", "3")
    keeper = env.client()
    for _ in range(50):
        _cycle(keeper)
    fds, rss = stable_fd_count(plugin), plugin.rss_kib()
    for _ in range(10):
        with DevicePluginClient(env.plugin_socket) as c:
            for _ in range(100):
                _cycle(c)
    assert keeper.get_device_plugin_options() is not None
    settle_fds(plugin, fds)
    growth = plugin.rss_kib() - rss
    assert growth < (16384 if sanitized else 256), "RSS grew by %d KiB" % growth


def test_rapid_reset_flood_drops_at_most_the_flooding_connection(env):
    plugin = env.start("--devices", "3")
    keeper = env.client()
    fds = stable_fd_count(plugin)
    with DevicePluginClient(env.plugin_socket) as flooder:
        try:
            for _ in range(3000):
                _cycle(flooder)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    assert keeper.get_device_plugin_options() is not None
    assert_serves(env)
    settle_fds(plugin, fds)


def test_200_list_and_watch_connections_dropped_mid_stream_leak_no_fds(env, sanitized):
    plugin = env.start("--devices", "3")
    for _ in range(20):
        with DevicePluginClient(env.plugin_socket) as c:
            _cycle(c)
    fds, rss = stable_fd_count(plugin), plugin.rss_kib()
    for _ in range(200):
        with DevicePluginClient(env.plugin_socket) as c:
            call = c.list_and_watch()
            next(call)  # closing the channel with the stream open drops the connection
    settle_fds(plugin, fds)
    growth = plugin.rss_kib() - rss
    assert growth < (16384 if sanitized else 256), "RSS grew by %d KiB" % growth
    assert_serves(env)
