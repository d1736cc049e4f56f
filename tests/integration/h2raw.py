"""Just enough raw HTTP/2 to speak to the daemon's socket without grpcio.

Used to send what a well-behaved client never sends: garbage, truncated frames,
and gRPC messages with the compressed flag set but no grpc-encoding. Headers are
HPACK-encoded as "literal without indexing, new name" with no Huffman coding,
which every HPACK decoder must accept. Responses are parsed only down to frame
types and flags (decoding the server's HPACK is not needed for these tests).
"""

import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4


def frame(ftype, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, stream_id & 0x7FFFFFFF) + payload


def settings(pairs=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def _hpack_int(value, prefix_bits, first_byte_flags=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append((value % 128) + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    name, value = name.encode(), value.encode()
    return b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value


def grpc_request_headers(method, extra=()):
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", method),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] + list(extra)
    return b"".join(hpack_literal(n, v) for n, v in fields)


def grpc_message(payload, compressed=False):
    return struct.pack(">BI", 1 if compressed else 0, len(payload)) + payload


class RawConnection:
    """A plain unix-socket connection to the daemon, speaking raw bytes."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def handshake(self):
        self.send(PREFACE + settings())

    def read_frame(self, deadline):
        """One frame (type, flags, stream_id, payload), or None on EOF."""
        while len(self._buf) < 9 or len(self._buf) < 9 + int.from_bytes(self._buf[:3], "big"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete HTTP/2 frame from the daemon")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                return None
            self._buf += chunk
        length = int.from_bytes(self._buf[:3], "big")
        ftype, flags, sid = struct.unpack(">BBI", self._buf[3:9])
        payload = self._buf[9 : 9 + length]
        self._buf = self._buf[9 + length :]
        if ftype == SETTINGS and not flags & FLAG_ACK:
            try:
                self.send(frame(SETTINGS, FLAG_ACK, 0))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the peer already gave up on us; keep reading what it sent
        return ftype, flags, sid & 0x7FFFFFFF, payload

    def read_until_closed(self, timeout=5.0):
        """All frames until the peer closes the connection or goes quiet after a GOAWAY."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            try:
                f = self.read_frame(deadline)
            except (TimeoutError, socket.timeout):
                return frames
            if f is None:
                return frames
            frames.append(f)

    def wait_stream_end(self, stream_id, timeout=5.0):
        """Frames up to the one that ends stream_id (END_STREAM, RST_STREAM or GOAWAY).

        Returns (frames, ending_frame); ending_frame is None if the connection closed first.
        """
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            f = self.read_frame(deadline)
            if f is None:
                return frames, None
            frames.append(f)
            ftype, flags, sid, _ = f
            if ftype == GOAWAY:
                return frames, f
            if sid == stream_id and (ftype == RST_STREAM or (ftype in (HEADERS, DATA) and flags & FLAG_END_STREAM)):
                return frames, f
