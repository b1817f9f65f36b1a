// kata1-client drives a guest agent with the unmodified Kata 1.x agent client
// (github.com/kata-containers/agent/protocols/client: gRPC over yamux on the agent's serial
// port, as the 1.x runtime and shim did) through one sandbox lifecycle, and prints one JSON
// object per step on stdout for the peer test to assert on. It never stops at a failed step
// unless a later step cannot make sense without it. With -storm-gaps it runs a reconnect storm
// instead (storm.go).
//
// Built by hand, in GOPATH mode against the 1.x source tree and its vendor/; this repository
// commits no build of fetched code (test/peers/peer-binaries.ts).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kata-containers/agent/pkg/types"
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
	bench := flag.Int("bench", 0, "after Check, time this many sequential Health.Check round trips")
	benchOnly := flag.Bool("bench-only", false, "stop after the round trips (no sandbox)")
	stormGaps := flag.String("storm-gaps", "", "instead of a sandbox: a reconnect storm, one more host than gaps (comma-separated ms)")
	callTimeout := flag.Duration("call-timeout", 15*time.Second, "each RPC of a storm host")
	flag.Parse()
	if *sock == "" {
		fmt.Fprintln(os.Stderr, "kata1-client: -sock is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	if *stormGaps != "" {
		var gaps []int
		for _, g := range strings.Split(*stormGaps, ",") {
			ms, err := strconv.Atoi(g)
			if err != nil || ms < 0 {
				fmt.Fprintf(os.Stderr, "kata1-client: -storm-gaps: %q is not a number of ms\n", g)
				os.Exit(2)
			}
			gaps = append(gaps, ms)
		}
		storm(ctx, *sock, gaps, *callTimeout)
		return
	}

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
	if *bench > 0 {
		start := time.Now()
		for i := 0; i < *bench && err == nil; i++ {
			_, err = c.Check(ctx, &pb.CheckRequest{})
		}
		elapsed := time.Since(start)
		report("CheckRoundTrip", err, map[string]interface{}{
			"calls": *bench, "seconds": elapsed.Seconds(), "meanMs": elapsed.Seconds() * 1000 / float64(*bench),
		})
	}
	if *benchOnly {
		return
	}

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

	extraRPCs(ctx, c, *cid, long)

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

// run execs a /bin/sh script in a container and returns its stdout and exit status.
func run(ctx context.Context, c *client.AgentClient, cid, execID, script string) (string, int32, error) {
	_, err := c.ExecProcess(ctx, &pb.ExecProcessRequest{
		ContainerId: cid,
		ExecId:      execID,
		StringUser:  &pb.StringUser{Uid: "0", Gid: "0"},
		Process:     &pb.Process{Args: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/bin"}, Cwd: "/"},
	})
	if err != nil {
		return "", 0, err
	}
	out, _, _ := readAll(ctx, c, false, &pb.ReadStreamRequest{ContainerId: cid, ExecId: execID, Len: 4096}, 1000)
	wr, err := c.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: execID})
	if err != nil {
		return out, 0, err
	}
	return out, wr.Status, nil
}

// extraRPCs: the calls the 1.x runtime makes beyond a container's lifecycle.
func extraRPCs(ctx context.Context, c *client.AgentClient, exited, long string) {
	lp, err := c.ListProcesses(ctx, &pb.ListProcessesRequest{ContainerId: long, Format: "json"})
	if err == nil {
		report("ListProcesses(json)", nil, map[string]string{"list": string(lp.ProcessList)})
	} else {
		report("ListProcesses(json)", err, nil)
	}
	lt, err := c.ListProcesses(ctx, &pb.ListProcessesRequest{ContainerId: long, Format: "table", Args: []string{"-o", "pid,comm"}})
	if err == nil {
		report("ListProcesses(table)", nil, map[string]string{"list": string(lt.ProcessList)})
	} else {
		report("ListProcesses(table)", err, nil)
	}
	_, err = c.ListProcesses(ctx, &pb.ListProcessesRequest{ContainerId: long, Format: "yaml"})
	report("ListProcesses(yaml)", err, nil)

	_, err = c.PauseContainer(ctx, &pb.PauseContainerRequest{ContainerId: long})
	report("PauseContainer", err, nil)
	_, err = c.ResumeContainer(ctx, &pb.ResumeContainerRequest{ContainerId: long})
	report("ResumeContainer", err, nil)
	_, err = c.PauseContainer(ctx, &pb.PauseContainerRequest{ContainerId: exited})
	report("PauseContainer(exited)", err, nil)

	_, err = c.UpdateContainer(ctx, &pb.UpdateContainerRequest{
		ContainerId: long,
		Resources:   &pb.LinuxResources{Pids: &pb.LinuxPids{Limit: 64}, Memory: &pb.LinuxMemory{Limit: 128 << 20}},
	})
	report("UpdateContainer", err, nil)

	// An OOM kill in the long container (now limited to 128 MiB): tail keeps a line that never
	// ends. GetOOMEvent, asked before, as the 1.x runtime's watcher asks, answers with its id.
	oom := make(chan map[string]interface{}, 1)
	go func() {
		octx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		ev, err := c.GetOOMEvent(octx, &pb.GetOOMEventRequest{})
		r := map[string]interface{}{"err": err}
		if err == nil {
			r["container_id"] = ev.ContainerId
		}
		oom <- r
	}()
	out, st, err := run(ctx, c, long, "hog", "head -c 300m /dev/zero | tail >/dev/null; echo tail-status $?")
	report("OOM(hog)", err, map[string]interface{}{"data": out, "status": st})
	r := <-oom
	if e, _ := r["err"].(error); e != nil {
		report("GetOOMEvent", e, nil)
	} else {
		report("GetOOMEvent", nil, map[string]interface{}{"container_id": r["container_id"]})
	}
	// The long container's cgroup as the 1.x runtime's stats call sees it: the limits
	// UpdateContainer set, the CPU the hog burned, the OOM kill counted.
	sc, err := c.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: long})
	if err == nil && sc.CgroupStats != nil && sc.CgroupStats.CpuStats != nil && sc.CgroupStats.MemoryStats != nil && sc.CgroupStats.PidsStats != nil {
		cg := sc.CgroupStats
		var nets []string
		for _, n := range sc.NetworkStats {
			nets = append(nets, n.Name)
		}
		r := map[string]interface{}{
			"cpuTotalNs": cg.CpuStats.CpuUsage.GetTotalUsage(), "pidsCurrent": cg.PidsStats.Current,
			"pidsLimit": cg.PidsStats.Limit, "networks": nets,
		}
		if u := cg.MemoryStats.Usage; u != nil {
			r["memoryUsage"], r["memoryLimit"], r["memoryFailcnt"] = u.Usage, u.Limit, u.Failcnt
		}
		report("StatsContainer", nil, r)
	} else if err == nil {
		report("StatsContainer", fmt.Errorf("an answer without cpu, memory or pids stats: %v", sc), nil)
	} else {
		report("StatsContainer", err, nil)
	}
	_, err = c.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: "no-such"})
	report("StatsContainer(unknown)", err, nil)

	// The Debian kernel has no memory probe file: refused, naming it.
	_, err = c.MemHotplugByProbe(ctx, &pb.MemHotplugByProbeRequest{MemHotplugProbeAddr: []uint64{0x100000000}})
	report("MemHotplugByProbe", err, nil)

	// A file in two parts into the container's rootfs, read back from inside it.
	dest := guestSharedDir + long + "/rootfs/etc/copied"
	for i, part := range []string{"copied-", "by-kata1\n"} {
		_, err = c.CopyFile(ctx, &pb.CopyFileRequest{
			Path: dest, FileSize: 16, FileMode: 0644, DirMode: 0755, Offset: int64(7 * i), Data: []byte(part),
		})
		report(fmt.Sprintf("CopyFile(%d)", i), err, nil)
	}
	out, st, err = run(ctx, c, long, "readcopy", "cat /etc/copied")
	report("CopyFile(read)", err, map[string]interface{}{"data": out, "status": st})
	_, err = c.CopyFile(ctx, &pb.CopyFileRequest{Path: "/etc/passwd", FileSize: 1, Data: []byte("x")})
	report("CopyFile(outside)", err, nil)

	_, err = c.AddARPNeighbors(ctx, &pb.AddARPNeighborsRequest{Neighbors: &pb.ARPNeighbors{ARPNeighbors: []*types.ARPNeighbor{{
		ToIPAddress: &types.IPAddress{Address: "127.0.0.9"}, Device: "lo", Lladdr: "02:00:00:00:00:09", State: 0x80,
	}}}})
	report("AddARPNeighbors", err, nil)
	_, err = c.AddARPNeighbors(ctx, &pb.AddARPNeighborsRequest{Neighbors: &pb.ARPNeighbors{ARPNeighbors: []*types.ARPNeighbor{{
		ToIPAddress: &types.IPAddress{Address: "10.0.0.9"}, Device: "eth0; reboot",
	}}}})
	report("AddARPNeighbors(bad)", err, nil)

	_, err = c.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{Wait: true, NbCpus: 0, CpuOnly: false})
	report("OnlineCPUMem", err, nil)
	_, err = c.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{Wait: true, NbCpus: 0, CpuOnly: true})
	report("OnlineCPUMem(none)", err, nil)
	_, err = c.ReseedRandomDev(ctx, &pb.ReseedRandomDevRequest{Data: []byte("0123456789abcdef0123456789abcdef")})
	report("ReseedRandomDev", err, nil)

	// The clock: 2030-01-01T00:00:00.7Z, read back by a process in the container.
	_, err = c.SetGuestDateTime(ctx, &pb.SetGuestDateTimeRequest{Sec: 1893456000, Usec: 700000})
	report("SetGuestDateTime", err, nil)
	out, st, err = run(ctx, c, long, "clock", "date +%s")
	report("SetGuestDateTime(read)", err, map[string]interface{}{"data": out, "status": st})
}
