// The reconnect storm: one host after another on the same agent channel, each a fresh
// client.NewAgentClient (a new unix connection, yamux session and gRPC connection, as a restarted
// 1.x runtime or shim makes), with the given gaps between one host leaving and the next arriving
// (0 ms: the next is already connected, queued behind the previous one at QEMU, when the previous
// goes). Each host's first RPCs must work, and each answer must be to that host's own request:
// every host leaves a call in flight as it goes, so the guest writes an answer to a host that is
// gone, and a later host must never see it.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io/ioutil"
	"strings"
	"sync"
	"time"

	"github.com/kata-containers/agent/protocols/client"
	pb "github.com/kata-containers/agent/protocols/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/status"
)

// grpcWarnings keeps what grpc-go logs at warning level or above. A failed dial is logged there
// ("createTransport failed … Reconnecting"), and NewAgentClient's blocking dial would then retry
// in silence: a host whose first connection failed must not pass as one whose first RPC worked.
// The rest is only reported.
type grpcWarnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *grpcWarnings) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.Split(string(bytes.TrimRight(p, "\n")), "\n") {
		w.lines = append(w.lines, l)
	}
	return len(p), nil
}

func (w *grpcWarnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.lines
	w.lines = nil
	return l
}

// firstRPCs: Health.Check first, then ListInterfaces (lo must be there), then a WaitProcess whose
// NOT_FOUND names the id this host asked for (another session's answer would name another).
func firstRPCs(ctx context.Context, c *client.AgentClient, host int, callTimeout time.Duration) (codes.Code, string) {
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, callTimeout) }

	cctx, cancel := call()
	hc, err := c.Check(cctx, &pb.CheckRequest{})
	cancel()
	if err != nil {
		return status.Code(err), "Check: " + status.Convert(err).Message()
	}
	if hc.Status != pb.HealthCheckResponse_SERVING {
		return codes.Unknown, fmt.Sprintf("Check answered %v", hc.Status)
	}

	cctx, cancel = call()
	ifaces, err := c.ListInterfaces(cctx, &pb.ListInterfacesRequest{})
	cancel()
	if err != nil {
		return status.Code(err), "ListInterfaces: " + status.Convert(err).Message()
	}
	var names []string
	for _, f := range ifaces.Interfaces {
		names = append(names, f.Name)
	}
	if !contains(names, "lo") {
		return codes.Unknown, fmt.Sprintf("ListInterfaces without lo: %v", names)
	}

	own := fmt.Sprintf("storm-%d", host)
	cctx, cancel = call()
	_, err = c.WaitProcess(cctx, &pb.WaitProcessRequest{ContainerId: own, ExecId: "none"})
	cancel()
	if err == nil {
		return codes.Unknown, "WaitProcess of a container that does not exist succeeded"
	}
	st := status.Convert(err)
	if st.Code() != codes.NotFound || !strings.Contains(st.Message(), `"`+own+`"`) {
		return st.Code(), fmt.Sprintf("WaitProcess(%s) answered %v: %s", own, st.Code(), st.Message())
	}
	return codes.OK, ""
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// leave: the host goes with a call in flight, whose answer the guest writes for a host that is gone.
func leave(ctx context.Context, c *client.AgentClient, host int, callTimeout time.Duration) {
	sent := make(chan struct{})
	go func() {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		close(sent)
		c.WaitProcess(cctx, &pb.WaitProcessRequest{ContainerId: fmt.Sprintf("storm-%d-unanswered", host), ExecId: "none"})
	}()
	<-sent
	// Long enough for the request to be written, far shorter than the guest's answer under TCG.
	time.Sleep(time.Millisecond)
	c.Close()
}

type dialed struct {
	c   *client.AgentClient
	err error
}

func arrive(ctx context.Context, sock string) dialed {
	c, err := client.NewAgentClient(ctx, "unix://"+sock, true)
	return dialed{c, err}
}

// storm runs len(gaps)+1 hosts; gaps[i] is the pause in ms between host i leaving and host i+1
// arriving. One "StormHost" line per host, then one "Storm" line.
func storm(ctx context.Context, sock string, gaps []int, callTimeout time.Duration) {
	warnings := &grpcWarnings{}
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(ioutil.Discard, warnings, ioutil.Discard))
	hosts := len(gaps) + 1
	failures := 0
	var allWarnings []string
	started := time.Now()

	host := arrive(ctx, sock)
	for i := 0; i < hosts; i++ {
		gapBefore := 0
		if i > 0 {
			gapBefore = gaps[i-1]
		}
		code, failure := codes.Unavailable, ""
		if host.err != nil {
			failure = "dial: " + host.err.Error()
		} else {
			code, failure = firstRPCs(ctx, host.c, i, callTimeout)
		}
		w := warnings.take()
		if failure == "" {
			for _, l := range w {
				if strings.Contains(l, "createTransport failed") {
					code, failure = codes.Unavailable, "the dial failed and was retried: "+l
				}
			}
		}
		allWarnings = append(allWarnings, w...)
		var err error
		if failure != "" {
			failures++
			err = status.Error(code, failure)
		}
		report("StormHost", err, map[string]int{"host": i, "gapBeforeMs": gapBefore})

		if host.err != nil {
			// Nothing to leave: the next host arrives as if this one had.
			host = dialed{}
		}
		if i == hosts-1 {
			if host.c != nil {
				leave(ctx, host.c, i, callTimeout)
			}
			break
		}
		var next dialed
		if gaps[i] == 0 {
			// The next host connects first: its connection waits in QEMU's listen queue and its
			// bytes are there the moment this host's disconnect is.
			ch := make(chan dialed, 1)
			go func() { ch <- arrive(ctx, sock) }()
			select {
			case next = <-ch:
			case <-time.After(100 * time.Millisecond):
			}
			if host.c != nil {
				leave(ctx, host.c, i, callTimeout)
			}
			if next.c == nil && next.err == nil {
				next = <-ch
			}
		} else {
			if host.c != nil {
				leave(ctx, host.c, i, callTimeout)
			}
			time.Sleep(time.Duration(gaps[i]) * time.Millisecond)
			next = arrive(ctx, sock)
		}
		host = next
	}
	allWarnings = append(allWarnings, warnings.take()...)
	report("Storm", nil, map[string]interface{}{
		"hosts": hosts, "failures": failures, "seconds": time.Since(started).Seconds(), "grpcWarnings": allWarnings,
	})
}
