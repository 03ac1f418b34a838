package ratelimit

import (
	"encoding/binary"
	"hash/fnv"
	"time"

	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/internal/splitmix"
)

// Member is one live node of the mesh as the limiter sees it.
type Member struct {
	// Name identifies the node; owners are chosen by hashing it.
	Name string
	// Addr is where the Transport reaches the node: its member name on
	// the mesh's peer transport (MeshMembership), or whatever a test's
	// transport understands.
	Addr string
}

// Membership tells the limiter who it is and which nodes are live. It is
// called at most once per Config.MembersTTL on the decision path, so it may
// take locks, but it must not block on the network.
type Membership interface {
	// Self is this node's name.
	Self() string
	// Members are the live nodes, this one included.
	Members() []Member
}

// Static is a fixed membership: a single node (or a fixed set in tests).
type Static struct {
	SelfName string
	All      []Member
}

// Self implements Membership.
func (s Static) Self() string { return s.SelfName }

// Members implements Membership.
func (s Static) Members() []Member { return s.All }

// Single is the membership of a node without the mesh: it owns every limit.
func Single(name string) Membership {
	return Static{SelfName: name, All: []Member{{Name: name}}}
}

// MeshStatus is what MeshMembership needs from the mesh (a *gossip.Mesh).
type MeshStatus interface {
	Status() gossip.Status
}

// MeshMembership is the membership of the gossip mesh: the members that are
// alive or suspect (a suspect member is still in the mesh; if it cannot be
// reached, its keys fall back to local shares until it is declared dead).
func MeshMembership(m MeshStatus) Membership { return meshMembership{m} }

type meshMembership struct{ m MeshStatus }

func (mm meshMembership) Self() string { return mm.m.Status().Self.Name }

func (mm meshMembership) Members() []Member {
	st := mm.m.Status()
	out := make([]Member, 0, len(st.Members))
	for _, mb := range st.Members {
		if mb.State == gossip.StateAlive || mb.State == gossip.StateSuspect || mb.Name == st.Self.Name {
			out = append(out, Member{Name: mb.Name, Addr: mb.Name})
		}
	}
	return out
}

// view is a snapshot of the membership with the members' hashes.
type view struct {
	self    string
	members []viewMember
	expires time.Time // monotonic
}

type viewMember struct {
	Member
}

func newView(ms Membership, now time.Time, ttl time.Duration) *view {
	self := ms.Self()
	v := &view{self: self, expires: now.Add(ttl)}
	seen := make(map[string]bool)
	for _, m := range ms.Members() {
		if m.Name == "" || seen[m.Name] {
			continue
		}
		seen[m.Name] = true
		v.members = append(v.members, viewMember{Member: m})
	}
	if !seen[self] {
		v.members = append(v.members, viewMember{Member: Member{Name: self}})
	}
	return v
}

// owner picks the member with the highest rendezvous score for the key
// hash (gossip.Rendezvous, the mesh's one owner choice): when a member
// leaves, only its keys move; when one joins, it takes about 1/n of the
// keys.
func (v *view) owner(kh uint64) *viewMember {
	var best *viewMember
	var bestScore uint64
	for i := range v.members {
		m := &v.members[i]
		s := gossip.Rendezvous(kh, m.Name)
		if best == nil || s > bestScore || (s == bestScore && m.Name > best.Name) {
			best, bestScore = m, s
		}
	}
	return best
}

// keyHash hashes a limit's identity: namespace, key and window.
func keyHash(ns, key string, w time.Duration) uint64 {
	h := fnv.New64a()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write([]byte(key))
	h.Write([]byte{0})
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(w))
	h.Write(b[:])
	return splitmix.Mix(h.Sum64())
}
