package main

// The control channel (fd 3), one line per message, both ways:
//   agent -> relay: "<rows> <cols>"        set the terminal's size
//   relay -> agent: "ready"                the terminal's master is held (sent once)
//                   "ok" | "error <text>"  the answer to each size line, in order

import (
	"fmt"
	"strconv"
	"strings"
)

// maxControlLine bounds one control line; a size line is at most "65535 65535".
const maxControlLine = 64

type winSize struct {
	rows, cols uint16
}

// parseSize reads a size line: two decimal numbers from 0 to 65535, one space apart.
func parseSize(line string) (winSize, error) {
	fields := strings.Split(strings.TrimSuffix(line, "\n"), " ")
	if len(fields) != 2 {
		return winSize{}, fmt.Errorf("size line %q: want \"<rows> <cols>\"", line)
	}
	var n [2]uint16
	for i, f := range fields {
		v, err := strconv.ParseUint(f, 10, 16)
		if err != nil || f == "" || f[0] == '+' {
			return winSize{}, fmt.Errorf("size line %q: %q is not a number from 0 to 65535", line, f)
		}
		n[i] = uint16(v)
	}
	return winSize{rows: n[0], cols: n[1]}, nil
}

// answer is the reply line to one size line.
func answer(err error) string {
	if err == nil {
		return "ok\n"
	}
	// One line, whatever the error says.
	return "error " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
}
