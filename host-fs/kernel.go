package main

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Minimum kernels: openat2 with RESOLVE_* (check, exec) arrived in 5.6; mount_setattr (bind,
// umount) in 5.12, after open_tree/move_mount (5.2) and statx's STATX_ATTR_MOUNT_ROOT (5.8).
var (
	minKernelOpen  = kernelVersion{5, 6}
	minKernelMount = kernelVersion{5, 12}
)

type kernelVersion struct{ Major, Minor int }

func (v kernelVersion) less(o kernelVersion) bool {
	return v.Major < o.Major || (v.Major == o.Major && v.Minor < o.Minor)
}

func (v kernelVersion) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// parseKernelRelease reads "6.18.0-1-amd64" as 6.18.
func parseKernelRelease(release string) (kernelVersion, bool) {
	majorS, rest, ok := strings.Cut(release, ".")
	if !ok {
		return kernelVersion{}, false
	}
	minorS := rest
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorS = rest[:i]
	}
	major, err1 := strconv.Atoi(majorS)
	minor, err2 := strconv.Atoi(minorS)
	if err1 != nil || err2 != nil {
		return kernelVersion{}, false
	}
	return kernelVersion{major, minor}, true
}

// requireKernel fails with KERNEL_TOO_OLD before any work when the running kernel predates min.
// A release string it cannot read passes: the system calls then fail with ENOSYS, which maps to
// the same code.
func requireKernel(min kernelVersion, what string) *hostFsError {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil
	}
	release := unix.ByteSliceToString(u.Release[:])
	v, ok := parseKernelRelease(release)
	if ok && v.less(min) {
		return failf(codeKernel, "", "%s needs Linux %s or newer; this kernel is %s", what, min, release)
	}
	return nil
}
