// kata1-client drives a guest agent with the unmodified Kata 1.x agent client
// (github.com/kata-containers/agent/protocols/client: gRPC over yamux on the agent's serial
// port, as the 1.x runtime and shim did) through one sandbox lifecycle, and prints one JSON
// object per step on stdout for the peer test to assert on. It never stops at a failed step
// unless a later step cannot make sense without it.
//
// Built in GOPATH mode against the 1.x source tree and its vendor/ (see hack/peers.sh).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kata-containers/agent/protocols/client"
	pb "github.com/kata-containers/agent/protocols/grpc"
	"google.golang.org/grpc/status"
)

// step is one line of output: what was called, its gRPC status, and what it returned.
type step struct {
	Step    string      `json:"step"`
	Code    uint32      `json:"code"`
	Message string      `json:"message,omitempty"`
	Result  interface{} `json:"result,omitempty"`
}

var out = json.NewEncoder(os.Stdout)

func report(name string, err error, result interface{}) bool {
	s := step{Step: name, Result: result}
	if err != nil {
		st := status.Convert(err)
		s.Code = uint32(st.Code())
		s.Message = st.Message()
	}
	if e := out.Encode(s); e != nil {
		fmt.Fprintf(os.Stderr, "kata1-client: %v\n", e)
		os.Exit(1)
	}
	return err == nil
}

// Paths the 1.x runtime uses in the guest (virtcontainers/kata_agent.go).
const (
	guestSharedDir = "/run/kata-containers/shared/containers/"
	guestShmDir    = "/run/kata-containers/sandbox/shm"
	mountTag       = "kataShared"
)

func containerSpec(cid, hostname string, args []string) *pb.Spec {
	return &pb.Spec{
		Version:  "1.0.1",
		Hostname: hostname,
		Process: &pb.Process{
			Args: args,
			Env:  []string{"PATH=/bin:/usr/bin", "HOME=/"},
			Cwd:  "/",
			User: pb.User{UID: 0, GID: 0},
		},
		Root: &pb.Root{Path: guestSharedDir + cid + "/rootfs"},
		Mounts: []pb.Mount{
			{Destination: "/proc", Source: "proc", Type: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Source: "tmpfs", Type: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/sys", Source: "sysfs", Type: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			// With a sandbox shm size the 1.x runtime binds every container's /dev/shm to the
			// sandbox's ephemeral shm storage.
			{Destination: "/dev/shm", Source: guestShmDir, Type: "bind", Options: []string{"rbind"}},
		},
		Linux: &pb.Linux{
			Namespaces: []pb.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}},
		},
	}
}

// readAll calls read until it fails, as the 1.x shim's io loop does; the failure is the end.
func readAll(ctx context.Context, c *client.AgentClient, stderr bool, req *pb.ReadStreamRequest, maxCalls int) (string, int, error) {
	var b strings.Builder
	for i := 0; i < maxCalls; i++ {
		var resp *pb.ReadStreamResponse
		var err error
		if stderr {
			resp, err = c.ReadStderr(ctx, req)
		} else {
			resp, err = c.ReadStdout(ctx, req)
		}
		if err != nil {
			return b.String(), i + 1, err
		}
		b.Write(resp.Data)
	}
	return b.String(), maxCalls, fmt.Errorf("no end of stream after %d reads", maxCalls)
}

func main() {
	sock := flag.String("sock", "", "the agent channel's unix socket (QEMU's chardev)")
	cid := flag.String("cid", "peer-ctr", "container id (its rootfs is <shared>/<cid>/rootfs)")
	script := flag.String("script", "echo hello-from-kata1; exit 7", "the container's /bin/sh -c script")
	timeout := flag.Duration("timeout", 4*time.Minute, "the whole run")
	flag.Parse()
	if *sock == "" {
		fmt.Fprintln(os.Stderr, "kata1-client: -sock is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	c, err := client.NewAgentClient(ctx, "unix://"+*sock, true)
	if !report("Dial", err, nil) {
		os.Exit(1)
	}
	defer c.Close()

	hc, err := c.Check(ctx, &pb.CheckRequest{})
	if !report("Check", err, hc) {
		os.Exit(1)
	}
	ver, err := c.Version(ctx, &pb.CheckRequest{})
	report("Version", err, ver)

	// CreateSandbox as the 1.x runtime sends it: the 9p share with its options comma-joined in
	// one entry, and the sandbox's /dev/shm as an ephemeral (tmpfs) storage.
	_, err = c.CreateSandbox(ctx, &pb.CreateSandboxRequest{
		Hostname:  "kata1-peer",
		SandboxId: "kata1-peer-sandbox",
		Storages: []*pb.Storage{
			{
				Driver:     "9p",
				Source:     mountTag,
				Fstype:     "9p",
				Options:    []string{"trans=virtio,version=9p2000.L,cache=mmap", "nodev", "msize=8192"},
				MountPoint: guestSharedDir,
			},
			{
				Driver:     "ephemeral",
				Source:     "shm",
				Fstype:     "tmpfs",
				Options:    []string{"noexec", "nosuid", "nodev", "mode=1777", "size=67108864"},
				MountPoint: guestShmDir,
			},
		},
	})
	if !report("CreateSandbox", err, nil) {
		os.Exit(1)
	}

	_, err = c.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: *cid,
		ExecId:      *cid,
		StringUser:  &pb.StringUser{Uid: "0", Gid: "0"},
		OCI:         containerSpec(*cid, "kata1-peer", []string{"/bin/sh", "-c", *script}),
	})
	if !report("CreateContainer", err, nil) {
		os.Exit(1)
	}
	_, err = c.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: *cid})
	if !report("StartContainer", err, nil) {
		os.Exit(1)
	}

	stdout, calls, err := readAll(ctx, c, false, &pb.ReadStreamRequest{ContainerId: *cid, ExecId: *cid, Len: 1024}, 1000)
	report("ReadStdout", err, map[string]interface{}{"data": stdout, "calls": calls})
	stderr, calls, err := readAll(ctx, c, true, &pb.ReadStreamRequest{ContainerId: *cid, ExecId: *cid, Len: 1024}, 1000)
	report("ReadStderr", err, map[string]interface{}{"data": stderr, "calls": calls})

	wr, err := c.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: *cid, ExecId: *cid})
	if err == nil {
		report("WaitProcess", nil, map[string]int32{"status": wr.Status})
	} else {
		report("WaitProcess", err, nil)
	}

	// A second container that stays up, for exec and signals.
	long := *cid + "-long"
	_, err = c.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: long,
		ExecId:      long,
		StringUser:  &pb.StringUser{Uid: "0", Gid: "0"},
		OCI:         containerSpec(long, "kata1-peer", []string{"/bin/sh", "-c", "trap 'exit 42' TERM; while :; do sleep 1; done"}),
	})
	report("CreateContainer(long)", err, nil)
	_, err = c.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: long})
	report("StartContainer(long)", err, nil)

	_, err = c.ExecProcess(ctx, &pb.ExecProcessRequest{
		ContainerId: long,
		ExecId:      "exec1",
		StringUser:  &pb.StringUser{Uid: "0", Gid: "0"},
		Process: &pb.Process{
			Args: []string{"/bin/sh", "-c", `while read -r l; do case "$l" in *" /dev/shm "*) echo "$l";; esac; done </proc/mounts; echo exec-out; exit 3`},
			Env:  []string{"PATH=/bin:/usr/bin"},
			Cwd:  "/",
		},
	})
	if report("ExecProcess", err, nil) {
		execOut, calls, err := readAll(ctx, c, false, &pb.ReadStreamRequest{ContainerId: long, ExecId: "exec1", Len: 1024}, 1000)
		report("ReadStdout(exec)", err, map[string]interface{}{"data": execOut, "calls": calls})
		wr, err := c.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: long, ExecId: "exec1"})
		if err == nil {
			report("WaitProcess(exec)", nil, map[string]int32{"status": wr.Status})
		} else {
			report("WaitProcess(exec)", err, nil)
		}
	}

	// SIGTERM to the init of the long container: its trap exits 42.
	_, err = c.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: long, ExecId: long, Signal: 15})
	report("SignalProcess", err, nil)
	wr, err = c.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: long, ExecId: long})
	if err == nil {
		report("WaitProcess(signalled)", nil, map[string]int32{"status": wr.Status})
	} else {
		report("WaitProcess(signalled)", err, nil)
	}

	_, err = c.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: *cid, Timeout: 10})
	report("RemoveContainer", err, nil)
	_, err = c.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: long, Timeout: 10})
	report("RemoveContainer(long)", err, nil)
	_, err = c.DestroySandbox(ctx, &pb.DestroySandboxRequest{})
	report("DestroySandbox", err, nil)
}
