package main

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

type openList []openSpec

func (l *openList) String() string { return "" }

func (l *openList) Set(s string) error {
	o, err := parseOpenSpec(s)
	if err != nil {
		return err
	}
	*l = append(*l, o)
	return nil
}

// runExec: exec [--no-setid] [--cgroup DIR ...] --open FD=TYPE:MODE:ROOT:PATH [--open ...] -- ARGV...
// Returns only on failure; on success this process becomes ARGV with each object at its FD.
func runExec(args []string) *hostFsError {
	fs := newFlagSet("exec")
	var opens openList
	fs.Var(&opens, "open", "FD=TYPE:MODE:ROOT:PATH, repeatable")
	var cgroups cgroupList
	fs.Var(&cgroups, "cgroup", "a cgroup directory to join before the exec, repeatable (one per hierarchy)")
	noSetid := fs.Bool("no-setid", false, "refuse set-ID mode bits, device nodes and xattrs to the program (seccomp)")
	if err := fs.Parse(args); err != nil {
		return failf(codeUsage, "", "exec: %s", err)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return failf(codeUsage, "", "exec: no program after --")
	}
	if err := checkDistinctFDs(opens); err != nil {
		return err
	}
	if err := requireKernel(minKernelOpen, "exec"); err != nil {
		return err
	}
	program, lerr := exec.LookPath(argv[0])
	if lerr != nil {
		return failf(codeNotFound, argv[0], "program %q: %s", argv[0], lerr)
	}
	for _, dir := range cgroups {
		if err := joinCgroup(dir); err != nil {
			return err
		}
	}
	procfd, perr := openProc()
	if perr != nil {
		return perr
	}
	defer unix.Close(procfd)
	fds := make([]int, len(opens))
	for i, o := range opens {
		fd, err := openForProgram(procfd, o)
		if err != nil {
			return err
		}
		fds[i] = fd
	}
	if err := placeAt(fds, opens); err != nil {
		return err
	}
	if *noSetid {
		if err := installNoSetid(); err != nil {
			return err
		}
	}
	err := syscall.Exec(program, argv, os.Environ())
	return failf(errnoCode(err), program, "exec %q: %s", program, err)
}

// openProc opens /proc, refusing anything but procfs there (reopening goes through it).
func openProc() (int, *hostFsError) {
	fd, err := unix.Open("/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, syscallFail("open", "/proc", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil || sfs.Type != unix.PROC_SUPER_MAGIC {
		unix.Close(fd)
		return -1, failf(codeOther, "/proc", "/proc is not procfs")
	}
	return fd, nil
}

// openForProgram opens o.Path beneath o.Root as O_PATH, checks its type, then reopens that very
// object through /proc/self/fd with the access mode. The type check comes first, so a FIFO or
// socket is never opened for I/O (a FIFO would block, a device of the wrong kind is refused).
func openForProgram(procfd int, o openSpec) (int, *hostFsError) {
	obj, err := openByPath(o.Path, []allowedRoot{{Root: o.Root, Type: o.Type}})
	if err != nil {
		return -1, err
	}
	defer unix.Close(obj.fd)
	flags := unix.O_CLOEXEC | unix.O_NOCTTY
	switch {
	case o.Type == typeDir:
		flags |= unix.O_RDONLY | unix.O_DIRECTORY
	case o.ReadOnly:
		flags |= unix.O_RDONLY
	default:
		flags |= unix.O_RDWR
	}
	fd, rerr := unix.Openat(procfd, "self/fd/"+strconv.Itoa(obj.fd), flags, 0)
	if rerr != nil {
		return -1, syscallFail("reopen", o.Path, rerr)
	}
	var st unix.Stat_t
	if serr := unix.Fstat(fd, &st); serr != nil || st.Dev != obj.stat.Dev || st.Ino != obj.stat.Ino || st.Rdev != obj.stat.Rdev {
		unix.Close(fd)
		return -1, failf(codeOther, o.Path, "%q: the reopened descriptor is not the checked object", o.Path)
	}
	return fd, nil
}

// placeAt moves each descriptor to its wanted number with close-on-exec cleared. Everything is
// first moved above the highest wanted number so no dup3 overwrites a descriptor still to move.
func placeAt(fds []int, opens []openSpec) *hostFsError {
	top := 0
	for _, o := range opens {
		top = max(top, o.FD)
	}
	high := make([]int, len(fds))
	for i, fd := range fds {
		h, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, top+1)
		if err != nil {
			return syscallFail("dup", opens[i].Path, err)
		}
		unix.Close(fd)
		high[i] = h
	}
	for i, h := range high {
		if err := unix.Dup3(h, opens[i].FD, 0); err != nil {
			return syscallFail("dup3", opens[i].Path, err)
		}
		unix.Close(h)
	}
	return nil
}
