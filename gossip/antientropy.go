package gossip

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip/transport"
)

var errBusy = errors.New("gossip: peer is busy with other anti-entropy sessions")

// claimPeer marks an exchange with the named peer as running and reports
// whether none was. Two exchanges between the same pair of nodes would send
// the same changes twice (each from the vector the receiver had when it
// started): with a million counters to catch up, the periodic rounds of
// both sides ran beside the start-up sync and moved 2.5 times the data.
func (m *Mesh) claimPeer(name string) bool {
	m.aeBusy.Lock()
	defer m.aeBusy.Unlock()
	if m.aeBusy.peers[name] {
		return false
	}
	if m.aeBusy.peers == nil {
		m.aeBusy.peers = make(map[string]bool)
	}
	m.aeBusy.peers[name] = true
	return true
}

func (m *Mesh) releasePeer(name string) {
	m.aeBusy.Lock()
	delete(m.aeBusy.peers, name)
	m.aeBusy.Unlock()
}

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
		m.settledVV(time.Now()) // keep the vector history going between exchanges
		p, ok := m.pickAntiEntropyPeer()
		if !ok {
			continue
		}
		if err := m.exchange(m.ctx, p, false); err != nil && !errors.Is(err, errBusy) {
			m.log.Debug("anti-entropy failed", zap.String("peer", p.name), zap.Error(err))
		}
	}
}

// pickAntiEntropyPeer picks a random alive peer: from another region with
// probability AntiEntropyRemote (or when the own region has no other
// node), else from the own region.
func (m *Mesh) pickAntiEntropyPeer() (peerInfo, bool) {
	r := m.routes.Load()
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

// exchange runs one push-pull anti-entropy session with p, as initiator:
//
//	-> hello, aeReq{my vector, my config digest}
//	<- chunks of what I lack, aeResp{its vector, its digest, its configs if the digests differ}
//	-> chunks of what it lacks, aeEnd{my configs if the digests differ}
//	<- aeFin (it has applied everything)
//
// With full (SyncOnce) both sides send everything the other lacks;
// otherwise only what they have held for AntiEntropyGrace.
func (m *Mesh) exchange(ctx context.Context, p peerInfo, full bool) (err error) {
	if !m.claimPeer(p.name) {
		return errBusy
	}
	defer m.releasePeer(p.name)
	start := time.Now()
	defer func() {
		if err != nil {
			m.stats.AEFailures.Add(1)
		}
	}()
	fc, err := m.tr.Dial(ctx, p.peer(), transport.KindAE)
	m.setReachable(p.name, err == nil)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { fc.Close() })
	defer stop()
	defer fc.Close()

	cfgs := m.replica.Configs()
	digest := transport.ConfigDigest(cfgs)
	if err := fc.WriteFrame(transport.FrameAEReq, &transport.AEReq{VV: transport.ToWireVV(m.replica.VersionVector()), CfgDigest: digest, Full: full}); err != nil {
		return err
	}
	if err := fc.Flush(); err != nil {
		return err
	}
	var resp transport.AEResp
	if err := m.receiveChunks(fc, transport.FrameAEResp, &resp); err != nil {
		return err
	}
	if len(resp.Configs) > 0 {
		if err := m.replica.Apply(Batch{Configs: transport.FromWireConfigs(resp.Configs)}); err != nil {
			m.stats.ApplyErrors.Add(1)
			return fmt.Errorf("gossip: apply configs: %w", err)
		}
	}
	if _, err := m.sendDiff(fc, transport.FromWireVV(resp.VV), full); err != nil {
		return err
	}
	var end transport.AEEnd
	if resp.CfgDigest != digest {
		end.Configs = transport.ToWireConfigs(cfgs)
	}
	if err := fc.WriteFrame(transport.FrameAEEnd, &end); err != nil {
		return err
	}
	if err := fc.Flush(); err != nil {
		return err
	}
	if err := fc.ReadMsg(m.cfg.IOTimeout, transport.FrameAEFin, nil); err != nil {
		return err
	}
	m.stats.AERounds.Add(1)
	m.markRepaired(p.name, start)
	return nil
}

// serveAE answers an exchange that p started (see exchange).
func (m *Mesh) serveAE(fc *transport.Conn, h transport.Hello) (err error) {
	start := time.Now()
	fc.MarkAE()
	select {
	case m.aeSem <- struct{}{}:
		defer func() { <-m.aeSem }()
	default:
		fc.WriteFrame(transport.FrameAEBusy, nil)
		return fc.Flush()
	}
	if !m.claimPeer(h.Name) {
		fc.WriteFrame(transport.FrameAEBusy, nil)
		return fc.Flush()
	}
	defer m.releasePeer(h.Name)
	defer func() {
		if err != nil {
			m.stats.AEFailures.Add(1)
		}
	}()
	var req transport.AEReq
	if err := fc.ReadMsg(m.cfg.IOTimeout, transport.FrameAEReq, &req); err != nil {
		return err
	}
	if _, err := m.sendDiff(fc, transport.FromWireVV(req.VV), req.Full); err != nil {
		return err
	}
	cfgs := m.replica.Configs()
	resp := transport.AEResp{VV: transport.ToWireVV(m.replica.VersionVector()), CfgDigest: transport.ConfigDigest(cfgs)}
	if resp.CfgDigest != req.CfgDigest {
		resp.Configs = transport.ToWireConfigs(cfgs)
	}
	if err := fc.WriteFrame(transport.FrameAEResp, &resp); err != nil {
		return err
	}
	if err := fc.Flush(); err != nil {
		return err
	}
	var end transport.AEEnd
	if err := m.receiveChunks(fc, transport.FrameAEEnd, &end); err != nil {
		return err
	}
	if len(end.Configs) > 0 {
		if err := m.replica.Apply(Batch{Configs: transport.FromWireConfigs(end.Configs)}); err != nil {
			m.stats.ApplyErrors.Add(1)
			return fmt.Errorf("gossip: apply configs: %w", err)
		}
	}
	if err := fc.WriteFrame(transport.FrameAEFin, nil); err != nil {
		return err
	}
	if err := fc.Flush(); err != nil {
		return err
	}
	m.stats.AEServed.Add(1)
	m.markRepaired(h.Name, start)
	return nil
}

// receiveChunks applies the chunks the other side sends until a frame of
// type last arrives, which it decodes into v.
func (m *Mesh) receiveChunks(fc *transport.Conn, last byte, v any) error {
	for {
		typ, body, err := fc.ReadFrame(m.cfg.IOTimeout)
		if err != nil {
			return err
		}
		switch typ {
		case transport.FrameAEChunk:
			var w transport.WireBatch
			if err := transport.Decode(body, &w); err != nil {
				return err
			}
			b, err := transport.FromWire(w)
			if err != nil {
				return err
			}
			if err := m.replica.Apply(b); err != nil {
				m.stats.ApplyErrors.Add(1)
				return fmt.Errorf("gossip: apply anti-entropy chunk: %w", err)
			}
			m.stats.AEDeltasReceived.Add(uint64(len(b.Deltas)))
		case last:
			return transport.Decode(body, v)
		case transport.FrameAEBusy:
			return errBusy
		default:
			return fmt.Errorf("%w: frame type %d in an anti-entropy session", ErrProtocol, typ)
		}
	}
}

// sendDiff sends, for every origin where this node's vector is ahead of
// theirs, the changes the replica holds past theirs, in chunks of at most
// MaxFrameDeltas. Each chunk carries the range it completes: the replica
// scans in seq order, so a chunk ending at seq s holds (with the chunks
// before it) every held change up to s, and changes up to the vector that
// are not held were superseded by a later change, which a later chunk
// carries (or, past a grace cap, the receiver's next transfer: its vector
// stays below the superseding change). The last chunk of an origin closes
// its range at the vector.
//
// Without full, the vector is the one of AntiEntropyGrace ago and the scan
// stops there: newer changes are left to the streams. With full, the
// current vector, and every held change past theirs goes.
func (m *Mesh) sendDiff(fc *transport.Conn, theirs map[crdt.NodeID]uint64, full bool) (int, error) {
	var mine map[crdt.NodeID]uint64
	if full {
		mine = m.replica.VersionVector()
	} else {
		mine = m.settledVV(time.Now())
	}
	origins := make([]crdt.NodeID, 0, len(mine))
	for o, upto := range mine {
		if upto > theirs[o] {
			origins = append(origins, o)
		}
	}
	slices.Sort(origins)
	sent := 0
	for _, o := range origins {
		upto, after := mine[o], theirs[o]
		last := after // the vector the receiver will have reached
		var chunk []Delta
		var werr error
		flush := func(rangeUpto uint64) {
			var b Batch
			b.Deltas = chunk
			if rangeUpto > last {
				b.Ranges = []Range{{Origin: o, After: last, Upto: rangeUpto}}
				last = rangeUpto
			}
			if b.Empty() {
				return
			}
			w := transport.ToWire(b)
			if werr = fc.WriteFrame(transport.FrameAEChunk, &w); werr == nil {
				sent += len(chunk)
				m.stats.AEDeltasSent.Add(uint64(len(chunk)))
			}
			chunk = chunk[:0]
		}
		err := m.replica.ScanSince(o, after, func(d Delta) bool {
			if !full && d.Seq > upto {
				return false
			}
			chunk = append(chunk, d)
			if len(chunk) >= m.cfg.MaxFrameDeltas {
				flush(min(d.Seq, upto))
			}
			return werr == nil
		})
		if werr != nil {
			return sent, werr
		}
		if err != nil {
			return sent, fmt.Errorf("gossip: scan changes of origin %d: %w", o, err)
		}
		flush(upto)
		if werr != nil {
			return sent, werr
		}
	}
	return sent, nil
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

// vvSnapshot is the replica's version vector at a time.
type vvSnapshot struct {
	at time.Time
	vv map[crdt.NodeID]uint64
}

// settledVV records the replica's current version vector and returns the
// newest one recorded at least AntiEntropyGrace ago (empty when there is
// none yet): what this node has held long enough for the streams to have
// delivered it.
func (m *Mesh) settledVV(now time.Time) map[crdt.NodeID]uint64 {
	cur := m.replica.VersionVector()
	if m.cfg.AntiEntropyGrace == 0 {
		return cur
	}
	cutoff := now.Add(-m.cfg.AntiEntropyGrace)
	m.hist.Lock()
	defer m.hist.Unlock()
	m.hist.snaps = append(m.hist.snaps, vvSnapshot{at: now, vv: cur})
	settled := -1
	for i, s := range m.hist.snaps {
		if s.at.After(cutoff) {
			break
		}
		settled = i
	}
	if settled < 0 {
		return nil
	}
	m.hist.snaps = m.hist.snaps[settled:] // older ones are no longer needed
	return m.hist.snaps[0].vv
}
