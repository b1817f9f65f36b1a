// kata-port-relay owns the guest agent's virtio-serial port for the VM's life and relays it to the
// agent over a unix socket, one connection per host session. Node.js can only drive the port
// through blocking reads and writes on its thread pool: a blocking write made while no host is
// connected is held by the virtio console driver and goes out to whichever host connects next,
// and each call costs a thread-pool round trip. The relay opens the port O_NONBLOCK once, waits on
// it with edge-triggered epoll, and drops what a gone host would have got. See README.md.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

const usage = "usage: kata-port-relay --port DEVICE --agent SOCKET"

// Exit statuses: the relay runs until it is killed; any exit is a failure the agent reports.
const (
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func report(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "kata-port-relay: "+format+"\n", a...)
}

func parseArgs(args []string) (device, socket string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(a, "=")
		if !hasValue && i+1 < len(args) {
			value = args[i+1]
		}
		switch name {
		case "--port", "--agent":
			if !hasValue {
				if i+1 >= len(args) {
					return "", "", fmt.Errorf("%s needs a value", name)
				}
				i++
			}
			if name == "--port" {
				device = value
			} else {
				socket = value
			}
		default:
			return "", "", fmt.Errorf("unexpected argument %q", a)
		}
	}
	if device == "" || socket == "" {
		return "", "", errors.New("--port and --agent are required")
	}
	return device, socket, nil
}

func run(args []string) int {
	device, socket, err := parseArgs(args)
	if err != nil {
		report("%v\n%s", err, usage)
		return exitUsage
	}
	// The agent starts the relay; the relay must not outlive it (it would hold the port).
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		report("prctl(PR_SET_PDEATHSIG): %v", err)
		return exitFailed
	}
	if err := serve(device, socket); err != nil {
		report("%v", err)
		return exitFailed
	}
	return 0
}

// serve opens the port once and relays until a fatal error. The port is never closed while the
// VM runs: closing it makes the driver discard what the next host already sent.
func serve(device, socket string) error {
	fd, err := unix.Open(device, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", device, err)
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	// Edge-triggered: while no host is connected the port polls readable and hung up all the
	// time; the driver wakes its waiters when data arrives, when the host consumed what we
	// wrote and when a host connects or leaves, and each wake-up runs pump once.
	const edges = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: edges, Fd: int32(fd)}); err != nil {
		return fmt.Errorf("epoll_ctl(port): %w", err)
	}
	dial := func() (agentConn, error) {
		c, err := dialAgent(socket)
		if err != nil {
			return nil, err
		}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: edges, Fd: int32(c.fd)}); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("epoll_ctl(agent): %w", err)
		}
		return c, nil
	}
	r := newRelay(fdPort{fd}, dial, report)
	events := make([]unix.EpollEvent, 4)
	for {
		if err := r.pump(); err != nil {
			return err
		}
		if _, err := unix.EpollWait(ep, events, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("epoll_wait: %w", err)
		}
	}
}

// fdPort is the port's descriptor, opened O_NONBLOCK.
type fdPort struct{ fd int }

func (p fdPort) Read(b []byte) (int, error)  { return unix.Read(p.fd, b) }
func (p fdPort) Write(b []byte) (int, error) { return unix.Write(p.fd, b) }

func (p fdPort) HostConnected() (bool, error) {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLOUT}}
	for {
		_, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, err
		}
		return fds[0].Revents&unix.POLLHUP == 0, nil
	}
}

// sockConn is one non-blocking connection to the agent's socket.
type sockConn struct{ fd int }

func dialAgent(path string) (*sockConn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	// Blocking connect (a local listener answers at once), then non-blocking I/O.
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("connecting to %s: %w", path, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("set non-blocking: %w", err)
	}
	return &sockConn{fd}, nil
}

func (c *sockConn) Read(b []byte) (int, error) { return unix.Read(c.fd, b) }

// Write never raises SIGPIPE: an agent that closed the connection is an EPIPE to handle.
func (c *sockConn) Write(b []byte) (int, error) {
	return unix.SendmsgN(c.fd, b, nil, nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
}

func (c *sockConn) Close() error { return unix.Close(c.fd) }
