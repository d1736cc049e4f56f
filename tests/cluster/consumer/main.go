// iommufd-consumer: a stand-in for KubeVirt v1.9's virt-launcher in cluster tests of
// iommufd-device-plugin. It waits, takes the iommufd exactly as virt-launcher does
// (receive.go), prints one machine-readable result line, then idles until SIGTERM so
// the pod stays Running and a test reads the result with `kubectl logs`.
//
// Usage: iommufd-consumer [DELAY_SECONDS]
//
//	DELAY_SECONDS   (or env CONSUMER_DELAY; the argument wins) seconds to wait before
//	                the receive, decimal allowed; default 0
//	IOMMUFD_SOCKET  env, for local tests only: the socket path instead of
//	                /var/run/kubevirt/iommufd.sock
//
// Output on stdout (lines starting with "consumer:" are informational):
//
//	iommufd: received fd=N target=/dev/iommu rdev=MAJ:MIN n=1 data=00 oobn=24 flags=0x0 fds=1 ack=ok
//	iommufd: socket absent
//	iommufd: error: STEP: REASON
//	iommufd: detail: <the Go error text>     (after an error line, when there is one)
//
// STEP is connect, recvmsg, control data, parse control or parse rights; REASON an
// errno name (ECONNREFUSED, ...) or, without an errno, none / no-scm-rights / error.
// Exit status: 0 on SIGTERM or SIGINT (at any time, the wait and the receive included),
// 2 on a bad delay.
package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

func parseDelay() (time.Duration, error) {
	s := os.Getenv("CONSUMER_DELAY")
	if len(os.Args) > 1 {
		s = os.Args[1]
	}
	if s == "" {
		return 0, nil
	}
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil || secs < 0 || secs > 1e6 {
		return 0, fmt.Errorf("delay %q: want non-negative seconds", s)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// describeFD reports what the received fd is: /proc/self/fd/N's link and st_rdev.
func describeFD(fd int) string {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		target = "?(" + errnoOr(err) + ")"
	}
	rdev := "?"
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		rdev = "?(" + errnoOr(err) + ")"
	} else {
		dev := uint64(st.Rdev) //nolint:unconvert // Rdev's type differs between arches
		rdev = fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	}
	return fmt.Sprintf("target=%s rdev=%s", target, rdev)
}

func errnoOr(err error) string {
	if name := errnoName(err); name != "" {
		return name
	}
	return "error"
}

func run(path string) {
	if ok, _ := socketPresent(path); !ok {
		fmt.Println("iommufd: socket absent")
		return
	}
	fd, tr, err := receiveIOMMUFD(path)
	if err != nil {
		if re, ok := err.(*recvError); ok {
			fmt.Printf("iommufd: error: %s: %s\n", re.step, re.reason)
			detail := fmt.Sprintf("n=%d oobn=%d flags=%#x", tr.n, tr.oobn, tr.flags)
			if re.step == "connect" {
				detail = re.err.Error() // nothing was read
			} else if re.err != nil {
				detail = re.err.Error() + " " + detail
			}
			fmt.Printf("iommufd: detail: %s\n", detail)
		} else {
			fmt.Printf("iommufd: error: receive: error\niommufd: detail: %v\n", err)
		}
		return
	}
	ack := "ok"
	if tr.ackErr != nil {
		ack = errnoOr(tr.ackErr)
	}
	data := hex.EncodeToString(tr.data)
	if data == "" {
		data = "-"
	}
	fmt.Printf("iommufd: received fd=%d %s n=%d data=%s oobn=%d flags=%#x fds=%d ack=%s\n",
		fd, describeFD(fd), tr.n, data, tr.oobn, tr.flags, tr.fdsInMessage, ack)
	// The fd stays open, as virt-launcher keeps it for libvirt.
}

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)

	delay, err := parseDelay()
	if err != nil {
		fmt.Fprintln(os.Stderr, "iommufd-consumer:", err)
		os.Exit(2)
	}
	path := defaultSocketPath
	if p := os.Getenv("IOMMUFD_SOCKET"); p != "" {
		path = p
	}
	fmt.Printf("consumer: start pid=%d uid=%d delay=%s socket=%s\n", os.Getpid(), os.Getuid(), delay, path)

	select {
	case <-time.After(delay):
	case s := <-sigs:
		fmt.Printf("consumer: %v before the receive, exiting\n", s)
		os.Exit(0)
	}
	// As an init container: only the wait (the VM's container is created after it, so
	// a test controls when the handoff socket is mounted).
	if os.Getenv("CONSUMER_WAIT_ONLY") != "" {
		fmt.Println("consumer: waited, exiting (CONSUMER_WAIT_ONLY)")
		os.Exit(0)
	}

	done := make(chan struct{})
	go func() {
		run(path)
		close(done)
	}()
	select {
	case <-done:
	case s := <-sigs:
		fmt.Printf("consumer: %v during the receive, exiting\n", s)
		os.Exit(0)
	}

	fmt.Println("consumer: idle until SIGTERM")
	s := <-sigs
	fmt.Printf("consumer: %v, exiting\n", s)
}
