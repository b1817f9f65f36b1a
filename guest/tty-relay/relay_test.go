package main

// The whole relay on a real pseudo-terminal: the test binary runs itself as the relay and as a
// stand-in for crun (fakeConsole: makes a terminal, sends its master over the console socket as
// crun does, runs `sh -c SCRIPT` on it as a session leader and exits with its status).

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const modeEnv = "TTY_RELAY_TEST_MODE"

func TestMain(m *testing.M) {
	switch os.Getenv(modeEnv) {
	case "relay":
		os.Exit(run(os.Args[1:]))
	case "console":
		os.Exit(fakeConsole(os.Args[1], os.Args[2]))
	}
	os.Exit(m.Run())
}

// fakeConsole does what crun does with --console-socket, then runs the script on the terminal.
func fakeConsole(socket, script string) int {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 90
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return 91
	}
	n, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	if err != nil {
		return 92
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return 93
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return 94
	}
	if _, _, err := conn.WriteMsgUnix([]byte("/dev/pts"), unix.UnixRights(master), nil); err != nil {
		return 95
	}
	conn.Close()
	unix.Close(master)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		return 96
	}
	slave.Close()
	_ = cmd.Wait()
	return exitStatus(cmd.ProcessState)
}

type relayRun struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	control *os.File
	lines   *bufio.Reader
	out     *bytes.Buffer
	done    chan struct{}
}

// startPlain runs the relay around a command that never makes a terminal.
func startPlain(t *testing.T, script string) *relayRun {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "c.sock")
	cmd := exec.Command(self, "--console-socket", socket, "--", "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), modeEnv+"=relay")
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control-child")
	cmd.ExtraFiles = []*os.File{theirs}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &relayRun{cmd: cmd, stdin: stdin, control: ours, lines: bufio.NewReader(ours), out: &bytes.Buffer{}, done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	go func() {
		_, _ = io.Copy(r.out, stdout)
		_ = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
		ours.Close()
	})
	return r
}

func (r *relayRun) line(t *testing.T) string {
	t.Helper()
	_ = r.control.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := r.lines.ReadString('\n')
	if err != nil {
		t.Fatalf("control: %v (output %q)", err, r.out.String())
	}
	return l
}

func (r *relayRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("relay did not exit; output %q", r.out.String())
	}
	return r.cmd.ProcessState.ExitCode()
}

func startWithConsole(t *testing.T, script string) *relayRun {
	t.Helper()
	self, _ := os.Executable()
	socket := filepath.Join(t.TempDir(), "c.sock")
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control-child")
	// The relay runs `env MODE=console self SOCKET SCRIPT`: the stand-in for crun.
	cmd := exec.Command(self, "--console-socket", socket, "--",
		"/usr/bin/env", modeEnv+"=console", self, socket, script)
	cmd.Env = append(os.Environ(), modeEnv+"=relay")
	cmd.ExtraFiles = []*os.File{theirs}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &relayRun{cmd: cmd, stdin: stdin, control: ours, lines: bufio.NewReader(ours), out: &bytes.Buffer{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	go func() {
		_, _ = io.Copy(r.out, stdout)
		_ = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
		ours.Close()
	})
	if got := r.line(t); got != "ready\n" {
		t.Fatalf("first control line %q, want ready", got)
	}
	return r
}

func TestResizeIsSeenByTheProcessAndItsStatusIsTheRelays(t *testing.T) {
	r := startWithConsole(t, "read line; stty size; exit 7")
	if _, err := r.control.Write([]byte("40 120\n")); err != nil {
		t.Fatal(err)
	}
	if got := r.line(t); got != "ok\n" {
		t.Fatalf("resize answer %q", got)
	}
	if _, err := r.control.Write([]byte("70000 1\n")); err != nil {
		t.Fatal(err)
	}
	if got := r.line(t); !strings.HasPrefix(got, "error ") {
		t.Fatalf("bad size answered %q", got)
	}
	if _, err := io.WriteString(r.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 7 {
		t.Fatalf("exit %d, want 7; output %q", code, r.out.String())
	}
	if !strings.Contains(r.out.String(), "40 120") {
		t.Fatalf("output %q lacks the size", r.out.String())
	}
}

func TestEndOfInputEndsCat(t *testing.T) {
	for name, input := range map[string]string{"whole line": "hello\n", "partial line": "hello"} {
		t.Run(name, func(t *testing.T) {
			r := startWithConsole(t, "cat; echo cat-ended")
			if _, err := io.WriteString(r.stdin, input); err != nil {
				t.Fatal(err)
			}
			r.stdin.Close()
			if code := r.wait(t); code != 0 {
				t.Fatalf("exit %d; output %q", code, r.out.String())
			}
			out := r.out.String()
			if !strings.Contains(out, "hello") || !strings.Contains(out, "cat-ended") {
				t.Fatalf("output %q", out)
			}
		})
	}
}

func TestOutputUsesTheTerminal(t *testing.T) {
	r := startWithConsole(t, "test -t 0 && test -t 1 && echo on-a-terminal; echo err >&2")
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit %d; output %q", code, r.out.String())
	}
	// The terminal turns "\n" into "\r\n" (ONLCR); stderr is the same terminal.
	if out := r.out.String(); !strings.Contains(out, "on-a-terminal\r\n") || !strings.Contains(out, "err\r\n") {
		t.Fatalf("output %q", out)
	}
}

func TestACommandThatMakesNoTerminalGivesItsStatus(t *testing.T) {
	r := startPlain(t, "echo no terminal here; exit 3")
	if code := r.wait(t); code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
	if !strings.Contains(r.out.String(), "no terminal here") {
		t.Fatalf("output %q", r.out.String())
	}
}
