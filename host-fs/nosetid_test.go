package main

import (
	"testing"

	"golang.org/x/sys/unix"
)

// run evaluates the classic BPF program on one seccomp_data, as the kernel would.
func evalBPF(t *testing.T, prog []unix.SockFilter, arch, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	var a uint32
	word := func(off uint32) uint32 {
		switch {
		case off == 0:
			return nr
		case off == 4:
			return arch
		case off >= 16 && off < 64 && (off-16)%8 == 0:
			return uint32(args[(off-16)/8])
		}
		t.Fatalf("load at offset %d", off)
		return 0
	}
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case ldAbsW:
			a = word(in.K)
		case andK:
			a &= in.K
		case retK:
			return in.K
		case jeqK, jgeK, jsetK:
			taken := (in.Code == jeqK && a == in.K) || (in.Code == jgeK && a >= in.K) || (in.Code == jsetK && a&in.K != 0)
			if taken {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			t.Fatalf("unexpected instruction %#x", in.Code)
		}
	}
	t.Fatal("fell off the end of the program")
	return 0
}

func TestNoSetidProgram(t *testing.T) {
	prog := noSetidProgram()
	eperm := uint32(retErrno | uint32(unix.EPERM))
	enosys := uint32(retErrno | uint32(unix.ENOSYS))
	cases := []struct {
		name string
		arch uint32
		nr   uint32
		args [6]uint64
		want uint32
	}{
		{"foreign architecture", 0x40000003, sysChmod, [6]uint64{0, 0o644}, retKillProcess},
		{"x32 call", auditArchX8664, x32SyscallBit | sysChmod, [6]uint64{0, 0o644}, eperm},
		{"chmod 0755", auditArchX8664, sysChmod, [6]uint64{0, 0o755}, retAllow},
		{"chmod 4755", auditArchX8664, sysChmod, [6]uint64{0, 0o4755}, eperm},
		{"fchmod 2755", auditArchX8664, sysFchmod, [6]uint64{3, 0o2755}, eperm},
		{"fchmodat 4755", auditArchX8664, sysFchmodat, [6]uint64{3, 0, 0o4755}, eperm},
		{"fchmodat 0644", auditArchX8664, sysFchmodat, [6]uint64{3, 0, 0o644}, retAllow},
		{"fchmodat2 6755", auditArchX8664, sysFchmodat2, [6]uint64{3, 0, 0o6755, 0}, eperm},
		{"openat create 04755", auditArchX8664, sysOpenat, [6]uint64{3, 0, unix.O_CREAT, 0o4755}, eperm},
		{"openat create 0600", auditArchX8664, sysOpenat, [6]uint64{3, 0, unix.O_CREAT, 0o600}, retAllow},
		{"open create 02700", auditArchX8664, sysOpen, [6]uint64{0, unix.O_CREAT, 0o2700}, eperm},
		{"creat 04700", auditArchX8664, sysCreat, [6]uint64{0, 0o4700}, eperm},
		{"mkdirat 02755", auditArchX8664, sysMkdirat, [6]uint64{3, 0, 0o2755}, eperm},
		{"mkdir 0755", auditArchX8664, sysMkdir, [6]uint64{0, 0o755}, retAllow},
		{"mknodat char device", auditArchX8664, sysMknodat, [6]uint64{3, 0, modeChr | 0o666, 0x103}, eperm},
		{"mknod block device", auditArchX8664, sysMknod, [6]uint64{0, modeBlk | 0o600, 0x800}, eperm},
		{"mknodat fifo", auditArchX8664, sysMknodat, [6]uint64{3, 0, 0o010000 | 0o644, 0}, retAllow},
		{"mknodat regular setuid", auditArchX8664, sysMknodat, [6]uint64{3, 0, 0o100000 | 0o4755, 0}, eperm},
		{"setxattr", auditArchX8664, sysSetxattr, [6]uint64{}, eperm},
		{"fsetxattr", auditArchX8664, sysFsetxattr, [6]uint64{}, eperm},
		{"openat2", auditArchX8664, sysOpenat2, [6]uint64{}, enosys},
		{"io_uring_setup", auditArchX8664, sysIoUringSet, [6]uint64{}, enosys},
		{"read", auditArchX8664, 0, [6]uint64{0o4755, 0o4755, 0o4755}, retAllow},
		{"mode bits above 32 bits ignored", auditArchX8664, sysChmod, [6]uint64{0, 1 << 40}, retAllow},
	}
	for _, c := range cases {
		if got := evalBPF(t, prog, c.arch, c.nr, c.args); got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, got, c.want)
		}
	}
}
