package main

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// resolveBeneath: symlinks are followed only while they stay beneath the root (absolute
// symlinks and ".." that leave it fail with EXDEV); /proc magic links are never followed.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// openRoot opens an allowed root. Roots are admin configuration, trusted: resolved normally.
func openRoot(root string) (int, *hostFsError) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, syscallFail("the root", root, err)
	}
	return fd, nil
}

// openat2 with EINTR/EAGAIN retried: EAGAIN means a rename raced the lookup (the kernel
// could not prove the walk stayed beneath the root), so it is safe to try again.
func openat2(dirfd int, path string, how *unix.OpenHow) (int, error) {
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(dirfd, path, how)
		if (err == unix.EAGAIN || err == unix.EINTR) && tries < 64 {
			continue
		}
		return fd, err
	}
}

// openPathBeneath opens rel (relative to rootfd) as an O_PATH handle, beneath the root.
func openPathBeneath(rootfd int, rel string) (int, error) {
	return openat2(rootfd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: resolveBeneath,
	})
}

// typeOf says which of dir/file/block the mode is, or describes what else it is.
func typeOf(mode uint32) (fileType, string) {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return typeDir, "a directory"
	case unix.S_IFREG:
		return typeFile, "a regular file"
	case unix.S_IFBLK:
		return typeBlock, "a block device"
	case unix.S_IFCHR:
		return "", "a character device"
	case unix.S_IFIFO:
		return "", "a FIFO"
	case unix.S_IFSOCK:
		return "", "a socket"
	case unix.S_IFLNK:
		return "", "a symlink"
	}
	return "", "of an unknown type"
}

// fdPath is where the handle's object is now, as the kernel names it (for messages and output).
func fdPath(fd int) string {
	buf := make([]byte, 4096)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// openedObject is an O_PATH handle on a checked object and what the check saw.
type openedObject struct {
	fd   int
	root string
	typ  fileType
	stat unix.Stat_t
}

// openChecked opens path beneath the first candidate root that holds it with an admitted type.
// The handle is the object every later step uses; the path is never resolved again.
func openChecked(path string, cands []rootCandidate) (*openedObject, *hostFsError) {
	var first *hostFsError
	note := func(e *hostFsError) {
		if first == nil {
			first = e
		}
	}
	for _, c := range cands {
		rootfd, ferr := openRoot(c.Root)
		if ferr != nil {
			note(ferr)
			continue
		}
		fd, err := openPathBeneath(rootfd, c.Rel)
		unix.Close(rootfd)
		if err != nil {
			note(failf(errnoCode(err), path, "%q (beneath %s): %s", path, c.Root, errnoDetail(err)))
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			note(syscallFail("stat", path, err))
			continue
		}
		t, what := typeOf(st.Mode)
		if t == "" || !c.admits(t) {
			unix.Close(fd)
			note(failf(codeWrongType, path, "%q is %s; beneath %s only %s is allowed", path, what, c.Root, typesInWords(c.Types)))
			continue
		}
		return &openedObject{fd: fd, root: c.Root, typ: t, stat: st}, nil
	}
	if first == nil {
		first = failf(codeNotBeneath, path, "%q is not under any allowed root", path)
	}
	return nil, first
}

func typesInWords(ts []fileType) string {
	words := map[fileType]string{typeDir: "a directory", typeFile: "a regular file", typeBlock: "a block device"}
	out := ""
	for i, t := range ts {
		if i > 0 {
			out += " or "
		}
		out += words[t]
	}
	return out
}
