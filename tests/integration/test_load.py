"""Issue 5 (load): a full node's worth of allocations and handoffs at once, again and again,
while a kubelet stream is open and hostile peers hang on; nothing may leak or get lost.

IT_LOAD_REPETITIONS sets the number of rounds (default 100, for the sanitizer build too:
a round takes well under 0.1 s on either).
"""

import os
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from harness import settle_fds, stable_fd_count, wait_until
from receiver import NULL_RDEV, connect, kubevirt_receive

DEVICES = 110  # the kubelet's default max pods, and the daemon's default --devices
IDLE_GRPC_PEERS = 20
THREADS = 8  # concurrent receivers (and concurrent Allocate calls)
WARM_UP_ROUNDS = 3
TIME_LIMIT = 100.0  # seconds for the measured rounds; the whole test stays under 2 minutes


def load_repetitions():
    return int(os.environ.get("IT_LOAD_REPETITIONS") or 100)


def rss_bound_kib(sanitized, rounds):
    """Allowed RSS growth after warm-up. Under ASan freed memory sits in its quarantine
    (up to 256 MiB) and RSS climbs ~170 KiB a round without any leak; LeakSanitizer at
    exit is the leak check there, this bound only catches gross growth."""
    return 1024 if not sanitized else 1024 + 512 * rounds


def received_rdev(path):
    """One KubeVirt-like handoff; returns the rdev of the fd received (0 if not a char device)."""
    got = kubevirt_receive(path, timeout=10)
    try:
        assert got.data == b"\x00" and not got.msg_flags & socket.MSG_CTRUNC, got
        st = os.fstat(got.fd)
        return st.st_rdev if stat.S_ISCHR(st.st_mode) else 0
    finally:
        got.close()


def allocate_in_one_request(client, pool):
    resp = client.allocate(*[["iommufd%d" % i] for i in range(DEVICES)], timeout=30)
    return [c.mounts[0].host_path for c in resp.container_responses]


def allocate_in_concurrent_requests(client, pool):
    def one(i):
        return client.allocate(["iommufd%d" % i], timeout=30).container_responses[0].mounts[0].host_path
    return list(pool.map(one, range(DEVICES)))


ALLOCATE = {"one-request": allocate_in_one_request, "concurrent-requests": allocate_in_concurrent_requests}


def one_round(client, pool, env, round_no, allocate):
    """Allocates all devices, hangs a never-reading peer on one socket, then hands every fd
    over concurrently. Returns how many valid /dev/null fds were received."""
    paths = allocate(client, pool)
    assert len(set(paths)) == DEVICES, "Allocate answered %d distinct sockets" % len(set(paths))
    with connect(paths[round_no % DEVICES]):  # connected, never reads, never ACKs
        rdevs = list(pool.map(received_rdev, paths))
    bad = [(p, r) for p, r in zip(paths, rdevs) if r != NULL_RDEV]
    assert not bad, "round %d: %d handoffs without /dev/null's fd, e.g. %r" % (round_no, len(bad), bad[:3])
    wait_until(lambda: not [f for f in env.socket_files() if f.endswith(".sock")], 10,
               what=lambda: "round %d: every socket consumed, left %r" % (round_no, env.socket_files()))
    return len(rdevs)


@pytest.mark.parametrize("style", sorted(ALLOCATE))
def test_110_allocations_and_handoffs_at_once_repeated_under_hostile_peers_leak_nothing(env, sanitized, style):
    rounds = load_repetitions()
    plugin = env.start("--devices", str(DEVICES))
    client = env.client()
    stream = client.list_and_watch()
    assert len(next(stream).devices) == DEVICES
    idle = []
    for _ in range(IDLE_GRPC_PEERS):  # gRPC connections that never speak
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(env.plugin_socket)
        idle.append(s)
    try:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            for r in range(WARM_UP_ROUNDS):
                one_round(client, pool, env, r, ALLOCATE[style])
            fds, rss = stable_fd_count(plugin), plugin.rss_kib()
            handed_over = 0
            deadline = time.monotonic() + TIME_LIMIT
            for r in range(rounds):
                assert time.monotonic() < deadline, "only %d of %d rounds within %.0f s" % (r, rounds, TIME_LIMIT)
                handed_over += one_round(client, pool, env, WARM_UP_ROUNDS + r, ALLOCATE[style])
        assert handed_over == rounds * DEVICES
        assert plugin.alive()
        # The kubelet's stream stayed open through it all, with nothing new to say.
        assert stream.is_active()
        settle_fds(plugin, fds)
        growth = plugin.rss_kib() - rss
        print("%s: %d rounds, RSS growth %d KiB, fds %d" % (style, rounds, growth, fds))
        assert growth < rss_bound_kib(sanitized, rounds), "RSS grew by %d KiB over %d rounds" % (growth, rounds)
    finally:
        stream.cancel()
        for s in idle:
            s.close()
    try:
        client.get_device_plugin_options()
    except grpc.RpcError as err:
        raise AssertionError("the daemon stopped serving gRPC after the load: %s" % err)
