//go:build e2e

package e2e

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/countmesh/countmesh/internal/wait"
)

// runID keeps the counters of one run apart from those of earlier runs
// against the same mesh.
var runID = fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)

// round is one measurement of TestConvergenceUnderLoad: the batches that
// write its counters, and when the last of them was acknowledged.
type round struct {
	id       int
	keys     []string
	inflight atomic.Int64 // batches planned for this round and not finished
	closed   atomic.Bool  // no new batch may join
	lastAck  atomic.Int64 // unix nanoseconds
}

type roundResult struct {
	Round   int     `json:"round"`
	Exact   bool    `json:"exact"` // no outcome was unknown: the targets are exact
	ConvMS  float64 `json:"convergence_ms"`
	Total   int64   `json:"acked_increments"`
	Slowest string  `json:"slowest_node"`
	conv    time.Duration
}

// TestConvergenceUnderLoad measures, while all six nodes take a paced
// load, how long after a round's last acknowledged write every node reads
// the round's exact totals.
func TestConvergenceUnderLoad(t *testing.T) {
	cl := needMesh(t)
	cl.requireHealthy(t)
	cfg := defaultLoad(t)
	rounds := envInt(t, "COUNTMESH_E2E_ROUNDS", 100)
	roundDur := envDuration(t, "COUNTMESH_E2E_ROUND", time.Second)
	const (
		ns          = "conv"
		roundKeys   = 4    // counters measured per round, written by every node
		hotKeys     = 1000 // counters shared by every round: the bulk of the traffic
		bound       = 10 * time.Second
		pollEvery   = 5 * time.Millisecond
		maxInflight = 30 * time.Second
	)
	hot := make([]string, hotKeys)
	for i := range hot {
		hot[i] = fmt.Sprintf("%s-h%04d", runID, i)
	}
	newRound := func(id int) *round {
		r := &round{id: id}
		for k := range roundKeys {
			r.keys = append(r.keys, fmt.Sprintf("%s-r%03d-%d", runID, id, k))
		}
		return r
	}
	var cur atomic.Pointer[round]
	cur.Store(newRound(0))
	// One op in five goes to the round's counters, the rest to the hot set.
	plan := func(n *node, rnd *rand.Rand, size int) plan {
		var r *round
		for {
			r = cur.Load()
			r.inflight.Add(1)
			if !r.closed.Load() {
				break
			}
			r.inflight.Add(-1)
		}
		keys := make([]string, size)
		for j := range keys {
			if j%5 == 0 {
				keys[j] = r.keys[(j/5)%roundKeys]
			} else {
				keys[j] = hot[rnd.IntN(hotKeys)]
			}
		}
		return plan{keys: keys,
			onAck:   func(at time.Time) { casMax(&r.lastAck, at.UnixNano()) },
			release: func() { r.inflight.Add(-1) }}
	}
	l := startLoad(t, cl, ns, cfg, plan)

	// measure waits for r's batches to finish, then polls every node until
	// it reads r's totals.
	measure := func(r *round) (roundResult, error) {
		ctx := context.Background()
		res := roundResult{Round: r.id}
		if _, err := wait.Poll(ctx, maxInflight, 2*time.Millisecond, func() (bool, string) {
			return r.inflight.Load() == 0, fmt.Sprintf("%d batches of round %d in flight", r.inflight.Load(), r.id)
		}); err != nil {
			return res, err
		}
		if r.lastAck.Load() == 0 {
			return res, fmt.Errorf("round %d: no batch was acknowledged", r.id)
		}
		t0 := time.Unix(0, r.lastAck.Load())
		want := map[string][2]int64{}
		res.Exact = true
		for _, k := range r.keys {
			s := l.keys.get(k)
			want[k] = [2]int64{s.acked.Load(), s.attempted()}
			res.Total += s.acked.Load()
			res.Exact = res.Exact && s.unknown.Load() == 0
		}
		if !res.Exact {
			// Targets are ranges: wait until the nodes agree within them.
			_, err := wait.Poll(ctx, bound, 20*time.Millisecond, func() (bool, string) { return converged(ctx, cl, ns, want) })
			return res, err
		}
		doneAt := make([]time.Time, len(cl.nodes))
		errs := make([]error, len(cl.nodes))
		var wg sync.WaitGroup
		for i, n := range cl.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pending := append([]string(nil), r.keys...)
				for {
					var still []string
					var last error
					for _, k := range pending {
						v, err := value(ctx, n, ns, k)
						now := time.Now()
						switch {
						case err != nil:
							last = err
							still = append(still, k)
						case v > want[k][0]:
							errs[i] = fmt.Errorf("round %d: %s reads %s = %d, more than the %d increments sent", r.id, n.name, k, v, want[k][0])
							return
						case v < want[k][0]:
							still = append(still, k)
						default:
							doneAt[i] = now
						}
					}
					if pending = still; len(pending) == 0 {
						return
					}
					if time.Since(t0) > bound {
						errs[i] = fmt.Errorf("round %d: %s has not converged %v after the last write: %d of %d counters behind (last error: %v)",
							r.id, n.name, bound, len(pending), roundKeys, last)
						return
					}
					time.Sleep(pollEvery) // polling interval, not synchronisation
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return res, err
			}
		}
		for i, d := range doneAt {
			if c := d.Sub(t0); c >= res.conv {
				res.conv, res.Slowest = c, cl.nodes[i].name
			}
		}
		res.ConvMS = millis(res.conv)
		return res, nil
	}

	var (
		mu      sync.Mutex // guards results and inexact
		results []roundResult
		inexact int
		mwg     sync.WaitGroup
	)
	maxRounds := rounds + rounds/5
	started := time.Now()
	closed := 0
	for {
		mu.Lock()
		enough := closed-inexact >= rounds || closed >= maxRounds
		mu.Unlock()
		if enough || t.Failed() {
			break // a failed measurement ends the test early: later ones tell nothing new
		}
		timer := time.NewTimer(roundDur) // the round's load duration: part of the scenario
		<-timer.C
		prev := cur.Load()
		cur.Store(newRound(prev.id + 1))
		prev.closed.Store(true)
		closed++
		mwg.Add(1)
		go func() {
			defer mwg.Done()
			res, err := measure(prev)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				inexact++
				return
			}
			if !res.Exact {
				inexact++
			}
			results = append(results, res)
		}()
	}
	// The round now current is not measured; its load keeps the nodes busy
	// until the last measurement ends.
	mwg.Wait()
	l.stop()
	loadTime := l.ended.Sub(l.started)
	rate := float64(l.acked()) / loadTime.Seconds()
	t.Logf("load: %.0f increments/s reached (target %.0f) over %v, batches of %d, %d writers per node; %s",
		rate, cfg.rate, loadTime.Round(time.Millisecond), cfg.batch, cfg.writers, l.summary())

	// Every counter written, the hot set included, converges exactly.
	want := l.keys.snapshot()
	took, err := wait.Poll(context.Background(), bound, 50*time.Millisecond, func() (bool, string) {
		return converged(context.Background(), cl, ns, want)
	})
	if err != nil {
		t.Fatalf("the %d counters written did not converge on every node: %v", len(want), err)
	}
	t.Logf("every node reads exactly the acknowledged totals of all %d counters (%d increments); checked in %v", len(want), l.acked(), took.Round(time.Millisecond))

	var convs []time.Duration
	for _, r := range results {
		if r.Exact {
			convs = append(convs, r.conv)
		}
	}
	d := summarise(convs)
	t.Logf("convergence after the last acknowledged write, %d measurements in %v: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (poll interval %v)",
		d.N, time.Since(started).Round(time.Second), d.P50, d.P90, d.P99, d.Max, pollEvery)
	if d.N < rounds {
		t.Errorf("only %d exact measurements of %d wanted (%d rounds had unknown outcomes or failed)", d.N, rounds, inexact)
	}
	slowest := map[string]int{}
	for _, r := range results {
		slowest[r.Slowest]++
	}
	writeResult(t, "convergence", map[string]any{
		"target_increments_per_s":  cfg.rate,
		"reached_increments_per_s": int64(rate),
		"batch_ops":                cfg.batch,
		"writers_per_node":         cfg.writers,
		"round_s":                  roundDur.Seconds(),
		"counters_per_round":       roundKeys,
		"hot_counters":             hotKeys,
		"poll_interval_ms":         millis(pollEvery),
		"convergence":              d,
		"slowest_node_count":       slowest,
		"load":                     l.summary(),
		"rounds":                   results,
	})
}

// ownAndShared is the key scheme of the kill and partition tests: half of
// each node's increments go to a counter only it writes (so its value is
// that node's slot), half to counters every node writes.
func ownAndShared(prefix string, shared int) (planner, func(n *node) string) {
	own := func(n *node) string { return prefix + "-own-" + n.name }
	return func(n *node, rnd *rand.Rand, size int) plan {
		keys := make([]string, size)
		for j := range keys {
			if j%2 == 0 {
				keys[j] = own(n)
			} else {
				keys[j] = fmt.Sprintf("%s-s%d", prefix, rnd.IntN(shared))
			}
		}
		return plan{keys: keys}
	}, own
}

// waitLoadRunning waits until every node has acknowledged a few batches.
func waitLoadRunning(t *testing.T, l *load, batches int64) {
	t.Helper()
	base := map[string]int64{}
	for name, s := range l.nodes {
		base[name] = s.batches.Load()
	}
	wait.For(t, 30*time.Second, "the load running on every node", func() (bool, string) {
		for name, s := range l.nodes {
			if s.batches.Load()-base[name] < batches {
				return false, l.summary()
			}
		}
		return true, ""
	})
}

// TestKillRestart kills one node with SIGKILL under load and restarts the
// same container (same volume).
func TestKillRestart(t *testing.T) {
	cl := needMesh(t)
	cl.requireHealthy(t)
	cfg := defaultLoad(t)
	victim := cl.node(envString("COUNTMESH_E2E_KILL_NODE", "eu-2"))
	if victim == nil {
		t.Fatalf("COUNTMESH_E2E_KILL_NODE names none of %v", cl.names())
	}
	const ns = "kill"
	plan, own := ownAndShared(runID, 8)
	l := startLoad(t, cl, ns, cfg, plan)
	waitLoadRunning(t, l, 100) // about 3 s of history on every node
	vs := l.nodes[victim.name]

	// Whatever happens below, the next test finds the victim running.
	t.Cleanup(func() { docker(context.Background(), "start", victim.container) })
	mustDocker(t, "kill", "-s", "KILL", victim.container)
	tKill := time.Now()
	// Let the mesh notice: every other node sees the victim fail.
	detect := wait.For(t, 60*time.Second, "the other nodes noticing the kill", func() (bool, string) {
		for _, n := range cl.nodes {
			if n == victim {
				continue
			}
			st, err := states(context.Background(), n)
			if err != nil {
				return false, err.Error()
			}
			if st[victim.name] == "alive" {
				return false, fmt.Sprintf("%s sees %s alive", n.name, victim.name)
			}
		}
		return true, ""
	})
	// Every request sent to the victim before the kill has its outcome, so
	// its acknowledged total is final.
	wait.For(t, 30*time.Second, "requests sent before the kill to finish", func() (bool, string) {
		n := vs.pendingSince(tKill)
		return n == 0, fmt.Sprintf("%d in flight", n)
	})
	ownKey := own(victim)
	ownAcked := l.keys.get(ownKey).acked.Load()
	atStart := l.keys.snapshot()

	tStart := time.Now()
	mustDocker(t, "start", victim.container)
	wait.For(t, 60*time.Second, victim.name+" ready after the restart", func() (bool, string) {
		return ready(context.Background(), victim), "not ready"
	})
	readyIn := time.Since(tStart)
	got, err := value(context.Background(), victim, ns, ownKey)
	if err != nil {
		t.Fatalf("read %s's own counter right after it is ready: %v", victim.name, err)
	}
	if got < ownAcked {
		t.Errorf("%s lost acknowledged increments of its own slot: it reads %s = %d right after it is ready, %d were acknowledged before the kill",
			victim.name, ownKey, got, ownAcked)
	}
	// It has everything the mesh acknowledged before it came back.
	wait.For(t, 60*time.Second, victim.name+" catching up", func() (bool, string) {
		for _, k := range sortedKeys(atStart) {
			v, err := value(context.Background(), victim, ns, k)
			if err != nil {
				return false, err.Error()
			}
			if v < atStart[k][0] {
				return false, fmt.Sprintf("%s reads %s = %d, %d were acknowledged before the restart", victim.name, k, v, atStart[k][0])
			}
		}
		return true, ""
	})
	caughtUp := time.Since(tStart)
	t.Logf("%s: SIGKILL under load; the others saw it fail after %v; after docker start it was ready in %v (own counter %d >= %d acknowledged) and had everything acknowledged before the restart in %v",
		victim.name, detect.Round(time.Millisecond), readyIn.Round(time.Millisecond), got, ownAcked, caughtUp.Round(time.Millisecond))

	// It takes writes again; then the load stops and every node converges.
	waitLoadRunning(t, l, 20)
	l.stop()
	want := l.keys.snapshot()
	if _, err := wait.Poll(context.Background(), 10*time.Second, 10*time.Millisecond, func() (bool, string) {
		return converged(context.Background(), cl, ns, want)
	}); err != nil {
		t.Fatalf("no convergence after the restart: %v", err)
	}
	conv := time.Since(l.lastAck())
	checkNeverAbove(t, cl, ns, want)
	t.Logf("all nodes read acked <= value <= attempted, identically, %v after the last acknowledged write; %s", conv.Round(time.Millisecond), l.summary())
	writeResult(t, "kill", map[string]any{
		"victim":                                victim.name,
		"load_increments_per_s":                 cfg.rate,
		"kill_to_detected_ms":                   millis(detect),
		"start_to_ready_ms":                     millis(readyIn),
		"start_to_caught_up_ms":                 millis(caughtUp),
		"own_counter_acked_before_kill":         ownAcked,
		"own_counter_read_when_ready":           got,
		"final_convergence_after_last_write_ms": millis(conv),
		"down_for_ms":                           millis(tStart.Sub(tKill)),
		"load":                                  l.summary(),
	})
}

// TestRegionPartition cuts one region off while every node keeps
// counting, then reconnects it.
func TestRegionPartition(t *testing.T) {
	cl := needMesh(t)
	cl.requireHealthy(t)
	cfg := defaultLoad(t)
	region := envString("COUNTMESH_E2E_PARTITION_REGION", "ap")
	hold := envDuration(t, "COUNTMESH_E2E_PARTITION", 60*time.Second)
	const ns = "part"
	plan, own := ownAndShared(runID, 8)
	l := startLoad(t, cl, ns, cfg, plan)
	waitLoadRunning(t, l, 20)

	var inside, outside []*node
	for _, n := range cl.nodes {
		if n.region == region {
			inside = append(inside, n)
		} else {
			outside = append(outside, n)
		}
	}
	if len(inside) == 0 || len(outside) == 0 {
		t.Fatalf("region %q splits the mesh into %d and %d nodes", region, len(inside), len(outside))
	}
	side := func(n *node) []*node {
		if n.region == region {
			return inside
		}
		return outside
	}

	cl.partition(t, region)
	tCut := time.Now()
	// Whatever was sent before the cut was complete may have crossed it:
	// wait for those requests' outcomes, then count them.
	wait.For(t, 30*time.Second, "requests sent before the cut to finish", func() (bool, string) {
		for name, s := range l.nodes {
			if n := s.pendingSince(tCut); n > 0 {
				return false, fmt.Sprintf("%s: %d in flight", name, n)
			}
		}
		return true, ""
	})
	atCut := l.keys.snapshot()
	t.Logf("region %s cut off (%d nodes against %d) for %v", region, len(inside), len(outside), hold)

	// Hold the cut while every node keeps counting; record the longest
	// time any node went without acknowledging a write.
	maxGap := map[string]time.Duration{}
	for time.Since(tCut) < hold {
		now := time.Now()
		for name, s := range l.nodes {
			last := time.Unix(0, s.lastAck.Load())
			if last.Before(tCut) {
				last = tCut
			}
			if g := now.Sub(last); g > maxGap[name] {
				maxGap[name] = g
			}
		}
		timer := time.NewTimer(100 * time.Millisecond) // sampling interval
		<-timer.C
	}
	for _, name := range sortedKeys(maxGap) {
		if maxGap[name] > 5*time.Second {
			t.Errorf("%s acknowledged no write for %v during the cut: both sides must keep accepting writes", name, maxGap[name])
		}
	}

	// The cut held: no node saw a write made on the other side after the
	// cut, while writes still spread within each side.
	ctx := context.Background()
	var views []string
	for _, m := range cl.nodes {
		k := own(m)
		sent := atCut[k][1]
		for _, o := range cl.nodes {
			v, err := value(ctx, o, ns, k)
			if err != nil {
				t.Fatalf("read %s on %s during the cut: %v", k, o.name, err)
			}
			sameSide := (o.region == region) == (m.region == region)
			switch {
			case !sameSide && v > sent:
				t.Errorf("the cut leaked: %s reads %s = %d, but only %d increments were sent to %s before the cut", o.name, k, v, sent, m.name)
			case sameSide && v <= sent:
				t.Errorf("%s reads %s = %d, no more than the %d sent before the cut: writes stopped spreading within the %d-node side", o.name, k, v, sent, len(side(m)))
			}
			if o == m || o == side(m)[0] || o == otherSide(inside, outside, m)[0] {
				views = append(views, fmt.Sprintf("%s@%s=%d", strings.TrimPrefix(k, runID+"-"), o.name, v))
			}
		}
	}
	t.Logf("the cut held (values diverged): %s", strings.Join(views, " "))

	l.stop()
	want := l.keys.snapshot()
	cl.heal(t)
	tHeal := time.Now()
	// Values and membership heal separately; time both.
	var conv, members time.Duration
	var timeline []string // how membership healed
	lastMembers := "-"
	if _, err := wait.Poll(ctx, 60*time.Second, 10*time.Millisecond, func() (bool, string) {
		var state []string
		if conv == 0 {
			if ok, st := converged(ctx, cl, ns, want); ok {
				conv = time.Since(tHeal)
			} else {
				state = append(state, "values: "+st)
			}
		}
		if members == 0 {
			ok, st := cl.healthy(ctx)
			if ok {
				members = time.Since(tHeal)
			} else {
				state = append(state, "members: "+st)
			}
			if st != lastMembers {
				timeline = append(timeline, fmt.Sprintf("%v: %s", time.Since(tHeal).Round(time.Millisecond), cmp.Or(st, "all alive")))
				lastMembers = st
			}
		}
		return conv > 0 && members > 0, strings.Join(state, "; ")
	}); err != nil {
		t.Fatalf("after the heal: %v", err)
	}
	checkNeverAbove(t, cl, ns, want)
	t.Logf("membership after the heal: %s", strings.Join(timeline, "; "))
	t.Logf("after reconnecting, every node read acked <= value <= attempted, identically, in %v; every node saw all members alive in %v; %s",
		conv.Round(time.Millisecond), members.Round(time.Millisecond), l.summary())
	gaps := map[string]float64{}
	for k, g := range maxGap {
		gaps[k] = millis(g)
	}
	writeResult(t, "partition", map[string]any{
		"region":                    region,
		"cut_s":                     hold.Seconds(),
		"load_increments_per_s":     cfg.rate,
		"heal_to_converged_ms":      millis(conv),
		"heal_to_all_alive_ms":      millis(members),
		"max_ack_gap_during_cut_ms": gaps,
		"views_at_end_of_cut":       views,
		"membership_after_heal":     timeline,
		"load":                      l.summary(),
	})
}

func otherSide(inside, outside []*node, n *node) []*node {
	for _, m := range inside {
		if m == n {
			return outside
		}
	}
	return inside
}
