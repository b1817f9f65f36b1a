package main

import (
	"encoding/binary"
	"strings"
	"testing"
)

// frame builds one yamux frame: data frames carry payload, others only the header.
func frame(typ byte, flags uint16, stream uint32, payload string) string {
	h := make([]byte, frameHeaderLen)
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], stream)
	if typ == frameData {
		binary.BigEndian.PutUint32(h[8:12], uint32(len(payload)))
		return string(h) + payload
	}
	binary.BigEndian.PutUint32(h[8:12], 0x40000) // a window update's delta
	return string(h)
}

var (
	syn1     = frame(frameWindow, flagSYN, 1, "")
	request  = frame(frameData, 0, 1, "old host's request")
	newHost  = frame(frameWindow, flagSYN, 1, "") + frame(frameData, 0, 1, "PRI * HTTP/2.0")
	ping     = frame(2, flagSYN, 0, "")
	oldReply = "answer for the old host"
)

func TestASecondSyn1EndsTheSessionWhereTheNewHostsFirstFrameBegins(t *testing.T) {
	h := newHarness(t)
	h.port.hostSends(syn1 + request)
	h.pump()
	old := h.conn(0)
	// The agent's answer waits for the port (its queue is full) when the new host's bytes arrive
	// with no disconnect seen: the answer must never reach it.
	h.port.full = true
	old.send = []byte(oldReply)
	h.pump()
	h.port.hostSends(frame(frameData, 0, 1, "old tail") + newHost)
	h.port.full = false
	h.pump()
	if !old.closed || old.got.String() != syn1+request {
		t.Fatalf("old connection closed %v, got %q", old.closed, old.got.String())
	}
	if h.conn(1).got.String() != newHost {
		t.Fatalf("new connection got %q", h.conn(1).got.String())
	}
	if h.port.out.Len() != 0 {
		t.Fatalf("the new host got %q", h.port.out.String())
	}
}

func TestFramesSplitAcrossReadsAndLookalikesInPayloads(t *testing.T) {
	h := newHarness(t)
	// A payload that holds a SYN-1 header is data, not a frame.
	first := syn1 + frame(frameData, 0, 1, syn1) + ping
	for _, part := range []string{first[:5], first[5:20], first[20:]} {
		h.port.hostSends(part)
		h.pump()
	}
	if len(h.conns) != 1 || h.conn(0).closed {
		t.Fatalf("%d connections, first closed %v", len(h.conns), h.conn(0).closed)
	}
	// Then a new host's SYN for stream 1, at a frame boundary: cut there.
	h.port.hostSends(newHost)
	h.pump()
	if len(h.conns) != 2 || h.conn(1).got.String() != newHost {
		t.Fatalf("%d connections; new one got %q", len(h.conns), h.conns[len(h.conns)-1].got.String())
	}
}

func TestBytesThatAreNoFrameStopTheScan(t *testing.T) {
	h := newHarness(t)
	h.port.hostSends(syn1 + "\x07garbage that is no yamux header")
	h.pump()
	h.port.hostSends(newHost)
	h.pump()
	if len(h.conns) != 1 || !strings.HasSuffix(h.conn(0).got.String(), newHost) {
		t.Fatalf("%d connections: a lost scan must leave the cut to the agent's demux", len(h.conns))
	}
}
