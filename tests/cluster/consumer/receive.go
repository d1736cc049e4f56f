package main

// A fresh implementation (no code taken from KubeVirt) of what KubeVirt v1.9's
// virt-launcher does to take the iommufd from a device plugin:
//
//   kubevirt.io/kubevirt v1.9.0, pkg/virt-launcher/virtwrap/iommufd.go, ReceiveIOMMUFD,
//   called from pkg/virt-launcher/virtwrap/manager.go (generateConverterContext) only
//   when os.Stat(IOMMUFDSocketPath) succeeds.
//
// Behaviour by behaviour (each one marked below with [B1]..[B8]):
//
//   [B1] it acts only if os.Stat of the socket path succeeds (any stat error, ENOENT or
//        another, means "no socket": nothing is dialled);
//   [B2] it dials with net.DialUnix("unix", nil, addr): SOCK_STREAM, no timeout, no
//        retry (Go's dial is a non-blocking connect(2) that waits in the poller on
//        EINPROGRESS only; an AF_UNIX connect that fails, ECONNREFUSED, ENOENT or EAGAIN
//        for a full backlog, fails at once);
//   [B3] one ReadMsgUnix (one recvmsg(2), with MSG_CMSG_CLOEXEC as Go's net package
//        adds on Linux) into a 32-byte data buffer and a 4096-byte control buffer, with
//        no deadline: it waits as long as the sender keeps the connection open;
//   [B4] no control data (oobn == 0), EOF included, is an error;
//   [B5] the control data is parsed with unix.ParseSocketControlMessage (a parse error
//        is an error);
//   [B6] the first SCM_RIGHTS message carrying at least one fd wins, and its first fd is
//        the result; any other fds received are left open, as upstream leaves them;
//   [B7] it then writes one byte 0 and ignores the write's error (the ACK the sender
//        may wait for);
//   [B8] it closes the connection (deferred close: on every path once dialled) and
//        keeps the received fd open (virt-launcher holds it for libvirt).
//
// The std net package and golang.org/x/sys/unix are used on purpose: they are what the
// upstream function uses (x/sys pinned to the version kubevirt v1.9.0 requires), so
// the syscalls, their flags and the errors are the same as virt-launcher's, not an
// approximation written with raw syscalls.

import (
	"errors"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// The fixed path inside the virt-launcher container (upstream's IOMMUFDSocketPath).
const defaultSocketPath = "/var/run/kubevirt/iommufd.sock"

// Sizes of the two buffers of the single read [B3].
const (
	dataBufSize    = 32
	controlBufSize = 4096
)

// recvTrace is what the read saw; upstream only logs it (at verbosity 4).
type recvTrace struct {
	n, oobn, flags int
	data           []byte
	fdsInMessage   int   // fds in the SCM_RIGHTS message the result came from
	ackErr         error // the ACK write's error, ignored as upstream ignores it [B7]
}

// recvError names the step that failed, as the machine-readable output reports it.
type recvError struct {
	step   string // "connect", "recvmsg", "control data", "parse control", "parse rights"
	reason string // an errno name, or a short token when there is no errno
	err    error  // the underlying error, for the detail line
}

func (e *recvError) Error() string {
	if e.err != nil {
		return e.step + ": " + e.reason + " (" + e.err.Error() + ")"
	}
	return e.step + ": " + e.reason
}

// errnoName gives "ECONNREFUSED" for an error that wraps a syscall errno, else "".
func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
		return errno.Error()
	}
	return ""
}

func failed(step string, err error) *recvError {
	reason := errnoName(err)
	if reason == "" {
		reason = "error"
	}
	return &recvError{step: step, reason: reason, err: err}
}

// socketPresent is the caller's guard [B1]: os.Stat succeeding, nothing more (a
// regular file at the path counts as present too, as upstream).
func socketPresent(path string) (bool, error) {
	_, err := os.Stat(path)
	return err == nil, err
}

// receiveIOMMUFD does the handoff once [B2]..[B8] and returns the received fd.
func receiveIOMMUFD(path string) (int, recvTrace, error) {
	var tr recvTrace

	// [B2] one dial, no timeout, no retry.
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return -1, tr, failed("connect", err)
	}
	defer conn.Close() // [B8]

	// [B3] one read, 32 + 4096 bytes, no deadline set on conn.
	data := make([]byte, dataBufSize)
	control := make([]byte, controlBufSize)
	n, oobn, flags, _, err := conn.ReadMsgUnix(data, control)
	tr.n, tr.oobn, tr.flags = n, oobn, flags
	if n > 0 {
		tr.data = append([]byte(nil), data[:n]...)
	}
	if err != nil {
		return -1, tr, failed("recvmsg", err)
	}

	// [B4] no control data at all (an orderly EOF gives n == 0 here).
	if oobn == 0 {
		return -1, tr, &recvError{step: "control data", reason: "none"}
	}

	// [B5]
	msgs, err := unix.ParseSocketControlMessage(control[:oobn])
	if err != nil {
		return -1, tr, failed("parse control", err)
	}

	// [B6] the first SCM_RIGHTS with an fd; its first fd.
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return -1, tr, failed("parse rights", err)
		}
		if len(fds) == 0 {
			continue
		}
		tr.fdsInMessage = len(fds)
		// [B7] the ACK: one byte 0, error ignored (only reported by this program).
		_, tr.ackErr = conn.Write([]byte{0})
		return fds[0], tr, nil
	}
	return -1, tr, &recvError{step: "control data", reason: "no-scm-rights"}
}
