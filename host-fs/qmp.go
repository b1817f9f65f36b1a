package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// qmp-fds hands descriptors it inherited (opened beneath their roots by `exec`) to a running
// QEMU: each --fdset FD:SET is sent with an add-fd command (SCM_RIGHTS), then each --command runs
// in the same QMP session, so the fd sets are in use (blockdev-add) before the session ends and
// QEMU would drop unused ones. Node.js cannot pass descriptors over a unix socket; this can.

type qmpResult struct {
	Replies []json.RawMessage `json:"replies"`
}

type fdsetSpec struct{ fd, set int }

type fdsetList []fdsetSpec

func (l *fdsetList) String() string { return "" }

func (l *fdsetList) Set(s string) error {
	fdS, setS, ok := strings.Cut(s, ":")
	fd, err1 := strconv.Atoi(fdS)
	set, err2 := strconv.Atoi(setS)
	if !ok || err1 != nil || err2 != nil || fd < 3 || set < 0 {
		return &hostFsError{Code: codeUsage, Message: "--fdset wants FD:SET (FD >= 3, SET >= 0)"}
	}
	*l = append(*l, fdsetSpec{fd, set})
	return nil
}

type commandList []json.RawMessage

func (l *commandList) String() string { return "" }

func (l *commandList) Set(s string) error {
	var probe struct {
		Execute string `json:"execute"`
	}
	if err := json.Unmarshal([]byte(s), &probe); err != nil || probe.Execute == "" {
		return &hostFsError{Code: codeUsage, Message: "--command wants a QMP command object"}
	}
	*l = append(*l, json.RawMessage(s))
	return nil
}

// runQmpFds: qmp-fds --socket S [--timeout-ms N] --fdset FD:SET... --command JSON...
func runQmpFds(args []string) (any, *hostFsError) {
	fs := newFlagSet("qmp-fds")
	socket := fs.String("socket", "", "QEMU's QMP unix socket")
	timeoutMs := fs.Int("timeout-ms", 20_000, "deadline of the whole session")
	var fdsets fdsetList
	var commands commandList
	fs.Var(&fdsets, "fdset", "FD:SET: send inherited descriptor FD to fd set SET")
	fs.Var(&commands, "command", "a QMP command (JSON) to run after the fd sets")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(*socket, "/") {
		return nil, failf(codeUsage, "", "qmp-fds needs an absolute --socket")
	}
	conn, err := net.DialTimeout("unix", *socket, time.Duration(*timeoutMs)*time.Millisecond)
	if err != nil {
		return nil, failf(codeOther, *socket, "connecting to QMP: %s", err)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(time.Duration(*timeoutMs) * time.Millisecond))
	s := &qmpSession{conn: uc, r: bufio.NewReader(uc)}
	if _, err := s.readReply(); err != nil { // the greeting
		return nil, err
	}
	if _, err := s.call(json.RawMessage(`{"execute":"qmp_capabilities"}`), -1); err != nil {
		return nil, err
	}
	out := qmpResult{Replies: []json.RawMessage{}}
	for _, f := range fdsets {
		cmd, _ := json.Marshal(map[string]any{
			"execute":   "add-fd",
			"arguments": map[string]any{"fdset-id": f.set, "opaque": "kata-host-fs"},
		})
		r, err := s.call(cmd, f.fd)
		if err != nil {
			return nil, err
		}
		out.Replies = append(out.Replies, r)
	}
	for _, c := range commands {
		r, err := s.call(c, -1)
		if err != nil {
			return nil, err
		}
		out.Replies = append(out.Replies, r)
	}
	return out, nil
}

type qmpSession struct {
	conn *net.UnixConn
	r    *bufio.Reader
}

// call sends one command (with descriptor fd attached when fd >= 0) and returns its "return".
func (s *qmpSession) call(cmd json.RawMessage, fd int) (json.RawMessage, *hostFsError) {
	line := append(append([]byte{}, cmd...), '\n')
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if _, _, err := s.conn.WriteMsgUnix(line, oob, nil); err != nil {
		return nil, failf(codeOther, "", "writing to QMP: %s", err)
	}
	return s.readReply()
}

// readReply reads lines until one that is not an event: the greeting, a return or an error.
func (s *qmpSession) readReply() (json.RawMessage, *hostFsError) {
	for {
		line, err := s.r.ReadBytes('\n')
		if err != nil {
			return nil, failf(codeOther, "", "reading from QMP: %s", err)
		}
		var msg map[string]json.RawMessage
		if err := json.Unmarshal(line, &msg); err != nil {
			return nil, failf(codeOther, "", "QMP sent a non-object: %.200s", line)
		}
		if _, ok := msg["event"]; ok {
			continue
		}
		if e, ok := msg["error"]; ok {
			return nil, failf(codeOther, "", "QMP error: %s", e)
		}
		if r, ok := msg["return"]; ok {
			return r, nil
		}
		if g, ok := msg["QMP"]; ok {
			return g, nil
		}
	}
}

var _ flag.Value = (*fdsetList)(nil)
