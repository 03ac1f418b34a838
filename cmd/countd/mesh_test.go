package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/countmesh/countmesh/client"
	"github.com/countmesh/countmesh/internal/wait"
)

// freeGossipPort returns a loopback port p such that p (TCP and UDP, for
// memberlist) and p+1 (TCP, replication) are free right now.
func freeGossipPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p >= 65535 {
			continue
		}
		ok := true
		for _, probe := range []func() (io.Closer, error){
			func() (io.Closer, error) { return net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)) },
			func() (io.Closer, error) { return net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p)) },
			func() (io.Closer, error) { return net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)) },
		} {
			c, err := probe()
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free gossip port pair on 127.0.0.1")
	return 0
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestMeshOfProcesses runs three countd processes on loopback in two
// regions: they find each other, converge on counts written to all of
// them, and a node killed with SIGKILL and restarted with an empty disk
// gets its own slot back from its peers before it reports ready.
func TestMeshOfProcesses(t *testing.T) {
	type proc struct {
		name, region, dir string
		gossip            int
		d                 *daemon
	}
	procs := []*proc{{name: "n1", region: "r1"}, {name: "n2", region: "r2"}, {name: "n3", region: "r2"}}
	for _, p := range procs {
		p.dir = t.TempDir()
		p.gossip = freeGossipPort(t)
	}
	start := func(p *proc) {
		p.d = startMeshDaemon(t, p.dir, &p.gossip, func(port int) []string {
			args := []string{"--node-name", p.name, "--region", p.region, "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", port)}
			if p != procs[0] {
				args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", procs[0].gossip))
			}
			return args
		})
	}
	for _, p := range procs {
		start(p)
	}
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.d.addr)
	}
	waitMembersAlive(t, addrs)

	// A watcher on n1 (region r1) sees an increment made on n3 (region r2)
	// within a second, across regions.
	wc, err := client.New(client.Config{BaseURL: "http://" + procs[0].d.addr})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	events, err := wc.Watch(wctx, "watched", "post-1", client.WatchOptions{Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Value != 0 {
		t.Fatalf("first watch event = %+v, want the current value 0", ev)
	}
	sent := time.Now()
	resp, err := http.Post("http://"+procs[2].d.addr+"/v1/counters/watched/post-1/incr", "application/json", strings.NewReader(`{"by":3}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("incr on n3: %v %v", err, resp)
	}
	resp.Body.Close()
	select {
	case ev := <-events:
		seen := time.Since(sent)
		if ev.Value != 3 || seen > time.Second {
			t.Fatalf("watch on n1 got %+v after %s; want value 3 within 1s", ev, seen)
		}
		t.Logf("watch on n1 saw n3's increment after %s", seen)
	case <-time.After(time.Second):
		t.Fatal("watch on n1 saw nothing of n3's increment within 1s")
	}
	wcancel()

	// Writers on every node for a while.
	var acked atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(1500 * time.Millisecond)
	for _, p := range procs {
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					resp, err := http.Post(fmt.Sprintf("http://%s/v1/counters/mesh/k%d/incr", p.d.addr, w), "application/json", strings.NewReader(`{"by":2}`))
					if err != nil {
						t.Errorf("incr on %s: %v", p.name, err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("incr on %s: status %d", p.name, resp.StatusCode)
						return
					}
					acked.Add(2)
				}
			}()
		}
	}
	wg.Wait()
	total := func(p *proc) int64 {
		var sum int64
		for k := range 3 {
			var c struct{ Value int64 }
			if getJSON(t, fmt.Sprintf("http://%s/v1/counters/mesh/k%d", p.d.addr, k), &c) != 200 {
				return -1
			}
			sum += c.Value
		}
		return sum
	}
	want := acked.Load()
	took := wait.For(t, 5*time.Second, "convergence", func() (bool, string) {
		var got []string
		ok := true
		for _, p := range procs {
			v := total(p)
			got = append(got, fmt.Sprintf("%s=%d", p.name, v))
			ok = ok && v == want
		}
		return ok, fmt.Sprintf("want %d, got %v", want, got)
	})
	t.Logf("%d acknowledged increments on 3 nodes converged %v after the last write", want/2, took)

	// SIGKILL n2, wipe its disk, restart it under the same name.
	n2 := procs[1]
	if err := n2.d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-n2.d.exit
	n2.d.exit <- nil
	if err := os.RemoveAll(n2.dir); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	start(n2) // returns once /readyz is 200
	t.Logf("n2 ready %v after restart with an empty disk", time.Since(restart))
	if got := total(n2); got != want {
		t.Fatalf("n2 reads %d right after it is ready, want %d (its own slot back from peers)", got, want)
	}
	resp, err = http.Post("http://"+n2.d.addr+"/v1/counters/mesh/k0/incr", "application/json", strings.NewReader(`{"by":1}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("incr after restart: %v %v", err, resp)
	}
	resp.Body.Close()
	wait.For(t, 5*time.Second, "convergence after restart", func() (bool, string) {
		var got []string
		ok := true
		for _, p := range procs {
			v := total(p)
			got = append(got, fmt.Sprintf("%s=%d", p.name, v))
			ok = ok && v == want+1
		}
		return ok, fmt.Sprintf("want %d, got %v", want+1, got)
	})

	// n2's first incarnation is gone for good: forget it (countctl cluster
	// forget). Every node folds its slot into the retired slot, and no
	// value moves.
	// The members may still hold n2 as suspect from the SIGKILL for a few
	// gossip rounds after it is back; a forget refuses until they see it
	// alive, and the operator retries, as here.
	ctx := context.Background()
	var f client.Forgotten
	wait.For(t, 10*time.Second, "a forget that no member refuses because n2 is suspect", func() (bool, string) {
		f, err = wc.Forget(ctx, "n2", false)
		return err == nil || !strings.Contains(err.Error(), "is suspect"), fmt.Sprint(err)
	})
	if err != nil || len(f.IDs) != 1 || f.Index != 0 || f.Generation != 1 {
		t.Fatalf("forget n2's first incarnation: %+v, %v", f, err)
	}
	old0, err := strconv.ParseUint(f.IDs[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		pc, err := client.New(client.Config{BaseURL: "http://" + p.d.addr})
		if err != nil {
			t.Fatal(err)
		}
		wait.For(t, 10*time.Second, p.name+" folding n2's first incarnation", func() (bool, string) {
			var buf strings.Builder
			if _, err := pc.Export(ctx, "mesh", &buf); err != nil {
				return false, err.Error()
			}
			retired, old, counters := 0, 0, 0
			for line := range strings.Lines(buf.String()) {
				var rec struct {
					Type  string
					Slots []struct {
						Node uint64 `json:"node,string"`
					}
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					return false, err.Error()
				}
				if rec.Type != "counter" {
					continue
				}
				counters++
				for _, s := range rec.Slots {
					switch s.Node {
					case 1:
						retired++
					case old0:
						old++
					}
				}
			}
			gen := metricValue(t, p.d.addr, "countmesh_retired_fold_generation")
			return gen == 1 && old == 0 && retired == counters && counters == 3,
				fmt.Sprintf("fold generation %d; %d counters, %d with the retired slot, %d with n2's first slot", gen, counters, retired, old)
		})
		if got := total(p); got != want+1 {
			t.Fatalf("%s reads %d after the fold, want %d", p.name, got, want+1)
		}
	}
}

// A gossip port taken between the choice and the start (here on purpose)
// is replaced, and the daemon starts on another; a start that fails for
// another reason reports the daemon's last log lines, and the cleanup does
// not wait forever for a daemon that is gone.
func TestStartMeshDaemonReplacesATakenPort(t *testing.T) {
	port := freeGossipPort(t)
	taken, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	was := port
	d := startMeshDaemon(t, t.TempDir(), &port, func(port int) []string {
		return []string{"--node-name", "p1", "--region", "r1", "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", port)}
	})
	if port == was {
		t.Fatalf("the daemon started on the taken port %d", port)
	}
	if readCounter(t, d.addr, "ns", "k") != 0 {
		t.Fatal("a fresh daemon reads a counter as non-zero")
	}
	_, err = tryLaunchDaemon(t, t.TempDir(), "--node-name", "p2", "--durability", "never")
	if err == nil || errors.Is(err, errPortTaken) || !strings.Contains(err.Error(), "durability") {
		t.Fatalf("a daemon with a bad flag: %v; want its log lines naming the flag", err)
	}
}
