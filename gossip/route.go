package gossip

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strings"
	"sync"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip/transport"
	"github.com/countmesh/countmesh/internal/splitmix"
)

// peerInfo is what routing needs of a member.
type peerInfo struct {
	name, region, replAddr string
}

// routes is an immutable snapshot of the alive peers, rebuilt on every
// membership change, so that Publish reads it without locks.
type routes struct {
	self   string
	alive  map[string]peerInfo
	local  []peerInfo            // alive peers of this node's region, by name
	remote map[string][]peerInfo // alive peers of other regions, by region, by name
	// publish is where this node's own changes go: local peers plus one
	// bridge per remote region (or every remote peer with FanOutDirect).
	publish []peerInfo
	// relay[i] tells whether publish[i] is a bridge that must relay.
	relay []bool
	// region is this node's; relayTo the names of the publish targets that
	// relay, so that a sharded change to one of them shares its stream.
	region  string
	relayTo map[string]bool
	// owners caches ownersOf: change.Shard -> *ownerSet.
	owners sync.Map
}

func buildRoutes(self, region string, selfID crdt.NodeID, alive map[string]peerInfo, mode FanOut) *routes {
	r := &routes{self: self, alive: alive, remote: make(map[string][]peerInfo), region: region, relayTo: make(map[string]bool)}
	for _, p := range alive {
		if p.region == region {
			r.local = append(r.local, p)
		} else {
			r.remote[p.region] = append(r.remote[p.region], p)
		}
	}
	byName := func(a, b peerInfo) int { return strings.Compare(a.name, b.name) }
	slices.SortFunc(r.local, byName)
	regions := make([]string, 0, len(r.remote))
	for reg, ps := range r.remote {
		slices.SortFunc(ps, byName)
		regions = append(regions, reg)
	}
	slices.Sort(regions)
	r.publish = append(r.publish, r.local...)
	r.relay = make([]bool, len(r.local))
	for _, reg := range regions {
		ps := r.remote[reg]
		if mode == FanOutDirect {
			r.publish = append(r.publish, ps...)
			for range ps {
				r.relay = append(r.relay, false)
			}
			continue
		}
		b := bridge(selfID, ps)
		r.publish = append(r.publish, b)
		r.relay = append(r.relay, true)
		r.relayTo[b.name] = true
	}
	return r
}

// bridge chooses, among the alive members of one remote region, the one
// that relays origin's changes into that region: the highest rendezvous
// score of (origin, member name). Every node with the same view of the
// region picks the same bridge; when it dies only the origins it served
// move, each to its next-highest member.
func bridge(origin crdt.NodeID, members []peerInfo) peerInfo {
	var best peerInfo
	var bestScore uint64
	for i, m := range members {
		s := rendezvous(origin, m.name)
		if i == 0 || s > bestScore || (s == bestScore && m.name < best.name) {
			best, bestScore = m, s
		}
	}
	return best
}

// Bridge returns the name of the member of candidates (the alive members
// of one region) that relays origin's changes into that region, as every
// node computes it; "" when candidates is empty.
func Bridge(origin crdt.NodeID, candidates []string) string {
	if len(candidates) == 0 {
		return ""
	}
	ps := make([]peerInfo, len(candidates))
	for i, c := range candidates {
		ps[i] = peerInfo{name: c}
	}
	return bridge(origin, ps).name
}

func rendezvous(origin crdt.NodeID, name string) uint64 {
	return Rendezvous(uint64(origin), name)
}

// Rendezvous is the score of member name for key in rendezvous (highest
// random weight) hashing, the one owner choice of the mesh: bridges per
// origin here, rate-limit owners in package ratelimit. The member with the
// highest score owns the key; when it goes, only its keys move.
func Rendezvous(key uint64, name string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], key)
	h.Write(b[:])
	h.Write([]byte(name))
	// FNV's low bits mix poorly for inputs that differ in their last bytes.
	return splitmix.Mix(h.Sum64())
}

// peer returns what the transport needs to dial p.
func (p peerInfo) peer() transport.Peer {
	return transport.Peer{Name: p.name, Region: p.region, Addr: p.replAddr}
}

// fromPeer is the inverse of peerInfo.peer.
func fromPeer(p transport.Peer) peerInfo {
	return peerInfo{name: p.Name, region: p.Region, replAddr: p.Addr}
}
