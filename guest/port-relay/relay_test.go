package main

// The relay's rules against a scripted port (the virtio console driver's non-blocking semantics:
// read 0 while no host is connected, EAGAIN when a connected host sent nothing, a write that
// would block returns EAGAIN) and scripted agent connections.

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

type fakePort struct {
	hostUp bool
	full   bool     // the port's queue is full: writes would block though a host is connected
	in     [][]byte // what hosts sent, not yet read
	out    bytes.Buffer
}

func (p *fakePort) Read(b []byte) (int, error) {
	if len(p.in) > 0 {
		n := copy(b, p.in[0])
		if p.in[0] = p.in[0][n:]; len(p.in[0]) == 0 {
			p.in = p.in[1:]
		}
		return n, nil
	}
	if !p.hostUp {
		return 0, nil
	}
	return 0, unix.EAGAIN
}

func (p *fakePort) Write(b []byte) (int, error) {
	if !p.hostUp || p.full {
		return 0, unix.EAGAIN
	}
	return p.out.Write(b)
}

func (p *fakePort) HostConnected() (bool, error) { return p.hostUp, nil }

// hostSends: a host is connected and sent b.
func (p *fakePort) hostSends(b string) {
	p.hostUp = true
	p.in = append(p.in, []byte(b))
}

type fakeConn struct {
	got     bytes.Buffer // from the relay
	send    []byte       // the agent's bytes, not yet read by the relay
	stalled bool         // the agent reads nothing: writes would block
	eof     bool         // the agent closed its end
	closed  bool
}

func (c *fakeConn) Read(b []byte) (int, error) {
	if len(c.send) > 0 {
		n := copy(b, c.send)
		c.send = c.send[n:]
		return n, nil
	}
	if c.eof {
		return 0, nil
	}
	return 0, unix.EAGAIN
}

func (c *fakeConn) Write(b []byte) (int, error) {
	if c.eof {
		return 0, unix.EPIPE
	}
	if c.stalled {
		return 0, unix.EAGAIN
	}
	return c.got.Write(b)
}

func (c *fakeConn) Close() error {
	c.closed = true
	return nil
}

type harness struct {
	t     *testing.T
	port  *fakePort
	conns []*fakeConn
	r     *relay
	logs  []string
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, port: &fakePort{}}
	dial := func() (agentConn, error) {
		c := &fakeConn{}
		h.conns = append(h.conns, c)
		return c, nil
	}
	h.r = newRelay(h.port, dial, func(f string, a ...any) { h.logs = append(h.logs, f) })
	return h
}

func (h *harness) pump() {
	h.t.Helper()
	if err := h.r.pump(); err != nil {
		h.t.Fatalf("pump: %v", err)
	}
}

func (h *harness) conn(i int) *fakeConn {
	h.t.Helper()
	if len(h.conns) <= i {
		h.t.Fatalf("want agent connection %d, have %d", i+1, len(h.conns))
	}
	return h.conns[i]
}

func TestNoConnectionUntilTheHostSendsSomething(t *testing.T) {
	h := newHarness(t)
	h.pump() // no host
	h.port.hostUp = true
	h.pump() // a host, silent
	if len(h.conns) != 0 {
		t.Fatalf("%d connections opened without host data", len(h.conns))
	}
}

func TestBytesFlowBothWaysInOneSession(t *testing.T) {
	h := newHarness(t)
	h.port.hostSends("hello")
	h.pump()
	c := h.conn(0)
	if c.got.String() != "hello" {
		t.Fatalf("agent got %q", c.got.String())
	}
	c.send = []byte("answer")
	h.port.hostSends(" again")
	h.pump()
	if h.port.out.String() != "answer" || c.got.String() != "hello again" {
		t.Fatalf("host got %q, agent got %q", h.port.out.String(), c.got.String())
	}
	if len(h.conns) != 1 {
		t.Fatalf("one host session, %d connections", len(h.conns))
	}
}

func TestHostGoneEndsTheSessionAndTheNextHostGetsAFreshConnection(t *testing.T) {
	h := newHarness(t)
	h.port.hostSends("first host")
	h.pump()
	h.port.hostUp = false // the host left; the read returns 0
	h.pump()
	first := h.conn(0)
	if !first.closed {
		t.Fatal("the session's connection stayed open after the host left")
	}
	first.send = []byte("late answer") // the agent answers into a closed connection: never read
	h.port.hostSends("second host")
	h.pump()
	second := h.conn(1)
	if second.got.String() != "second host" {
		t.Fatalf("second connection got %q", second.got.String())
	}
	if h.port.out.Len() != 0 {
		t.Fatalf("the second host got %q", h.port.out.String())
	}
}

func TestANewHostsBytesBeforeItsPortOpenDoNotEndTheSession(t *testing.T) {
	h := newHarness(t)
	// The driver took the new host's first bytes (interrupt handler) but has not yet handled its
	// "port open" message (work queue): host_connected is still false, so the read after the
	// data returns 0.
	h.port.in = append(h.port.in, []byte("SYN+preface"))
	h.pump()
	c := h.conn(0)
	if c.closed {
		t.Fatal("a read of 0 before the host was seen connected ended its session")
	}
	c.send = []byte("SETTINGS")
	h.pump() // the write would block: held, not dropped
	if h.r.droppedBytes != 0 || c.closed {
		t.Fatalf("dropped %d bytes, closed %v", h.r.droppedBytes, c.closed)
	}
	h.port.hostUp = true // the "port open" message: the driver wakes the relay
	h.port.in = append(h.port.in, []byte(" more"))
	h.pump()
	if len(h.conns) != 1 || c.got.String() != "SYN+preface more" || h.port.out.String() != "SETTINGS" {
		t.Fatalf("%d connections, agent got %q, host got %q", len(h.conns), c.got.String(), h.port.out.String())
	}
	h.port.hostUp = false // now a read of 0 is the host leaving
	h.pump()
	if !c.closed {
		t.Fatal("the session outlived its host")
	}
}

func TestAWriteWithNoHostIsDroppedNotHeldForTheNextHost(t *testing.T) {
	h := newHarness(t)
	h.port.hostSends("call")
	h.pump()
	c := h.conn(0)
	// The host sent its last bytes and left; the driver still hands them out (data first, then
	// the end). The agent answers before the relay reads the end: the write would block with no
	// host connected, so it is dropped and the session ends.
	h.port.hostSends(" and bye")
	h.port.hostUp = false
	c.send = []byte("answer for the first host")
	h.pump()
	if !c.closed {
		t.Fatal("the connection stayed open")
	}
	if h.r.droppedBytes != len("answer for the first host") {
		t.Fatalf("dropped %d bytes", h.r.droppedBytes)
	}
	h.port.hostSends("next")
	h.pump()
	if h.port.out.Len() != 0 {
		t.Fatalf("the next host got %q", h.port.out.String())
	}
	if h.conn(1).got.String() != "next" {
		t.Fatalf("new connection got %q", h.conn(1).got.String())
	}
}

func TestAFullQueueHoldsBytesWhileTheHostIsConnected(t *testing.T) {
	h := newHarness(t)
	h.port.hostSends("q")
	h.pump()
	h.port.full = true
	h.conn(0).send = bytes.Repeat([]byte("a"), 10)
	h.pump()
	if h.port.out.Len() != 0 || len(h.r.toHost) != 10 {
		t.Fatalf("out %d, pending %d", h.port.out.Len(), len(h.r.toHost))
	}
	h.port.full = false
	h.pump()
	if h.port.out.Len() != 10 {
		t.Fatalf("out %d after the queue drained", h.port.out.Len())
	}
}

func TestBackpressureStopsReadingTheSlowSide(t *testing.T) {
	h := newHarness(t)
	h.port.hostSends("start")
	h.pump()
	c := h.conn(0)
	c.stalled = true
	for i := 0; i < 10; i++ {
		h.port.hostSends(strings.Repeat("h", readChunk))
	}
	h.pump()
	if len(h.r.fromHost) > maxPending {
		t.Fatalf("%d bytes held from the host (limit %d)", len(h.r.fromHost), maxPending)
	}
	if len(h.port.in) == 0 {
		t.Fatal("the relay read everything although the agent took nothing")
	}
	c.stalled = false
	h.pump()
	if want := len("start") + 10*readChunk; c.got.Len() != want {
		t.Fatalf("agent got %d bytes, want %d", c.got.Len(), want)
	}

	// The other way: a full port queue stops reading the agent.
	h.port.full = true
	c.send = bytes.Repeat([]byte("g"), 2*maxPending)
	h.pump()
	if len(h.r.toHost) > maxPending || len(c.send) == 0 {
		t.Fatalf("held %d for the host, agent has %d left", len(h.r.toHost), len(c.send))
	}
	h.port.full = false
	for i := 0; i < 4 && h.port.out.Len() < 2*maxPending; i++ {
		h.pump()
	}
	if h.port.out.Len() != 2*maxPending {
		t.Fatalf("host got %d bytes", h.port.out.Len())
	}
}

func TestTheAgentClosingItsConnection(t *testing.T) {
	h := newHarness(t)
	h.port.hostSends("a")
	h.pump()
	c := h.conn(0)
	c.send = []byte("go-away")
	c.eof = true
	h.pump()
	if !c.closed || h.port.out.String() != "go-away" {
		t.Fatalf("closed %v, host got %q", c.closed, h.port.out.String())
	}
	h.port.hostSends("b")
	h.pump()
	if h.conn(1).got.String() != "b" {
		t.Fatalf("the next bytes went to %q", h.conn(1).got.String())
	}
}

func TestAnAgentThatCannotBeReachedIsFatal(t *testing.T) {
	p := &fakePort{}
	r := newRelay(p, func() (agentConn, error) { return nil, unix.ECONNREFUSED }, func(string, ...any) {})
	p.hostSends("x")
	if err := r.pump(); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("pump: %v", err)
	}
}

func TestAPortErrorIsFatal(t *testing.T) {
	r := newRelay(errPort{}, func() (agentConn, error) { return &fakeConn{}, nil }, func(string, ...any) {})
	if err := r.pump(); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("pump: %v", err)
	}
}

type errPort struct{}

func (errPort) Read([]byte) (int, error)     { return -1, unix.ENODEV }
func (errPort) Write([]byte) (int, error)    { return -1, unix.ENODEV }
func (errPort) HostConnected() (bool, error) { return false, nil }

func TestParseArgs(t *testing.T) {
	for _, ok := range [][]string{
		{"--port", "/dev/vport1p1", "--agent", "/run/a.sock"},
		{"--port=/dev/vport1p1", "--agent=/run/a.sock"},
	} {
		d, s, err := parseArgs(ok)
		if err != nil || d != "/dev/vport1p1" || s != "/run/a.sock" {
			t.Fatalf("%q: %q %q %v", ok, d, s, err)
		}
	}
	for _, bad := range [][]string{{}, {"--port", "/dev/x"}, {"--agent"}, {"--what", "x"}} {
		if _, _, err := parseArgs(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}
