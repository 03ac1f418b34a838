//go:build linux

package campaign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/countmesh/countmesh/chaos"
)

// Work is one kind of client operation of the campaign's workload.
type Work string

const (
	// WorkEventual: incr/decr of an eventual namespace's key (local), a
	// third of them with an idempotency id.
	WorkEventual Work = "eventual"
	// WorkLikesIncr: an id'd +1 in the exact namespace "likes" (min 0),
	// retried on other nodes with the same id when the outcome is unknown.
	WorkLikesIncr Work = "likes-incr"
	// WorkLikesDecr: a -1 in "likes" (409 at 0), half of them id'd.
	WorkLikesDecr Work = "likes-decr"
	// WorkVotes: an id'd +1 in the exact namespace "votes", nothing else on
	// its keys, retried on other nodes with the same id when the outcome is
	// unknown: the keys on which the checker counts each id exactly.
	WorkVotes Work = "votes"
	// WorkLinIncr: a quorum +1 in the unbounded exact namespace "lin".
	WorkLinIncr Work = "lin-incr"
	// WorkLinRead: a quorum or all read of "lin".
	WorkLinRead Work = "lin-read"
	// WorkLocalRead: a local read of an eventual or "likes" key.
	WorkLocalRead Work = "local-read"
	// WorkWindow: a +1 of the windowed namespace "win" (windows 1m).
	WorkWindow Work = "window"
	// WorkSharded: incr/decr of a key of "sh", an eventual namespace sharded
	// over one node per region (replicas 1; docs/scale.md), at a random
	// node, local, without an id.
	WorkSharded Work = "sharded"
	// WorkRateLimit: one unit of a limit of 50 per 2 s.
	WorkRateLimit Work = "ratelimit"
)

// DefaultWorkload weighs the client operations.
var DefaultWorkload = map[Work]int{
	WorkEventual: 4, WorkLikesIncr: 3, WorkLikesDecr: 2, WorkLinIncr: 2,
	WorkLinRead: 2, WorkLocalRead: 2, WorkWindow: 2, WorkRateLimit: 2, WorkVotes: 2, WorkSharded: 2,
}

// DefaultFaults weighs the faults the nemesis picks.
var DefaultFaults = map[chaos.FaultKind]int{
	chaos.PartitionRegions: 3, chaos.PartitionNodes: 3, chaos.PartitionOneWay: 2, chaos.Kill: 3, chaos.Pause: 2,
	chaos.Wipe: 1, chaos.Join: 1, chaos.Leave: 1, chaos.ClockSkew: 1, chaos.DiskFull: 1, chaos.FsyncError: 1,
	chaos.Forget: 1,
}

// The namespaces and keys of the workload: small key sets, so that bounds
// and linearizability see contention.
const (
	nsEventual = "ev"
	nsLikes    = "likes"
	nsVotes    = "votes"
	nsLin      = "lin"
	nsWindow   = "win"
	nsSharded  = "sh"
	nsRate     = "rl"
	nsProbe    = "probe"

	rateLimit  = 50
	rateWindow = 2 * time.Second
)

var (
	keysEventual = keys("ev-", 16)
	keysLikes    = keys("likes-", 8)
	keysVotes    = keys("votes-", 8)
	keysWindow   = keys("win-", 4)
	keysSharded  = keys("sh-", 12)
	keysRate     = keys("rl-", 3)
)

func keys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// Config configures a campaign.
type Config struct {
	// Countd is the countd binary to run (built with any tags).
	Countd string
	// Seed drives the nemesis and the clients.
	Seed uint64
	// Duration bounds the fault cycles; Cycles, when positive, stops after
	// that many (whichever comes first, Duration defaulting to Cycles x 10 s).
	Duration time.Duration
	Cycles   int
	// Secure runs the mesh with mutual TLS, a gossip key and API tokens.
	Secure bool
	// Clients is the number of client goroutines (0: 8).
	Clients int
	// Faults and Workload weigh the nemesis's and the clients' choices
	// (nil: DefaultFaults, DefaultWorkload).
	Faults   map[chaos.FaultKind]int
	Workload map[Work]int
	// ResultsDir receives <seed>.jsonl, and the nodes' logs on a failure.
	ResultsDir string
	// Logf reports progress.
	Logf func(string, ...any)
}

// Result is what a campaign found.
type Result struct {
	History *chaos.History
	Report  chaos.Report
	Cycles  int
	// PartitionHeld: the probe written on one side of the first partition
	// was not seen on the other side during the cut, and was after it.
	PartitionHeld bool
	// Summary is the one-line summary (it ends with the checker's).
	Summary string
	// Path is the history's JSON lines file.
	Path string
	// Unready counts the cycles after which some node was not ready
	// within the settle bound.
	Unready int
	// Refusals counts the lines of the nodes' logs that report peer input
	// refused as invalid ("invalid peer data"). Nothing in a campaign
	// forges peer input, so each is a node refusing a peer's honest data:
	// not a check (the counts are checked as above), but the trace that
	// led to the lost shard of docs/chaos.md.
	Refusals int
	// Forgets counts the forget faults by answer: done (200), refused
	// (409 or 503: a member down or cut off, nothing to forget) and failed
	// (no answer: the node went down or was cut off meanwhile).
	Forgets struct{ Done, Refused, Failed int }
}

// campaign is one run: the mesh, the nemesis state and the clients' ops.
type campaign struct {
	cfg   Config
	m     *mesh
	start time.Time

	// Written by the nemesis goroutine only (Run's).
	faults   []chaos.Fault
	maxSides int
	probeKey string
	held     bool
	unready  int
	// forgets counts the forget faults by answer.
	forgets struct{ done, refused, failed int }
}

// Run runs a campaign: a mesh of 5 nodes in 3 regions, clients, a nemesis
// injecting one fault a cycle until the duration or cycle count is
// reached, then heal, settle, final reads and Check. It returns an error
// when the harness itself failed (the mesh could not be built, the
// partition did not hold, the nodes did not converge).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Clients == 0 {
		cfg.Clients = 8
	}
	if cfg.Faults == nil {
		cfg.Faults = DefaultFaults
	}
	if cfg.Workload == nil {
		cfg.Workload = DefaultWorkload
	}
	if cfg.Duration == 0 {
		cfg.Duration = time.Duration(max(cfg.Cycles, 1)) * 10 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	sweep(0, cfg.Logf)
	m, err := newMesh(cfg.Countd, cfg.Secure, cfg.Logf)
	if err != nil {
		return nil, err
	}
	defer m.close()
	c := &campaign{cfg: cfg, m: m, start: time.Now()}
	if err := c.setUp(ctx); err != nil {
		c.keepLogs()
		return nil, err
	}

	// Clients until the nemesis is done; requests in flight finish.
	var stop sync.WaitGroup
	var stopping atomic.Bool // the clients poll it between operations
	clients := make([]*client, cfg.Clients)
	for i := range clients {
		clients[i] = &client{id: i, c: c, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1))}
		stop.Add(1)
		go func(cl *client) {
			defer stop.Done()
			cl.loop(&stopping)
		}(clients[i])
	}
	cycles, nemErr := c.nemesis(ctx)
	stopping.Store(true)
	stop.Wait()
	if err := c.healAll(); err != nil {
		nemErr = errors.Join(nemErr, err)
	}

	h := &chaos.History{
		Seed:       cfg.Seed,
		Faults:     c.faults,
		Bounds:     map[string]chaos.Bounds{nsLikes: {Min: ptr(int64(0))}},
		LossWindow: 3 * time.Second,
	}
	for _, cl := range clients {
		h.Ops = append(h.Ops, cl.ops...)
	}
	sort.SliceStable(h.Ops, func(i, j int) bool { return h.Ops[i].Invoke.Before(h.Ops[j].Invoke) })
	h.RateLimitSlack = c.slack()
	h.Regions = m.regions()
	if err := m.waitReady(ctx, 60*time.Second); err != nil {
		nemErr = errors.Join(nemErr, err)
	}
	if err := c.converge(ctx, h); err != nil {
		nemErr = errors.Join(nemErr, err)
	}
	if err := c.finalSeries(ctx, h); err != nil {
		nemErr = errors.Join(nemErr, err)
	}
	res := &Result{History: h, Cycles: cycles, PartitionHeld: c.held, Unready: c.unready, Refusals: c.refusals()}
	res.Forgets.Done, res.Forgets.Refused, res.Forgets.Failed = c.forgets.done, c.forgets.refused, c.forgets.failed
	res.Report = chaos.Check(h)
	res.Summary = c.summary(h, res)
	if cfg.ResultsDir != "" {
		res.Path, err = writeHistory(cfg.ResultsDir, h)
		nemErr = errors.Join(nemErr, err)
	}
	if !res.Report.OK() || nemErr != nil || c.unready > 0 {
		// A node that stayed unready is a post-mortem too.
		c.keepLogs()
	}
	return res, nemErr
}

func ptr[T any](v T) *T { return &v }

// setUp starts 5 nodes in regions r1 (2), r2 (2), r3 (1), waits until they
// are ready and see each other, and creates the namespaces everywhere.
func (c *campaign) setUp(ctx context.Context) error {
	for _, r := range []string{"r1", "r1", "r2", "r2", "r3"} {
		if _, err := c.m.add(r); err != nil {
			return err
		}
	}
	if err := c.m.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	if err := c.waitMembers(ctx, 30*time.Second); err != nil {
		return err
	}
	first := c.m.members()[0]
	for _, ns := range []struct{ name, body string }{
		{nsEventual, `{"type":"eventual"}`},
		{nsProbe, `{"type":"eventual"}`},
		{nsLikes, `{"type":"exact","min":0}`},
		{nsVotes, `{"type":"exact"}`},
		{nsLin, `{"type":"exact"}`},
		{nsWindow, `{"type":"eventual","windows":["1m"]}`},
		{nsSharded, `{"type":"eventual","replicas":1}`},
	} {
		if err := retry(ctx, 10*time.Second, func() error {
			resp, body, err := c.m.do(ctx, first, http.MethodPut, "/v1/namespaces/"+ns.name, []byte(ns.body))
			if err != nil {
				return err
			}
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("PUT namespace %s: %d %s", ns.name, resp.StatusCode, body)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	// A first write on a node that has not seen the config yet would
	// create the namespace as eventual: wait until every node has it.
	return retry(ctx, 30*time.Second, func() error {
		for _, n := range c.m.members() {
			for _, ns := range []string{nsLikes, nsVotes, nsLin, nsWindow, nsSharded} {
				resp, body, err := c.m.do(ctx, n, http.MethodGet, "/v1/namespaces/"+ns, nil)
				if err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s has no namespace %s yet: %d %s", n.name, ns, resp.StatusCode, body)
				}
			}
		}
		return nil
	})
}

// waitMembers waits until every running member lists every member as alive.
func (c *campaign) waitMembers(ctx context.Context, timeout time.Duration) error {
	return retry(ctx, timeout, func() error {
		want := len(c.m.members())
		for _, n := range c.m.runningMembers() {
			resp, body, err := c.m.do(ctx, n, http.MethodGet, "/v1/cluster", nil)
			if err != nil {
				return err
			}
			var cl struct {
				Members []struct{ Name, State string }
			}
			if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &cl) != nil {
				return fmt.Errorf("%s: /v1/cluster: %d %s", n.name, resp.StatusCode, body)
			}
			alive := 0
			for _, mb := range cl.Members {
				if mb.State == "alive" {
					alive++
				}
			}
			if alive < want {
				return fmt.Errorf("%s sees %d alive members of %d", n.name, alive, want)
			}
		}
		return nil
	})
}

// retry calls f until it succeeds or timeout passes.
func retry(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("chaos: gave up after %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nemesis runs fault cycles: inject, hold 0.3-2 s, heal, settle. The first
// cycle is always a partition of the regions that checks the cut holds.
func (c *campaign) nemesis(ctx context.Context) (int, error) {
	rng := rand.New(rand.NewPCG(c.cfg.Seed, 0))
	deadline := c.start.Add(c.cfg.Duration)
	cycles := 0
	for time.Now().Before(deadline) && ctx.Err() == nil && (c.cfg.Cycles <= 0 || cycles < c.cfg.Cycles) {
		kind := chaos.PartitionRegions
		if cycles > 0 {
			kind = c.pick(rng)
		}
		hold := 300*time.Millisecond + time.Duration(rng.Int64N(int64(1700*time.Millisecond)))
		f, heal, err := c.inject(rng, kind)
		if err != nil {
			return cycles, fmt.Errorf("cycle %d: inject %s: %w", cycles+1, kind, err)
		}
		if cycles == 0 {
			if err := c.probe(ctx, f); err != nil {
				heal()
				return cycles, err
			}
		} else {
			time.Sleep(hold)
		}
		if heal != nil {
			if err := heal(); err != nil {
				return cycles, fmt.Errorf("cycle %d: heal %s: %w", cycles+1, kind, err)
			}
			f.End = time.Now()
		}
		c.faults = append(c.faults, f)
		cycles++
		if stuck, err := c.m.waitReadyNames(ctx, 15*time.Second); err != nil {
			// A node whose store failed stays unready until restarted, as
			// its log says: do what an operator would, once per cycle.
			c.unready++
			c.cfg.Logf("chaos: cycle %d (%s): %v; restarting them", cycles, kind, err)
			for _, n := range stuck {
				if err := c.m.restart(n, nil); err != nil {
					return cycles, fmt.Errorf("cycle %d: restart unready %s: %w", cycles, n.name, err)
				}
			}
		}
		if cycles%50 == 0 {
			c.cfg.Logf("chaos: %d cycles, %v", cycles, time.Since(c.start).Round(time.Second))
		}
	}
	return cycles, nil
}

// pick chooses a fault kind by weight among those possible now: join while
// fewer than 6 members, leave while more than 4, node faults while a node
// runs.
func (c *campaign) pick(rng *rand.Rand) chaos.FaultKind {
	members := len(c.m.members())
	var kinds []chaos.FaultKind
	total := 0
	for k, w := range c.cfg.Faults {
		if w <= 0 || (k == chaos.Join && members >= 6) || (k == chaos.Leave && members <= 4) {
			continue
		}
		kinds = append(kinds, k)
		total += w
	}
	if total == 0 {
		return chaos.PartitionNodes
	}
	slices.Sort(kinds) // map order is random; the seed must decide
	x := rng.IntN(total)
	for _, k := range kinds {
		if x -= c.cfg.Faults[k]; x < 0 {
			return k
		}
	}
	return kinds[len(kinds)-1]
}

func names(ns []*member) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.name
	}
	return out
}

// inject injects one fault and returns it (Start set) with its heal
// (nil: nothing to heal, a join or a leave).
func (c *campaign) inject(rng *rand.Rand, kind chaos.FaultKind) (chaos.Fault, func() error, error) {
	m := c.m
	f := chaos.Fault{Kind: kind}
	members := m.members()
	running := m.runningMembers()
	if len(running) == 0 {
		return f, nil, errors.New("no node runs")
	}
	target := running[rng.IntN(len(running))]
	restartClean := func() error { return m.restart(target, nil) }
	var err error
	var heal func() error
	switch kind {
	case chaos.PartitionRegions, chaos.PartitionNodes:
		var sides [][]*member
		if kind == chaos.PartitionRegions {
			sides = regionSides(rng, members)
		} else {
			shuffled := slices.Clone(members)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			k := 1 + rng.IntN(len(shuffled)/2)
			sides = [][]*member{shuffled[:k], shuffled[k:]}
		}
		for _, s := range sides {
			f.Groups = append(f.Groups, names(s))
		}
		c.maxSides = max(c.maxSides, len(sides))
		f.Start = time.Now()
		for i, a := range sides {
			for j, b := range sides {
				if i != j {
					if err = m.cut(a, b); err != nil {
						break
					}
				}
			}
		}
		heal = m.healNet
	case chaos.PartitionOneWay:
		shuffled := slices.Clone(members)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		k := 2 + rng.IntN(2)
		f.Nodes = names(shuffled[:min(k, len(shuffled))])
		c.maxSides = max(c.maxSides, 2)
		f.Start = time.Now()
		err = m.cut(shuffled[:1], shuffled[1:min(k, len(shuffled))])
		heal = m.healNet
	case chaos.Kill:
		f.Nodes = []string{target.name}
		f.Start = time.Now()
		err = m.stop(target, syscall.SIGKILL, down, 5*time.Second)
		heal = func() error { return m.start(target) }
	case chaos.Pause:
		f.Nodes = []string{target.name}
		f.Start = time.Now()
		err = m.signal(target, syscall.SIGSTOP)
		heal = func() error { return m.signal(target, syscall.SIGCONT) }
	case chaos.Wipe:
		f.Nodes = []string{target.name}
		f.Start = time.Now()
		if err = m.stop(target, syscall.SIGKILL, down, 5*time.Second); err == nil {
			err = os.RemoveAll(target.dataDir)
			m.markWiped(target)
		}
		heal = func() error { return m.start(target) }
	case chaos.Join:
		region := fmt.Sprintf("r%d", 1+rng.IntN(3))
		f.Start = time.Now()
		var n *member
		if n, err = m.add(region); err == nil {
			f.Nodes = []string{n.name}
			if err = m.waitReady(context.Background(), 30*time.Second); err == nil {
				f.End = time.Now()
			}
		}
	case chaos.Leave:
		f.Nodes = []string{target.name}
		f.Start = time.Now()
		err = m.stop(target, syscall.SIGTERM, gone, 15*time.Second)
	case chaos.ClockSkew:
		skew := time.Duration(100+rng.IntN(301)) * time.Millisecond
		if rng.IntN(2) == 0 {
			skew = -skew
		}
		f.Nodes, f.Skew = []string{target.name}, skew
		f.Start = time.Now()
		err = m.restart(target, []string{fmt.Sprintf("%s=%+dms", envClockOffset, skew.Milliseconds())})
		heal = restartClean
	case chaos.DiskFull:
		f.Nodes = []string{target.name}
		f.Start = time.Now()
		err = fill(target.fillFile)
		heal = func() error {
			if err := os.Remove(target.fillFile); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return restartClean()
		}
	case chaos.Forget:
		// A node gone for good, or one wiped since the start (its earlier
		// incarnations): what an operator forgets. Refused (409) while a
		// member is down or cut off, which the faults make common.
		cands := m.forgettable()
		if len(cands) == 0 {
			cands = []string{target.name} // nothing to forget: refused
		}
		f.Nodes = []string{cands[rng.IntN(len(cands))], target.name}
		// The nemesis knows which nodes left for good, as an operator
		// would: it says "gone" for those only.
		gone := !slices.Contains(names(m.members()), f.Nodes[0])
		f.Start = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		var resp *http.Response
		var body []byte
		resp, body, err = m.do(ctx, target, http.MethodPost, "/v1/cluster/forget", []byte(fmt.Sprintf(`{"node":%q,"gone":%v}`, f.Nodes[0], gone)))
		cancel()
		f.End = time.Now()
		switch {
		case err != nil:
			c.forgets.failed++ // the node was cut off or went down meanwhile
			err = nil
		case resp.StatusCode == http.StatusOK:
			c.forgets.done++
			c.cfg.Logf("chaos: forgot %s at %s: %s", f.Nodes[0], target.name, strings.TrimSpace(string(body)))
		case resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusServiceUnavailable:
			c.forgets.refused++
		default:
			err = fmt.Errorf("forget %s at %s: %d %s", f.Nodes[0], target.name, resp.StatusCode, body)
		}
	case chaos.FsyncError:
		f.Nodes = []string{target.name}
		f.Start = time.Now()
		err = os.WriteFile(target.faultFile, nil, 0o600)
		heal = func() error {
			if err := os.Remove(target.faultFile); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return restartClean()
		}
	default:
		return f, nil, fmt.Errorf("unknown fault kind %q", kind)
	}
	if err != nil && heal != nil {
		heal()
	}
	return f, heal, err
}

// regionSides splits the members by region into 2 or 3 sides.
func regionSides(rng *rand.Rand, members []*member) [][]*member {
	byRegion := map[string][]*member{}
	var regions []string
	for _, n := range members {
		if byRegion[n.region] == nil {
			regions = append(regions, n.region)
		}
		byRegion[n.region] = append(byRegion[n.region], n)
	}
	sort.Strings(regions)
	rng.Shuffle(len(regions), func(i, j int) { regions[i], regions[j] = regions[j], regions[i] })
	if len(regions) < 2 {
		return [][]*member{members}
	}
	if len(regions) >= 3 && rng.IntN(2) == 0 {
		var sides [][]*member
		for _, r := range regions {
			sides = append(sides, byRegion[r])
		}
		return sides
	}
	var rest []*member
	for _, r := range regions[1:] {
		rest = append(rest, byRegion[r]...)
	}
	return [][]*member{byRegion[regions[0]], rest}
}

// fill writes a file until the disk is full (bounded: 1 GiB).
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := 0; i < 1024; i++ {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
	return errors.New("chaos: the disk did not fill within 1 GiB")
}

// probe checks that the first partition holds: a value written on one side
// is not seen on the other during the cut (and is seen after, checked by
// converge).
func (c *campaign) probe(ctx context.Context, f chaos.Fault) error {
	var sides [][]*member
	for _, g := range f.Groups {
		var s []*member
		for _, n := range c.m.runningMembers() {
			if slices.Contains(g, n.name) {
				s = append(s, n)
			}
		}
		sides = append(sides, s)
	}
	if len(sides) < 2 || len(sides[0]) == 0 || len(sides[1]) == 0 {
		return fmt.Errorf("chaos: partition probe: sides %v have no running node", f.Groups)
	}
	a, b := sides[0][0], sides[1][0]
	c.probeKey = "p1"
	path := "/v1/counters/" + nsProbe + "/" + c.probeKey
	if err := retry(ctx, 5*time.Second, func() error {
		resp, body, err := c.m.do(ctx, a, http.MethodPost, path+"/incr", []byte(`{"by":1,"consistency":"local"}`))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("probe write on %s: %d %s", a.name, resp.StatusCode, body)
		}
		return nil
	}); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond) // a healthy mesh replicates in well under 100 ms
	var v int64
	if err := retry(ctx, 5*time.Second, func() error {
		var err error
		v, err = c.read(ctx, b, nsProbe, c.probeKey)
		return err
	}); err != nil {
		return err
	}
	if v != 0 {
		return fmt.Errorf("chaos: the partition %v did not hold: %s read %d 1.5 s after %s wrote 1 on the other side", f.Groups, b.name, v, a.name)
	}
	c.held = true
	return nil
}

// read reads one counter locally.
func (c *campaign) read(ctx context.Context, n *member, ns, key string) (int64, error) {
	resp, body, err := c.m.do(ctx, n, http.MethodGet, "/v1/counters/"+ns+"/"+url.PathEscape(key)+"?consistency=local", nil)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("read %s/%s on %s: %d %s", ns, key, n.name, resp.StatusCode, body)
	}
	var v struct{ Value int64 }
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, err
	}
	return v.Value, nil
}

// healAll undoes whatever is still injected (after an error): network
// rules, pauses, fault files, and starts every member that is down.
func (c *campaign) healAll() error {
	errs := []error{c.m.healNet()}
	for _, n := range c.m.members() {
		os.Remove(n.fillFile)
		os.Remove(n.faultFile)
		c.m.mu.Lock()
		st, env := n.state, n.env
		c.m.mu.Unlock()
		switch {
		case st == paused:
			errs = append(errs, c.m.signal(n, syscall.SIGCONT))
		case st == down:
			errs = append(errs, c.m.start(n))
		case env != nil:
			errs = append(errs, c.m.restart(n, nil))
		}
	}
	return errors.Join(errs...)
}

// converge waits (up to 60 s) until every member reads the same value for
// every key, then fills h.Final and h.Nodes.
func (c *campaign) converge(ctx context.Context, h *chaos.History) error {
	type nk struct{ ns, key string }
	var all []nk
	for _, k := range keysEventual {
		all = append(all, nk{nsEventual, k})
	}
	for _, k := range keysLikes {
		all = append(all, nk{nsLikes, k})
	}
	for _, k := range keysVotes {
		all = append(all, nk{nsVotes, k})
	}
	lin := map[string]bool{}
	for _, op := range h.Ops {
		if op.NS == nsLin && !lin[op.Key] {
			lin[op.Key] = true
			all = append(all, nk{nsLin, op.Key})
		}
	}
	for _, k := range keysWindow {
		all = append(all, nk{nsWindow, k})
	}
	for _, k := range keysSharded {
		all = append(all, nk{nsSharded, k})
	}
	var final map[string]map[string]int64
	var lastDiff string
	var diffs []string // every key some node reads differently, "ns/key", in the last round
	err := retry(ctx, 60*time.Second, func() error {
		final = map[string]map[string]int64{}
		for _, n := range c.m.members() {
			final[n.name] = map[string]int64{}
			for _, k := range all {
				v, err := c.read(ctx, n, k.ns, k.key)
				if err != nil {
					return err
				}
				final[n.name][k.ns+"/"+k.key] = v
			}
			if c.probeKey != "" {
				v, err := c.read(ctx, n, nsProbe, c.probeKey)
				if err != nil {
					return err
				}
				if v != 1 {
					return fmt.Errorf("%s reads the partition probe as %d, want 1", n.name, v)
				}
			}
		}
		var ref map[string]int64
		refName := ""
		diffs = diffs[:0]
		for name, vals := range final {
			if ref == nil {
				ref, refName = vals, name
				continue
			}
			for k, v := range vals {
				if ref[k] != v {
					if !slices.Contains(diffs, k) {
						diffs = append(diffs, k)
					}
					if lastDiff == "" || len(diffs) == 1 {
						// Every node's reading of the key, for the post-mortem.
						var all []string
						for _, n := range names(c.m.members()) {
							all = append(all, fmt.Sprintf("%s=%d", n, final[n][k]))
						}
						lastDiff = fmt.Sprintf("%s reads %s = %d, %s reads %d (all: %s)", name, k, v, refName, ref[k], strings.Join(all, " "))
					}
				}
			}
		}
		if len(diffs) > 0 {
			return fmt.Errorf("%s; %d keys differ", lastDiff, len(diffs))
		}
		return nil
	})
	h.Final = final
	h.Nodes = names(c.m.members())
	if err != nil {
		c.dumpDiffs(ctx, diffs)
		return fmt.Errorf("chaos: the nodes did not converge: %w", err)
	}
	return nil
}

// maxDumpedKeys bounds the keys of one namespace whose states dumpDiffs
// logs (the exports kept hold every key).
const maxDumpedKeys = 3

// dumpDiffs runs dumpStates for every namespace of diffs ("ns/key"), with
// the first keys of each.
func (c *campaign) dumpDiffs(ctx context.Context, diffs []string) {
	byNS := map[string][]string{}
	for _, d := range slices.Sorted(slices.Values(diffs)) {
		ns, key, _ := strings.Cut(d, "/")
		if len(byNS[ns]) < maxDumpedKeys {
			byNS[ns] = append(byNS[ns], key)
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		c.dumpStates(ctx, ns, byNS[ns]...)
	}
	c.dumpViews(ctx)
}

// dumpViews logs each node's view of the mesh (GET /v1/cluster): which
// members it counts in which state. Owners of a sharded namespace's
// counter follow each node's view, so a divergence of one needs them.
func (c *campaign) dumpViews(ctx context.Context) {
	for _, n := range c.m.members() {
		resp, body, err := c.m.do(ctx, n, http.MethodGet, "/v1/cluster", nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			c.cfg.Logf("chaos: the view of %s: %v %s", n.name, err, body)
			continue
		}
		var view struct {
			Node    struct{ Name, Region string }
			Members []struct{ Name, Region, State string }
		}
		if err := json.Unmarshal(body, &view); err != nil {
			c.cfg.Logf("chaos: the view of %s: %v", n.name, err)
			continue
		}
		var ms []string
		for _, m := range view.Members {
			ms = append(ms, fmt.Sprintf("%s(%s)=%s", m.Name, m.Region, m.State))
		}
		c.cfg.Logf("chaos: %s (%s) sees %s", view.Node.Name, view.Node.Region, strings.Join(ms, " "))
	}
}

// dumpStates keeps every node's export of namespace ns next to the history
// and logs each node's CRDT state of keys: what a post-mortem of a
// divergence needs (which slots differ, and on which nodes).
func (c *campaign) dumpStates(ctx context.Context, ns string, keys ...string) {
	for _, n := range c.m.members() {
		resp, body, err := c.m.do(ctx, n, http.MethodGet, "/v1/export?ns="+url.QueryEscape(ns), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			c.cfg.Logf("chaos: export of %s from %s failed: %v %s", ns, n.name, err, body)
			continue
		}
		if c.cfg.ResultsDir != "" {
			path := filepath.Join(c.cfg.ResultsDir, fmt.Sprintf("%d-%s-%s.ndjson", c.cfg.Seed, n.name, ns))
			if err := os.WriteFile(path, body, 0o644); err != nil {
				c.cfg.Logf("chaos: keep the export: %v", err)
			}
		}
		for line := range bytes.Lines(body) {
			var rec struct {
				Type, NS, Key string
			}
			if json.Unmarshal(line, &rec) == nil && rec.Type == "counter" && rec.NS == ns && slices.Contains(keys, rec.Key) {
				c.cfg.Logf("chaos: %s holds %s/%s as %s", n.name, ns, rec.Key, bytes.TrimSpace(line))
			}
		}
	}
}

// finalSeries reads each windowed key's series total over the whole run.
func (c *campaign) finalSeries(ctx context.Context, h *chaos.History) error {
	h.FinalSeries = map[string]int64{}
	members := c.m.members()
	if len(members) == 0 {
		return errors.New("chaos: no member left to read the series")
	}
	from := c.start.Add(-2 * time.Minute).UTC().Format(time.RFC3339)
	to := time.Now().Add(2 * time.Minute).UTC().Format(time.RFC3339)
	for _, k := range keysWindow {
		path := fmt.Sprintf("/v1/counters/%s/%s/series?step=1m&from=%s&to=%s", nsWindow, k, from, to)
		if err := retry(ctx, 10*time.Second, func() error {
			resp, body, err := c.m.do(ctx, members[0], http.MethodGet, path, nil)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("series %s: %d %s", k, resp.StatusCode, body)
			}
			var s struct{ Total int64 }
			if err := json.Unmarshal(body, &s); err != nil {
				return err
			}
			h.FinalSeries[nsWindow+"/"+k] = s.Total
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// slack is the rate-limit over-admission factor the run allows: the sides
// of the largest partition, at least 2 once a partition or a node fault
// (an owner may die or restart and lose its windows) happened.
func (c *campaign) slack() int64 {
	s := int64(1)
	if len(c.faults) > 0 {
		s = 2
	}
	return max(s, int64(c.maxSides))
}

// summary is the one-line summary: seed, cycles, faults by kind, ops by
// outcome, the partition check and the checker's verdicts.
func (c *campaign) summary(h *chaos.History, r *Result) string {
	fk := map[chaos.FaultKind]int{}
	for _, f := range h.Faults {
		fk[f.Kind]++
	}
	var kinds []string
	for k, n := range fk {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	oc := map[chaos.Outcome]int{}
	for _, o := range h.Ops {
		oc[o.Outcome]++
	}
	held := "not-run"
	if c.probeKey != "" {
		held = "fail"
		if r.PartitionHeld {
			held = "held"
		}
	}
	return fmt.Sprintf("chaos: seed=%d secure=%v cycles=%d faults{%s} ops{ok=%d fail=%d unknown=%d} partition-check=%s unready-cycles=%d peer-refusals=%d forgets{done=%d refused=%d failed=%d} | %s",
		h.Seed, c.cfg.Secure, r.Cycles, strings.Join(kinds, " "), oc[chaos.OK], oc[chaos.Fail], oc[chaos.Unknown], held, r.Unready, r.Refusals,
		r.Forgets.Done, r.Forgets.Refused, r.Forgets.Failed, r.Report.Summary())
}

// refusals counts the lines of the nodes' logs (every incarnation's)
// that report peer input refused as invalid.
func (c *campaign) refusals() int {
	logs, _ := filepath.Glob(filepath.Join(c.m.work, "*.log"))
	n := 0
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		for line := range bytes.Lines(b) {
			if bytes.Contains(line, []byte("invalid peer data")) {
				n++
			}
		}
	}
	return n
}

// keepLogs copies the nodes' logs next to the history.
func (c *campaign) keepLogs() {
	if c.cfg.ResultsDir == "" {
		return
	}
	dir := filepath.Join(c.cfg.ResultsDir, fmt.Sprintf("%d-logs", c.cfg.Seed))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(c.m.work, "*.log"))
	for _, l := range logs {
		src, err := os.Open(l)
		if err != nil {
			continue
		}
		if dst, err := os.Create(filepath.Join(dir, filepath.Base(l))); err == nil {
			io.Copy(dst, src)
			dst.Close()
		}
		src.Close()
	}
	c.cfg.Logf("chaos: the nodes' logs are in %s", dir)
}

// writeHistory writes the history as JSON lines: {"history":…} first, then
// one {"fault":…} per fault and one {"op":…} per operation.
func writeHistory(dir string, h *chaos.History) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("%d.jsonl", h.Seed))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	errs := []error{chaos.WriteHistory(f, h)}
	errs = append(errs, f.Close())
	return path, errors.Join(errs...)
}
