package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/internal/wait"
	"github.com/countmesh/countmesh/store"
)

// shardProc is one countd process of a sharded mesh test.
type shardProc struct {
	name, region, dir string
	gossip            int
	d                 *daemon
}

// shardRun is what one mesh of runShardMesh measured.
type shardRun struct {
	procs    []*shardProc
	held     map[string]int   // counters of the namespace each node holds once written (countmesh_cached_counters growth)
	want     map[string]int   // what it must hold then: the counters it owns or wrote
	owns     map[string]int   // the counters it owns
	released map[string]int   // what it holds once it released its copies of the counters it does not own
	dirSize  map[string]int64 // bytes of each node's data directory at rest, compacted
}

// TestShardedMeshOfProcesses (issue 13, acceptance 1): a namespace with
// one replica per region on 3 regions of 2 countd processes. Distinct
// counters are written through random nodes; every node then reads every
// counter right at local, quorum and all, and holds only the counters it
// owns or wrote. COUNTMESH_SHARD_KEYS sets the number of counters (3,000
// by default; the acceptance run writes 200,000); from 50,000 up, the same
// writes also run on a fully replicated mesh and each node's data
// directory must hold about half of what it holds there (within 20 %).
func TestShardedMeshOfProcesses(t *testing.T) {
	keys := 3000
	if v := os.Getenv("COUNTMESH_SHARD_KEYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			t.Fatalf("COUNTMESH_SHARD_KEYS=%q: want a number of at least 100", v)
		}
		keys = n
	}
	sharded := runShardMesh(t, 1, keys)
	for _, p := range sharded.procs {
		got, want := sharded.held[p.name], sharded.want[p.name]
		// A few internal counters (a namespace's) may come with them. The
		// copies of what it wrote may be released already.
		if got < sharded.owns[p.name] || got > want+5 {
			t.Errorf("%s holds %d counters once written; it owns %d and owns or wrote %d of the %d", p.name, got, sharded.owns[p.name], want, keys)
		}
		t.Logf("%s holds %d of %d counters (%.2f) once written, %d (%.2f) once released, and owns %d; data directory %d bytes", p.name, got, keys, float64(got)/float64(keys),
			sharded.released[p.name], float64(sharded.released[p.name])/float64(keys), sharded.owns[p.name], sharded.dirSize[p.name])
	}
	if keys < 50_000 {
		return
	}
	full := runShardMesh(t, 0, keys)
	for _, p := range sharded.procs {
		r := float64(sharded.dirSize[p.name]) / float64(full.dirSize[p.name])
		t.Logf("%s: data directory %d bytes sharded, %d bytes fully replicated: %.3f", p.name, sharded.dirSize[p.name], full.dirSize[p.name], r)
		if r < 0.4 || r > 0.6 {
			t.Errorf("%s: the sharded data directory is %.3f of the fully replicated one; want 0.5 within 20 %%", p.name, r)
		}
	}
}

// shardedWritesAtNonOwners checks the writes whose answer or effect
// depends on the counter's state at a node that does not own it: an
// increment answers the counter's value, a reset and a delete apply to
// what the owners hold.
func shardedWritesAtNonOwners(t *testing.T, run shardRun, ns string, replicas int, regions map[string][]string) {
	t.Helper()
	nonOwner := func(k string) *shardProc {
		owners := map[string]bool{}
		for _, names := range regions {
			for _, o := range gossip.ShardOwners(change.ShardOf(ns, k, replicas), names) {
				owners[o] = true
			}
		}
		for _, p := range run.procs {
			if !owners[p.name] {
				var c struct{ Value int64 }
				// A node that holds nothing of it: its own value reads 0
				// without the owners.
				if getJSON(t, fmt.Sprintf("http://%s/v1/counters/%s/%s", p.d.addr, ns, k), &c) == 200 {
					return p
				}
			}
		}
		t.Fatalf("no node is a non-owner of %s", k)
		return nil
	}
	incrKey, resetKey, delKey := "k0000000", "k0000001", "k0000002"
	p := nonOwner(incrKey)
	var out struct{ Value int64 }
	if code := postJSON(t, fmt.Sprintf("http://%s/v1/counters/%s/%s/incr", p.d.addr, ns, incrKey), map[string]any{"by": 10}, &out); code != 200 || out.Value != 1+10 {
		t.Errorf("incr by 10 at %s, which does not own %s (value 1): status %d, value %d; want 11", p.name, incrKey, code, out.Value)
	}
	p = nonOwner(resetKey)
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/counters/%s/%s", p.d.addr, ns, resetKey), strings.NewReader(`{"value":100}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("reset at %s: %v %v", p.name, err, resp)
	} else {
		resp.Body.Close()
	}
	p = nonOwner(delKey)
	req, _ = http.NewRequest(http.MethodDelete, fmt.Sprintf("http://%s/v1/counters/%s/%s", p.d.addr, ns, delKey), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("delete at %s: %v %v", p.name, err, resp)
	} else {
		resp.Body.Close()
	}
	want := map[string]int64{incrKey: 11, resetKey: 100, delKey: 0}
	wait.For(t, 20*time.Second, "the writes at non-owners on every node", func() (bool, string) {
		for _, p := range run.procs {
			for k, v := range want {
				var c struct{ Value int64 }
				if getJSON(t, fmt.Sprintf("http://%s/v1/counters/%s/%s", p.d.addr, ns, k), &c) != 200 || c.Value != v {
					return false, fmt.Sprintf("%s reads %s = %d, want %d", p.name, k, c.Value, v)
				}
			}
		}
		return true, ""
	})
}

// waitAllAlive waits until each of procs sees exactly procs alive.
func waitAllAlive(t *testing.T, procs []*shardProc) {
	t.Helper()
	addrs := make([]string, len(procs))
	for i, p := range procs {
		addrs[i] = p.d.addr
	}
	waitMembersAlive(t, addrs)
}

// waitMembersAlive waits until the countd at each of addrs sees exactly
// len(addrs) members alive.
func waitMembersAlive(t *testing.T, addrs []string) {
	t.Helper()
	wait.For(t, 20*time.Second, "membership", func() (bool, string) {
		for _, addr := range addrs {
			var st struct {
				Members []struct{ Name, State string }
			}
			getJSON(t, "http://"+addr+"/v1/cluster", &st)
			alive := 0
			for _, m := range st.Members {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != len(addrs) {
				return false, fmt.Sprintf("%s sees %+v", addr, st.Members)
			}
		}
		return true, ""
	})
}

// createSharded creates namespace ns with the given replicas on the first
// of procs and waits until every one of them has its config.
func createSharded(t *testing.T, procs []*shardProc, ns string, replicas int) {
	t.Helper()
	if code := postJSON(t, "http://"+procs[0].d.addr+"/v1/namespaces/"+ns, map[string]any{"replicas": replicas}, nil); code != 200 {
		t.Fatalf("create namespace %s with replicas %d: status %d", ns, replicas, code)
	}
	wait.For(t, 10*time.Second, "the namespace config on every node", func() (bool, string) {
		for _, p := range procs {
			var cfg struct{ Replicas int }
			if getJSON(t, "http://"+p.d.addr+"/v1/namespaces/"+ns, &cfg) != 200 || cfg.Replicas != replicas {
				return false, p.name + " has not got it"
			}
		}
		return true, ""
	})
}

// metricValue returns the value of an unlabelled metric of the node at
// addr.
func metricValue(t *testing.T, addr, name string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s/metrics has no %s", addr, name)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// compactedBytes returns the bytes of the sstables that the live entries
// of the Pebble database in dir (a stopped node's store) take once written
// into a fresh database and flushed, and the entries' keys and values
// uncompressed.
func compactedBytes(t *testing.T, dir string) (sst, raw int64) {
	t.Helper()
	src, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: quietPebble{}})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer src.Close()
	out := t.TempDir()
	dst, err := pebble.Open(out, &pebble.Options{DisableWAL: true, Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := src.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := dst.NewBatch()
	for it.First(); it.Valid(); it.Next() {
		raw += int64(len(it.Key()) + len(it.Value()))
		b.Set(it.Key(), it.Value(), nil)
		if b.Len() > 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			b = dst.NewBatch()
		}
	}
	if err := errors.Join(it.Close(), b.Commit(pebble.NoSync), dst.Flush()); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err == nil && filepath.Ext(path) == ".sst" {
			if fi, err := d.Info(); err == nil {
				sst += fi.Size()
			}
		}
		return nil
	})
	return sst, raw
}

// quietPebble drops Pebble's informational lines.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)         {}
func (quietPebble) Errorf(string, ...any)        {}
func (quietPebble) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

func cachedCounters(t *testing.T, addr string) int {
	t.Helper()
	return metricValue(t, addr, "countmesh_cached_counters")
}

func postJSON(t *testing.T, url string, body any, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(url, "/v1/namespaces/") {
		req.Method = http.MethodPut
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s: %v in %s", url, err, data)
		}
	}
	if resp.StatusCode != 200 {
		t.Logf("%s: %d %s", url, resp.StatusCode, data)
	}
	return resp.StatusCode
}

func runShardMesh(t *testing.T, replicas, keys int) shardRun {
	t.Helper()
	run := shardRun{held: map[string]int{}, want: map[string]int{}, owns: map[string]int{}, released: map[string]int{}, dirSize: map[string]int64{}}
	for _, s := range []string{"a1@A", "a2@A", "b1@B", "b2@B", "c1@C", "c2@C"} {
		name, region, _ := strings.Cut(s, "@")
		run.procs = append(run.procs, &shardProc{name: name, region: region, dir: t.TempDir(), gossip: freeGossipPort(t)})
	}
	for i, p := range run.procs {
		p.d = startMeshDaemon(t, p.dir, &p.gossip, func(port int) []string {
			args := []string{"--node-name", p.name, "--region", p.region, "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", port)}
			if i > 0 {
				args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", run.procs[0].gossip))
			}
			return args
		})
	}
	waitAllAlive(t, run.procs)
	const ns = "sharded"
	createSharded(t, run.procs, ns, replicas)
	base := map[string]int{}
	for _, p := range run.procs {
		base[p.name] = cachedCounters(t, p.d.addr)
	}

	// The writes: batches of 1,000 distinct counters, each to a random node.
	rng := rand.New(rand.NewPCG(uint64(keys), 13))
	key := func(i int) string { return fmt.Sprintf("k%07d", i) }
	value := func(i int) int64 { return int64(i%7 + 1) }
	holds := map[string]map[int]bool{}
	for _, p := range run.procs {
		holds[p.name] = map[int]bool{}
	}
	regions := map[string][]string{}
	for _, p := range run.procs {
		regions[p.region] = append(regions[p.region], p.name)
	}
	start := time.Now()
	for from := 0; from < keys; from += 1000 {
		w := run.procs[rng.IntN(len(run.procs))]
		var ops []map[string]any
		for i := from; i < min(from+1000, keys); i++ {
			ops = append(ops, map[string]any{"ns": ns, "key": key(i), "by": value(i)})
			holds[w.name][i] = true
		}
		if code := postJSON(t, "http://"+w.d.addr+"/v1/batch", map[string]any{"ops": ops}, nil); code != 200 {
			t.Fatalf("batch at %s: status %d", w.name, code)
		}
	}
	t.Logf("replicas %d: wrote %d counters through random nodes in %v", replicas, keys, time.Since(start).Round(time.Millisecond))
	owns := map[string]int{}
	for i := range keys {
		for _, names := range regions {
			owners := names
			if replicas > 0 {
				owners = gossip.ShardOwners(change.ShardOf(ns, key(i), replicas), names)
			}
			for _, o := range owners {
				holds[o][i] = true
				owns[o]++
			}
		}
	}
	for _, p := range run.procs {
		run.want[p.name] = len(holds[p.name])
		run.owns[p.name] = owns[p.name]
	}

	// Every node reads every counter right, at every level.
	read := func(p *shardProc, level string) (bool, string) {
		for from := 0; from < keys; from += 10_000 {
			var refs []map[string]string
			for i := from; i < min(from+10_000, keys); i++ {
				refs = append(refs, map[string]string{"ns": ns, "key": key(i)})
			}
			var out struct{ Values []int64 }
			if code := postJSON(t, "http://"+p.d.addr+"/v1/batch/get", map[string]any{"keys": refs, "consistency": level}, &out); code != 200 {
				return false, fmt.Sprintf("%s: batch get at %s: status %d", p.name, level, code)
			}
			for j, v := range out.Values {
				if i := from + j; v != value(i) {
					return false, fmt.Sprintf("%s reads %s = %d at %s, want %d", p.name, key(i), v, level, value(i))
				}
			}
		}
		return true, ""
	}
	levels := []string{"local", "quorum", "all"}
	if replicas == 0 {
		// The fully replicated mesh is the yardstick of the sizes: its
		// quorum and all reads ask the peers one counter at a time.
		levels = levels[:1]
	}
	for _, level := range levels {
		start := time.Now()
		took := wait.For(t, 60*time.Second, "every node reads every counter at "+level, func() (bool, string) {
			for _, p := range run.procs {
				if ok, why := read(p, level); !ok {
					return false, why
				}
			}
			return true, ""
		})
		t.Logf("replicas %d: every node read the %d counters right at %s (%v, %v after the first try)", replicas, keys, level, time.Since(start).Round(time.Millisecond), took)
	}
	for _, p := range run.procs {
		run.held[p.name] = cachedCounters(t, p.d.addr) - base[p.name]
	}
	if replicas > 0 {
		// A writer drops its copies of the counters it does not own once
		// every owner holds them (every 5 s).
		start := time.Now()
		wait.For(t, 90*time.Second, "every node holds only the counters it owns", func() (bool, string) {
			for _, p := range run.procs {
				got := cachedCounters(t, p.d.addr) - base[p.name]
				if got < run.owns[p.name] || got > run.owns[p.name]+5 {
					return false, fmt.Sprintf("%s holds %d counters and owns %d", p.name, got, run.owns[p.name])
				}
			}
			return true, ""
		})
		for _, p := range run.procs {
			run.released[p.name] = cachedCounters(t, p.d.addr) - base[p.name]
		}
		t.Logf("replicas %d: every node released the copies it does not own within %v", replicas, time.Since(start).Round(time.Millisecond))
		// And every node still reads every counter right.
		for _, p := range run.procs {
			if ok, why := read(p, "local"); !ok {
				t.Fatalf("after the release: %s", why)
			}
		}
		shardedWritesAtNonOwners(t, run, ns, replicas, regions)
	}
	// The sizes at rest: once every node has checkpointed everything (its
	// operation log holds nothing Pebble lacks), the processes are killed.
	// A graceful stop would not measure the mesh as it runs: each node
	// leaving hands its shards to those that stay, which own them then.
	wait.For(t, 60*time.Second, "every node checkpointed every change", func() (bool, string) {
		for _, p := range run.procs {
			if n := metricValue(t, p.d.addr, "countmesh_unsaved_counters"); n != 0 {
				return false, fmt.Sprintf("%s has %d counters to checkpoint", p.name, n)
			}
			if n := metricValue(t, p.d.addr, "countmesh_oplog_bytes"); n != 0 {
				return false, fmt.Sprintf("%s has %d bytes of operation log since its last checkpoint", p.name, n)
			}
		}
		return true, ""
	})
	for _, p := range run.procs {
		p.d.cmd.Process.Signal(syscall.SIGKILL)
	}
	for _, p := range run.procs {
		select {
		case <-p.d.exit:
			p.d.exit <- nil // for the cleanup
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop within 30 s of SIGKILL", p.name)
		}
		var size int64
		kinds := map[string]int64{}
		filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					size += fi.Size()
					kinds[filepath.Base(filepath.Dir(path))+"/*"+filepath.Ext(path)] += fi.Size()
				}
			}
			return nil
		})
		// Pebble keeps what was overwritten or deleted (a writer's released
		// copies among them) and its last WAL until compactions reclaim
		// them over time, and a compaction may move a file down without
		// rewriting it: what the node holds is measured as its live
		// entries written into a fresh Pebble, compacted.
		sst, raw := compactedBytes(t, p.dir)
		run.dirSize[p.name] = sst
		t.Logf("replicas %d: %s's data directory at rest: %d bytes %v; its live entries: %d bytes of keys and values, %d bytes compacted", replicas, p.name, size, kinds, raw, sst)
	}
	return run
}

// TestShardedJoinAndLeaveUnderLoad (issue 13, acceptance 3): under a load
// of increments through random nodes on a namespace with one replica per
// region, a node joins (and takes over partitions) and another leaves
// gracefully (and hands its partitions on); afterwards every node reads
// every counter at no less than what was acknowledged and no more than
// what was attempted, at local, quorum and all.
func TestShardedJoinAndLeaveUnderLoad(t *testing.T) {
	var procs []*shardProc
	for _, s := range []string{"a1@A", "a2@A", "b1@B", "b2@B", "a3@A"} {
		name, region, _ := strings.Cut(s, "@")
		procs = append(procs, &shardProc{name: name, region: region, dir: t.TempDir(), gossip: freeGossipPort(t)})
	}
	start := func(p *shardProc) {
		p.d = startMeshDaemon(t, p.dir, &p.gossip, func(port int) []string {
			args := []string{"--node-name", p.name, "--region", p.region, "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", port)}
			switch p {
			case procs[0]:
			case procs[4]: // joins after procs[0] has left
				args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", procs[1].gossip))
			default:
				args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", procs[0].gossip))
			}
			return args
		})
	}
	late := procs[4]
	for _, p := range procs[:4] {
		start(p)
	}
	var liveMu sync.Mutex
	live := slices.Clone(procs[:4])
	waitAllAlive(t, live)
	const ns, keys = "sharded", 500
	createSharded(t, live, ns, 1)

	// The load: batches of 20 increments of random counters, each batch to
	// a random live node, until stopped.
	acked := make([]atomic.Int64, keys)
	attempted := make([]atomic.Int64, keys)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var batches, failed atomic.Int64
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			hc := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				liveMu.Lock()
				p := live[rng.IntN(len(live))]
				liveMu.Unlock()
				var ops []map[string]any
				var ks []int
				for range 20 {
					k := rng.IntN(keys)
					ks = append(ks, k)
					ops = append(ops, map[string]any{"ns": ns, "key": fmt.Sprintf("k%04d", k), "by": 1})
				}
				for _, k := range ks {
					attempted[k].Add(1)
				}
				b, _ := json.Marshal(map[string]any{"ops": ops})
				resp, err := hc.Post("http://"+p.d.addr+"/v1/batch", "application/json", bytes.NewReader(b))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				batches.Add(1)
				for _, k := range ks {
					acked[k].Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	// a3 joins region A: it owns some partitions from now on.
	start(late)
	liveMu.Lock()
	live = append(live, late)
	liveMu.Unlock()
	waitAllAlive(t, live)
	time.Sleep(time.Second)
	// a1 leaves gracefully: its partitions go to a2 or a3.
	a1 := procs[0]
	liveMu.Lock()
	live = slices.DeleteFunc(live, func(p *shardProc) bool { return p == a1 })
	liveMu.Unlock()
	time.Sleep(100 * time.Millisecond) // no new batch goes to a1
	a1.d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a1.d.exit:
		a1.d.exit <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("a1 did not stop within 30 s of SIGTERM")
	}
	waitAllAlive(t, live)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d batches of 20 acknowledged, %d failed", batches.Load(), failed.Load())
	if batches.Load() < 20 {
		t.Fatalf("only %d batches acknowledged: the load did not run", batches.Load())
	}

	for _, level := range []string{"local", "quorum", "all"} {
		var badKey string
		took, err := wait.Poll(context.Background(), 60*time.Second, 10*time.Millisecond, func() (bool, string) {
			badKey = ""
			for _, p := range live {
				var refs []map[string]string
				for k := range keys {
					refs = append(refs, map[string]string{"ns": ns, "key": fmt.Sprintf("k%04d", k)})
				}
				var out struct{ Values []int64 }
				if code := postJSON(t, "http://"+p.d.addr+"/v1/batch/get", map[string]any{"keys": refs, "consistency": level}, &out); code != 200 {
					return false, fmt.Sprintf("%s: status %d", p.name, code)
				}
				for k, v := range out.Values {
					if v < acked[k].Load() || v > attempted[k].Load() {
						badKey = fmt.Sprintf("k%04d", k)
						return false, fmt.Sprintf("%s reads k%04d = %d at %s; acknowledged %d, attempted %d", p.name, k, v, level, acked[k].Load(), attempted[k].Load())
					}
				}
			}
			return true, ""
		})
		if err != nil {
			if badKey != "" {
				logStores(t, live, ns, badKey, logHoldings(t, procs, live, ns, badKey))
			}
			t.Fatalf("every acknowledged increment counted on every node at %s: %v", level, err)
		}
		t.Logf("every node counts every acknowledged increment at %s (%v)", level, took)
	}
	// In the end each node holds the counters it owns under the new
	// membership, and no more: what it wrote elsewhere and what a1 handed
	// it on leaving are released, and what it owns now but had released
	// before comes back from a co-owner.
	regions := map[string][]string{}
	for _, p := range live {
		regions[p.region] = append(regions[p.region], p.name)
	}
	owns := map[string]int{}
	for k := range keys {
		for _, names := range regions {
			for _, o := range gossip.ShardOwners(change.ShardOf(ns, fmt.Sprintf("k%04d", k), 1), names) {
				owns[o]++
			}
		}
	}
	// Releases and refills need the owners to agree on who owns what, and
	// anti-entropy exchanges that complete: under the race detector they
	// once stalled past a minute (docs/scale.md, known gaps), now they
	// are asserted there too.
	settle := func(what string, off func(p *shardProc, got int) string) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			var bad []string
			for _, p := range live {
				if why := off(p, cachedCounters(t, p.d.addr)); why != "" {
					bad = append(bad, why)
				}
			}
			if len(bad) == 0 {
				t.Logf("%s (%v)", what, time.Since(deadline.Add(-60*time.Second)).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not after 60 s: %s: %v", what, bad)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	settle("every node holds no counter it does not own", func(p *shardProc, got int) string {
		// A few internal counters (a namespace's) may come with them.
		if got > owns[p.name]+5 {
			return fmt.Sprintf("%s holds %d counters and owns %d of %d", p.name, got, owns[p.name], keys)
		}
		return ""
	})
	// A node that owns a shard it released part of takes it back from a
	// co-owner.
	settle("every node holds every counter it owns", func(p *shardProc, got int) string {
		if got < owns[p.name] {
			return fmt.Sprintf("%s holds %d of the %d counters it owns", p.name, got, owns[p.name])
		}
		return ""
	})
}

// logHoldings logs, for a failed check, what each of live holds of ns/key
// (its export record, slots named by writer among all) and its /v1/cluster
// view, and returns the writers' slot ids it saw.
func logHoldings(t *testing.T, all, live []*shardProc, ns, key string) map[string]crdt.NodeID {
	t.Helper()
	ids := map[string]crdt.NodeID{}
	names := map[uint64]string{} // an incarnation's slot id keeps its name's high 32 bits
	for _, p := range all {
		names[uint64(crdt.NodeIDFromName(p.name))>>32] = p.name
	}
	slotRe := regexp.MustCompile(`"node":"(\d+)"`)
	for _, p := range live {
		resp, err := http.Get("http://" + p.d.addr + "/v1/export?ns=" + ns)
		if err != nil {
			t.Logf("%s: export: %v", p.name, err)
			continue
		}
		found := false
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, `"key":"`+key+`"`) {
				continue
			}
			found = true
			line = slotRe.ReplaceAllStringFunc(line, func(m string) string {
				id, _ := strconv.ParseUint(slotRe.FindStringSubmatch(m)[1], 10, 64)
				ids[names[id>>32]] = crdt.NodeID(id)
				return m + "(" + names[id>>32] + ")"
			})
			t.Logf("%s holds %s", p.name, line)
		}
		resp.Body.Close()
		if !found {
			t.Logf("%s holds no record of %s", p.name, key)
		}
		if resp, err := http.Get("http://" + p.d.addr + "/v1/cluster"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("%s sees the cluster as %s", p.name, b)
		}
	}
	return ids
}

// logStores kills procs (SIGKILL: their disks as they are) and logs, from
// each one's Pebble directory, its version vector entries, release marks
// and indexed changes of the spaces of ns/key's shard, one per writer
// name: what a failed check needs to tell a node that never got a change
// from one whose vector claims it.
func logStores(t *testing.T, procs []*shardProc, ns, key string, writers map[string]crdt.NodeID) {
	t.Helper()
	s := change.ShardOf(ns, key, 1)
	for _, p := range procs {
		p.d.cmd.Process.Kill()
		<-p.d.exit
		p.d.exit <- nil
		st, err := store.Open(store.Config{Dir: p.dir})
		if err != nil {
			t.Logf("%s: open store: %v", p.name, err)
			continue
		}
		vvList, _, _, err := st.Recover(func(string, string, store.Record) error { return nil })
		if err != nil {
			t.Logf("%s: recover: %v", p.name, err)
		}
		vv := map[crdt.NodeID]uint64{}
		for _, e := range vvList {
			vv[e.Origin] = e.Seq
		}
		var marks map[crdt.NodeID]struct {
			Shard change.Shard
			Upto  uint64
		}
		st.GetMeta("released", &marks)
		for w, id := range writers {
			sp := s.Space(id)
			var seqs []string
			st.ScanIndex(sp, 0, func(seq uint64, kns, k string) bool {
				if kns == ns && k == key {
					seqs = append(seqs, strconv.FormatUint(seq, 10))
				}
				return true
			})
			t.Logf("%s: space of %s for %s: vector %d, own-id vector %d, mark %+v, indexed changes of %s at %v",
				p.name, w, key, vv[sp], vv[id], marks[sp], key, seqs)
		}
		st.Close()
	}
}
