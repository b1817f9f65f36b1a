package main

import (
	"errors"

	"golang.org/x/sys/unix"
)

type probeResult struct {
	Kernel string `json:"kernel"`
}

// runProbe: probe — checks that this kernel has every system call the other subcommands use,
// by calling each harmlessly (a bad descriptor must give EBADF, not ENOSYS). The node agent
// runs it at start so an old kernel is a clear error then, not at the first sandbox.
func runProbe(args []string) (any, *hostFsError) {
	if err := parseFlags(newFlagSet("probe"), args); err != nil {
		return nil, err
	}
	if err := requireKernel(minKernelMount, "kata-host-fs"); err != nil {
		return nil, err
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return nil, missing("openat2", minKernelOpen, err)
	}
	unix.Close(fd)
	calls := []struct {
		name string
		call func() error
	}{
		{"open_tree", func() error {
			_, err := unix.OpenTree(-1, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
			return err
		}},
		{"move_mount", func() error {
			return unix.MoveMount(-1, "", -1, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
		}},
		{"mount_setattr", func() error {
			return unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
		}},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, unix.EBADF) {
			return nil, missing(c.name, minKernelMount, err)
		}
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	return probeResult{Kernel: unix.ByteSliceToString(u.Release[:])}, nil
}

func missing(call string, min kernelVersion, err error) *hostFsError {
	if errors.Is(err, unix.ENOSYS) {
		return failf(codeKernel, "", "this kernel has no %s (Linux %s or newer is needed)", call, min)
	}
	return failf(errnoCode(err), "", "probing %s: %s", call, err)
}
