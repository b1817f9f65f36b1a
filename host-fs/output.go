package main

import (
	"encoding/json"

	"golang.org/x/sys/unix"
)

// writeJSON writes one JSON line to fd with raw write(2): no os.File, so nothing registers
// descriptors with Go's poller before exec replaces this process.
func writeJSON(fd int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"error":"cannot encode the result","code":"EIO"}`)
	}
	b = append(b, '\n')
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		b = b[n:]
	}
}
