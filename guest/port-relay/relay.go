package main

// The relay's rules, apart from the descriptors and epoll that drive them (main.go), so they are
// unit-tested with a scripted port. One host session of the port is one connection to the agent:
//   - bytes from the port go to the agent's connection of the live session, which the first byte
//     after "no host" opens;
//   - the port read returning 0 means no host is connected (virtio_console's host_connected is
//     false): the session is over, its connection is closed and whatever it still had pending in
//     either direction is dropped — once the host was seen connected (below);
//   - a new host's first bytes can be read before the driver has marked it connected: the
//     driver takes data in its interrupt handler but the host's "port open" message later, in a
//     work queue, and in between a read that finds no more data returns 0 as if no host were
//     there. So "no host" ends a session only after the relay has seen its host connected (a read
//     that would block, or a write that went through); until then the session waits for the
//     driver's wake-up that comes with the "port open" message;
//   - a write to the port that would block is checked at once: with no host connected it is
//     dropped, never held for whichever host comes next, and the session ends as above; with a
//     host connected the port's queue is full and the bytes wait for it to drain.

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// maxPending bounds the bytes held in each direction; past it the relay stops reading that
// direction's source until the other side takes some (backpressure, no unbounded buffers).
const maxPending = 256 * 1024

// readChunk is the most read from either side at once.
const readChunk = 64 * 1024

// port is the virtio-serial port opened non-blocking.
type port interface {
	// Read returns n > 0 bytes; 0 with no error when no host is connected; unix.EAGAIN when a
	// host is connected and has sent nothing.
	Read(p []byte) (int, error)
	// Write returns unix.EAGAIN when it would block (no host connected, or the queue is full).
	Write(p []byte) (int, error)
	// HostConnected tells the two apart (poll: POLLHUP is set while no host is connected).
	HostConnected() (bool, error)
}

// agentConn is one connection to the agent, non-blocking: unix.EAGAIN when it would block, a
// read of 0 when the agent closed it.
type agentConn interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
}

// relay holds one host session at a time. Not safe for concurrent use: one loop drives it.
type relay struct {
	port port
	// dial opens the agent connection of a new host session.
	dial func() (agentConn, error)
	// logf reports session boundaries and drops (the agent logs sessions too; keep it short).
	logf func(format string, args ...any)

	conn     agentConn // the live session's connection; nil between sessions
	fromHost []byte    // read from the port, not yet written to conn
	toHost   []byte    // read from conn, not yet written to the port
	buf      []byte

	// hostSeen: the driver has shown the current host connected (a read returned EAGAIN or a
	// write went through) since the last session ended. Until it has, a read of 0 is no end.
	hostSeen bool

	// frames finds a new host's SYN for stream 1 in the live session's bytes (frames.go).
	frames frameScanner

	// Counters, for tests and the exit report.
	sessions     int // agent connections opened
	droppedBytes int // bytes for a host that was gone, discarded
}

func newRelay(p port, dial func() (agentConn, error), logf func(string, ...any)) *relay {
	return &relay{port: p, dial: dial, logf: logf, buf: make([]byte, readChunk)}
}

// endSession closes the live session's connection and drops what it had pending both ways: the
// host it belonged to is gone, and no byte of it may reach the next one.
func (r *relay) endSession(why string) {
	dropped := len(r.toHost) + len(r.fromHost)
	r.droppedBytes += dropped
	r.toHost, r.fromHost = nil, nil
	r.hostSeen = false
	r.frames = frameScanner{}
	if r.conn != nil {
		_ = r.conn.Close() // nothing to do about a failed close of a socket we drop
		r.conn = nil
		r.logf("host session ended (%s), %d pending bytes dropped", why, dropped)
	}
}

// agentGone: the agent closed the session's connection (or it broke). Bytes it already wrote stay
// queued for the host; bytes the host sends from now on open a new connection.
func (r *relay) agentGone(err error) {
	r.droppedBytes += len(r.fromHost)
	r.fromHost = nil
	_ = r.conn.Close()
	r.conn = nil
	if err != nil {
		r.logf("agent connection failed: %v", err)
	}
}

// pump moves every byte it can without blocking, in an order that favours seeing the host leave
// before writing to it: the port is read first. It returns when nothing moves any more; the
// caller waits for the port or the connection to change (edge-triggered epoll) and calls it
// again. An error is fatal: the port itself failed, or the agent cannot be reached.
func (r *relay) pump() error {
	for {
		moved := false

		// The port → fromHost.
		if room := maxPending - len(r.fromHost); room > 0 {
			n, err := r.port.Read(r.buf[:min(room, len(r.buf))])
			switch {
			case errors.Is(err, unix.EAGAIN):
				r.hostSeen = true // no data, and a host connected
			case errors.Is(err, unix.EINTR):
				moved = true
			case err != nil:
				return fmt.Errorf("reading the port: %w", err)
			case n == 0:
				if r.hostSeen && (r.conn != nil || len(r.toHost) > 0) {
					r.endSession("no host connected")
				}
			default:
				got := r.buf[:n]
				if r.conn != nil {
					// A new host with no disconnect seen: the old session ends where its
					// first frame begins, before anything more is written to the port; what
					// the gone host sent last goes with the rest of its session.
					if at := r.frames.newHostAt(got); at >= 0 {
						r.droppedBytes += at
						r.endSession("SYN for stream 1 of a new host")
						got = got[at:]
						r.frames.newHostAt(got)
					}
				} else {
					r.frames.newHostAt(got)
				}
				if r.conn == nil {
					c, err := r.dial()
					if err != nil {
						return fmt.Errorf("connecting to the agent: %w", err)
					}
					r.conn = c
					r.sessions++
				}
				r.fromHost = append(r.fromHost, got...)
				moved = true
			}
		}

		// fromHost → the agent.
		if r.conn != nil && len(r.fromHost) > 0 {
			n, err := r.conn.Write(r.fromHost)
			switch {
			case errors.Is(err, unix.EAGAIN):
			case errors.Is(err, unix.EINTR):
				moved = true
			case err != nil:
				r.agentGone(err)
				moved = true
			default:
				r.fromHost = shift(r.fromHost, n)
				moved = moved || n > 0
			}
		}

		// The agent → toHost.
		if r.conn != nil {
			if room := maxPending - len(r.toHost); room > 0 {
				n, err := r.conn.Read(r.buf[:min(room, len(r.buf))])
				switch {
				case errors.Is(err, unix.EAGAIN):
				case errors.Is(err, unix.EINTR):
					moved = true
				case err != nil:
					r.agentGone(err)
					moved = true
				case n == 0:
					r.agentGone(nil)
					moved = true
				default:
					r.toHost = append(r.toHost, r.buf[:n]...)
					moved = true
				}
			}
		}

		// toHost → the port.
		if len(r.toHost) > 0 {
			n, err := r.port.Write(r.toHost)
			switch {
			case errors.Is(err, unix.EAGAIN):
				up, perr := r.port.HostConnected()
				if perr != nil {
					return fmt.Errorf("polling the port: %w", perr)
				}
				if !up && r.hostSeen {
					r.endSession("write with no host connected")
					moved = true
				}
			case errors.Is(err, unix.EINTR):
				moved = true
			case err != nil:
				return fmt.Errorf("writing the port: %w", err)
			default:
				r.toHost = shift(r.toHost, n)
				r.hostSeen = r.hostSeen || n > 0
				moved = moved || n > 0
			}
		}

		if !moved {
			return nil
		}
	}
}

// shift drops the first n bytes, reusing the array only when it is emptied (no aliasing of what
// the caller still holds).
func shift(b []byte, n int) []byte {
	if n >= len(b) {
		return b[:0]
	}
	return b[n:]
}
