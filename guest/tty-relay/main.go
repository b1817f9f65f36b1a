// kata-tty-relay runs one command that creates a pseudo-terminal and hands its master over a
// console socket (crun run/exec --console-socket), takes that master and relays it: its own
// stdin to the terminal, the terminal's output to its own stdout, window sizes from its control
// descriptor (fd 3) onto the terminal. The guest agent runs one per terminal process: Node.js can
// neither receive a descriptor over a unix socket nor set a window size. See README.md.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const usage = "usage: kata-tty-relay --console-socket PATH -- COMMAND [ARG...]"

// exitUsage is the status of a relay that could not run its command at all (as crun's 125).
const exitUsage = 125

// After the command exits, the terminal is read until this long passes without output: what the
// process wrote before it exited is already in the terminal; a background process that inherited
// it must not hold the relay open.
const drainIdle = 100 * time.Millisecond

// Signals the relay passes on to the command (crun forwards them to the container process).
// (SIGWINCH is not among them: the kernel sends it to the terminal's foreground group itself.)
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2}

func main() {
	os.Exit(run(os.Args[1:]))
}

func parseArgs(args []string) (socket string, argv []string, err error) {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--console-socket" && i+1 < len(args):
			socket = args[i+1]
			i++
		case strings.HasPrefix(a, "--console-socket="):
			socket = strings.TrimPrefix(a, "--console-socket=")
		case a == "--":
			argv = args[i+1:]
			i = len(args)
		default:
			return "", nil, fmt.Errorf("unexpected argument %q", a)
		}
	}
	if socket == "" || len(argv) == 0 {
		return "", nil, errors.New("--console-socket and a command are required")
	}
	return socket, argv, nil
}

// run returns the command's exit status (128+N when a signal N ended it).
func run(args []string) int {
	// fd 3 is the control channel when the caller passed one; looked at before anything opens a
	// descriptor of its own (which could otherwise be given number 3).
	control := controlFile()
	// Everything the relay itself has to say goes where the terminal's output goes.
	report := func(format string, a ...any) { fmt.Fprintf(os.Stdout, "kata-tty-relay: "+format+"\n", a...) }
	socket, argv, err := parseArgs(args)
	if err != nil {
		report("%v\n%s", err, usage)
		return exitUsage
	}
	// A vanished reader of stdout is an error on write, not the relay's death. (Notify, not Ignore:
	// an ignored signal would be inherited by the command.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		report("console socket: %v", err)
		return exitUsage
	}
	ln.SetUnlinkOnClose(true)
	defer ln.Close()
	if err := os.Chmod(socket, 0o600); err != nil {
		report("console socket: %v", err)
		return exitUsage
	}

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = os.Stdout // the command's own messages (crun's errors) join the output
	cmd.Stderr = os.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	if err := cmd.Start(); err != nil {
		report("%v", err)
		return exitUsage
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	masters := make(chan *os.File, 1)
	go func() {
		// A failure here is the command's (crun connects, then fails and closes): its own message
		// and status say what happened, and the relay waits for its exit.
		if m, err := receiveMaster(ln); err == nil {
			masters <- m
		}
	}()

	select {
	case <-exited:
		return exitStatus(cmd.ProcessState)
	case master := <-masters:
		ln.Close()
		relay(master, control, exited)
		return exitStatus(cmd.ProcessState)
	}
}

// relay moves bytes until the command exited and the terminal's output is drained.
func relay(master, control *os.File, exited <-chan struct{}) {
	defer master.Close()
	if control != nil {
		if _, err := control.Write([]byte("ready\n")); err != nil {
			control = nil // no control channel: sizes are not settable
		}
	}
	if control != nil {
		go serveControl(control, master)
	}
	go copyInput(master)

	done := make(chan struct{})
	go func() {
		drainOutput(master, os.Stdout, exited)
		close(done)
	}()
	select {
	case <-done:
		<-exited
	case <-exited:
		_ = master.SetReadDeadline(time.Now().Add(drainIdle))
		<-done
	}
}

// controlFile is fd 3 when it is open, else nil.
func controlFile() *os.File {
	if _, err := unix.FcntlInt(3, unix.F_GETFD, 0); err != nil {
		return nil
	}
	unix.CloseOnExec(3)
	return os.NewFile(3, "control")
}

// receiveMaster accepts the command's one connection and takes the descriptor it sends.
func receiveMaster(ln *net.UnixListener) (*os.File, error) {
	conn, err := ln.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) == 0 {
		return nil, errors.New("no descriptor received")
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	fd := fds[0]
	unix.CloseOnExec(fd)
	// Non-blocking, so the runtime's poller serves it and read deadlines work.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "pty-master"), nil
}

// serveControl applies each size line to the terminal and answers it.
func serveControl(control *os.File, master *os.File) {
	r := bufio.NewReaderSize(control, maxControlLine)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Too long to be a size: skip the rest of it and say so.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return
			}
			_, _ = control.Write([]byte(answer(errors.New("control line too long"))))
			continue
		}
		if err != nil {
			return
		}
		size, perr := parseSize(string(line))
		if perr == nil {
			perr = setSize(master, size)
		}
		if _, err := control.Write([]byte(answer(perr))); err != nil {
			return
		}
	}
}

func setSize(master *os.File, s winSize) error {
	raw, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	if err := raw.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: s.rows, Col: s.cols})
	}); err != nil {
		return err
	}
	return ioctlErr
}

// copyInput writes stdin to the terminal; at its end, the terminal's end-of-file (eof.go).
func copyInput(master *os.File) {
	buf := make([]byte, 32*1024)
	var last byte
	wrote := false
	for {
		n, err := os.Stdin.Read(buf)
		if n > 0 {
			if _, werr := master.Write(buf[:n]); werr != nil {
				return
			}
			last, wrote = buf[n-1], true
		}
		if err != nil {
			if err == io.EOF {
				writeEndOfInput(master, last, wrote)
			}
			return
		}
	}
}

var endOnce sync.Once

func writeEndOfInput(master *os.File, last byte, wrote bool) {
	endOnce.Do(func() {
		raw, err := master.SyscallConn()
		if err != nil {
			return
		}
		var t *unix.Termios
		_ = raw.Control(func(fd uintptr) {
			// On a master, the terminal's modes are the slave's (the kernel answers for its peer).
			t, _ = unix.IoctlGetTermios(int(fd), unix.TCGETS)
		})
		if t == nil {
			return
		}
		if b := endOfInput(t, last, wrote); len(b) > 0 {
			_, _ = master.Write(b)
		}
	})
}

// drainOutput copies the terminal's output to out until every holder of the terminal closed it
// (EIO) or, once the command exited, until it stays silent for drainIdle. A reader of out that
// went away does not stop the reading: the process must never block on a full terminal.
func drainOutput(master *os.File, out io.Writer, exited <-chan struct{}) {
	buf := make([]byte, 32*1024)
	ended := false
	for {
		n, err := master.Read(buf)
		if n > 0 && out != io.Discard {
			if _, werr := out.Write(buf[:n]); werr != nil {
				out = io.Discard
			}
		}
		if !ended {
			select {
			case <-exited:
				ended = true
			default:
			}
		}
		if ended {
			_ = master.SetReadDeadline(time.Now().Add(drainIdle))
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !ended {
				continue
			}
			return
		}
	}
}

func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return exitUsage
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
