package main

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// cgroupList holds the cgroup directories `exec --cgroup` moves the helper into before it execs
// the program, so the program starts there and every page it allocates is charged there (cgroup v1
// memory does not move charges with a task that changes cgroup later).
type cgroupList []string

func (l *cgroupList) String() string { return "" }

func (l *cgroupList) Set(s string) error {
	if len(s) == 0 || s[0] != '/' {
		return failf(codeNotAbsolute, s, "--cgroup %q is not absolute", s)
	}
	*l = append(*l, s)
	return nil
}

// joinCgroup opens dir without following symlinks in it, refuses anything that is not a cgroup
// (v1 or v2) directory, and writes this process's pid to its cgroup.procs through that handle.
func joinCgroup(dir string) *hostFsError {
	fd, err := openat2(unix.AT_FDCWD, dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return syscallFail("open cgroup", dir, err)
	}
	defer unix.Close(fd)
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return syscallFail("statfs", dir, err)
	}
	if sfs.Type != unix.CGROUP_SUPER_MAGIC && sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return failf(codeWrongType, dir, "%s is not a cgroup directory", dir)
	}
	procs, err := openat2(fd, "cgroup.procs", &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return syscallFail("open cgroup.procs of", dir, err)
	}
	defer unix.Close(procs)
	if _, err := unix.Write(procs, []byte(strconv.Itoa(unix.Getpid()))); err != nil {
		return syscallFail("join cgroup", dir, err)
	}
	return nil
}
