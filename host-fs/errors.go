package main

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// hostFsError is what every subcommand fails with: a stable code (the caller branches on it),
// a message in words, and the path it concerns.
type hostFsError struct {
	Code    string `json:"code"`
	Message string `json:"error"`
	Path    string `json:"path,omitempty"`
}

func (e *hostFsError) Error() string { return e.Message }

// Codes the caller maps to its own errors; README.md lists them with their exit codes.
const (
	codeUsage        = "USAGE"
	codeNotAbsolute  = "NOT_ABSOLUTE"
	codeNotBeneath   = "NOT_BENEATH"
	codeEscapes      = "EXDEV"
	codeLoop         = "ELOOP"
	codeNotFound     = "ENOENT"
	codeNotDir       = "ENOTDIR"
	codeWrongType    = "WRONG_TYPE"
	codePermission   = "EPERM"
	codeKernel       = "KERNEL_TOO_OLD"
	codeBusy         = "EBUSY"
	codeOther        = "EIO"
	exitExecFailed   = 125
	exitOtherFailure = 1
)

// exitCodes: one distinct exit status per code, so a caller without the JSON still knows why.
var exitCodes = map[string]int{
	codeUsage:       2,
	codeNotAbsolute: 3,
	codeNotBeneath:  4,
	codeEscapes:     5,
	codeLoop:        6,
	codeNotFound:    7,
	codeNotDir:      8,
	codeWrongType:   9,
	codePermission:  10,
	codeKernel:      11,
	codeBusy:        12,
}

func exitCodeOf(code string) int {
	if c, ok := exitCodes[code]; ok {
		return c
	}
	return exitOtherFailure
}

func failf(code, path, format string, args ...any) *hostFsError {
	return &hostFsError{Code: code, Message: fmt.Sprintf(format, args...), Path: path}
}

// errnoCode names a system call failure by the code the caller understands.
func errnoCode(err error) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return codeOther
	}
	switch errno {
	case unix.EXDEV:
		return codeEscapes
	case unix.ELOOP:
		return codeLoop
	case unix.ENOENT:
		return codeNotFound
	case unix.ENOTDIR:
		return codeNotDir
	case unix.EPERM, unix.EACCES:
		return codePermission
	case unix.ENOSYS:
		return codeKernel
	case unix.EBUSY:
		return codeBusy
	}
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return codeOther
}

// errnoDetail says in words what an errno means for a path opened beneath a root.
func errnoDetail(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.EXDEV:
			return "resolves outside its root (a symlink or .. leads out)"
		case unix.ELOOP:
			return "goes through a symlink that is not allowed here (or a /proc magic link, or too many links)"
		case unix.ENOENT:
			return "does not exist"
		case unix.ENOTDIR:
			return "has a component that is not a directory"
		case unix.ENOSYS:
			return "needs a system call this kernel lacks (see the minimum kernel in README.md)"
		}
	}
	return err.Error()
}

// syscallFail wraps a failed system call on path: code from the errno, message with the detail.
func syscallFail(what, path string, err error) *hostFsError {
	return failf(errnoCode(err), path, "%s %q: %s", what, path, errnoDetail(err))
}
