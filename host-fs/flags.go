package main

import (
	"flag"
	"io"
)

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args and refuses leftovers (every subcommand but exec takes flags only).
func parseFlags(fs *flag.FlagSet, args []string) *hostFsError {
	if err := fs.Parse(args); err != nil {
		return failf(codeUsage, "", "%s: %s", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return failf(codeUsage, "", "%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
