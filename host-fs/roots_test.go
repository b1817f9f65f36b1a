package main

import (
	"slices"
	"testing"
)

func TestRelBeneath(t *testing.T) {
	cases := []struct {
		path, root, rel string
		ok              bool
	}{
		{"/srv/a/b", "/srv", "a/b", true},
		{"/srv", "/srv", ".", true},
		{"/srv//a/./b", "/srv", "a/b", true},
		{"/srv/../etc", "/srv", "../etc", true}, // lexically under: the kernel refuses the ".."
		{"/srvx/a", "/srv", "", false},
		{"/etc/passwd", "/srv", "", false},
		{"/sr", "/srv", "", false},
		{"/anything", "/", "anything", true},
	}
	for _, c := range cases {
		rel, ok := relBeneath(c.path, c.root)
		if rel != c.rel || ok != c.ok {
			t.Errorf("relBeneath(%q, %q) = %q, %v; want %q, %v", c.path, c.root, rel, ok, c.rel, c.ok)
		}
	}
}

func TestCandidateRootsMostSpecificFirstAndGrouped(t *testing.T) {
	roots := []allowedRoot{
		{Root: "/srv", Type: typeDir},
		{Root: "/srv/disks", Type: typeBlock},
		{Root: "/srv", Type: typeFile},
		{Root: "/var", Type: typeDir},
	}
	got := candidateRoots("/srv/disks/d0", roots)
	if len(got) != 2 || got[0].Root != "/srv/disks" || got[1].Root != "/srv" {
		t.Fatalf("candidates = %+v", got)
	}
	if got[0].Rel != "d0" || got[1].Rel != "disks/d0" {
		t.Errorf("rels = %q, %q", got[0].Rel, got[1].Rel)
	}
	if !slices.Equal(got[1].Types, []fileType{typeDir, typeFile}) || !got[0].admits(typeBlock) || got[0].admits(typeDir) {
		t.Errorf("types = %v, %v", got[0].Types, got[1].Types)
	}
	if c := candidateRoots("/etc/x", roots); len(c) != 0 {
		t.Errorf("no root holds /etc/x, got %+v", c)
	}
}

func TestParseRootFlag(t *testing.T) {
	r, err := parseRootFlag("block=/dev/")
	if err != nil || r.Root != "/dev" || r.Type != typeBlock {
		t.Fatalf("got %+v, %v", r, err)
	}
	for _, bad := range []string{"/srv", "chr=/dev", "dir=srv", "dir="} {
		if _, err := parseRootFlag(bad); err == nil || err.Code != codeUsage {
			t.Errorf("parseRootFlag(%q) = %v; want USAGE", bad, err)
		}
	}
	if err := checkRootsUnique([]allowedRoot{{"/srv", typeDir}, {"/srv", typeFile}}); err != nil {
		t.Errorf("one root, two types: %v", err)
	}
	if err := checkRootsUnique([]allowedRoot{{"/srv", typeDir}, {"/srv", typeDir}}); err == nil {
		t.Error("a root given twice for one type must be refused")
	}
}
