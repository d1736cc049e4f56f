"""Regenerates the fuzz targets' seed corpora in tests/fuzz/corpus/<target>/.

The grpc_server seeds are real: a python3-grpcio client (the kubelet's library)
talks to the real daemon through a recording proxy, and what the client sent on
each connection becomes one seed. The other seeds are built from the proto
definitions and hand-written edge cases.
Usage: /usr/bin/python3 tests/fuzz/make_seeds.py [BUILD_DIR]   (default: build)
"""

import os
import select
import socket
import struct
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "build"))
os.environ.setdefault("PLUGIN_BIN", os.path.join(BUILD, "iommufd-device-plugin"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import h2raw  # noqa: E402
from harness import Env  # noqa: E402
from kubelet import DevicePluginClient, pb  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


class RecordingProxy:
    """Forwards each connection on `listen_path` to `target_path`, recording what the client sent."""

    def __init__(self, listen_path, target_path):
        self.target_path = target_path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(listen_path)
        self.sock.listen(8)
        self.recordings = []
        self.threads = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            rec = bytearray()
            self.recordings.append(rec)
            t = threading.Thread(target=self._pump, args=(client, rec), daemon=True)
            t.start()
            self.threads.append(t)

    def _pump(self, client, rec):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.connect(self.target_path)
        ends = {client: server, server: client}
        while ends:
            ready, _, _ = select.select(list(ends), [], [], 10)
            if not ready:
                break
            for s in ready:
                data = s.recv(65536)
                if not data:
                    ends.pop(ends[s], None)
                    ends.pop(s, None)
                    break
                if s is client:
                    rec += data
                ends[s].sendall(data)
        client.close()
        server.close()

    def close(self):
        self.sock.close()
        for t in self.threads:
            t.join(5)


def grpc_server_seeds():
    env = Env()
    try:
        env.start()
        proxy_path = os.path.join(env.tmp, "proxy.sock")
        proxy = RecordingProxy(proxy_path, env.plugin_socket)
        # One connection per scenario, so each seed is one client's whole conversation.
        with DevicePluginClient(proxy_path) as c:
            c.allocate(["iommufd0"])
        with DevicePluginClient(proxy_path) as c:
            c.get_device_plugin_options()
            c.get_preferred_allocation([(["iommufd0", "iommufd1", "iommufd2"], ["iommufd2"], 2)])
            c.pre_start_container(["iommufd1"])
        with DevicePluginClient(proxy_path) as c:
            call = c.list_and_watch()
            next(iter(call))
            call.cancel()
        proxy.close()
        names = ["grpcio-allocate", "grpcio-options-preferred-prestart", "grpcio-listandwatch"]
        for name, rec in zip(names, proxy.recordings):
            assert rec.startswith(h2raw.PREFACE), name
            write("grpc_server", name, b"\x00" + bytes(rec))
            write("grpc_server", name + "-close-chunked", b"\x1e" + bytes(rec))
    finally:
        problems = env.teardown()
        if problems:
            print("\n".join(problems), file=sys.stderr)


def allocate_request(*containers):
    r = pb.AllocateRequest()
    for ids in containers:
        r.container_requests.add().devices_ids.extend(ids)
    return r.SerializeToString()


def raw_call_seeds():
    """Hand-made HTTP/2 the well-behaved client never sends (without the preface: option bit 0 adds it)."""
    hdr = h2raw.FLAG_END_HEADERS
    alloc = h2raw.grpc_request_headers("/v1beta1.DevicePlugin/Allocate")
    body = h2raw.grpc_message(allocate_request(["iommufd0"]))
    cases = {
        # HEADERS with END_STREAM and no DATA: a call without a message.
        "no-message": h2raw.frame(h2raw.HEADERS, hdr | h2raw.FLAG_END_STREAM, 1, alloc),
        "compressed": h2raw.frame(h2raw.HEADERS, hdr, 1, alloc)
        + h2raw.frame(h2raw.DATA, h2raw.FLAG_END_STREAM, 1, h2raw.grpc_message(b"\x0a\x00", True)),
        "two-messages": h2raw.frame(h2raw.HEADERS, hdr, 1, alloc)
        + h2raw.frame(h2raw.DATA, h2raw.FLAG_END_STREAM, 1, body + body),
        "rst-after-headers": h2raw.frame(h2raw.HEADERS, hdr, 1, alloc)
        + h2raw.frame(h2raw.RST_STREAM, 0, 1, struct.pack(">I", 8)),
        "unknown-method": h2raw.frame(h2raw.HEADERS, hdr, 1, h2raw.grpc_request_headers("/x.Y/Z"))
        + h2raw.frame(h2raw.DATA, h2raw.FLAG_END_STREAM, 1, h2raw.grpc_message(b"")),
        "ping-goaway": h2raw.frame(h2raw.PING, 0, 0, b"12345678")
        + h2raw.frame(h2raw.GOAWAY, 0, 0, struct.pack(">II", 0, 0)),
        "window-update-continuation": h2raw.frame(h2raw.HEADERS, 0, 1, alloc[:20])
        + h2raw.frame(h2raw.CONTINUATION, hdr, 1, alloc[20:])
        + h2raw.frame(h2raw.WINDOW_UPDATE, 0, 0, struct.pack(">I", 1000))
        + h2raw.frame(h2raw.DATA, h2raw.FLAG_END_STREAM, 1, body),
    }
    for name, data in cases.items():
        write("grpc_server", "raw-" + name, b"\x05" + data)


def request_seeds():
    methods = ["Allocate", "GetPreferredAllocation", "PreStartContainer", "GetDevicePluginOptions",
               "ListAndWatch", "NoSuchMethod"]
    m = {name: bytes([i]) for i, name in enumerate(methods)}
    pref = pb.PreferredAllocationRequest()
    c = pref.container_requests.add()
    c.available_deviceIDs.extend(["iommufd0", "iommufd1", "iommufd2"])
    c.must_include_deviceIDs.extend(["iommufd2"])
    c.allocation_size = 2
    pre = pb.PreStartContainerRequest(devices_ids=["iommufd1"])
    seeds = {
        "allocate-one": m["Allocate"] + b"\x00" + allocate_request(["iommufd0"]),
        "allocate-two-containers": m["Allocate"] + b"\x00" + allocate_request(["iommufd0"], ["iommufd1", "iommufd3"]),
        "allocate-unknown-id": m["Allocate"] + b"\x00" + allocate_request(["iommufd01"]),
        "allocate-empty-container": m["Allocate"] + b"\x00" + allocate_request([]),
        "allocate-same-twice": m["Allocate"] + b"\x20" + allocate_request(["iommufd2"]),
        "allocate-chunked": m["Allocate"] + b"\x01" + allocate_request(["iommufd0"]),
        "allocate-two-messages": m["Allocate"] + b"\x08" + allocate_request(["iommufd0"]),
        "preferred": m["GetPreferredAllocation"] + b"\x00" + pref.SerializeToString(),
        "prestart": m["PreStartContainer"] + b"\x02" + pre.SerializeToString(),
        "options": m["GetDevicePluginOptions"] + b"\x00",
        "listandwatch": m["ListAndWatch"] + b"\x40",
        "compressed": m["Allocate"] + b"\x04" + allocate_request(["iommufd0"]),
        "unknown-method": m["NoSuchMethod"] + b"\x10" + b"\x0a\x02\x08\x01",
    }
    for name, data in seeds.items():
        write("device_plugin_requests", name, data)


def handoff_seeds():
    # Options: TTL, ACK timeout, peers per offer; then actions (low 3 bits), args (high 5).
    def act(op, arg=0):
        return bytes([op | (arg << 3)])

    opts = b"\xff\xff\x01"
    connect, ack, take, take_no_fd, shut, close, wait, reoffer = range(8)
    seeds = {
        "consume": opts + act(connect) + act(take) + act(ack),
        "answer-before-taking": opts + act(connect) + act(ack) + act(take) + act(connect) + act(take, 1) + act(ack, 1),
        "take-without-fd": opts + act(connect) + act(take_no_fd) + act(ack),
        "hang-up": opts + act(connect) + act(close) + act(connect) + act(shut, 1) + act(take),
        "ack-timeout": b"\xff\x00\x02" + act(connect) + act(take) + act(wait, 31) + act(ack),
        "ttl": b"\x00\xff\x02" + act(connect) + act(wait, 31) + act(connect, 1),
        "reoffer": opts + act(connect) + act(reoffer) + act(connect) + act(reoffer, 1) + act(take) + act(ack),
        "many-peers": b"\xff\xff\x03" + act(connect) * 6 + act(take, 3) + act(ack, 3) + act(close, 4),
    }
    for name, data in seeds.items():
        write("handoff_peer", name, data)


HTTP_REQUESTS = {
    "get-metrics": b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl\r\n\r\n",
    "head-healthz-1.0": b"HEAD /healthz HTTP/1.0\r\n\r\n",
    "absolute-form": b"GET http://node:9100/metrics?x=1 HTTP/1.1\r\nHost: node\r\n\r\n",
    "bare-lf": b"\r\nGET /healthz HTTP/1.1\nHost: a\n\n",
    "http2-version": b"GET / HTTP/2.0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\n  folded\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
    "post-body": b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    "pipelined": b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    "truncated": b"GET /metrics HTTP/1.1\r\nHo",
}


def http_seeds():
    for name, data in HTTP_REQUESTS.items():
        write("http_parse", name, data)
        write("http_server", name, b"\x00" + data)
    write("http_server", "get-metrics-chunked-halfclose", b"\x0d" + HTTP_REQUESTS["get-metrics"])
    write("http_server", "oversized", b"\x01" + b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")


def frame_seeds():
    def msg(payload, flag=0):
        return struct.pack(">BI", flag, len(payload)) + payload

    write("grpc_frame", "two-messages", b"\x03" + msg(b"\x0a\x08iommufd0") + msg(b""))
    write("grpc_frame", "compressed", b"\x00" + msg(b"abc", 1))
    write("grpc_frame", "bad-flag", b"\x02" + msg(b"abc", 7))
    write("grpc_frame", "too-large", b"\x00" + struct.pack(">BI", 0, 5 << 20))
    write("grpc_frame", "percent", b"\x00" + "caf\u00e9 100%25 %zz\n".encode())
    write("grpc_frame", "status", b"\x00" + b"16")


if __name__ == "__main__":
    grpc_server_seeds()
    raw_call_seeds()
    request_seeds()
    handoff_seeds()
    http_seeds()
    frame_seeds()
    for t in sorted(os.listdir(CORPUS)):
        print("%s: %d seeds" % (t, len(os.listdir(os.path.join(CORPUS, t)))))
