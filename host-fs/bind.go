package main

import (
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

type bindResult struct {
	Target  string `json:"target"`
	MountID uint64 `json:"mountId"`
	// Existing: the target already was a mount root and was kept.
	Existing bool `json:"existing"`
}

// runBind: bind --source-root ROOT --source PATH --type dir|file --target-root TROOT --target REL [--ro]
func runBind(args []string) (any, *hostFsError) {
	fs := newFlagSet("bind")
	sourceRoot := fs.String("source-root", "", "allowed root the source must stay beneath")
	source := fs.String("source", "", "absolute source path")
	typ := fs.String("type", "", "dir or file")
	targetRoot := fs.String("target-root", "", "node-agent-owned directory the target is beneath")
	target := fs.String("target", "", "target path relative to --target-root")
	ro := fs.Bool("ro", false, "mount read-only")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	t, ok := parseFileType(*typ)
	if !ok || t == typeBlock {
		return nil, failf(codeUsage, "", "bind: --type must be dir or file")
	}
	if !filepath.IsAbs(*sourceRoot) || !filepath.IsAbs(*targetRoot) || *source == "" {
		return nil, failf(codeUsage, "", "bind needs --source, and absolute --source-root and --target-root")
	}
	comps, cerr := targetComponents(*target)
	if cerr != nil {
		return nil, cerr
	}
	if err := requireKernel(minKernelMount, "bind"); err != nil {
		return nil, err
	}
	src, err := openByPath(*source, []allowedRoot{{Root: filepath.Clean(*sourceRoot), Type: t}})
	if err != nil {
		return nil, err
	}
	defer unix.Close(src.fd)

	troot := filepath.Clean(*targetRoot)
	shown := filepath.Join(troot, strings.Join(comps, "/"))
	trootfd, err := openRoot(troot)
	if err != nil {
		return nil, err
	}
	defer unix.Close(trootfd)
	parentfd, err := walkTargetParent(trootfd, troot, comps, true)
	if err != nil {
		return nil, err
	}
	defer unix.Close(parentfd)
	last := comps[len(comps)-1]
	var targetfd int
	if t == typeDir {
		targetfd, err = openDirStep(parentfd, last, true, shown)
	} else {
		targetfd, err = openFileTarget(parentfd, last, shown)
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(targetfd)

	attrs := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if *ro {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	state, serr := mountStateOf(targetfd, parentfd)
	if serr != nil {
		return nil, syscallFail("statx", shown, serr)
	}
	if state.root {
		return keepExisting(targetfd, shown, state, attrs, src)
	}

	// The clone is detached until move_mount: its flags are set before anyone can see it, so a
	// read-only bind is never writable, not even for a moment.
	treefd, oerr := unix.OpenTree(src.fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if oerr != nil {
		return nil, syscallFail("open_tree", *source, oerr)
	}
	defer unix.Close(treefd)
	if err := unix.MountSetattr(treefd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: attrs}); err != nil {
		return nil, syscallFail("mount_setattr", *source, err)
	}
	if err := unix.MoveMount(treefd, "", targetfd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return nil, syscallFail("move_mount", shown, err)
	}
	mounted, merr := mountStateOf(treefd, parentfd)
	if merr != nil {
		return nil, syscallFail("statx", shown, merr)
	}
	return bindResult{Target: shown, MountID: mounted.mntID}, nil
}

// keepExisting leaves a mount already at the target (a repeated bind), adding read-only when
// asked and nosuid/nodev (which every bind of this tool has). A mount of something other than
// the source there is refused rather than kept: the caller asked for this source.
func keepExisting(targetfd int, shown string, state mountState, attrs uint64, src *openedObject) (any, *hostFsError) {
	var st unix.Stat_t
	if err := unix.Fstat(targetfd, &st); err != nil {
		return nil, syscallFail("stat", shown, err)
	}
	if st.Dev != src.stat.Dev || st.Ino != src.stat.Ino {
		return nil, failf(codeBusy, shown, "%q already has a mount of something else than the source", shown)
	}
	if err := unix.MountSetattr(targetfd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: attrs}); err != nil {
		return nil, syscallFail("mount_setattr", shown, err)
	}
	return bindResult{Target: shown, MountID: state.mntID, Existing: true}, nil
}
