package main

import (
	"path/filepath"
	"strconv"
	"strings"
)

// openSpec is one --open FD=TYPE:MODE:ROOT:PATH of exec.
type openSpec struct {
	FD       int
	Type     fileType
	ReadOnly bool
	Root     string
	Path     string
}

// parseOpenSpec reads FD=TYPE:MODE:ROOT:PATH. ROOT (admin configuration) may not contain ':';
// PATH (the part the tenant chose) is everything after it, colons included.
func parseOpenSpec(s string) (openSpec, *hostFsError) {
	bad := func(why string) (openSpec, *hostFsError) {
		return openSpec{}, failf(codeUsage, "", "--open %q: %s (want FD=TYPE:MODE:ROOT:PATH)", s, why)
	}
	fdS, rest, ok := strings.Cut(s, "=")
	if !ok {
		return bad("no =")
	}
	fd, err := strconv.Atoi(fdS)
	if err != nil || fd < 3 || fd > 1<<20 {
		return bad("FD must be a number >= 3")
	}
	parts := strings.SplitN(rest, ":", 4)
	if len(parts) != 4 {
		return bad("missing fields")
	}
	t, ok := parseFileType(parts[0])
	if !ok {
		return bad("TYPE must be dir, file or block")
	}
	var ro bool
	switch parts[1] {
	case "ro":
		ro = true
	case "rw":
		if t == typeDir {
			return bad("a directory can only be opened ro")
		}
	default:
		return bad("MODE must be ro or rw")
	}
	root, path := parts[2], parts[3]
	if !filepath.IsAbs(root) {
		return bad("ROOT must be an absolute path")
	}
	if path == "" {
		return bad("PATH is empty")
	}
	return openSpec{FD: fd, Type: t, ReadOnly: ro, Root: filepath.Clean(root), Path: path}, nil
}

// checkDistinctFDs refuses two opens at the same descriptor.
func checkDistinctFDs(specs []openSpec) *hostFsError {
	seen := map[int]bool{}
	for _, s := range specs {
		if seen[s.FD] {
			return failf(codeUsage, s.Path, "descriptor %d is named by two --open flags", s.FD)
		}
		seen[s.FD] = true
	}
	return nil
}
