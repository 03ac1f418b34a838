package node

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/nsconfig"
	"github.com/countmesh/countmesh/node/retire"
	"go.uber.org/zap"
)

// Slot compaction: the node's side of the retired list (package
// node/retire; docs/design.md, "Retired slots"). The list is decided by
// peerrpc.Forget over the RPCs below; this file keeps it durably, folds the
// counters once this node's vector covers an entry's cut, and folds what
// later merges bring.

// metaRetired is the store's meta key of the retired list.
const metaRetired = "retired"

// foldInterval is how often the node checks whether it may fold further.
const foldInterval = time.Second

// foldChunk bounds the keys one step of a fold pass collects.
const foldChunk = 1000

// retiredState is the node's fold progress beside its list.
type retiredState struct {
	// gen is the generation this node folds to: the ids of the stable
	// entries whose cuts its vector covers.
	gen atomic.Uint64
	// passed is the generation the last complete fold pass folded to.
	passed uint64
	// blocked remembers the entries already logged as waiting for their
	// cut, by index.
	blocked map[int]bool
	// behind is set when a peer sent a state folded beyond this node's
	// list: the list's sync (peerrpc) should run now.
	behind atomic.Bool
}

// RetiredBehind reports, and clears, whether a peer sent a state folded at
// a generation beyond this node's retired list since the last call.
func (n *Node) RetiredBehind() bool { return n.folds.behind.Swap(false) }

// openRetired loads the retired list from the store.
func openRetired(n *Node) (*retire.List, error) {
	var st retire.State
	if _, err := n.store.GetMeta(metaRetired, &st); err != nil {
		return nil, fmt.Errorf("node: load the retired list: %w", err)
	}
	return retire.New(n.id, st, func(st retire.State) error {
		b := n.store.NewBatch()
		defer b.Close()
		if err := b.PutMeta(metaRetired, st); err != nil {
			return err
		}
		return b.Commit(true)
	})
}

// FoldGen returns the retired generation this node folds its counters to.
func (n *Node) FoldGen() uint64 { return n.folds.gen.Load() }

// Retired returns the stable entries of the retired list.
func (n *Node) Retired() []retire.Entry { return n.retired.Stable() }

// foldable reports whether ns/key's counter may be folded: not an id or
// rights record (their slots are appliers and per-node rights, which
// folding would merge), not a sharded namespace's (a node does not hold
// all of its origins' changes, so no vector says it has merged every reset
// of the cut), and not a bounded exact namespace's (the bounds account per
// node).
func (n *Node) foldable(ns, key string) bool {
	if key != "" && (key[0] == keyspace.KindID || key[0] == keyspace.KindRights) {
		return false
	}
	rec := n.ns.Get(ns)
	if rec == nil {
		return true
	}
	if rec.Config.Replicas > 0 {
		return false
	}
	return !(rec.CounterType().Escrow() && rec.Bounds().Any())
}

// foldLocked folds c, the state of ns/key, up to the node's fold
// generation when it holds a slot of an id folded there. It reports
// whether it changed c. The caller holds the counter's stripe.
func (n *Node) foldLocked(ns, key string, c *crdt.Counter) bool {
	gen := n.folds.gen.Load()
	if gen == 0 {
		return false
	}
	ids := n.retired.IDs()
	if !retire.NeedsFold(c, ids, gen) || !n.foldable(ns, key) {
		return false
	}
	if err := c.Fold(ids, gen); err != nil {
		n.log.Error("cannot fold a counter's retired slots; it keeps them", zap.String("ns", ns), zap.String("key", key), zap.Error(err))
		return false
	}
	n.metrics.Folded.Inc()
	return true
}

// checkResetAfterForget refuses a reset or delete of a foldable counter
// while this node lacks some of the changes a forgotten node made up to its
// entry's cut: a reset's floor records what the resetting node saw of every
// slot, and one that saw a forgotten node's slot short of its final total
// would, once folded, be summed with others into the retired floor and
// count the difference twice (the first half of crdt.Counter.Fold's
// precondition). A forget waits until every member holds those changes, so
// this refuses only a node that came back or joined since and has not
// caught up yet.
func (n *Node) checkResetAfterForget(ns, key, what string) error {
	if len(n.retired.IDs()) == 0 || !n.foldable(ns, key) {
		return nil
	}
	vv := n.rep.VersionVector()
	for _, e := range n.retired.Stable() {
		for _, id := range e.IDs {
			if cut := retire.CutOf(e, id); vv[id] < cut {
				return fmt.Errorf("%w: %s of %s/%q must wait until this node holds the last changes of %s, which the mesh forgot (countctl cluster forget); retry in a few seconds, or at another node", ErrUnavailable, what, ns, key, e.Name)
			}
		}
	}
	return nil
}

// covers reports whether this node's version vector holds every change of
// cut.
func (n *Node) covers(cut []retire.OriginSeq) bool {
	_, ok := n.uncovered(cut)
	return ok
}

// uncovered returns the first origin of cut that this node's vector does
// not cover, and true when there is none.
func (n *Node) uncovered(cut []retire.OriginSeq) (retire.OriginSeq, bool) {
	vv := n.rep.VersionVector()
	for _, c := range cut {
		if vv[c.Origin] < c.Seq {
			return retire.OriginSeq{Origin: c.Origin, Seq: vv[c.Origin]}, false
		}
	}
	return retire.OriginSeq{}, true
}

// foldLoop raises the fold generation as the vector covers the stable
// entries' cuts, and folds every counter up to it.
func (n *Node) foldLoop() {
	t := time.NewTicker(foldInterval)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		if !n.Ready() {
			continue
		}
		gen := n.retired.Covered(n.covers)
		n.logBlocked()
		if gen > n.folds.gen.Load() {
			n.folds.gen.Store(gen)
			n.log.Info("folding forgotten nodes' slots", zap.Uint64("generation", gen))
		}
		if gen > n.folds.passed {
			folded, err := n.foldPass(gen)
			if err != nil {
				n.log.Warn("fold pass stopped; the next one retries", zap.Uint64("generation", gen), zap.Error(err))
				continue
			}
			n.folds.passed = gen
			n.log.Info("fold pass done", zap.Uint64("generation", gen), zap.Int("counters_folded", folded))
		}
	}
}

// logBlocked logs, once per entry, a stable entry whose cut this node's
// vector does not cover yet (anti-entropy brings it; if it never does, the
// origin named is one this node will not hold).
func (n *Node) logBlocked() {
	for i, e := range n.retired.Stable() {
		if n.folds.blocked[i] {
			continue
		}
		if o, ok := n.uncovered(e.Cut); !ok {
			if n.folds.blocked == nil {
				n.folds.blocked = make(map[int]bool)
			}
			n.folds.blocked[i] = true
			n.log.Info("forgotten node's slots wait for this node to catch up before they fold", zap.String("forgotten", e.Name),
				zap.Uint64("origin", uint64(o.Origin)), zap.Uint64("held", o.Seq), zap.Uint64("cut", retire.CutOf(e, o.Origin)))
			return
		}
	}
}

// foldPass folds every foldable counter of every namespace up to gen
// (the hot set's and Pebble's), and returns how many it changed.
func (n *Node) foldPass(gen uint64) (int, error) {
	ids := n.retired.IDs()
	var names []string
	n.ns.Range(func(ns string, _ *nsconfig.Record) { names = append(names, ns) })
	slices.Sort(names)
	folded := 0
	for _, ns := range names {
		after := ""
		for {
			var keys []string
			err := n.keys.Scan(ns, "", after, nil, func(c keyspace.Scanned) bool {
				keys = append(keys, c.Key)
				return len(keys) < foldChunk
			})
			if err != nil {
				return folded, kinderr.New(ErrUnavailable, err, "scan %s: %v", ns, err)
			}
			for _, key := range keys {
				if !n.foldable(ns, key) {
					continue
				}
				err := n.withEntry(ns, key, false, func(s *keyspace.Stripe, e *keyspace.Entry) error {
					if e == nil || !retire.NeedsFold(&e.C, ids, gen) {
						return nil
					}
					if err := e.C.Fold(ids, gen); err != nil {
						return err
					}
					n.keys.MarkDirty(s, e)
					n.metrics.Folded.Inc()
					folded++
					return nil
				})
				if err != nil {
					return folded, err
				}
			}
			if len(keys) < foldChunk {
				break
			}
			after = keys[len(keys)-1]
			select {
			case <-n.done:
				return folded, ErrClosed
			default:
			}
		}
	}
	return folded, nil
}

// RetirePrepare answers a coordinator's prepare for index of the retired
// list (package node/retire), with this node's version vector and, per
// origin, the highest change it holds past a gap in it, both restricted to
// nodes' own origins (the sequence spaces of sharded namespaces left out:
// their counters are not folded).
func (n *Node) RetirePrepare(index uint64, b retire.Ballot, stable []retire.Entry) (p retire.Promise, vv, held []retire.OriginSeq, err error) {
	// A node catching up does not hold yet what its vector will say: its
	// vector would make the cut too low.
	if !n.Ready() {
		return p, nil, nil, fmt.Errorf("%w: this node is catching up with its peers; a forget needs every member's version vector: retry", ErrUnavailable)
	}
	p, err = n.retired.Prepare(index, b, stable)
	if err != nil || !p.OK {
		return p, nil, nil, err
	}
	if vv, err = n.plainVector(); err != nil {
		return retire.Promise{}, nil, nil, err
	}
	for o, seqs := range n.rep.HeldAhead() {
		if len(seqs) > 0 && n.isPlain(o) {
			held = append(held, retire.OriginSeq{Origin: o, Seq: seqs[len(seqs)-1]})
		}
	}
	retire.SortOrigins(held)
	return p, vv, held, nil
}

// isPlain reports whether origin o is a node's own sequence, not a
// sequence space of a sharded namespace (an origin this node holds nothing
// indexed of counts as a node's).
func (n *Node) isPlain(o crdt.NodeID) bool {
	if o == n.id {
		return true
	}
	if _, plain := n.notSpaces.Load(o); plain {
		return true
	}
	_, space, held, err := n.rep.SpaceShard(o, 0)
	if err != nil {
		return true // kept: a cut too high only delays a fold
	}
	if held && !space {
		n.notSpaces.Store(o, true)
	}
	return !space
}

// RetireAccept answers a coordinator's accept. It refuses an entry that
// names this node.
func (n *Node) RetireAccept(index uint64, b retire.Ballot, e retire.Entry) (bool, []retire.Entry, error) {
	return n.retired.Accept(index, b, e)
}

// RetireSync installs a peer's stable retired list and returns this
// node's.
func (n *Node) RetireSync(stable []retire.Entry) ([]retire.Entry, error) {
	added, err := n.retired.Install(stable)
	if err != nil {
		n.metrics.PeerRefused.Inc()
		n.log.Error("refused a peer's retired list: it disagrees with this node's", zap.Error(err))
		return nil, err
	}
	if added > 0 {
		n.log.Info("retired list grew", zap.Int("entries_added", added), zap.Int("entries", n.retired.Len()))
	}
	return n.retired.Stable(), nil
}

// plainVector returns this node's version vector without the origins that
// are sequence spaces of sharded namespaces.
func (n *Node) plainVector() ([]retire.OriginSeq, error) {
	vv := n.rep.VersionVector()
	out := make([]retire.OriginSeq, 0, len(vv))
	for o, s := range vv {
		if o != n.id {
			if _, plain := n.notSpaces.Load(o); !plain {
				_, space, held, err := n.rep.SpaceShard(o, 0)
				if err != nil {
					return nil, kinderr.New(ErrUnavailable, err, "read index: %v", err)
				}
				if space {
					continue
				}
				if held {
					n.notSpaces.Store(o, true)
				}
			}
		}
		out = append(out, retire.OriginSeq{Origin: o, Seq: s})
	}
	retire.SortOrigins(out)
	return out, nil
}
