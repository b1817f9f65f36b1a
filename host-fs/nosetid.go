package main

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp filter `exec --no-setid` puts on the program (QEMU) it becomes. QEMU serves the 9p
// share with security_model=none as root, so whatever mode bits, device numbers or xattrs the
// guest asks for would land on host files. Mapped security models cannot serve symlinks already
// on the host, so instead the system calls through which a guest could make a privileged host
// object fail with EPERM: set-user/group-ID bits in any mode QEMU passes, device nodes, extended
// attributes (file capabilities). openat2 and io_uring (whose opens seccomp cannot inspect) fail
// with ENOSYS, which callers treat as "not available" and fall back from.

const (
	setidBits = 0o6000
	modeType  = 0o170000
	modeChr   = 0o020000
	modeBlk   = 0o060000

	auditArchX8664 = 0xc000003e
	x32SyscallBit  = 0x40000000

	retAllow       = 0x7fff0000
	retErrno       = 0x00050000
	retKillProcess = 0x80000000

	seccompSetModeFilter = 1
	seccompFilterTsync   = 1
)

// x86_64 system call numbers.
const (
	sysOpen       = 2
	sysCreat      = 85
	sysMkdir      = 83
	sysChmod      = 90
	sysFchmod     = 91
	sysMknod      = 133
	sysSetxattr   = 188
	sysLsetxattr  = 189
	sysFsetxattr  = 190
	sysOpenat     = 257
	sysMkdirat    = 258
	sysMknodat    = 259
	sysFchmodat   = 268
	sysIoUringSet = 425
	sysOpenat2    = 437
	sysFchmodat2  = 452
	sysSetxattrat = 463
)

type syscallRule struct {
	nr uint32
	// modeArg is the index of the mode argument; -1 refuses the call whatever its arguments.
	modeArg int
	// devices also refuses character and block device nodes (mknod).
	devices bool
	errno   unix.Errno
}

var noSetidRules = []syscallRule{
	{nr: sysOpen, modeArg: 2},
	{nr: sysCreat, modeArg: 1},
	{nr: sysMkdir, modeArg: 1},
	{nr: sysChmod, modeArg: 1},
	{nr: sysFchmod, modeArg: 1},
	{nr: sysMknod, modeArg: 1, devices: true},
	{nr: sysOpenat, modeArg: 3},
	{nr: sysMkdirat, modeArg: 2},
	{nr: sysMknodat, modeArg: 2, devices: true},
	{nr: sysFchmodat, modeArg: 2},
	{nr: sysFchmodat2, modeArg: 2},
	{nr: sysSetxattr, modeArg: -1, errno: unix.EPERM},
	{nr: sysLsetxattr, modeArg: -1, errno: unix.EPERM},
	{nr: sysFsetxattr, modeArg: -1, errno: unix.EPERM},
	{nr: sysSetxattrat, modeArg: -1, errno: unix.EPERM},
	{nr: sysOpenat2, modeArg: -1, errno: unix.ENOSYS},
	{nr: sysIoUringSet, modeArg: -1, errno: unix.ENOSYS},
}

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	ldAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	jgeK   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	jsetK  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	andK   = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	retK   = unix.BPF_RET | unix.BPF_K
)

// argLowOffset is where the low 32 bits of argument i sit in struct seccomp_data (little endian).
func argLowOffset(i int) uint32 { return uint32(16 + 8*i) }

// ruleBody is what runs once the system call number matched; every path in it returns.
func ruleBody(r syscallRule) []unix.SockFilter {
	if r.modeArg < 0 {
		return []unix.SockFilter{stmt(retK, retErrno|uint32(r.errno))}
	}
	deny := stmt(retK, retErrno|uint32(unix.EPERM))
	allow := stmt(retK, retAllow)
	load := stmt(ldAbsW, argLowOffset(r.modeArg))
	if !r.devices {
		return []unix.SockFilter{load, jump(jsetK, setidBits, 0, 1), deny, allow}
	}
	return []unix.SockFilter{
		load,
		jump(jsetK, setidBits, 3, 0), // → deny
		stmt(andK, modeType),
		jump(jeqK, modeChr, 1, 0), // → deny
		jump(jeqK, modeBlk, 0, 1), // → deny / allow
		deny,
		allow,
	}
}

// noSetidProgram is the classic BPF program: other architectures are killed, x32 calls refused,
// each rule's call judged by its body, everything else allowed. Pure.
func noSetidProgram() []unix.SockFilter {
	prog := []unix.SockFilter{
		stmt(ldAbsW, 4), // seccomp_data.arch
		jump(jeqK, auditArchX8664, 1, 0),
		stmt(retK, retKillProcess),
		stmt(ldAbsW, 0), // seccomp_data.nr
		jump(jgeK, x32SyscallBit, 0, 1),
		stmt(retK, retErrno|uint32(unix.EPERM)),
	}
	for _, r := range noSetidRules {
		body := ruleBody(r)
		prog = append(prog, jump(jeqK, r.nr, 0, uint8(len(body))))
		prog = append(prog, body...)
	}
	return append(prog, stmt(retK, retAllow))
}

// installNoSetid drops the set-ID-related capabilities and puts the filter on every thread of this
// process; the exec that follows keeps both (and no_new_privs), and QEMU cannot undo them.
func installNoSetid() *hostFsError {
	if runtime.GOARCH != "amd64" {
		return failf(codeUsage, "", "--no-setid: only x86_64 system call numbers are known")
	}
	runtime.LockOSThread()
	if err := dropCapsForExec(noSetidDroppedCaps); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return syscallFail("prctl(PR_SET_NO_NEW_PRIVS)", "", err)
	}
	filter := noSetidProgram()
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, seccompSetModeFilter, seccompFilterTsync, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return syscallFail("seccomp", "", errno)
	}
	return nil
}
