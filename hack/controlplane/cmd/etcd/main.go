// etcd, built from go.etcd.io/etcd/server/v3 exactly as its own main.go does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
