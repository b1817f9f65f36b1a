package main

import (
	"flag"
	"path/filepath"

	"golang.org/x/sys/unix"
)

type checkResult struct {
	Root     string   `json:"root"`
	Type     fileType `json:"type"`
	Resolved string   `json:"resolved"`
	Dev      uint64   `json:"dev"`
	Ino      uint64   `json:"ino"`
}

// runCheck: check --path P --root TYPE=ROOT [--root ...]
func runCheck(args []string) (any, *hostFsError) {
	fs := newFlagSet("check")
	path := fs.String("path", "", "absolute host path to check")
	var roots rootList
	fs.Var(&roots, "root", "TYPE=ROOT, repeatable")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if *path == "" || len(roots) == 0 {
		return nil, failf(codeUsage, "", "check needs --path and at least one --root")
	}
	if err := checkRootsUnique(roots); err != nil {
		return nil, err
	}
	if err := requireKernel(minKernelOpen, "check"); err != nil {
		return nil, err
	}
	obj, err := openByPath(*path, roots)
	if err != nil {
		return nil, err
	}
	defer unix.Close(obj.fd)
	return checkResult{
		Root:     obj.root,
		Type:     obj.typ,
		Resolved: fdPath(obj.fd),
		Dev:      obj.stat.Dev,
		Ino:      obj.stat.Ino,
	}, nil
}

// openByPath: the absolute path opened beneath the most specific allowed root holding it.
func openByPath(path string, roots []allowedRoot) (*openedObject, *hostFsError) {
	if !filepath.IsAbs(path) {
		return nil, failf(codeNotAbsolute, path, "%q is not an absolute path", path)
	}
	cands := candidateRoots(path, roots)
	if len(cands) == 0 {
		return nil, failf(codeNotBeneath, path, "%q is not under any allowed root (%s)", path, rootsInWords(roots))
	}
	return openChecked(path, cands)
}

func rootsInWords(roots []allowedRoot) string {
	out := ""
	for i, r := range roots {
		if i > 0 {
			out += ", "
		}
		out += string(r.Type) + "=" + r.Root
	}
	return out
}

// rootList collects repeated --root flags.
type rootList []allowedRoot

func (l *rootList) String() string { return "" }

func (l *rootList) Set(s string) error {
	r, err := parseRootFlag(s)
	if err != nil {
		return err
	}
	*l = append(*l, r)
	return nil
}

var _ flag.Value = (*rootList)(nil)
