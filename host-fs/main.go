// kata-host-fs opens host paths once, beneath their allowed roots, and acts on the open
// handles: it checks them, hands them to a program as inherited descriptors, bind-mounts them,
// and unmounts targets without following symlinks. See README.md.
package main

import (
	"os"
)

const usage = `usage: kata-host-fs check --path P --root TYPE=ROOT [--root ...]
       kata-host-fs exec --open FD=TYPE:MODE:ROOT:PATH [--open ...] -- ARGV...
       kata-host-fs bind --source-root ROOT --source PATH --type dir|file --target-root TROOT --target REL [--ro]
       kata-host-fs umount --target-root TROOT --target REL [--detach]
       kata-host-fs probe
       kata-host-fs qmp-fds --socket S [--timeout-ms N] --fdset FD:SET... --command JSON...`

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes one subcommand: the JSON result on stdout and 0, or the JSON error on stderr and
// the error's exit code (125 for any exec failure before the program starts).
func run(args []string) int {
	if len(args) == 0 {
		return fail(failf(codeUsage, "", "%s", usage), exitCodeOf(codeUsage))
	}
	var result any
	var err *hostFsError
	switch args[0] {
	case "check":
		result, err = runCheck(args[1:])
	case "exec":
		// Only returns on failure: on success the process is the program.
		return fail(runExec(args[1:]), exitExecFailed)
	case "bind":
		result, err = runBind(args[1:])
	case "umount":
		result, err = runUmount(args[1:])
	case "probe":
		result, err = runProbe(args[1:])
	case "qmp-fds":
		result, err = runQmpFds(args[1:])
	default:
		err = failf(codeUsage, "", "unknown subcommand %q\n%s", args[0], usage)
	}
	if err != nil {
		return fail(err, exitCodeOf(err.Code))
	}
	writeJSON(1, result)
	return 0
}

func fail(err *hostFsError, exit int) int {
	writeJSON(2, err)
	return exit
}
