module github.com/kata-sandbox-operator/port-relay

go 1.26.0

require golang.org/x/sys v0.47.0
