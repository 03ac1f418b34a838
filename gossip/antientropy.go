package gossip

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/gossip/antientropy"
)

// antiEntropyLoop runs one exchange with a random peer every
// AntiEntropyInterval (jittered by up to a quarter, so that nodes started
// together do not stay in step).
func (m *Mesh) antiEntropyLoop() {
	defer m.loopWG.Done()
	for {
		d := m.cfg.AntiEntropyInterval
		d += time.Duration(m.randFloat() * float64(d) / 4)
		t := time.NewTimer(d)
		select {
		case <-m.loopDone:
			t.Stop()
			return
		case <-t.C:
		}
		m.prunePeers()
		m.ae.Settled(time.Now()) // keep the vector history going between exchanges
		p, ok := m.pickAntiEntropyPeer()
		if !ok {
			continue
		}
		if err := m.exchange(m.ctx, p, false); err != nil && !errors.Is(err, antientropy.ErrBusy) {
			m.log.Debug("anti-entropy failed", zap.String("peer", p.name), zap.Error(err))
		}
	}
}

// pickAntiEntropyPeer picks a random alive peer: from another region with
// probability AntiEntropyRemote (or when the own region has no other
// node), else from the own region.
func (m *Mesh) pickAntiEntropyPeer() (peerInfo, bool) {
	r := m.routes.Load()
	// A shard this node owns but released changes of is taken back from
	// a co-owner first (advertiseFor): every other round until it is.
	if m.randFloat() < 0.5 {
		if p, ok := m.pickRefillPeer(r); ok {
			return p, true
		}
	}
	// With sharded namespaces, every other round goes to a co-owner.
	if m.spaces.seen() && m.randFloat() < 0.5 {
		if p, ok := m.pickCoOwner(r); ok {
			return p, true
		}
	}
	var remote []peerInfo
	for _, ps := range r.remote {
		remote = append(remote, ps...)
	}
	slices.SortFunc(remote, func(a, b peerInfo) int { return cmp.Compare(a.name, b.name) })
	pool := r.local
	if len(pool) == 0 || (len(remote) > 0 && m.randFloat() < m.cfg.AntiEntropyRemote) {
		pool = remote
	}
	if len(pool) == 0 {
		return peerInfo{}, false
	}
	return pool[m.randN(len(pool))], true
}

// markRepaired clears the drop gap of the stream to name: an exchange that
// started after the drop has moved everything this node held to it.
func (m *Mesh) markRepaired(name string, start time.Time) {
	m.peers.RLock()
	p := m.peers.m[name]
	m.peers.RUnlock()
	if p != nil {
		p.Repaired(start)
	}
}

// exchange runs one anti-entropy exchange with p as initiator (see
// antientropy.Exchanger.Exchange).
func (m *Mesh) exchange(ctx context.Context, p peerInfo, full bool) error {
	return m.ae.Exchange(ctx, p.peer(), full)
}
