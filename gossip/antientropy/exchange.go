package antientropy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip/internal/stats"
	"github.com/countmesh/countmesh/gossip/transport"
)

// Replica is what an exchange reads and merges (gossip.Replica).
type Replica interface {
	Apply(b change.Batch) error
	VersionVector() map[crdt.NodeID]uint64
	HeldAhead() map[crdt.NodeID][]uint64
	ScanSince(origin crdt.NodeID, after uint64, fn func(change.Delta) bool) error
	Configs() []change.ConfigRecord
}

// Config holds the exchange settings (see gossip.Config).
type Config struct {
	// IOTimeout bounds each read and write.
	IOTimeout time.Duration
	// Grace leaves changes held for less than this to the streams
	// (gossip.Config.AntiEntropyGrace); a full exchange ignores it.
	Grace time.Duration
	// MaxFrameDeltas bounds the deltas of one chunk.
	MaxFrameDeltas int
	// MaxConcurrent bounds the exchanges other nodes run against this one.
	MaxConcurrent int
}

// Hooks connect an Exchanger to the mesh that owns it.
type Hooks struct {
	// Dial opens a connection of a kind to a peer.
	Dial func(ctx context.Context, p transport.Peer, kind uint8) (*transport.Conn, error)
	// Reachable records whether dialing a peer succeeded.
	Reachable func(name string, ok bool)
	// Repaired records that an exchange with a peer, started at start,
	// completed: what the stream to it dropped before start is repaired.
	Repaired func(name string, start time.Time)
	// Wants reports whether the named peer is to receive the changes of
	// origin (a sequence space of a shard it does not own is withheld);
	// nil sends everything.
	Wants func(peer string, origin crdt.NodeID) bool
	// Floor returns the highest change of origin this node may no longer
	// hold although its vector covers it (copies of a sharded namespace's
	// counters, dropped once their owners held them): a peer whose vector
	// is below it gets only the changes above it, with ranges from the
	// floor, since a range from below it would move the peer's vector over
	// changes it never got. nil: none.
	Floor func(origin crdt.NodeID) uint64
	// Advertise adjusts, in place, the copy of this node's version vector
	// that it tells a peer: an entry lowered to 0 makes the peer send every
	// change of that origin it holds (a node taking back a shard whose
	// changes it released). nil: the vector as it is.
	Advertise func(vv map[crdt.NodeID]uint64)
}

// Exchanger runs anti-entropy exchanges for one node, as initiator
// (Exchange) and responder (Serve). It is safe for concurrent use.
type Exchanger struct {
	cfg       Config
	replica   Replica
	stats     *stats.Counters
	dial      func(ctx context.Context, p transport.Peer, kind uint8) (*transport.Conn, error)
	reachable func(name string, ok bool)
	repaired  func(name string, start time.Time)
	wants     func(peer string, origin crdt.NodeID) bool
	floor     func(origin crdt.NodeID) uint64
	advertise func(vv map[crdt.NodeID]uint64)
	sem       chan struct{} // one token per inbound exchange

	// busy holds the peers this node is running an exchange with, in
	// either direction.
	busy struct {
		sync.Mutex // guards peers
		peers      map[string]bool
	}

	hist struct {
		sync.Mutex              // guards snaps
		snaps      []vvSnapshot // version vectors recently seen, oldest first
	}
}

// New returns an Exchanger over replica that counts in st.
func New(cfg Config, replica Replica, st *stats.Counters, h Hooks) *Exchanger {
	return &Exchanger{cfg: cfg, replica: replica, stats: st, dial: h.Dial, reachable: h.Reachable,
		repaired: h.Repaired, wants: h.Wants, floor: h.Floor, advertise: h.Advertise, sem: make(chan struct{}, cfg.MaxConcurrent)}
}

// advertised returns the version vector this node tells a peer (see
// Hooks.Advertise).
func (e *Exchanger) advertised() map[crdt.NodeID]uint64 {
	vv := e.replica.VersionVector()
	if e.advertise != nil {
		e.advertise(vv)
	}
	return vv
}

// ErrBusy is a peer that refused an exchange: it runs one with this node
// already, or as many as it allows.
var ErrBusy = errors.New("gossip: peer is busy with other anti-entropy sessions")

// claimPeer marks an exchange with the named peer as running and reports
// whether none was. Two exchanges between the same pair of nodes would send
// the same changes twice (each from the vector the receiver had when it
// started): with a million counters to catch up, the periodic rounds of
// both sides ran beside the start-up sync and moved 2.5 times the data.
func (e *Exchanger) claimPeer(name string) bool {
	e.busy.Lock()
	defer e.busy.Unlock()
	if e.busy.peers[name] {
		return false
	}
	if e.busy.peers == nil {
		e.busy.peers = make(map[string]bool)
	}
	e.busy.peers[name] = true
	return true
}

func (e *Exchanger) releasePeer(name string) {
	e.busy.Lock()
	delete(e.busy.peers, name)
	e.busy.Unlock()
}

// Exchange runs one push-pull anti-entropy session with p, as initiator:
//
//	-> hello, aeReq{my vector, my config digest}
//	<- chunks of what I lack, aeResp{its vector, its digest, its configs if the digests differ}
//	-> chunks of what it lacks, aeEnd{my configs if the digests differ}
//	<- aeFin (it has applied everything)
//
// With full (SyncOnce) both sides send everything the other lacks;
// otherwise only what they have held for AntiEntropyGrace.
func (e *Exchanger) Exchange(ctx context.Context, p transport.Peer, full bool) (err error) {
	return e.exchange(ctx, p, full, false)
}

// HandOver is a full Exchange that also gives p what Hooks.Wants would
// withhold (the shards p does not own): a node that leaves hands p
// everything only it may hold, for p to pass on to the owners. It takes
// nothing back (AEReq.Leaving): p sends no chunks.
func (e *Exchanger) HandOver(ctx context.Context, p transport.Peer) error {
	return e.exchange(ctx, p, true, true)
}

func (e *Exchanger) exchange(ctx context.Context, p transport.Peer, full, everything bool) (err error) {
	if !e.claimPeer(p.Name) {
		return ErrBusy
	}
	defer e.releasePeer(p.Name)
	start := time.Now()
	defer func() {
		if err != nil {
			e.stats.AEFailures.Add(1)
		}
	}()
	fc, err := e.dial(ctx, p, transport.KindAE)
	e.reachable(p.Name, err == nil)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { fc.Close() })
	defer stop()
	defer fc.Close()

	cfgs := e.replica.Configs()
	digest := transport.ConfigDigest(cfgs)
	req := transport.AEReq{VV: transport.ToWireVV(e.advertised()), Held: transport.ToWireHeld(e.replica.HeldAhead()), CfgDigest: digest, Full: full, Leaving: everything}
	if err := fc.Send(transport.FrameAEReq, &req); err != nil {
		return err
	}
	var resp transport.AEResp
	vouched, err := e.receiveChunks(fc, transport.FrameAEResp, &resp)
	if err != nil {
		return err
	}
	if err := e.applyConfigs(resp.Configs, append(vouched, fromWireIDs(resp.Vouch)...)); err != nil {
		return err
	}
	theirs := transport.FromWireVV(resp.VV)
	if _, err := e.sendDiff(fc, p.Name, theirs, transport.FromWireHeld(resp.Held), full, everything); err != nil {
		return err
	}
	var end transport.AEEnd
	if resp.CfgDigest != digest {
		end.Configs = transport.ToWireConfigs(cfgs)
		end.Vouch = e.configVouch(cfgs, theirs)
	}
	if err := fc.Send(transport.FrameAEEnd, &end); err != nil {
		return err
	}
	if err := fc.ReadMsg(e.cfg.IOTimeout, transport.FrameAEFin, nil); err != nil {
		return err
	}
	e.stats.AERounds.Add(1)
	e.repaired(p.Name, start)
	return nil
}

// Serve answers an exchange that a peer started (see Exchange); it is
// the transport.ServeFunc of transport.KindAE.
func (e *Exchanger) Serve(fc *transport.Conn, h transport.Hello) (err error) {
	start := time.Now()
	fc.MarkAE()
	select {
	case e.sem <- struct{}{}:
		defer func() { <-e.sem }()
	default:
		return fc.Send(transport.FrameAEBusy, nil)
	}
	if !e.claimPeer(h.Name) {
		return fc.Send(transport.FrameAEBusy, nil)
	}
	defer e.releasePeer(h.Name)
	defer func() {
		if err != nil {
			e.stats.AEFailures.Add(1)
		}
	}()
	var req transport.AEReq
	if err := fc.ReadMsg(e.cfg.IOTimeout, transport.FrameAEReq, &req); err != nil {
		return err
	}
	if !req.Leaving { // a leaving node's hand-over takes nothing
		if _, err := e.sendDiff(fc, h.Name, transport.FromWireVV(req.VV), transport.FromWireHeld(req.Held), req.Full, false); err != nil {
			return err
		}
	}
	cfgs := e.replica.Configs()
	resp := transport.AEResp{VV: transport.ToWireVV(e.advertised()), Held: transport.ToWireHeld(e.replica.HeldAhead()),
		CfgDigest: transport.ConfigDigest(cfgs)}
	if resp.CfgDigest != req.CfgDigest {
		resp.Configs = transport.ToWireConfigs(cfgs)
		resp.Vouch = e.configVouch(cfgs, transport.FromWireVV(req.VV))
	}
	if err := fc.Send(transport.FrameAEResp, &resp); err != nil {
		return err
	}
	var end transport.AEEnd
	vouched, err := e.receiveChunks(fc, transport.FrameAEEnd, &end)
	if err != nil {
		return err
	}
	if err := e.applyConfigs(end.Configs, append(vouched, fromWireIDs(end.Vouch)...)); err != nil {
		return err
	}
	if err := fc.Send(transport.FrameAEFin, nil); err != nil {
		return err
	}
	e.stats.AEServed.Add(1)
	e.repaired(h.Name, start)
	return nil
}

// applyConfigs applies the config records the other side sent (none when
// the digests agreed), with the origins its chunks vouched for: a record's
// writer may have left before this node came.
func (e *Exchanger) applyConfigs(wc []transport.WireConfig, vouched []crdt.NodeID) error {
	if len(wc) == 0 {
		return nil
	}
	if err := e.replica.Apply(change.Batch{Configs: transport.FromWireConfigs(wc), Vouched: vouched}); err != nil {
		e.stats.ApplyErrors.Add(1)
		return fmt.Errorf("gossip: apply configs: %w", err)
	}
	return nil
}

// receiveChunks applies the chunks the other side sends until a frame of
// type last arrives, which it decodes into v. It returns the origins the
// other side vouched for.
func (e *Exchanger) receiveChunks(fc *transport.Conn, last byte, v any) ([]crdt.NodeID, error) {
	var vouched []crdt.NodeID
	for {
		typ, body, err := fc.ReadFrame(e.cfg.IOTimeout)
		if err != nil {
			return nil, err
		}
		switch typ {
		case transport.FrameAEChunk:
			var w transport.WireBatch
			if err := transport.Decode(body, &w); err != nil {
				return nil, err
			}
			b, err := transport.FromWire(w)
			if err != nil {
				return nil, err
			}
			// The sender vouches once, in its first chunk, for every
			// chunk of the session.
			if len(b.Vouched) > 0 {
				vouched = b.Vouched
			} else {
				b.Vouched = vouched
			}
			if err := e.replica.Apply(b); err != nil {
				e.stats.ApplyErrors.Add(1)
				return nil, fmt.Errorf("gossip: apply anti-entropy chunk: %w", err)
			}
			e.stats.AEDeltasReceived.Add(uint64(len(b.Deltas)))
		case last:
			return vouched, transport.Decode(body, v)
		case transport.FrameAEBusy:
			return nil, ErrBusy
		default:
			return nil, fmt.Errorf("%w: frame type %d in an anti-entropy session", transport.ErrProtocol, typ)
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
// It also sends the single changes this node holds past a gap in its
// vector (Replica.HeldAhead) that the other side holds neither under its
// vector nor among its own held-ahead changes (theirsHeld). Without them,
// two nodes that each hold a different change past the same gap of an
// origin that is gone for good (a lost disk, a node that left) would agree
// on their vectors and never exchange those changes: the gap never fills.
// Such changes go without a range; the receiver records each delta's seq
// as held.
//
// Without full, the vector and held changes are the ones of
// AntiEntropyGrace ago and the scan stops there: newer changes are left to
// the streams. With full, the current ones, and every held change past
// theirs goes.
func (e *Exchanger) sendDiff(fc *transport.Conn, peer string, theirs map[crdt.NodeID]uint64, theirsHeld map[crdt.NodeID][]uint64, full, everything bool) (int, error) {
	var mine vvSnapshot
	if full {
		mine = vvSnapshot{vv: e.replica.VersionVector(), held: e.replica.HeldAhead()}
	} else {
		mine = e.settled(time.Now())
	}
	wanted := func(o crdt.NodeID) bool { return everything || e.wants == nil || e.wants(peer, o) }
	// offer[o] is the held-ahead changes of o the other side lacks.
	offer := make(map[crdt.NodeID]map[uint64]bool)
	for o, seqs := range mine.held {
		if !wanted(o) {
			continue
		}
		for _, s := range seqs {
			if _, found := slices.BinarySearch(theirsHeld[o], s); s > theirs[o] && !found {
				if offer[o] == nil {
					offer[o] = make(map[uint64]bool)
				}
				offer[o][s] = true
			}
		}
	}
	origins := make([]crdt.NodeID, 0, len(mine.vv)+len(offer))
	for o, upto := range mine.vv {
		if (upto > theirs[o] || offer[o] != nil) && wanted(o) {
			origins = append(origins, o)
		}
	}
	for o := range offer {
		if _, ok := mine.vv[o]; !ok {
			origins = append(origins, o)
		}
	}
	slices.Sort(origins)
	// The first chunk vouches for every origin this node holds data of
	// and the receiver's vector lacks: the receiver may never have heard
	// of an origin that left before it came, and a chunk can name one
	// before, or without, that origin's range (a slot in another origin's
	// change, a change held past a gap, which goes without a range, a
	// range whose changes this node no longer holds). The current vector,
	// not the settled one: a change sent may name an origin learned since.
	vouched := false
	sent := 0
	for _, o := range origins {
		upto, after := mine.vv[o], theirs[o]
		if e.floor != nil {
			// Released here below the floor (the owners have it): the
			// changes above it go, with ranges from the floor, which a
			// receiver below it does not follow on from, so it holds them
			// past its gap without moving its vector over what it lacks.
			after = max(after, e.floor(o))
		}
		var lastOffer uint64
		for s := range offer[o] {
			lastOffer = max(lastOffer, s)
		}
		last := after // the vector the receiver will have reached
		var chunk []change.Delta
		var werr error
		flush := func(rangeUpto uint64) {
			var b change.Batch
			b.Deltas = chunk
			if rangeUpto > last {
				b.Ranges = []change.Range{{Origin: o, After: last, Upto: rangeUpto}}
				last = rangeUpto
			}
			if b.Empty() {
				return
			}
			if !vouched {
				cur := mine
				if !full {
					cur = vvSnapshot{vv: e.replica.VersionVector(), held: e.replica.HeldAhead()}
				}
				b.Vouched, vouched = vouchedOrigins(cur, theirs), true
			}
			w := transport.ToWire(b)
			if werr = fc.WriteFrame(transport.FrameAEChunk, &w); werr == nil {
				sent += len(chunk)
				e.stats.AEDeltasSent.Add(uint64(len(chunk)))
			}
			chunk = chunk[:0]
		}
		err := e.replica.ScanSince(o, after, func(d change.Delta) bool {
			if !full && d.Seq > upto {
				if d.Seq > lastOffer {
					return false
				}
				if !offer[o][d.Seq] {
					return true
				}
			}
			chunk = append(chunk, d)
			if len(chunk) >= e.cfg.MaxFrameDeltas {
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

// configVouch returns what this side vouches for with its config records
// cfgs: the origins it holds data of that the receiver's vector theirs
// lacks (as a first chunk vouches), and the records' writers. Without it,
// an exchange whose only news was a config written by a node that left
// before the receiver came, and never wrote a counter, was refused whole.
func (e *Exchanger) configVouch(cfgs []change.ConfigRecord, theirs map[crdt.NodeID]uint64) []uint64 {
	ids := vouchedOrigins(vvSnapshot{vv: e.replica.VersionVector(), held: e.replica.HeldAhead()}, theirs)
	for _, c := range cfgs {
		if c.Origin != 0 {
			ids = append(ids, c.Origin)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make([]uint64, len(ids))
	for i, id := range ids {
		out[i] = uint64(id)
	}
	return out
}

// fromWireIDs converts a vouch from the wire.
func fromWireIDs(w []uint64) []crdt.NodeID {
	out := make([]crdt.NodeID, len(w))
	for i, id := range w {
		out[i] = crdt.NodeID(id)
	}
	return out
}

// vouchedOrigins returns, sorted, the origins of snapshot s (those of its
// vector and of its held-ahead changes) that are not in the receiver's
// vector theirs: it knows those already, so a session between nodes that
// know the same origins vouches for none.
func vouchedOrigins(s vvSnapshot, theirs map[crdt.NodeID]uint64) []crdt.NodeID {
	var out []crdt.NodeID
	for o := range s.vv {
		if _, ok := theirs[o]; !ok {
			out = append(out, o)
		}
	}
	for o := range s.held {
		_, mine := s.vv[o]
		if _, ok := theirs[o]; !ok && !mine {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}

// vvSnapshot is the replica's version vector and held-ahead changes at a
// time.
type vvSnapshot struct {
	at   time.Time
	vv   map[crdt.NodeID]uint64
	held map[crdt.NodeID][]uint64
}

// Settled records the replica's current version vector and returns the
// newest one recorded at least AntiEntropyGrace ago (empty when there is
// none yet): what this node has held long enough for the streams to have
// delivered it.
func (e *Exchanger) Settled(now time.Time) map[crdt.NodeID]uint64 {
	return e.settled(now).vv
}

// settled is Settled with the held-ahead changes of the same time.
func (e *Exchanger) settled(now time.Time) vvSnapshot {
	cur := vvSnapshot{at: now, vv: e.replica.VersionVector(), held: e.replica.HeldAhead()}
	if e.cfg.Grace == 0 {
		return cur
	}
	cutoff := now.Add(-e.cfg.Grace)
	e.hist.Lock()
	defer e.hist.Unlock()
	e.hist.snaps = append(e.hist.snaps, cur)
	settled := -1
	for i, s := range e.hist.snaps {
		if s.at.After(cutoff) {
			break
		}
		settled = i
	}
	if settled < 0 {
		return vvSnapshot{}
	}
	e.hist.snaps = e.hist.snaps[settled:] // older ones are no longer needed
	return e.hist.snaps[0]
}
