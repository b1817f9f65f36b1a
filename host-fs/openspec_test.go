package main

import "testing"

func TestParseOpenSpec(t *testing.T) {
	o, err := parseOpenSpec("7=block:rw:/dev:/dev/loop0")
	if err != nil || o != (openSpec{FD: 7, Type: typeBlock, Root: "/dev", Path: "/dev/loop0"}) {
		t.Fatalf("got %+v, %v", o, err)
	}
	o, err = parseOpenSpec("3=file:ro:/srv/:/srv/a:b")
	if err != nil || !o.ReadOnly || o.Root != "/srv" || o.Path != "/srv/a:b" {
		t.Fatalf("colon in PATH: got %+v, %v", o, err)
	}
	for _, bad := range []string{
		"2=file:ro:/srv:/srv/a", // stdio
		"x=file:ro:/srv:/srv/a",
		"3=fifo:ro:/srv:/srv/a",
		"3=file:wo:/srv:/srv/a",
		"3=dir:rw:/srv:/srv/a", // directories are read-only
		"3=file:ro:srv:/srv/a",
		"3=file:ro:/srv:",
		"3=file:ro:/srv",
		"file:ro:/srv:/srv/a",
	} {
		if _, err := parseOpenSpec(bad); err == nil || err.Code != codeUsage {
			t.Errorf("parseOpenSpec(%q) = %v; want USAGE", bad, err)
		}
	}
	if err := checkDistinctFDs([]openSpec{{FD: 3}, {FD: 4}, {FD: 3}}); err == nil {
		t.Error("two opens at one descriptor must be refused")
	}
}
