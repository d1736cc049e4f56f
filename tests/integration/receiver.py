"""A receiver that behaves exactly like KubeVirt's Go receiver of the handed-over fd.

connect; ONE recvmsg with a 32-byte data buffer and a 4096-byte control buffer;
the data must be the single byte 0x00; take the SCM_RIGHTS fd; write one byte
(the ACK); close.
"""

import array
import os
import socket
import stat
import struct
from dataclasses import dataclass, field

ACK = b"\x00"
NULL_RDEV = os.stat("/dev/null").st_rdev


@dataclass
class Received:
    data: bytes
    fds: list = field(default_factory=list)
    msg_flags: int = 0

    @property
    def fd(self):
        assert len(self.fds) == 1, "expected exactly one fd, got %r" % self.fds
        return self.fds[0]

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _fds_from(ancdata):
    fds = []
    for level, ctype, data in ancdata:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[: len(data) - (len(data) % arr.itemsize)])
            fds.extend(arr)
    return fds


def connect(path, timeout=5.0):
    """A blocking connect, like Go's net.Dial: it waits while the listen backlog is full
    (a non-blocking AF_UNIX connect would fail with EAGAIN instead), bounded by SO_SNDTIMEO."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sec = int(timeout)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", sec, int((timeout - sec) * 1e6)))
    try:
        s.connect(path)
    except BaseException:
        s.close()
        raise
    s.settimeout(timeout)
    return s


def receive_on(sock):
    data, ancdata, flags, _ = sock.recvmsg(32, 4096)
    return Received(data=data, fds=_fds_from(ancdata), msg_flags=flags)


def kubevirt_receive(path, ack=True, timeout=5.0):
    """One complete hand-over as KubeVirt does it. Returns Received (caller closes the fd)."""
    with connect(path, timeout) as s:
        got = receive_on(s)
        if ack:
            s.sendall(ACK)
    return got


def allocate_socket(client, device_id):
    """Allocate one device for one container; returns the host path of its socket."""
    resp = client.allocate([device_id])
    return resp.container_responses[0].mounts[0].host_path


def assert_is_dev_null(got):
    """The hand-over was one 0x00 byte plus one fd of /dev/null (closes the fd)."""
    try:
        assert got.data == b"\x00"
        assert not got.msg_flags & socket.MSG_CTRUNC
        st = os.fstat(got.fd)
        assert stat.S_ISCHR(st.st_mode)
        assert st.st_rdev == NULL_RDEV
    finally:
        got.close()
