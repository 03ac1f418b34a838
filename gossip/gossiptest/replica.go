package gossiptest

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/internal/wait"
)

// Key names a counter.
type Key struct{ NS, Key string }

// Replica is an in-memory gossip.Replica: counters, an (origin, seq) index
// and a version vector under one mutex, applied "durably" at once. It also
// plays the local node: Add and Reset change its own slot and assign the
// next sequence number, as the node's write path and committer would.
// It is safe for concurrent use.
type Replica struct {
	self crdt.NodeID

	mu       sync.Mutex // guards the fields below
	counters map[Key]crdt.Counter
	index    map[crdt.NodeID]*originIndex
	vv       map[crdt.NodeID]uint64
	ahead    map[crdt.NodeID]map[uint64]bool // held past a gap in vv
	configs  map[string]gossip.ConfigRecord
	hook     func(gossip.Batch) error
	replicas func(ns string) int // nil: no namespace is sharded
	applied  int
	floors   map[crdt.NodeID]uint64 // Release
	shards   map[crdt.NodeID]change.Shard
	refill   map[crdt.NodeID]uint64 // changes from 0 received again, per released origin
}

// originIndex is one origin's changes: per counter the highest seq merged,
// and the reverse map for scans.
type originIndex struct {
	byKey map[Key]uint64
	bySeq map[uint64]Key
}

// NewReplica returns an empty replica of the node with slot self.
func NewReplica(self crdt.NodeID) *Replica {
	return &Replica{
		self:     self,
		counters: make(map[Key]crdt.Counter),
		index:    make(map[crdt.NodeID]*originIndex),
		vv:       make(map[crdt.NodeID]uint64),
		ahead:    make(map[crdt.NodeID]map[uint64]bool),
		configs:  make(map[string]gossip.ConfigRecord),
	}
}

// Self returns the replica's own slot id.
func (r *Replica) Self() crdt.NodeID { return r.self }

// SetApplyHook installs a function that Apply calls first, without the
// lock held: it may sleep (a slow disk) or fail (a refused batch).
func (r *Replica) SetApplyHook(f func(gossip.Batch) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = f
}

// SetReplicas makes the namespaces for which f answers R > 0 sharded, as
// gossip.Config.Replicas does: the replica numbers its own changes of them
// per shard, in the shard's sequence space (change.Shard.Space). Set it
// before the first change, the same on every replica.
func (r *Replica) SetReplicas(f func(ns string) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replicas = f
}

// spaceLocked returns the origin under which the replica numbers its own
// changes of ns/key: its slot id, or the space of the counter's shard.
func (r *Replica) spaceLocked(ns, key string) crdt.NodeID {
	if r.replicas != nil {
		if n := r.replicas(ns); n > 0 {
			return change.ShardOf(ns, key, n).Space(r.self)
		}
	}
	return r.self
}

// slotLocked returns the slot id whose changes origin numbers for k: origin
// itself, or the writer of a space.
func (r *Replica) slotLocked(origin crdt.NodeID, k Key) crdt.NodeID {
	if r.replicas != nil {
		if n := r.replicas(k.NS); n > 0 {
			return change.ShardOf(k.NS, k.Key, n).Origin(origin)
		}
	}
	return origin
}

func (r *Replica) indexLocked(origin crdt.NodeID) *originIndex {
	ix := r.index[origin]
	if ix == nil {
		ix = &originIndex{byKey: make(map[Key]uint64), bySeq: make(map[uint64]Key)}
		r.index[origin] = ix
	}
	return ix
}

// noteLocked records that k holds origin's change seq.
func (r *Replica) noteLocked(origin crdt.NodeID, k Key, seq uint64) {
	ix := r.indexLocked(origin)
	old, ok := ix.byKey[k]
	if ok && old >= seq {
		return
	}
	if ok {
		delete(ix.bySeq, old)
	}
	ix.byKey[k] = seq
	ix.bySeq[seq] = k
}

// update changes the own slot of a counter with f and returns the delta to
// publish, as one committed change with the next sequence number.
func (r *Replica) update(ns, key string, f func(c *crdt.Counter) error) (gossip.Delta, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := Key{ns, key}
	c := r.counters[k].Clone()
	if err := f(&c); err != nil {
		return gossip.Delta{}, err
	}
	origin := r.spaceLocked(ns, key)
	seq := r.vv[origin] + 1
	r.vv[origin] = seq
	r.counters[k] = c
	r.noteLocked(origin, k, seq)
	return gossip.Delta{NS: ns, Key: key, Origin: origin, Seq: seq, State: c.Delta(true, r.self)}, nil
}

// Add adds by to the own slot of ns/key and returns the change to publish.
func (r *Replica) Add(ns, key string, by int64) (gossip.Delta, error) {
	return r.update(ns, key, func(c *crdt.Counter) error {
		_, err := c.Add(r.self, by)
		return err
	})
}

// Reset resets ns/key to value as seen here and returns the change to
// publish and the reset record.
func (r *Replica) Reset(ns, key string, value int64) (gossip.Delta, *crdt.Reset) {
	var rec *crdt.Reset
	d, _ := r.update(ns, key, func(c *crdt.Counter) error {
		rec = c.SetReset(r.self, value, false)
		// Keep the reset record's copy independent of the counter's.
		cp := *rec
		cp.Floor = slices.Clone(rec.Floor)
		rec = &cp
		return nil
	})
	return d, rec
}

// SetConfig stores a config record locally (last writer wins) and returns
// whether it won.
func (r *Replica) SetConfig(rec gossip.ConfigRecord) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.setConfigLocked(rec)
}

func (r *Replica) setConfigLocked(rec gossip.ConfigRecord) bool {
	if old, ok := r.configs[rec.NS]; ok && !rec.Newer(old) {
		return false
	}
	rec.Payload = slices.Clone(rec.Payload)
	r.configs[rec.NS] = rec
	return true
}

// Apply implements gossip.Replica.
func (r *Replica) Apply(b gossip.Batch) error {
	r.mu.Lock()
	hook := r.hook
	r.mu.Unlock()
	if hook != nil {
		if err := hook(b); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range b.Deltas {
		k := Key{d.NS, d.Key}
		c, ok := r.counters[k]
		if !ok {
			c = d.State.Clone()
		} else {
			c = c.Clone() // never share state with the batch
			c.Merge(d.State)
		}
		r.counters[k] = c
		r.noteLocked(d.Origin, k, d.Seq)
	}
	rs := slices.Clone(b.Ranges)
	slices.SortFunc(rs, func(a, b gossip.Range) int {
		return cmp.Or(cmp.Compare(a.Origin, b.Origin), cmp.Compare(a.After, b.After))
	})
	for _, rg := range rs {
		if r.vv[rg.Origin] >= rg.After && rg.Upto > r.vv[rg.Origin] {
			r.vv[rg.Origin] = rg.Upto
		}
	}
	r.noteRefillLocked(rs)
	// Each delta is a change held, whatever the ranges say: past a gap it
	// waits in ahead until the vector reaches it.
	for _, d := range b.Deltas {
		if d.Seq > r.vv[d.Origin] {
			if r.ahead[d.Origin] == nil {
				r.ahead[d.Origin] = make(map[uint64]bool)
			}
			r.ahead[d.Origin][d.Seq] = true
		}
	}
	for o, held := range r.ahead {
		for held[r.vv[o]+1] {
			r.vv[o]++
		}
		for s := range held {
			if s <= r.vv[o] {
				delete(held, s)
			}
		}
		if len(held) == 0 {
			delete(r.ahead, o)
		}
	}
	for _, c := range b.Configs {
		r.setConfigLocked(c)
	}
	r.applied++
	return nil
}

// VersionVector implements gossip.Replica.
func (r *Replica) VersionVector() map[crdt.NodeID]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.vv)
}

// HeldAhead implements gossip.Replica.
func (r *Replica) HeldAhead() map[crdt.NodeID][]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[crdt.NodeID][]uint64, len(r.ahead))
	for o, held := range r.ahead {
		out[o] = slices.Sorted(maps.Keys(held))
	}
	return out
}

// Held returns origin's single changes held past a gap in the vector.
func (r *Replica) Held(origin crdt.NodeID) []uint64 {
	return r.HeldAhead()[origin]
}

// Release drops the replica's changes of origin up to seq, and the
// counters they changed, as a node does with its copies of counters of a
// shard it does not own (node/replica.DropCopies; here a counter goes
// whatever other origins changed it): its vector still covers them, and it
// can no longer send them. ReleasedThrough reports seq from then on, and
// ReleasedShards names s as origin's shard, until a range of origin from 0
// reaches seq again (the refill, node/replica.noteRefill).
func (r *Replica) Release(origin crdt.NodeID, s change.Shard, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.floors == nil {
		r.floors = make(map[crdt.NodeID]uint64)
		r.shards = make(map[crdt.NodeID]change.Shard)
	}
	r.floors[origin] = max(r.floors[origin], seq)
	r.shards[origin] = s
	if ix := r.index[origin]; ix != nil {
		for sq, k := range ix.bySeq {
			if sq <= seq {
				delete(ix.bySeq, sq)
				if ix.byKey[k] == sq {
					delete(ix.byKey, k)
				}
				delete(r.counters, k)
			}
		}
	}
}

// ReleasedShards returns the shard of each origin Release dropped changes
// of and the replica has not taken back whole.
func (r *Replica) ReleasedShards() map[crdt.NodeID]change.Shard {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.shards)
}

// noteRefillLocked clears the release of an origin once ranges of it
// contiguous from 0 reach its floor.
func (r *Replica) noteRefillLocked(ranges []gossip.Range) {
	for _, rg := range ranges {
		floor, ok := r.floors[rg.Origin]
		if !ok {
			continue
		}
		if r.refill == nil {
			r.refill = make(map[crdt.NodeID]uint64)
		}
		got, started := r.refill[rg.Origin]
		if rg.After > 0 && (!started || rg.After > got) {
			continue
		}
		got = max(got, rg.Upto)
		r.refill[rg.Origin] = got
		if got >= floor {
			delete(r.floors, rg.Origin)
			delete(r.shards, rg.Origin)
			delete(r.refill, rg.Origin)
		}
	}
}

// ReleasedThrough returns the highest change of origin Release dropped
// (the mesh's anti-entropy floor).
func (r *Replica) ReleasedThrough(origin crdt.NodeID) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.floors[origin]
}

// ScanSince implements gossip.Replica. It copies what it will send under
// the lock and calls fn without it.
func (r *Replica) ScanSince(origin crdt.NodeID, after uint64, fn func(gossip.Delta) bool) error {
	r.mu.Lock()
	var out []gossip.Delta
	if ix := r.index[origin]; ix != nil {
		seqs := make([]uint64, 0)
		for s := range ix.bySeq {
			if s > after {
				seqs = append(seqs, s)
			}
		}
		slices.Sort(seqs)
		out = make([]gossip.Delta, 0, len(seqs))
		for _, s := range seqs {
			k := ix.bySeq[s]
			out = append(out, gossip.Delta{NS: k.NS, Key: k.Key, Origin: origin, Seq: s, State: r.counters[k].Delta(true, r.slotLocked(origin, k))})
		}
	}
	r.mu.Unlock()
	for _, d := range out {
		if !fn(d) {
			break
		}
	}
	return nil
}

// Configs implements gossip.Replica.
func (r *Replica) Configs() []gossip.ConfigRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]gossip.ConfigRecord, 0, len(r.configs))
	for _, c := range r.configs {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b gossip.ConfigRecord) int { return cmp.Compare(a.NS, b.NS) })
	return out
}

// Counter returns a copy of the state of ns/key.
func (r *Replica) Counter(ns, key string) crdt.Counter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counters[Key{ns, key}].Clone()
}

// Snapshot returns a copy of every counter.
func (r *Replica) Snapshot() map[Key]crdt.Counter {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[Key]crdt.Counter, len(r.counters))
	for k, c := range r.counters {
		out[k] = c.Clone()
	}
	return out
}

// Len returns the number of counters held.
func (r *Replica) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.counters)
}

// Applied returns how many batches Apply accepted.
func (r *Replica) Applied() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied
}

// Equal reports whether two replicas hold the same counters with the same
// states, and if not, one counter where they differ. It snapshots a, then
// b: to check a whole cluster, compare one snapshot per replica instead of
// calling Equal pairwise with a moving reference.
func Equal(a, b *Replica) (bool, Key) {
	sa, sb := a.Snapshot(), b.Snapshot()
	for k, ca := range sa {
		cb, ok := sb[k]
		if !ok || !ca.Equal(cb) {
			return false, k
		}
	}
	for k := range sb {
		if _, ok := sa[k]; !ok {
			return false, k
		}
	}
	return true, Key{}
}

// Committer groups a node's changes as the node's group committer does and
// publishes them as one batch: one range {origin, first-1, last} per origin
// (the node's slot id, and each shard's space), one delta per counter (the
// latest).
type Committer struct {
	Replica *Replica
	Publish func(gossip.Batch)

	mu      sync.Mutex // guards pending and spans
	pending map[Key]gossip.Delta
	spans   map[crdt.NodeID]*span
}

// span is the run of one origin's seqs added since the last commit.
type span struct{ first, last uint64 }

// Add records a change made by the replica (the Delta its Add or Reset
// returned).
func (c *Committer) Add(d gossip.Delta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = make(map[Key]gossip.Delta)
		c.spans = make(map[crdt.NodeID]*span)
	}
	sp := c.spans[d.Origin]
	if sp == nil {
		sp = &span{first: d.Seq}
		c.spans[d.Origin] = sp
	}
	sp.first, sp.last = min(sp.first, d.Seq), max(sp.last, d.Seq)
	c.pending[Key{d.NS, d.Key}] = d
}

// Commit publishes what was added since the last commit.
func (c *Committer) Commit() {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	var b gossip.Batch
	for _, o := range slices.Sorted(maps.Keys(c.spans)) {
		sp := c.spans[o]
		b.Ranges = append(b.Ranges, gossip.Range{Origin: o, After: sp.first - 1, Upto: sp.last})
	}
	keys := slices.SortedFunc(maps.Keys(c.pending), func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.NS, b.NS), cmp.Compare(a.Key, b.Key))
	})
	for _, k := range keys {
		b.Deltas = append(b.Deltas, c.pending[k])
	}
	c.pending, c.spans = nil, nil
	c.mu.Unlock()
	c.Publish(b)
}

// WaitFor polls cond until it holds or timeout passes, and reports
// whether it held (wait.Poll, for callers without a testing.T such as
// examples).
func WaitFor(timeout time.Duration, cond func() bool) bool {
	_, err := wait.Poll(context.Background(), timeout, 5*time.Millisecond, func() (bool, string) { return cond(), "" })
	return err == nil
}

// AllAlive reports whether every mesh sees exactly len(meshes) members
// alive, itself included: a cluster whose membership has converged.
func AllAlive(meshes []*gossip.Mesh) bool {
	for _, m := range meshes {
		alive := 0
		for _, mb := range m.Status().Members {
			if mb.State == gossip.StateAlive {
				alive++
			}
		}
		if alive != len(meshes) {
			return false
		}
	}
	return true
}
