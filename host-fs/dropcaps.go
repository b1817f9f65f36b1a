package main

import (
	"golang.org/x/sys/unix"
)

// The capabilities `exec --no-setid` takes away from the program it becomes. The seccomp filter
// stops QEMU making a set-ID file, but a root writer keeps an EXISTING file's set-ID bits only
// because it holds CAP_FSETID (without it the kernel clears them on write and on chown), so a
// guest rewriting a set-ID binary in a read-write volume would otherwise keep it set-ID. Device
// nodes and file capabilities are refused by the filter too; dropping their capabilities as well
// means one mistake in the filter is not enough.
var noSetidDroppedCaps = []uintptr{unix.CAP_FSETID, unix.CAP_MKNOD, unix.CAP_SETFCAP}

// dropCapsForExec removes the capabilities from the bounding and ambient sets (so the exec cannot
// regain them, whatever the inheritable set of the caller) and from this process's own sets.
func dropCapsForExec(caps []uintptr) *hostFsError {
	for _, c := range caps {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return syscallFail("prctl(PR_CAPBSET_DROP)", "", err)
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_LOWER, c, 0, 0); err != nil {
			return syscallFail("prctl(PR_CAP_AMBIENT_LOWER)", "", err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return syscallFail("capget", "", err)
	}
	for _, c := range caps {
		word, bit := c/32, uint32(1)<<(c%32)
		data[word].Effective &^= bit
		data[word].Permitted &^= bit
		data[word].Inheritable &^= bit
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return syscallFail("capset", "", err)
	}
	return nil
}
