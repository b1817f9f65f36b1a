package main

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

type umountResult struct {
	Unmounted bool `json:"unmounted"`
}

// runUmount: umount --target-root TROOT --target REL [--detach]
func runUmount(args []string) (any, *hostFsError) {
	fs := newFlagSet("umount")
	targetRoot := fs.String("target-root", "", "node-agent-owned directory the target is beneath")
	target := fs.String("target", "", "target path relative to --target-root")
	detach := fs.Bool("detach", false, "lazy unmount (MNT_DETACH)")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(*targetRoot) {
		return nil, failf(codeUsage, "", "umount needs an absolute --target-root")
	}
	comps, cerr := targetComponents(*target)
	if cerr != nil {
		return nil, cerr
	}
	if err := requireKernel(minKernelMount, "umount"); err != nil {
		return nil, err
	}
	troot := filepath.Clean(*targetRoot)
	shown := filepath.Join(troot, strings.Join(comps, "/"))
	trootfd, err := openRoot(troot)
	if err != nil {
		return nil, err
	}
	defer unix.Close(trootfd)
	parentfd, err := walkTargetParent(trootfd, troot, comps, false)
	if err != nil {
		if err.Code == codeNotFound {
			return umountResult{}, nil
		}
		return nil, err
	}
	defer unix.Close(parentfd)
	last := comps[len(comps)-1]

	before, found, ferr := childMount(parentfd, last, shown)
	if ferr != nil {
		return nil, ferr
	}
	if !found || !before.root {
		return umountResult{}, nil
	}
	// The name is looked up from the checked parent handle and not followed: the guest cannot
	// swap a mount point (rename onto or of a mount point is EBUSY), and a symlink planted there
	// would itself be the (non-mount) object, so nothing a symlink points to is ever unmounted.
	// No handle on the mount itself stays open, so a plain umount is not refused as busy.
	flags := unix.UMOUNT_NOFOLLOW
	if *detach {
		flags |= unix.MNT_DETACH
	}
	through := "/proc/self/fd/" + strconv.Itoa(parentfd) + "/" + last
	if err := unix.Unmount(through, flags); err != nil {
		if errors.Is(err, unix.EINVAL) {
			// Not (or no longer) a mount point: someone else unmounted it first.
			return umountResult{}, nil
		}
		return nil, syscallFail("umount", shown, err)
	}
	after, found, ferr := childMount(parentfd, last, shown)
	if ferr == nil && found && after.mntID == before.mntID {
		return nil, failf(codeOther, shown, "%q: mount %d is still there after umount", shown, before.mntID)
	}
	return umountResult{Unmounted: true}, nil
}

// childMount reads the mount state of name beneath parentfd without following a symlink;
// found=false when it does not exist. A symlink there is refused (ELOOP).
func childMount(parentfd int, name, shown string) (mountState, bool, *hostFsError) {
	fd, err := openat2(parentfd, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: resolveNoSymlinks,
	})
	if errors.Is(err, unix.ENOENT) {
		return mountState{}, false, nil
	}
	if err != nil {
		return mountState{}, false, targetFail(shown, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return mountState{}, false, syscallFail("stat", shown, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return mountState{}, false, failf(codeLoop, shown, "%q is a symlink; symlinks are never followed in a mount target", shown)
	}
	ms, serr := mountStateOf(fd, parentfd)
	if serr != nil {
		return mountState{}, false, syscallFail("statx", shown, serr)
	}
	return ms, true, nil
}
