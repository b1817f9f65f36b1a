package main

import "testing"

func TestParseKernelRelease(t *testing.T) {
	cases := map[string]kernelVersion{
		"6.18.0-1-amd64": {6, 18},
		"5.6":            {5, 6},
		"5.12-rc3":       {5, 12},
		"4.19.0+":        {4, 19},
	}
	for s, want := range cases {
		if v, ok := parseKernelRelease(s); !ok || v != want {
			t.Errorf("parseKernelRelease(%q) = %v, %v; want %v", s, v, ok, want)
		}
	}
	if _, ok := parseKernelRelease("weird"); ok {
		t.Error("an unreadable release must not parse")
	}
	if !(kernelVersion{5, 11}).less(minKernelMount) || (kernelVersion{6, 1}).less(minKernelMount) || (kernelVersion{5, 6}).less(minKernelOpen) {
		t.Error("version order is wrong")
	}
}
