package main

import (
	"golang.org/x/sys/unix"
)

// mountState is what statx says about a handle: its mount's id and whether it is that mount's root.
type mountState struct {
	mntID uint64
	root  bool
}

// mountStateOf reads the mount id of fd and whether fd is a mount root: from
// STATX_ATTR_MOUNT_ROOT, or, where the kernel does not report it, by comparing with the
// parent's mount id.
func mountStateOf(fd, parentfd int) (mountState, error) {
	var stx unix.Statx_t
	flags := unix.AT_EMPTY_PATH | unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_DONT_SYNC
	if err := unix.Statx(fd, "", flags, unix.STATX_MNT_ID, &stx); err != nil {
		return mountState{}, err
	}
	st := mountState{mntID: stx.Mnt_id}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		st.root = stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
		return st, nil
	}
	var pstx unix.Statx_t
	if err := unix.Statx(parentfd, "", flags, unix.STATX_MNT_ID, &pstx); err != nil {
		return mountState{}, err
	}
	st.root = pstx.Mnt_id != stx.Mnt_id
	return st, nil
}

// readOnlyMount says whether the mount fd is on is mounted read-only.
func readOnlyMount(fd int) (bool, error) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return false, err
	}
	return sfs.Flags&unix.ST_RDONLY != 0, nil
}
