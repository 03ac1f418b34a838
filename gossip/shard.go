package gossip

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

// Sharded namespaces (Config.Replicas; docs/scale.md).
//
// A change of a sharded namespace is numbered by its writer in the
// sequence space of its shard (change.Shard.Space): Delta.Origin and the
// ranges carry the space, not the writer's id, so that every version
// vector entry, held-ahead list and scan is about one partition's changes
// and a node that does not own the partition simply has no entry for it.
// The mesh sends such a change only to the shard's owners in every region
// (directly, never through a bridge), relays none of them as a bridge, and
// gives a peer, in anti-entropy, only the spaces of shards the peer owns.
// Everything else (streams, acks, coalescing, the exchange, recovery) is
// the full replication machinery, per space.
//
// The mesh learns which origins are spaces, and of which shard, from the
// deltas it sees (published, received, exchanged): a range or vector entry
// of a space it has never seen a delta of is treated as a node's.

// ShardOwners returns the names among candidates (the alive members of one
// region, this node included when it is of that region) that hold shard s,
// in rank order. Every node with the same view of the region picks the
// same owners.
//
// Placement is rendezvous hashing with bounded loads, one pass per
// replica: the k-th owner of each partition, in partition order, is its
// highest-scoring member (scores of s.PlacementKey(), ties by name) not yet
// an owner of it with room in that pass, where each member takes
// floor(Partitions / members) k-th places and the remainder of them one
// more. Plain rendezvous placed 39 and 25 partitions of 64 on two nodes of
// a region; with the bound one replica's loads are even within one, and R
// replicas' within 2R (TestShardOwnersBalanced). A member that comes or
// goes moves the partitions it gains or loses and, through the bound, some
// others.
func ShardOwners(s change.Shard, candidates []string) []string {
	if s.Part < 0 || s.Part >= change.Partitions {
		return nil
	}
	return slices.Clone(placementOf(s.Replicas, candidates)[s.Part])
}

// placements caches placementOf by replicas and member names: a placement
// changes only with the membership.
var placements struct {
	sync.Mutex
	m map[string][][]string
}

// placementOf returns the owners of every partition for the given replicas
// among candidates (see ShardOwners).
func placementOf(replicas int, candidates []string) [][]string {
	names := slices.Clone(candidates)
	slices.Sort(names)
	names = slices.Compact(names)
	key := strconv.Itoa(replicas) + "\x00" + strings.Join(names, "\x00")
	placements.Lock()
	if p, ok := placements.m[key]; ok {
		placements.Unlock()
		return p
	}
	placements.Unlock()
	p := computePlacement(replicas, names)
	placements.Lock()
	if placements.m == nil || len(placements.m) >= 256 {
		placements.m = make(map[string][][]string) // memberships come and go
	}
	placements.m[key] = p
	placements.Unlock()
	return p
}

func computePlacement(replicas int, names []string) [][]string {
	out := make([][]string, change.Partitions)
	r := min(replicas, len(names))
	if r <= 0 {
		return out
	}
	type scored struct {
		name  string
		score uint64
	}
	// Each partition's members in rank order.
	ranked := make([][]scored, change.Partitions)
	for part := range change.Partitions {
		key := change.Shard{Replicas: replicas, Part: part}.PlacementKey()
		rs := make([]scored, len(names))
		for i, n := range names {
			rs[i] = scored{n, Rendezvous(key, n)}
		}
		slices.SortFunc(rs, func(a, b scored) int {
			return cmp.Or(cmp.Compare(b.score, a.score), strings.Compare(a.name, b.name))
		})
		ranked[part] = rs
		out[part] = make([]string, 0, r)
	}
	// One pass per replica: the k-th owner of every partition is its
	// highest-ranked member not yet an owner of it that has room in this
	// pass (each member takes floor(Partitions / members) k-th places, the
	// remainder of them one more); a partition that finds none takes the
	// highest-ranked member not yet an owner.
	base, extra := change.Partitions/len(names), change.Partitions%len(names)
	for range r {
		load := make(map[string]int, len(names))
		big := 0
		for part := range change.Partitions {
			pick := ""
			for _, c := range ranked[part] {
				if slices.Contains(out[part], c.name) {
					continue
				}
				if load[c.name] < base || (load[c.name] == base && big < extra) {
					pick = c.name
					break
				}
			}
			if pick == "" {
				for _, c := range ranked[part] {
					if !slices.Contains(out[part], c.name) {
						pick = c.name
						break
					}
				}
			}
			if load[pick] == base {
				big++
			}
			load[pick]++
			out[part] = append(out[part], pick)
		}
	}
	return out
}

// ownerSet is where a shard's changes go from this node.
type ownerSet struct {
	peers []peerInfo // the owners other than this node, every region
	self  bool       // this node owns the shard
}

func (o *ownerSet) has(name string) bool {
	for _, p := range o.peers {
		if p.name == name {
			return true
		}
	}
	return false
}

// ownersOf returns the owners of s under the routes' membership, computed
// once per membership version.
func (r *routes) ownersOf(s change.Shard) *ownerSet {
	if v, ok := r.owners.Load(s); ok {
		return v.(*ownerSet)
	}
	os := &ownerSet{}
	byName := make(map[string]peerInfo, len(r.alive))
	regions := map[string][]string{r.region: {r.self}}
	for _, p := range r.alive {
		byName[p.name] = p
		regions[p.region] = append(regions[p.region], p.name)
	}
	for _, names := range regions {
		for _, n := range ShardOwners(s, names) {
			if n == r.self {
				os.self = true
				continue
			}
			os.peers = append(os.peers, byName[n])
		}
	}
	slices.SortFunc(os.peers, func(a, b peerInfo) int { return strings.Compare(a.name, b.name) })
	v, _ := r.owners.LoadOrStore(s, os)
	return v.(*ownerSet)
}

// spaceRegistry maps the sequence spaces the mesh has seen to their shard.
type spaceRegistry struct {
	mu       sync.RWMutex
	m        map[crdt.NodeID]change.Shard
	replicas []int // the replica counts seen, for picking shards
}

func (sr *spaceRegistry) lookup(space crdt.NodeID) (change.Shard, bool) {
	sr.mu.RLock()
	s, ok := sr.m[space]
	sr.mu.RUnlock()
	return s, ok
}

func (sr *spaceRegistry) note(space crdt.NodeID, s change.Shard) {
	if old, ok := sr.lookup(space); ok && old == s {
		return
	}
	sr.mu.Lock()
	if sr.m == nil {
		sr.m = make(map[crdt.NodeID]change.Shard)
	}
	sr.m[space] = s
	if !slices.Contains(sr.replicas, s.Replicas) {
		sr.replicas = append(sr.replicas, s.Replicas)
	}
	sr.mu.Unlock()
}

// seen reports whether any space has been seen: until then no namespace
// is sharded as far as routing can tell.
func (sr *spaceRegistry) seen() bool {
	sr.mu.RLock()
	defer sr.mu.RUnlock()
	return len(sr.m) > 0
}

// replicaCounts returns the replica counts of the shards seen.
func (sr *spaceRegistry) replicaCounts() []int {
	sr.mu.RLock()
	defer sr.mu.RUnlock()
	return slices.Clone(sr.replicas)
}

// pickCoOwner picks, for an anti-entropy round, another owner of a random
// shard this node owns (of its own region unless the remote coin says
// otherwise, or it has none there). A random peer of the whole mesh shares
// few shards with this node once the mesh is much larger than the owners
// of a shard, so a change that missed an owner (its writer's view of the
// membership differed) would wait for many rounds.
func (m *Mesh) pickCoOwner(r *routes) (peerInfo, bool) {
	counts := m.spaces.replicaCounts()
	if len(counts) == 0 {
		return peerInfo{}, false
	}
	for range 8 {
		s := change.Shard{Replicas: counts[m.randN(len(counts))], Part: m.randN(change.Partitions)}
		os := r.ownersOf(s)
		if !os.self || len(os.peers) == 0 {
			continue
		}
		var local, remote []peerInfo
		for _, p := range os.peers {
			if p.region == r.region {
				local = append(local, p)
			} else {
				remote = append(remote, p)
			}
		}
		pool := local
		if len(pool) == 0 || (len(remote) > 0 && m.randFloat() < m.cfg.AntiEntropyRemote) {
			pool = remote
		}
		return pool[m.randN(len(pool))], true
	}
	return peerInfo{}, false
}

// sharding reports whether any namespace may be sharded.
func (m *Mesh) sharding() bool { return m.cfg.Replicas != nil }

// shardOf returns the shard of a delta of a sharded namespace, and records
// its origin as that shard's space; false for a delta of a namespace every
// node holds. A delta counts as sharded only when its origin is the space
// of a writer whose change it carries (the writer's slot, or its reset):
// a node that numbered a change before it learned that the namespace is
// sharded used its own id, and that change, and the node's id, must stay
// on the full replication path.
func (m *Mesh) shardOf(d *Delta) (change.Shard, bool) {
	if m.cfg.Replicas == nil {
		return change.Shard{}, false
	}
	r := m.cfg.Replicas(d.NS)
	if r <= 0 {
		return change.Shard{}, false
	}
	s := change.ShardOf(d.NS, d.Key, r)
	if !change.CarriesWriter(&d.State, s.Origin(d.Origin)) {
		return change.Shard{}, false
	}
	m.spaces.note(d.Origin, s)
	return s, true
}

// learn records the spaces of a batch's deltas.
func (m *Mesh) learn(b Batch) {
	if !m.sharding() {
		return
	}
	for i := range b.Deltas {
		m.shardOf(&b.Deltas[i])
	}
}

// applyFromPeer applies a batch a peer sent, after learning its spaces (so
// that a bridge can tell them from what it must relay).
func (m *Mesh) applyFromPeer(b Batch) error {
	m.learn(b)
	return m.replica.Apply(b)
}

// learningReplica is the replica as anti-entropy sees it: batches it
// applies teach the mesh their spaces first.
type learningReplica struct {
	Replica
	m *Mesh
}

func (lr learningReplica) Apply(b Batch) error { return lr.m.applyFromPeer(b) }

// wants reports whether anti-entropy gives peer the changes of origin: a
// node's own changes go to everyone, a space's only to its shard's owners.
//
// A peer this node does not count among the alive members (it restarted,
// on an empty disk perhaps, and this node has not seen it back, or not yet
// verified its name) gets the shards it owns once it is counted: that is
// the exchange it catches up with before it reports ready. Counted only as
// the members of this node's view stand, it got none of them, then answered
// for them from what it had; that is the likely way a chaos run lost
// acknowledged changes for good when the other owner of the shard was wiped
// next (docs/chaos.md, twelfth stop).
func (m *Mesh) wants(peer string, origin crdt.NodeID) bool {
	if !m.sharding() {
		return true
	}
	s, ok := m.spaces.lookup(origin)
	if !ok {
		return true
	}
	rec, known := m.memberInfo(peer)
	if known && rec.ID != 0 && s.Origin(origin) == rec.ID {
		// The writer's own changes: a writer restarted on an older or
		// empty disk must get them back before it writes again.
		return true
	}
	r := m.routes.Load()
	if _, alive := r.alive[peer]; alive || !known {
		return r.ownersOf(s).has(peer)
	}
	return ownsCounted(r, s, peer, rec.Region)
}

// ownsCounted reports whether peer, of region, owns shard s once it is
// counted among r's alive members.
func ownsCounted(r *routes, s change.Shard, peer, region string) bool {
	names := []string{peer}
	if region == r.region {
		names = append(names, r.self)
	}
	for _, p := range r.alive {
		if p.region == region {
			names = append(names, p.name)
		}
	}
	return slices.Contains(ShardOwners(s, names), peer)
}

// splitSharded takes the changes of sharded namespaces out of b: it returns
// what goes the full replication way (b itself when nothing is sharded)
// and, per peer, the sharded changes that peer owns.
func (m *Mesh) splitSharded(r *routes, b Batch) (Batch, map[string]*Batch) {
	found := false
	for i := range b.Deltas {
		if _, ok := m.shardOf(&b.Deltas[i]); ok {
			found = true
		}
	}
	if !found {
		return b, nil
	}
	type group struct {
		deltas []Delta
		ranges []Range
	}
	groups := make(map[change.Shard]*group)
	groupOf := func(s change.Shard) *group {
		g := groups[s]
		if g == nil {
			g = &group{}
			groups[s] = g
		}
		return g
	}
	full := Batch{Configs: b.Configs}
	// A range goes where the batch's deltas of its origin go.
	sharded := make(map[crdt.NodeID]change.Shard)
	unsharded := make(map[crdt.NodeID]bool)
	for i := range b.Deltas {
		d := &b.Deltas[i]
		if s, ok := m.shardOf(d); ok {
			g := groupOf(s)
			g.deltas = append(g.deltas, *d)
			sharded[d.Origin] = s
			continue
		}
		full.Deltas = append(full.Deltas, *d)
		unsharded[d.Origin] = true
	}
	for _, rg := range b.Ranges {
		s, ok := sharded[rg.Origin]
		if !ok && !unsharded[rg.Origin] && rg.Origin != m.selfID {
			s, ok = m.spaces.lookup(rg.Origin)
		}
		if ok {
			g := groupOf(s)
			g.ranges = append(g.ranges, rg)
			continue
		}
		full.Ranges = append(full.Ranges, rg)
	}
	per := make(map[string]*Batch)
	for s, g := range groups {
		for _, pi := range r.ownersOf(s).peers {
			pb := per[pi.name]
			if pb == nil {
				pb = &Batch{}
				per[pi.name] = pb
			}
			pb.Deltas = append(pb.Deltas, g.deltas...)
			pb.Ranges = append(pb.Ranges, g.ranges...)
		}
	}
	for _, pb := range per {
		slices.SortFunc(pb.Ranges, func(a, b Range) int {
			return cmp.Or(cmp.Compare(a.Origin, b.Origin), cmp.Compare(a.After, b.After))
		})
	}
	return full, per
}

// relayable returns what a bridge relays into its region of a batch that
// member from streamed to it: from's own changes, not its changes of
// sharded namespaces (the owners of this region got those directly).
// Origin decides, not the registry of spaces: a range of a space can
// arrive in a frame without any delta of its space (a restarted bridge
// has not seen them), and relayed without them it would move the
// receivers' vectors over changes they never got.
func (m *Mesh) relayable(b Batch, from string) Batch {
	if !m.sharding() {
		return b
	}
	id, ok := m.memberID(from)
	if !ok {
		return m.unsharded(b)
	}
	foreign := false // the batch holds changes of another origin (spaces)
	for i := range b.Deltas {
		foreign = foreign || b.Deltas[i].Origin != id
	}
	for _, rg := range b.Ranges {
		foreign = foreign || rg.Origin != id
	}
	if !foreign {
		return b // no copy of what full replication relays
	}
	out := Batch{Configs: b.Configs}
	for i := range b.Deltas {
		if b.Deltas[i].Origin == id {
			out.Deltas = append(out.Deltas, b.Deltas[i])
		}
	}
	for _, rg := range b.Ranges {
		if rg.Origin == id {
			out.Ranges = append(out.Ranges, rg)
		}
	}
	return out
}

// memberID returns the slot id a member advertises.
func (m *Mesh) memberID(name string) (crdt.NodeID, bool) {
	info, ok := m.memberInfo(name)
	if !ok || info.ID == 0 {
		return 0, false
	}
	return info.ID, true
}

// memberInfo returns what this node knows of the member name, alive or
// not.
func (m *Mesh) memberInfo(name string) (Member, bool) {
	m.members.Lock()
	defer m.members.Unlock()
	rec, ok := m.members.m[name]
	if !ok {
		return Member{}, false
	}
	return rec.info, true
}

// unsharded returns b without the changes of sharded namespaces, as far
// as the registry of spaces knows them (relayable's fallback).
func (m *Mesh) unsharded(b Batch) Batch {
	if !m.sharding() {
		return b
	}
	found := false
	for i := range b.Deltas {
		if _, ok := m.shardOf(&b.Deltas[i]); ok {
			found = true
			break
		}
	}
	if !found {
		return b
	}
	out := Batch{Configs: b.Configs}
	for i := range b.Deltas {
		if _, ok := m.shardOf(&b.Deltas[i]); !ok {
			out.Deltas = append(out.Deltas, b.Deltas[i])
		}
	}
	for _, rg := range b.Ranges {
		if _, ok := m.spaces.lookup(rg.Origin); !ok {
			out.Ranges = append(out.Ranges, rg)
		}
	}
	return out
}

// ShardPeers returns the names of the other owners of shard s, every
// region, sorted.
func (m *Mesh) ShardPeers(s change.Shard) []string {
	os := m.routes.Load().ownersOf(s)
	out := make([]string, len(os.peers))
	for i, p := range os.peers {
		out[i] = p.name
	}
	return out
}

// releaser is the optional part of a Replica that drops its copies of
// counters of shards it does not own once their owners hold them
// (node/replica, release.go): below a space's release mark it no longer
// holds every change its vector covers.
type releaser interface {
	ReleasedThrough(origin crdt.NodeID) uint64
}

// refiller is the optional part of a releaser that takes a space back
// whole once it owns the space's shard again: it names the spaces with a
// release mark and their shards, and clears a mark once a range of its
// space from 0 reaches it.
type refiller interface {
	ReleasedShards() map[crdt.NodeID]change.Shard
}

// pickRefillPeer picks a co-owner of a random shard this node owns and
// released changes of (its replica's ReleasedShards), false when there is
// none.
func (m *Mesh) pickRefillPeer(r *routes) (peerInfo, bool) {
	rf, ok := m.replica.(refiller)
	if !ok {
		return peerInfo{}, false
	}
	var pool []peerInfo
	for _, s := range rf.ReleasedShards() {
		if os := r.ownersOf(s); os.self {
			pool = append(pool, os.peers...)
		}
	}
	if len(pool) == 0 {
		return peerInfo{}, false
	}
	return pool[m.randN(len(pool))], true
}

// advertiseFor returns the anti-entropy vector adjustment of replica
// (antientropy.Hooks.Advertise): a space it released, of a shard this
// node owns now, is advertised at 0, so that a co-owner hands all of it
// back. nil when replica never releases.
func (m *Mesh) advertiseFor(replica Replica) func(map[crdt.NodeID]uint64) {
	rf, ok := replica.(refiller)
	if !ok {
		return nil
	}
	return func(vv map[crdt.NodeID]uint64) {
		released := rf.ReleasedShards()
		if len(released) == 0 {
			return
		}
		r := m.routes.Load()
		for sp, s := range released {
			if r.ownersOf(s).self {
				vv[sp] = 0
			}
		}
	}
}

// floorOf returns the anti-entropy floor of replica (antientropy.Hooks.Floor),
// nil when it never drops what its vector covers.
func floorOf(replica Replica) func(crdt.NodeID) uint64 {
	if r, ok := replica.(releaser); ok {
		return r.ReleasedThrough
	}
	return nil
}
