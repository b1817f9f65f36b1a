package main

// The host's yamux frames as far as the relay needs them: where a new host's session begins when
// the relay saw no disconnect (a host that came back within a millisecond). A yamux client opens
// stream 1 first and never reuses an id, so a second SYN for stream 1 in one session's bytes is a
// new host. Cutting there, before the bytes reach the agent, stops the relay from writing the old
// session's answers to the new host sooner than the agent's demux could (it sees the SYN only after
// the socket and its event loop). Bytes that are no plausible frame stop the scan for the rest of
// the session; the agent's demux still handles them.

import "encoding/binary"

const (
	frameHeaderLen = 12
	frameData      = 0
	frameWindow    = 1
	frameGoAway    = 3
	flagSYN        = 1
	// maxFrameData bounds a data frame's length; a longer one is no frame of a sane host.
	maxFrameData = 16 << 20
)

// frameScanner follows frame boundaries in one host session's bytes.
type frameScanner struct {
	header   [frameHeaderLen]byte
	have     int    // header bytes collected
	skip     uint32 // payload bytes of the current data frame still to pass
	sawSyn1  bool   // this session opened stream 1 already
	lost     bool   // bytes that were no frame: no more scanning this session
	consumed int    // bytes scanned so far in this session
}

// newHostAt scans b and returns the offset in b where a new host's first frame (a second SYN for
// stream 1) begins, or -1. After a hit the scanner is positioned for a new session starting there.
func (s *frameScanner) newHostAt(b []byte) int {
	i := 0
	for i < len(b) && !s.lost {
		if s.skip > 0 {
			n := min(uint32(len(b)-i), s.skip)
			s.skip -= n
			i += int(n)
			continue
		}
		start := i - s.have // where this header began (may be before b when split across reads)
		n := copy(s.header[s.have:], b[i:])
		s.have += n
		i += n
		if s.have < frameHeaderLen {
			break
		}
		s.have = 0
		typ := s.header[1]
		flags := binary.BigEndian.Uint16(s.header[2:4])
		stream := binary.BigEndian.Uint32(s.header[4:8])
		length := binary.BigEndian.Uint32(s.header[8:12])
		if s.header[0] != 0 || typ > frameGoAway || (typ == frameData && length > maxFrameData) {
			s.lost = true
			break
		}
		if flags&flagSYN != 0 && stream == 1 && (typ == frameData || typ == frameWindow) {
			if s.sawSyn1 && start >= 0 {
				*s = frameScanner{}
				return start
			}
			s.sawSyn1 = true
		}
		if typ == frameData {
			s.skip = length
		}
	}
	return -1
}
