package main

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSize(t *testing.T) {
	good := map[string]winSize{
		"40 120\n":      {40, 120},
		"0 0":           {0, 0},
		"65535 65535\n": {65535, 65535},
	}
	for line, want := range good {
		got, err := parseSize(line)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %v, %v; want %v", line, got, err, want)
		}
	}
	for _, line := range []string{"", "40\n", "40 120 3\n", "65536 1\n", "-1 2\n", "+1 2\n", "a b\n", "40  120\n", " 40 120\n"} {
		if _, err := parseSize(line); err == nil {
			t.Errorf("parseSize(%q) accepted", line)
		}
	}
}

func TestAnswer(t *testing.T) {
	if got := answer(nil); got != "ok\n" {
		t.Errorf("answer(nil) = %q", got)
	}
	if got := answer(errors.New("bad\nthing")); got != "error bad thing\n" {
		t.Errorf("answer(err) = %q", got)
	}
}

func canonical() *unix.Termios {
	t := &unix.Termios{Lflag: unix.ICANON | unix.ECHO, Iflag: unix.ICRNL}
	t.Cc[unix.VEOF] = 4
	return t
}

func TestEndOfInput(t *testing.T) {
	eof := []byte{4}
	cases := []struct {
		name  string
		t     *unix.Termios
		last  byte
		wrote bool
		want  []byte
	}{
		{"nothing written", canonical(), 0, false, eof},
		{"after a newline", canonical(), '\n', true, eof},
		{"after a return (ICRNL)", canonical(), '\r', true, eof},
		{"after ^D", canonical(), 4, true, eof},
		{"after a partial line", canonical(), 'x', true, []byte{4, 4}},
		{"raw mode", &unix.Termios{}, '\n', true, nil},
	}
	noCR := canonical()
	noCR.Iflag = 0
	cases = append(cases, struct {
		name  string
		t     *unix.Termios
		last  byte
		wrote bool
		want  []byte
	}{"after a return without ICRNL", noCR, '\r', true, []byte{4, 4}})
	disabled := canonical()
	disabled.Cc[unix.VEOF] = 0
	cases = append(cases, struct {
		name  string
		t     *unix.Termios
		last  byte
		wrote bool
		want  []byte
	}{"no VEOF character", disabled, '\n', true, nil})
	for _, c := range cases {
		if got := endOfInput(c.t, c.last, c.wrote); !bytes.Equal(got, c.want) {
			t.Errorf("%s: endOfInput = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParseArgs(t *testing.T) {
	s, argv, err := parseArgs([]string{"--console-socket", "/run/x.sock", "--", "crun", "exec", "id"})
	if err != nil || s != "/run/x.sock" || len(argv) != 3 || argv[0] != "crun" {
		t.Fatalf("parseArgs = %q %q %v", s, argv, err)
	}
	if _, _, err := parseArgs([]string{"--", "crun"}); err == nil {
		t.Error("no socket accepted")
	}
	if _, _, err := parseArgs([]string{"--console-socket", "/x"}); err == nil {
		t.Error("no command accepted")
	}
	if _, _, err := parseArgs([]string{"--bogus", "--", "x"}); err == nil {
		t.Error("unknown flag accepted")
	}
}
