package main

import (
	"path/filepath"
	"slices"
	"strings"
)

// fileType is the kind of object a root admits.
type fileType string

const (
	typeDir   fileType = "dir"
	typeFile  fileType = "file"
	typeBlock fileType = "block"
)

func parseFileType(s string) (fileType, bool) {
	switch fileType(s) {
	case typeDir, typeFile, typeBlock:
		return fileType(s), true
	}
	return "", false
}

// allowedRoot is one --root TYPE=ROOT: objects of type Type may be opened beneath Root.
type allowedRoot struct {
	Root string
	Type fileType
}

// parseRootFlag parses TYPE=ROOT; ROOT must be absolute and is cleaned (roots are trusted
// configuration, so cleaning them lexically is safe).
func parseRootFlag(s string) (allowedRoot, *hostFsError) {
	t, root, ok := strings.Cut(s, "=")
	if !ok {
		return allowedRoot{}, failf(codeUsage, "", "--root %q: want TYPE=ROOT", s)
	}
	ft, ok := parseFileType(t)
	if !ok {
		return allowedRoot{}, failf(codeUsage, root, "--root %q: type %q is not dir, file or block", s, t)
	}
	if !filepath.IsAbs(root) {
		return allowedRoot{}, failf(codeUsage, root, "--root %q: the root is not an absolute path", s)
	}
	return allowedRoot{Root: filepath.Clean(root), Type: ft}, nil
}

// components splits a path into its names, dropping empty and "." ones but keeping "..":
// the kernel, not this code, decides where ".." leads (and refuses it leaving the root).
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// relBeneath returns p relative to root when p's leading names are root's, else ok=false.
// Lexical only: what the rest resolves to is for openat2 beneath the root to decide.
func relBeneath(p, root string) (rel string, ok bool) {
	pc, rc := components(p), components(root)
	if len(pc) < len(rc) || !slices.Equal(pc[:len(rc)], rc) {
		return "", false
	}
	if len(pc) == len(rc) {
		return ".", true
	}
	return strings.Join(pc[len(rc):], "/"), true
}

// rootCandidate is one root lexically containing the path, with every type it admits.
type rootCandidate struct {
	Root  string
	Types []fileType
	Rel   string
}

func (c rootCandidate) admits(t fileType) bool { return slices.Contains(c.Types, t) }

// candidateRoots lists the roots lexically containing p, the most specific (longest) first.
func candidateRoots(p string, roots []allowedRoot) []rootCandidate {
	var out []rootCandidate
	for _, r := range roots {
		rel, ok := relBeneath(p, r.Root)
		if !ok {
			continue
		}
		i := slices.IndexFunc(out, func(c rootCandidate) bool { return c.Root == r.Root })
		if i < 0 {
			out = append(out, rootCandidate{Root: r.Root, Rel: rel})
			i = len(out) - 1
		}
		if !out[i].admits(r.Type) {
			out[i].Types = append(out[i].Types, r.Type)
		}
	}
	slices.SortStableFunc(out, func(a, b rootCandidate) int {
		return len(components(b.Root)) - len(components(a.Root))
	})
	return out
}

// checkRootsUnique refuses a root given twice for the same type (a configuration mistake).
func checkRootsUnique(roots []allowedRoot) *hostFsError {
	seen := map[allowedRoot]bool{}
	for _, r := range roots {
		if seen[r] {
			return failf(codeUsage, r.Root, "--root %s=%s is given twice", r.Type, r.Root)
		}
		seen[r] = true
	}
	return nil
}
