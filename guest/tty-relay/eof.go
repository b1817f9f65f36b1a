package main

import "golang.org/x/sys/unix"

// endOfInput is what the relay writes to the terminal when its own input ends, so that the
// program reading the terminal sees end of file as after a user's end-of-file key (^D): the
// terminal's VEOF character, once at the start of a line, twice after a partial line (the first
// only ends that line's read). Nothing when the terminal is not in canonical mode (a raw-mode
// reader has no end-of-file key) or has no VEOF character.
func endOfInput(t *unix.Termios, last byte, wroteAny bool) []byte {
	if t.Lflag&unix.ICANON == 0 {
		return nil
	}
	eof := t.Cc[unix.VEOF]
	if eof == 0 { // _POSIX_VDISABLE
		return nil
	}
	if !wroteAny || atLineStart(t, last) {
		return []byte{eof}
	}
	return []byte{eof, eof}
}

// atLineStart: after `last`, a canonical read has nothing pending.
func atLineStart(t *unix.Termios, last byte) bool {
	switch {
	case last == '\n':
		return true
	case last == '\r':
		return t.Iflag&unix.ICRNL != 0 && t.Iflag&unix.IGNCR == 0
	}
	for _, c := range []byte{t.Cc[unix.VEOF], t.Cc[unix.VEOL], t.Cc[unix.VEOL2]} {
		if c != 0 && last == c {
			return true
		}
	}
	return false
}
