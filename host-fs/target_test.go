package main

import (
	"slices"
	"testing"
)

func TestTargetComponents(t *testing.T) {
	c, err := targetComponents("c1//rootfs/./data")
	if err != nil || !slices.Equal(c, []string{"c1", "rootfs", "data"}) {
		t.Fatalf("got %v, %v", c, err)
	}
	for _, bad := range []string{"", ".", "/abs", "c1/../../etc", ".."} {
		if _, err := targetComponents(bad); err == nil || err.Code != codeUsage {
			t.Errorf("targetComponents(%q) = %v; want USAGE", bad, err)
		}
	}
}

func TestExitCodesAreDistinct(t *testing.T) {
	seen := map[int]string{exitOtherFailure: "other", exitExecFailed: "exec"}
	for code, exit := range exitCodes {
		if prev, dup := seen[exit]; dup {
			t.Errorf("exit %d used by %s and %s", exit, prev, code)
		}
		seen[exit] = code
	}
}
