package stream

import (
	"testing"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

func incr(c *crdt.Counter, node crdt.NodeID, by int64) crdt.Counter {
	if _, err := c.Add(node, by); err != nil {
		panic(err)
	}
	return c.Delta(true, node)
}

func TestQueueCoalescesPerCounterAndOrigin(t *testing.T) {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	q := newOutQueue()
	var ca, cb crdt.Counter
	t0 := time.Unix(100, 0)
	// 100 changes of a's slot of one hot counter, one commit each.
	for seq := uint64(1); seq <= 100; seq++ {
		ok := q.add(change.Batch{
			Ranges: []change.Range{{Origin: a, After: seq - 1, Upto: seq}},
			Deltas: []change.Delta{{NS: "ns", Key: "hot", Origin: a, Seq: seq, State: incr(&ca, a, 1)}},
		}, t0.Add(time.Duration(seq)*time.Millisecond), 1<<20)
		if !ok {
			t.Fatalf("add %d refused", seq)
		}
	}
	// b's slot of the same counter is a different entry.
	q.add(change.Batch{Ranges: []change.Range{{Origin: b, After: 0, Upto: 1}}, Deltas: []change.Delta{{NS: "ns", Key: "hot", Origin: b, Seq: 1, State: incr(&cb, b, 5)}}}, t0, 1<<20)

	if got := len(q.deltas); got != 2 {
		t.Fatalf("queue holds %d deltas, want 2 (one per origin)", got)
	}
	c := q.take(10)
	if !q.empty() || q.bytes != 0 {
		t.Fatalf("queue not empty after taking everything: %+v", q)
	}
	want := []change.Range{{Origin: a, After: 0, Upto: 100}, {Origin: b, After: 0, Upto: 1}}
	if a > b {
		want[0], want[1] = want[1], want[0]
	}
	if len(c.ranges) != 2 || c.ranges[0] != want[0] || c.ranges[1] != want[1] {
		t.Fatalf("ranges = %+v, want %+v", c.ranges, want)
	}
	for _, d := range c.deltas {
		switch d.d.Origin {
		case a:
			if d.d.Seq != 100 || d.d.State.Slot(a).P != 100 {
				t.Errorf("a's delta: seq %d, P %d; want seq 100, P 100", d.d.Seq, d.d.State.Slot(a).P)
			}
			if !d.at.Equal(t0.Add(time.Millisecond)) {
				t.Errorf("a's delta keeps publish time %v, want the oldest %v", d.at, t0.Add(time.Millisecond))
			}
		case b:
			if d.d.Seq != 1 || d.d.State.Slot(b).P != 5 {
				t.Errorf("b's delta: seq %d, P %d", d.d.Seq, d.d.State.Slot(b).P)
			}
		}
	}
	if !c.oldest.Equal(t0) {
		t.Errorf("content oldest = %v, want %v", c.oldest, t0)
	}
}

func TestQueueDoesNotModifySharedStates(t *testing.T) {
	a := crdt.NodeIDFromName("a")
	var c crdt.Counter
	first := incr(&c, a, 1)
	keep := first.Clone()
	q := newOutQueue()
	q.add(change.Batch{Deltas: []change.Delta{{NS: "n", Key: "k", Origin: a, Seq: 1, State: first}}}, time.Now(), 1<<20)
	q.add(change.Batch{Deltas: []change.Delta{{NS: "n", Key: "k", Origin: a, Seq: 2, State: incr(&c, a, 41)}}}, time.Now(), 1<<20)
	if !first.Equal(keep) {
		t.Fatalf("coalescing modified the published state: %+v, was %+v", first, keep)
	}
	got := q.take(10).deltas[0].d.State.Slot(a).P
	if got != 42 {
		t.Fatalf("coalesced P = %d, want 42", got)
	}
}

func TestQueueRanges(t *testing.T) {
	o, p := crdt.NodeID(1), crdt.NodeID(2)
	tests := []struct {
		name string
		add  []change.Range
		want []change.Range
	}{
		{"contiguous", []change.Range{{Origin: o, After: 0, Upto: 5}, {Origin: o, After: 5, Upto: 9}}, []change.Range{{Origin: o, After: 0, Upto: 9}}},
		{"out of order", []change.Range{{Origin: o, After: 5, Upto: 9}, {Origin: o, After: 0, Upto: 5}}, []change.Range{{Origin: o, After: 0, Upto: 9}}},
		{"gap kept", []change.Range{{Origin: o, After: 0, Upto: 5}, {Origin: o, After: 7, Upto: 9}}, []change.Range{{Origin: o, After: 0, Upto: 5}, {Origin: o, After: 7, Upto: 9}}},
		{"gap filled", []change.Range{{Origin: o, After: 0, Upto: 5}, {Origin: o, After: 7, Upto: 9}, {Origin: o, After: 5, Upto: 7}}, []change.Range{{Origin: o, After: 0, Upto: 9}}},
		{"overlap", []change.Range{{Origin: o, After: 0, Upto: 6}, {Origin: o, After: 3, Upto: 9}}, []change.Range{{Origin: o, After: 0, Upto: 9}}},
		{"contained", []change.Range{{Origin: o, After: 0, Upto: 9}, {Origin: o, After: 3, Upto: 4}}, []change.Range{{Origin: o, After: 0, Upto: 9}}},
		{"origins apart", []change.Range{{Origin: p, After: 0, Upto: 3}, {Origin: o, After: 3, Upto: 4}, {Origin: o, After: 0, Upto: 3}}, []change.Range{{Origin: o, After: 0, Upto: 4}, {Origin: p, After: 0, Upto: 3}}},
		{"empty ignored", []change.Range{{Origin: o, After: 4, Upto: 4}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newOutQueue()
			for _, r := range tt.add {
				q.addRange(r)
			}
			if len(q.ranges) != len(tt.want) {
				t.Fatalf("ranges = %+v, want %+v", q.ranges, tt.want)
			}
			for i := range tt.want {
				if q.ranges[i] != tt.want[i] {
					t.Fatalf("ranges = %+v, want %+v", q.ranges, tt.want)
				}
			}
		})
	}
}

func TestQueueLimitDropsWholeBatches(t *testing.T) {
	a := crdt.NodeIDFromName("a")
	q := newOutQueue()
	var c crdt.Counter
	mk := func(seq uint64, key string) change.Batch {
		return change.Batch{Ranges: []change.Range{{Origin: a, After: seq - 1, Upto: seq}}, Deltas: []change.Delta{{NS: "n", Key: key, Origin: a, Seq: seq, State: incr(&c, a, 1)}}}
	}
	limit := 3 * deltaSize(&mk(1, "k0").Deltas[0])
	accepted := 0
	for i := 1; i <= 10; i++ {
		if q.add(mk(uint64(i), "k"+string(rune('0'+i))), time.Now(), limit) {
			accepted++
		}
	}
	if accepted != 3 {
		t.Fatalf("accepted %d distinct counters under a 3-delta limit, want 3", accepted)
	}
	// A change of a queued counter still fits (it coalesces).
	if !q.add(mk(11, "k1"), time.Now(), limit) {
		t.Fatal("a change of a counter already queued was refused")
	}
	// The queue's ranges cover only what was accepted: 1..3 and 11.
	want := []change.Range{{Origin: a, After: 0, Upto: 3}, {Origin: a, After: 10, Upto: 11}}
	if len(q.ranges) != 2 || q.ranges[0] != want[0] || q.ranges[1] != want[1] {
		t.Fatalf("ranges = %+v, want %+v", q.ranges, want)
	}
}

func TestQueueTakeSplitsFramesAndKeepsRangesForTheLast(t *testing.T) {
	a := crdt.NodeIDFromName("a")
	q := newOutQueue()
	var b change.Batch
	for i := 0; i < 25; i++ {
		var c crdt.Counter
		b.Deltas = append(b.Deltas, change.Delta{NS: "n", Key: string(rune('a' + i)), Origin: a, Seq: uint64(i + 1), State: incr(&c, a, 1)})
	}
	b.Ranges = []change.Range{{Origin: a, After: 0, Upto: 25}}
	b.Configs = []change.ConfigRecord{{NS: "n", HLC: 1, Origin: a}}
	q.add(b, time.Now(), 1<<20)
	var frames []content
	for !q.empty() {
		frames = append(frames, q.take(10))
	}
	if len(frames) != 3 {
		t.Fatalf("%d frames, want 3", len(frames))
	}
	for i, f := range frames {
		last := i == len(frames)-1
		if (len(f.ranges) > 0) != last || (len(f.configs) > 0) != last {
			t.Errorf("frame %d: %d ranges, %d configs; ranges and configs belong to the last frame only", i, len(f.ranges), len(f.configs))
		}
	}
	// A failed frame goes back whole.
	q.requeue(&frames[0])
	q.requeue(&frames[2])
	if len(q.deltas) != 15 || len(q.ranges) != 1 || len(q.configs) != 1 {
		t.Fatalf("after requeue: %d deltas, %d ranges, %d configs; want 15, 1, 1", len(q.deltas), len(q.ranges), len(q.configs))
	}
}
