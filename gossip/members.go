package gossip

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/countmesh/countmesh/gossip/antientropy"
	"github.com/countmesh/countmesh/gossip/transport"
	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
)

// metaVersion is the version of the node meta encoding.
const metaVersion = 1

// nodeMeta is what every member advertises through memberlist (msgpack,
// well under memberlist's 512-byte limit).
type nodeMeta struct {
	Version  uint8
	Region   string
	HTTPAddr string
	ReplAddr string
	// Leaving is set, and broadcast, just before a graceful leave, so that
	// the others can tell a member that left from one that failed
	// (memberlist does not expose the difference to its event delegate).
	Leaving bool
	// ID is the member's slot id (crdt.NodeIDOf its name and incarnation);
	// 0 in the meta of a member that predates incarnations, whose id is
	// crdt.NodeIDFromName of its name.
	ID uint64
}

func (m *Mesh) setMeta(replAddr string, leaving bool) {
	b, err := transport.Marshal(&nodeMeta{Version: metaVersion, Region: m.cfg.Region, HTTPAddr: m.cfg.HTTPAddr, ReplAddr: replAddr, Leaving: leaving, ID: uint64(m.selfID)})
	if err != nil {
		// Plain strings and a bool always encode; keep the old meta if not.
		m.log.Error("encode node meta; keeping the previous one", zap.Error(err))
		return
	}
	m.meta.Store(&b)
}

func decodeMeta(b []byte) (nodeMeta, error) {
	var md nodeMeta
	if err := transport.Decode(b, &md); err != nil {
		return md, fmt.Errorf("node meta: %w", err)
	}
	if md.Version != metaVersion || md.Region == "" || md.ReplAddr == "" {
		return md, fmt.Errorf("%w: node meta version %d, region %q, replication address %q", ErrProtocol, md.Version, md.Region, md.ReplAddr)
	}
	return md, nil
}

// memberRecord is what this node knows of another member.
type memberRecord struct {
	info  Member
	state string    // StateAlive, StateDead or StateLeft (suspicion is memberlist's)
	since time.Time // when state was entered
	// verified: the member proved its name on the peer listener (with
	// TLS: a certificate signed by the CA and issued to that name). Until
	// then it is no member of this node's mesh: it is not listed, gets no
	// stream, call or exchange, and counts in no quorum. Without TLS every
	// member is verified at once.
	verified bool
	// healOnVerify: the member came back from dead; run a heal exchange
	// once it is verified.
	healOnVerify bool
	warned       bool // a failed verification was logged
}

// delegate answers memberlist's questions: only the node meta; membership
// messages carry no application data.
type delegate struct{ m *Mesh }

func (d *delegate) NodeMeta(limit int) []byte {
	p := d.m.meta.Load()
	if p == nil {
		return nil
	}
	b := *p
	if len(b) > limit {
		d.m.log.Error("node meta exceeds memberlist's limit", zap.Int("size", len(b)), zap.Int("limit", limit))
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// eventDelegate receives memberlist's membership changes. memberlist calls
// it with its own lock held, so it only updates this package's state and
// never calls back into memberlist.
type eventDelegate struct{ m *Mesh }

func (e *eventDelegate) NotifyJoin(n *memberlist.Node)   { e.m.memberChanged(n, false) }
func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) { e.m.memberChanged(n, false) }
func (e *eventDelegate) NotifyLeave(n *memberlist.Node)  { e.m.memberChanged(n, true) }

// memberChanged records a membership event. memberlist's Node.State is not
// filled in for delegates, so a member that is gone counts as left when its
// last meta announced the leave, else as dead.
func (m *Mesh) memberChanged(n *memberlist.Node, gone bool) {
	if n.Name == m.cfg.Name {
		return
	}
	md, err := decodeMeta(n.Meta)
	if err != nil {
		m.log.Warn("ignoring a member without countmesh meta", zap.String("member", n.Name), zap.Error(err))
		return
	}
	state := StateAlive
	switch {
	case md.Leaving:
		state = StateLeft
	case gone:
		state = StateDead
	}
	info := Member{
		Name:       n.Name,
		Region:     md.Region,
		HTTPAddr:   md.HTTPAddr,
		GossipAddr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		ReplAddr:   md.ReplAddr,
		ID:         crdt.NodeID(md.ID),
	}
	if info.ID == 0 {
		info.ID = crdt.NodeIDFromName(n.Name)
	}
	m.members.Lock()
	old := m.members.m[n.Name]
	if old != nil && gone && old.state == StateLeft {
		state = StateLeft // announced its leave, then went
	}
	verify, heal := false, false
	backFromDead := old != nil && old.state == StateDead && state == StateAlive
	if old == nil || old.state != state || old.info != info {
		// A member that proved its name at an address keeps that proof
		// across a partition or a restart there: every connection to it
		// is mutually authenticated anyway (TLS checks the name on each
		// dial); the proof only decides whether it is listed at all.
		rec := &memberRecord{info: info, state: state, since: time.Now(),
			verified: m.cfg.TLS == nil || (old != nil && old.verified && old.info.ReplAddr == info.ReplAddr)}
		rec.healOnVerify = backFromDead && !rec.verified
		verify = !rec.verified && state == StateAlive
		heal = backFromDead && rec.verified
		m.members.m[n.Name] = rec
	}
	m.rebuildRoutesLocked()
	m.members.Unlock()
	if verify {
		m.verifyMember(peerInfo{name: n.Name, region: md.Region, replAddr: md.ReplAddr})
	}
	m.setReachable(n.Name, true) // a new state: forget old connection failures
	if old == nil || old.state != state {
		m.log.Info("member "+state, zap.String("member", n.Name), zap.String("region", md.Region), zap.String("gossip_addr", info.GossipAddr))
	}
	if state != StateAlive {
		m.dropPeer(n.Name)
	}
	if heal {
		// Back from a partition or a restart: what the streams dropped
		// meanwhile is repaired now rather than whenever a random
		// anti-entropy pick lands on it (measured: 3.1 s to converge after
		// a 60 s region cut, with the repair left to the periodic rounds).
		m.healExchange(peerInfo{name: n.Name, region: md.Region, replAddr: md.ReplAddr})
	}
	// A member whose address or region changed gets a new stream the next
	// time it is a target (peer compares the info).
}

func (m *Mesh) rebuildRoutesLocked() {
	alive := make(map[string]peerInfo)
	for name, rec := range m.members.m {
		if rec.state == StateAlive && rec.verified {
			alive[name] = peerInfo{name: name, region: rec.info.Region, replAddr: rec.info.ReplAddr}
		}
	}
	m.routes.Store(buildRoutes(m.cfg.Name, m.cfg.Region, m.selfID, alive, m.cfg.FanOut))
}

// reconnectLoop keeps trying to reach failed members and the join
// addresses, as serf does: memberlist forgets a dead member, so without
// this two sides of a healed partition would never meet again.
func (m *Mesh) reconnectLoop() {
	defer m.loopWG.Done()
	t := time.NewTicker(m.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-m.loopDone:
			return
		case <-t.C:
		}
		m.reconnectOnce()
	}
}

func (m *Mesh) reconnectOnce() {
	now := time.Now()
	var failed []Member
	var unverified []peerInfo
	var join []string
	alive := make(map[string]bool)
	m.members.Lock()
	for name, rec := range m.members.m {
		switch {
		case rec.state == StateDead && now.Sub(rec.since) > m.cfg.ReconnectTimeout,
			rec.state == StateLeft && now.Sub(rec.since) > m.cfg.TombstoneTimeout:
			delete(m.members.m, name)
		case rec.state == StateDead:
			failed = append(failed, rec.info)
		case rec.state == StateAlive && !rec.verified:
			unverified = append(unverified, peerInfo{name: name, region: rec.info.Region, replAddr: rec.info.ReplAddr})
			if !rec.warned && now.Sub(rec.since) > unverifiedWarnAfter {
				rec.warned = true
				m.log.Warn("a member has not proved its name on the peer listener; it is kept out of the mesh until it presents a certificate signed by the CA and issued to its name",
					zap.String("member", name), zap.String("peer_addr", rec.info.ReplAddr))
			}
		case rec.state == StateAlive:
			alive[rec.info.GossipAddr] = true
		}
	}
	if len(failed) > 0 || len(alive) == 0 {
		for _, a := range m.members.joinAddrs {
			if !alive[a] {
				join = append(join, a)
			}
		}
	}
	m.members.Unlock()
	slices.SortFunc(failed, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	// Probe up to reconnectFanout failed members at once, so that a healed
	// partition is found within about one interval whatever its size. A
	// probe dials the member's replication address first: a dial that this
	// node can cancel, where memberlist's join to a silently cut-off
	// address would hold the loop for its whole TCP timeout. Probes run in
	// the background with the full dial timeout (the first connection
	// through a network that just came back may need a SYN retransmit), one
	// at a time per member, while the loop keeps its pace.
	for len(failed) > reconnectFanout {
		i := m.randN(len(failed))
		failed = append(failed[:i], failed[i+1:]...)
	}
	for _, f := range failed {
		m.probeInBackground(peerInfo{name: f.Name, region: f.Region, replAddr: f.ReplAddr}, func() { m.rejoin(f.GossipAddr) })
	}
	// Alive members this node has not reached over replication for a while
	// (shown as suspect): a heal exchange that ran while a partition was
	// still half-healed may have been their last attempt. Probe them too;
	// on an answer, clear the mark and run one ordinary exchange (what the
	// streams carry anyway is left to them).
	unreachable := m.unreachableAlive()
	for len(unreachable) > reconnectFanout {
		i := m.randN(len(unreachable))
		unreachable = append(unreachable[:i], unreachable[i+1:]...)
	}
	for _, p := range unreachable {
		m.probeInBackground(p, func() {
			m.setReachable(p.name, true)
			m.repairExchange(p)
		})
	}
	for _, p := range unverified {
		m.verifyMember(p)
	}
	if len(join) > 0 {
		m.rejoin(join[m.randN(len(join))])
	}
}

// unverifiedWarnAfter is how long a member may stay unverified before it
// is logged (once).
const unverifiedWarnAfter = 5 * time.Second

// verifyMember probes a member's peer listener in the background; when it
// answers and (with TLS) proves its name, the member joins this node's
// view of the mesh.
func (m *Mesh) verifyMember(pi peerInfo) {
	m.probeInBackground(pi, func() { m.markVerified(pi) })
}

func (m *Mesh) markVerified(pi peerInfo) {
	m.members.Lock()
	rec := m.members.m[pi.name]
	if rec == nil || rec.verified || rec.state != StateAlive || rec.info.ReplAddr != pi.replAddr {
		m.members.Unlock()
		return
	}
	rec.verified = true
	heal := rec.healOnVerify
	rec.healOnVerify = false
	m.rebuildRoutesLocked()
	m.members.Unlock()
	m.log.Debug("member verified", zap.String("member", pi.name))
	if heal {
		m.healExchange(pi)
	}
}

// reconnectFanout bounds the failed members probed in one reconnect round.
const reconnectFanout = 4

// probeInBackground probes addr unless a probe of it is in flight, and runs
// then (serialised with the other probes' thens: joins merge membership)
// when it answers. Leave waits for it (heal.wg).
func (m *Mesh) probeInBackground(pi peerInfo, then func()) {
	addr := pi.replAddr
	m.reach.Lock()
	if m.reach.probing[addr] {
		m.reach.Unlock()
		return
	}
	m.reach.probing[addr] = true
	m.reach.Unlock()
	started := m.goHeal(func() {
		ok := m.probe(pi)
		m.reach.Lock()
		delete(m.reach.probing, addr)
		m.reach.Unlock()
		if ok && m.loopCtx.Err() == nil {
			m.probeThen.Lock()
			then()
			m.probeThen.Unlock()
		}
	})
	if !started {
		m.reach.Lock()
		delete(m.reach.probing, addr)
		m.reach.Unlock()
	}
}

// probe reports whether the member's peer listener answers (and, with
// TLS, proves to be that member).
func (m *Mesh) probe(pi peerInfo) bool {
	fc, err := m.tr.Dial(m.loopCtx, pi.peer(), transport.KindPing)
	if err != nil {
		return false
	}
	fc.Close()
	return true
}

// rejoin asks memberlist to join addr (a push-pull with it).
func (m *Mesh) rejoin(addr string) {
	if m.loopCtx.Err() != nil {
		return
	}
	if n, err := m.ml.Join([]string{addr}); err == nil && n > 0 {
		m.stats.Reconnects.Add(1)
		m.log.Debug("reconnected", zap.String("addr", addr))
	} else {
		m.log.Debug("reconnect failed", zap.String("addr", addr), zap.Error(err))
	}
}

// setReachable records whether the last attempt to reach a member over
// replication (a stream or an exchange) succeeded. Status reports an alive
// member that cannot be reached as suspect: memberlist does not expose its
// own suspicion.
func (m *Mesh) setReachable(name string, ok bool) {
	m.reach.Lock()
	defer m.reach.Unlock()
	if ok {
		delete(m.reach.failing, name)
	} else if _, ok := m.reach.failing[name]; !ok {
		m.reach.failing[name] = time.Now()
	}
}

// healExchange runs a full anti-entropy exchange with a member that came
// back, in the background; Leave stops and waits for these.
func (m *Mesh) healExchange(p peerInfo) { m.exchangeInBackground(p, true) }

// repairExchange runs one ordinary anti-entropy exchange with p in the
// background (a member reachable again: what the streams carry is left to
// them).
func (m *Mesh) repairExchange(p peerInfo) { m.exchangeInBackground(p, false) }

func (m *Mesh) exchangeInBackground(p peerInfo, full bool) {
	m.goHeal(func() {
		if err := m.exchange(m.loopCtx, p, full); err != nil && !errors.Is(err, antientropy.ErrBusy) {
			m.log.Debug("exchange with a member back or reachable again failed; the periodic rounds will repair",
				zap.String("peer", p.name), zap.Bool("full", full), zap.Error(err))
		}
	})
}

// goHeal runs fn in the background unless heals are stopped; Leave waits
// for it (stopHeals). It reports whether fn was started.
func (m *Mesh) goHeal(fn func()) bool {
	m.heal.Lock()
	if m.heal.stopped || m.state.Load() != stateStarted {
		m.heal.Unlock()
		return false
	}
	m.heal.wg.Add(1)
	m.heal.Unlock()
	go func() {
		defer m.heal.wg.Done()
		fn()
	}()
	return true
}

// stopHeals stops new heal exchanges and waits for those running (their
// context is loopCtx, already cancelled by the caller).
func (m *Mesh) stopHeals() {
	m.heal.Lock()
	m.heal.stopped = true
	m.heal.Unlock()
	m.heal.wg.Wait()
}

// unreachableFor is how long an alive member's replication must have been
// failing before the reconnect loop probes it.
const unreachableFor = time.Second

// unreachableAlive lists the alive members whose replication has been
// failing for unreachableFor.
func (m *Mesh) unreachableAlive() []peerInfo {
	edge := time.Now().Add(-unreachableFor)
	m.reach.Lock()
	names := make([]string, 0, len(m.reach.failing))
	for name, since := range m.reach.failing {
		if since.Before(edge) {
			names = append(names, name)
		}
	}
	m.reach.Unlock()
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	var out []peerInfo
	m.members.Lock()
	for _, name := range names {
		if rec := m.members.m[name]; rec != nil && rec.state == StateAlive {
			out = append(out, peerInfo{name: name, region: rec.info.Region, replAddr: rec.info.ReplAddr})
		}
	}
	m.members.Unlock()
	return out
}
