package main

import (
	"errors"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Target paths live in directories the guest can write to (the 9p share): no symlink is
// followed anywhere in them, and ".." cannot leave the target root.
const resolveNoSymlinks = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS

// targetComponents validates REL (relative, no "..", names something) and splits it.
func targetComponents(rel string) ([]string, *hostFsError) {
	if rel == "" || filepath.IsAbs(rel) {
		return nil, failf(codeUsage, rel, "--target %q must be a relative path naming something beneath the target root", rel)
	}
	comps := components(rel)
	if len(comps) == 0 {
		return nil, failf(codeUsage, rel, "--target %q names the target root itself", rel)
	}
	for _, c := range comps {
		if c == ".." {
			return nil, failf(codeUsage, rel, "--target %q contains ..", rel)
		}
	}
	return comps, nil
}

// openDirStep opens one directory name beneath dirfd without following a symlink, creating it
// first when create is set and it is missing.
func openDirStep(dirfd int, name string, create bool, shown string) (int, *hostFsError) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveNoSymlinks}
	for tries := 0; ; tries++ {
		fd, err := openat2(dirfd, name, how)
		if err == nil {
			return fd, nil
		}
		if errors.Is(err, unix.ENOENT) && create && tries < 8 {
			if merr := unix.Mkdirat(dirfd, name, 0o755); merr != nil && !errors.Is(merr, unix.EEXIST) {
				return -1, syscallFail("mkdir", shown, merr)
			}
			continue
		}
		return -1, targetFail(shown, err)
	}
}

// targetFail names what is wrong with a target component.
func targetFail(shown string, err error) *hostFsError {
	if errors.Is(err, unix.ELOOP) {
		return failf(codeLoop, shown, "%q is a symlink; symlinks are never followed in a mount target", shown)
	}
	if errors.Is(err, unix.ENOTDIR) {
		return failf(codeNotDir, shown, "%q is not a directory", shown)
	}
	return syscallFail("open", shown, err)
}

// walkTargetParent opens the directory holding the last component of comps beneath trootfd,
// one component at a time (creating missing ones when create is set).
func walkTargetParent(trootfd int, troot string, comps []string, create bool) (int, *hostFsError) {
	cur, err := unix.FcntlInt(uintptr(trootfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, syscallFail("dup", troot, err)
	}
	for i, name := range comps[:len(comps)-1] {
		shown := filepath.Join(troot, strings.Join(comps[:i+1], "/"))
		next, ferr := openDirStep(cur, name, create, shown)
		unix.Close(cur)
		if ferr != nil {
			return -1, ferr
		}
		cur = next
	}
	return cur, nil
}

// openFileTarget opens (creating an empty one if missing) the regular file name beneath dirfd,
// never following a symlink there and never opening anything but a regular file for I/O.
func openFileTarget(dirfd int, name, shown string) (int, *hostFsError) {
	look := &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveNoSymlinks}
	create := &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    0o644,
		Resolve: resolveNoSymlinks,
	}
	for tries := 0; tries < 8; tries++ {
		fd, err := openat2(dirfd, name, look)
		if errors.Is(err, unix.ENOENT) {
			cfd, cerr := openat2(dirfd, name, create)
			if cerr == nil {
				unix.Close(cfd)
			} else if !errors.Is(cerr, unix.EEXIST) {
				return -1, syscallFail("create", shown, cerr)
			}
			continue
		}
		if err != nil {
			return -1, targetFail(shown, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, syscallFail("stat", shown, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(fd)
			return -1, failf(codeLoop, shown, "%q is a symlink; symlinks are never followed in a mount target", shown)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			_, what := typeOf(st.Mode)
			return -1, failf(codeWrongType, shown, "%q is %s; a file can only be mounted on a regular file", shown, what)
		}
		return fd, nil
	}
	return -1, failf(codeBusy, shown, "%q keeps changing while being created", shown)
}
