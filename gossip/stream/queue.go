package stream

import (
	"cmp"
	"slices"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

// deltaKey identifies what coalescing keeps one of: an origin's slot of a
// counter.
// Deltas of one counter and origin at different retired generations
// (crdt.Counter.Gen: one built before the counter was folded, one after,
// possibly by different nodes) are queued apart: Merge needs equal
// generations, and the queue does not hold the retired list that
// MergeRetired needs. The receiver merges both.
type deltaKey struct {
	ns, key string
	origin  crdt.NodeID
	gen     uint64
}

func keyOf(d *change.Delta) deltaKey { return deltaKey{d.NS, d.Key, d.Origin, d.State.Gen()} }

// queued is a delta waiting in a peer's queue.
type queued struct {
	d change.Delta
	// owned is set once d.State is a private copy that may be merged into;
	// until then it may be shared with other queues and the caller.
	owned bool
	size  int
	at    time.Time // when the oldest change merged into it was published
}

type queuedConfig struct {
	rec change.ConfigRecord
	at  time.Time
}

// content is what one frame carries, kept until the peer acknowledges it
// so that it can be requeued when the connection fails.
type content struct {
	ranges  []change.Range
	deltas  []queued
	configs []queuedConfig
	bytes   int
	oldest  time.Time
}

func (c *content) batch() change.Batch {
	b := change.Batch{Ranges: c.ranges}
	if len(c.deltas) > 0 {
		b.Deltas = make([]change.Delta, len(c.deltas))
		for i := range c.deltas {
			b.Deltas[i] = c.deltas[i].d
		}
	}
	for _, qc := range c.configs {
		b.Configs = append(b.Configs, qc.rec)
	}
	return b
}

// outQueue holds the changes waiting to be sent to one peer, coalesced:
// per (namespace, key, origin) one delta, the join of every state queued
// for it, under the highest seq. It is not safe for concurrent use; the
// peer's mutex guards it.
//
// Ranges stay in the queue until every delta queued with them has gone out
// in an earlier or the same frame on the same connection, so a receiver
// never advances its vector past a change it has not received. Frames that
// fail unacknowledged are merged back (requeue), which restores that.
type outQueue struct {
	ranges  []change.Range // sorted by (Origin, After), merged when they touch
	deltas  map[deltaKey]*queued
	configs map[string]queuedConfig
	bytes   int
}

func newOutQueue() *outQueue {
	return &outQueue{deltas: make(map[deltaKey]*queued), configs: make(map[string]queuedConfig)}
}

func (q *outQueue) empty() bool {
	return len(q.ranges) == 0 && len(q.deltas) == 0 && len(q.configs) == 0
}

// deltaSize estimates a delta's encoded size.
func deltaSize(d *change.Delta) int {
	n := 16 + len(d.NS) + len(d.Key) + 20*len(d.State.Slots)
	if r := d.State.Reset; r != nil {
		n += 24 + 20*len(r.Floor)
	}
	return n
}

const configOverhead = 32

// add queues a published batch unless that would take the queue over
// limit bytes; it reports whether it did. A batch is queued whole or not at
// all, so that its ranges never go out without its deltas.
func (q *outQueue) add(b change.Batch, at time.Time, limit int) bool {
	growth := 0
	for i := range b.Deltas {
		d := &b.Deltas[i]
		s := deltaSize(d)
		if e, ok := q.deltas[keyOf(d)]; ok {
			growth += max(0, s-e.size)
		} else {
			growth += s
		}
	}
	for _, c := range b.Configs {
		if _, ok := q.configs[c.NS]; !ok {
			growth += configOverhead + len(c.NS) + len(c.Payload)
		}
	}
	if q.bytes > 0 && q.bytes+growth > limit {
		return false
	}
	for _, r := range b.Ranges {
		q.addRange(r)
	}
	for i := range b.Deltas {
		q.addDelta(queued{d: b.Deltas[i], at: at})
	}
	for _, c := range b.Configs {
		q.addConfig(queuedConfig{rec: c, at: at})
	}
	return true
}

// requeue merges back the content of a frame that was not acknowledged,
// whatever the limit: its ranges may already sit in the queue waiting for
// these deltas.
func (q *outQueue) requeue(c *content) {
	for _, r := range c.ranges {
		q.addRange(r)
	}
	for _, d := range c.deltas {
		q.addDelta(d)
	}
	for _, qc := range c.configs {
		q.addConfig(qc)
	}
}

func (q *outQueue) addDelta(n queued) {
	k := keyOf(&n.d)
	e, ok := q.deltas[k]
	if !ok {
		n.size = deltaSize(&n.d)
		q.deltas[k] = &n
		q.bytes += n.size
		return
	}
	if !e.owned {
		e.d.State = e.d.State.Clone()
		e.owned = true
	}
	e.d.State.Merge(n.d.State)
	e.d.Seq = max(e.d.Seq, n.d.Seq)
	if n.at.Before(e.at) {
		e.at = n.at
	}
	s := deltaSize(&e.d)
	q.bytes += s - e.size
	e.size = s
}

func (q *outQueue) addConfig(n queuedConfig) {
	e, ok := q.configs[n.rec.NS]
	if !ok {
		q.configs[n.rec.NS] = n
		q.bytes += configOverhead + len(n.rec.NS) + len(n.rec.Payload)
		return
	}
	at := e.at
	if n.at.Before(at) {
		at = n.at
	}
	if n.rec.Newer(e.rec) {
		q.bytes += len(n.rec.Payload) - len(e.rec.Payload)
		e.rec = n.rec
	}
	e.at = at
	q.configs[n.rec.NS] = e
}

// addRange inserts r, merging it with the ranges of the same origin it
// overlaps or touches: a batch holding every change of (a, b] and of (c, d]
// with c <= b holds every change of (a, max(b, d)].
func (q *outQueue) addRange(r change.Range) {
	if r.Upto <= r.After {
		return
	}
	i, _ := slices.BinarySearchFunc(q.ranges, r, func(x, y change.Range) int {
		return cmp.Or(cmp.Compare(x.Origin, y.Origin), cmp.Compare(x.After, y.After))
	})
	q.ranges = slices.Insert(q.ranges, i, r)
	// Merge with the predecessor, then absorb successors.
	if i > 0 && q.ranges[i-1].Origin == r.Origin && q.ranges[i-1].Upto >= r.After {
		i--
		q.ranges[i].Upto = max(q.ranges[i].Upto, r.Upto)
		q.ranges = slices.Delete(q.ranges, i+1, i+2)
	}
	for i+1 < len(q.ranges) && q.ranges[i+1].Origin == q.ranges[i].Origin && q.ranges[i+1].After <= q.ranges[i].Upto {
		q.ranges[i].Upto = max(q.ranges[i].Upto, q.ranges[i+1].Upto)
		q.ranges = slices.Delete(q.ranges, i+1, i+2)
	}
}

// take removes and returns the next frame's content: everything when at
// most maxDeltas deltas are queued, otherwise maxDeltas deltas (the oldest
// first) without ranges or configs, which wait for the last frame.
func (q *outQueue) take(maxDeltas int) content {
	var c content
	if len(q.deltas) <= maxDeltas {
		c.ranges = q.ranges
		c.deltas = make([]queued, 0, len(q.deltas))
		for _, e := range q.deltas {
			c.deltas = append(c.deltas, *e)
		}
		for _, qc := range q.configs {
			c.configs = append(c.configs, qc)
		}
		c.bytes = q.bytes
		q.ranges = nil
		clear(q.deltas)
		clear(q.configs)
		q.bytes = 0
	} else {
		all := make([]*queued, 0, len(q.deltas))
		for _, e := range q.deltas {
			all = append(all, e)
		}
		slices.SortFunc(all, func(a, b *queued) int { return a.at.Compare(b.at) })
		c.deltas = make([]queued, 0, maxDeltas)
		for _, e := range all[:maxDeltas] {
			c.deltas = append(c.deltas, *e)
			delete(q.deltas, keyOf(&e.d))
			q.bytes -= e.size
			c.bytes += e.size
		}
	}
	for i := range c.deltas {
		if c.oldest.IsZero() || c.deltas[i].at.Before(c.oldest) {
			c.oldest = c.deltas[i].at
		}
	}
	for _, qc := range c.configs {
		if c.oldest.IsZero() || qc.at.Before(c.oldest) {
			c.oldest = qc.at
		}
	}
	return c
}

// oldest returns the publish time of the oldest change queued, or the zero
// time.
func (q *outQueue) oldest() time.Time {
	var t time.Time
	for _, e := range q.deltas {
		if t.IsZero() || e.at.Before(t) {
			t = e.at
		}
	}
	for _, qc := range q.configs {
		if t.IsZero() || qc.at.Before(t) {
			t = qc.at
		}
	}
	return t
}
