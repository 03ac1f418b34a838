package node

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/node/exact"
	"github.com/countmesh/countmesh/node/replica"
)

// within runs fn and fails the test when it does not return in time: a
// refused peer input must not leave a lock held.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10 s: a lock is held", what)
	}
}

// TestRegressHostilePeerInputIsRefused: each forged input an outsider found
// ("Hostile networks") is refused with ErrInvalidPeerData; afterwards the
// node still serves, no lock is held, every counter reads what it read
// before, and after a restart the stored data is still readable.
func TestRegressHostilePeerInputIsRefused(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	cfg := testConfig(t, fs)
	n := openTest(t, cfg)
	self, peer, other := n.ID(), crdt.NodeIDFromName("n2"), crdt.NodeIDFromName("n3")
	madeUp := crdt.NodeID(0xdeadbeefcafe)
	if _, err := n.Incr(ctx, "ns", "k", 5, WriteOptions{ID: "first"}); err != nil {
		t.Fatal(err)
	}
	putExactMin0(t, n, "ex")
	if _, err := n.Incr(ctx, "ex", "k", 10, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Slots of two known nodes in descending order.
	hi, lo := peer, other
	if hi < lo {
		hi, lo = lo, hi
	}
	merge := func(c crdt.Counter) func() error {
		return func() error { return n.MergeStates(ctx, []CounterState{{NS: "ns", Key: "k", State: c}}) }
	}
	apply := func(ns, key string, origin crdt.NodeID, c crdt.Counter) func() error {
		return func() error {
			return n.Replica().Apply(change.Batch{Deltas: []change.Delta{{NS: ns, Key: key, Origin: origin, Seq: 1, State: c}}})
		}
	}
	config := func(ns string, hlc uint64, origin crdt.NodeID, bank uint64) func() error {
		rec := namespaceRecord{Config: DefaultNamespaceConfig(DurabilityAsync), HLC: hlc, Origin: uint64(origin), Bank: bank}
		payload, err := msgpack.Marshal(&rec)
		if err != nil {
			t.Fatal(err)
		}
		return func() error {
			return n.Replica().Apply(change.Batch{Configs: []change.ConfigRecord{{NS: ns, HLC: hlc, Origin: origin, Payload: payload}}})
		}
	}
	grant := func(req RightsRequest) func() error {
		return func() error {
			_, err := n.GrantRights(ctx, req)
			return err
		}
	}
	slot := func(node crdt.NodeID, p, nn uint64) crdt.Counter {
		return crdt.Counter{Slots: []crdt.Slot{{Node: node, P: p, N: nn}}}
	}
	futureSec := uint64(time.Now().Add(time.Hour).Unix())
	tests := []struct {
		name   string
		attack func() error
	}{
		{"merge: slot of a made-up node", merge(slot(madeUp, 1e12, 0))},
		{"apply: delta of a made-up origin", apply("ns", "k", madeUp, slot(peer, 1, 0))},
		{"apply: slot of a made-up node", apply("ns", "k", peer, slot(madeUp, 1e12, 0))},
		// The node that did a reset is not checked: a reset adds no count,
		// and a delta may carry the reset of a node that left long ago.
		{"merge: slot of a made-up node beside a reset", merge(crdt.Counter{Slots: []crdt.Slot{{Node: madeUp, P: 7}}, Reset: &crdt.Reset{Epoch: 2, Node: peer}})},
		{"apply: made-up origin vouched only by a range", func() error {
			return n.Replica().Apply(change.Batch{Ranges: []change.Range{{Origin: madeUp, After: 0, Upto: 1}},
				Deltas: []change.Delta{{NS: "ns", Key: "k", Origin: peer, Seq: 1, State: slot(madeUp, 1e12, 0)}}})
		}},
		{"merge: own slot at MaxUint64", merge(slot(self, math.MaxUint64, 0))},
		{"merge: own slot above what it holds", merge(slot(self, 1000, 0))},
		{"apply: own slot N above what it holds", apply("ns", "k", peer, slot(self, 5, 1e9))},
		{"merge: reset epoch MaxUint64", merge(crdt.Counter{Reset: &crdt.Reset{Epoch: math.MaxUint64, Node: peer}})},
		{"merge: reset epoch far ahead", merge(crdt.Counter{Reset: &crdt.Reset{Epoch: 1 << 40, Node: peer}})},
		{"merge: P past MaxSlotTotal", merge(slot(peer, crdt.MaxSlotTotal+1, 0))},
		{"merge: floor above its slot", merge(crdt.Counter{Slots: []crdt.Slot{{Node: peer, P: 1}}, Reset: &crdt.Reset{Epoch: 1, Node: peer, Floor: []crdt.Slot{{Node: peer, P: 9}}}})},
		{"merge: unsorted slots", merge(crdt.Counter{Slots: []crdt.Slot{{Node: hi, P: 1}, {Node: lo, P: 1}}})},
		{"merge: duplicate slots", merge(crdt.Counter{Slots: []crdt.Slot{{Node: peer, P: 1}, {Node: peer, P: 2}}})},
		{"apply: unsorted slots", apply("ns", "k", peer, crdt.Counter{Slots: []crdt.Slot{{Node: hi, P: 1}, {Node: lo, P: 1}}})},
		{"apply: id record with a body past MaxBy", apply("ns", idKey("first", "k"), peer, slot(peer, crdt.MaxSlotTotal, 1))},
		{"apply: id record with huge apply times", apply("ns", idKey("forged", "k"), peer, crdt.Counter{Slots: []crdt.Slot{{Node: lo, P: 3, N: crdt.MaxSlotTotal}, {Node: hi, P: 3, N: crdt.MaxSlotTotal}}})},
		{"apply: id record applied in the future", apply("ns", idKey("first", "k"), peer, slot(peer, 3, futureSec<<1))},
		{"apply: id record with a time but no body", apply("ns", idKey("first", "k"), peer, slot(peer, 0, 2))},
		{"apply: id record with a reset", apply("ns", idKey("first", "k"), peer, crdt.Counter{Reset: &crdt.Reset{Epoch: 1, Node: peer}})},
		{"apply: gifts total past int64", apply("ex", exact.RightsKey(exact.GivenToAll, "k"), peer, slot(peer, math.MaxInt64+1, 0))},
		{"apply: rights received past int64", apply("ex", exact.RightsKey(self, "k"), peer, slot(peer, 0, math.MaxInt64+1))},
		{"apply: range of a made-up origin", func() error {
			return n.Replica().Apply(change.Batch{Ranges: []change.Range{{Origin: madeUp, After: 0, Upto: math.MaxUint64}}})
		}},
		{"apply: config with HLC MaxUint64", config("ns", math.MaxUint64, peer, uint64(peer))},
		{"apply: new namespace with HLC MaxUint64", config("fresh", math.MaxUint64, peer, uint64(peer))},
		{"apply: config one minute ahead", config("ns", uint64(time.Now().Add(time.Minute).UnixMilli())<<16, peer, uint64(peer))},
		{"apply: config of a made-up origin", config("ns", uint64(time.Now().UnixMilli())<<16, madeUp, uint64(peer))},
		{"apply: config with a made-up bank", config("ns", uint64(time.Now().UnixMilli())<<16, peer, uint64(madeUp))},
		{"apply: config that does not decode", func() error {
			return n.Replica().Apply(change.Batch{Configs: []change.ConfigRecord{{NS: "ns", HLC: 1, Origin: peer, Payload: []byte{0xc1}}}})
		}},
		{"rights: negative want", grant(RightsRequest{NS: "ex", Key: "k", Down: true, Want: -1, To: peer})},
		{"rights: absurd want", grant(RightsRequest{NS: "ex", Key: "k", Down: true, Want: math.MaxInt64, To: peer})},
		{"rights: to a made-up node", grant(RightsRequest{NS: "ex", Key: "k", Down: true, Want: 1, To: madeUp})},
		{"rights: to the gifts total", grant(RightsRequest{NS: "ex", Key: "k", Down: true, Want: 1, To: exact.GivenToAll})},
		{"rights: to this node", grant(RightsRequest{NS: "ex", Key: "k", Down: true, Want: 1, To: self})},
		{"batch: one bad delta refuses the good ones before it", func() error {
			return n.Replica().Apply(change.Batch{Deltas: []change.Delta{
				{NS: "ns", Key: "k", Origin: peer, Seq: 1, State: slot(peer, 7, 0)},
				{NS: "ns", Key: "k2", Origin: peer, Seq: 2, State: slot(madeUp, 7, 0)},
			}})
		}},
	}
	want := map[string]int64{"ns/k": 5, "ex/k": 10}
	read := func(t *testing.T) {
		t.Helper()
		for _, c := range []struct{ ns, key string }{{"ns", "k"}, {"ex", "k"}, {"ns", "k2"}} {
			if got := mustGet(t, n, c.ns, c.key); got != want[c.ns+"/"+c.key] {
				t.Fatalf("%s/%s = %d, want %d", c.ns, c.key, got, want[c.ns+"/"+c.key])
			}
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			within(t, "the attack", func() { err = tt.attack() })
			if !errors.Is(err, ErrInvalidPeerData) {
				t.Fatalf("err = %v, want ErrInvalidPeerData", err)
			}
			read(t)
			if nsCfg, err := n.GetNamespace("ns"); err != nil || nsCfg.Config.Durability != DurabilitySync {
				t.Fatalf("namespace ns changed: %+v, %v", nsCfg, err)
			}
			if _, err := n.GetNamespace("fresh"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("namespace fresh: err = %v, want ErrNotFound", err)
			}
			// Still serving, with no lock held: a write and a read of the
			// same counters (same stripes), a listing, and a rights grant.
			within(t, "writes after the attack", func() {
				if _, err := n.Incr(ctx, "ns", "k", 1, WriteOptions{}); err != nil {
					t.Errorf("incr after the attack: %v", err)
				}
				if _, err := n.Incr(ctx, "ns", "k", -1, WriteOptions{}); err != nil {
					t.Errorf("decr after the attack: %v", err)
				}
				if _, err := n.List(ctx, "ns", "", "", 10); err != nil {
					t.Errorf("list after the attack: %v", err)
				}
				if _, err := n.Incr(ctx, "ex", "k", 0, WriteOptions{}); err != nil {
					t.Errorf("exact incr after the attack: %v", err)
				}
			})
			read(t)
		})
	}
	// After a restart, every stored record still reads, and anti-entropy
	// of this node's origin still scans.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = openTest(t, cfg)
	read(t)
	page, err := n.List(ctx, "ns", "", "", 10)
	if err != nil || len(page.Items) != 1 || page.Items[0].Value != 5 {
		t.Fatalf("listing after restart = %+v, %v; want k = 5", page, err)
	}
	if err := n.Replica().ScanSince(n.ID(), 0, func(change.Delta) bool { return true }); err != nil {
		t.Fatalf("anti-entropy scan of the node's origin after restart: %v", err)
	}
	if res, err := n.Incr(ctx, "ns", "k", 5, WriteOptions{ID: "first"}); err != nil || !res.Duplicate {
		t.Fatalf("retry of the first id after restart = %+v, %v; want a duplicate", res, err)
	}
	// A well-formed rights request is still served: half of the bank's 10.
	g, err := n.GrantRights(ctx, RightsRequest{NS: "ex", Key: "k", Down: true, Want: 3, To: peer})
	if err != nil || g.Amount != 5 {
		t.Fatalf("GrantRights after restart = %+v, %v; want 5 rights", g, err)
	}
}

// TestPeerInputWithinTheRulesIsAccepted: the rules refuse only what no
// well-formed peer sends.
func TestPeerInputWithinTheRulesIsAccepted(t *testing.T) {
	ctx := context.Background()
	n := openTest(t, testConfig(t, vfs.NewMem()))
	peer := crdt.NodeIDFromName("n2")
	if _, err := n.Incr(ctx, "ns", "k", 5, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	own := n.ID()
	tests := []struct {
		name  string
		state crdt.Counter
		want  int64
	}{
		{"a member's slot", crdt.Counter{Slots: []crdt.Slot{{Node: peer, P: 3}}}, 8},
		{"this node's own slot as it holds it", crdt.Counter{Slots: []crdt.Slot{{Node: own, P: 5}}}, 8},
		{"a reset a little ahead", crdt.Counter{Slots: []crdt.Slot{{Node: own, P: 5}, {Node: peer, P: 3}}, Reset: &crdt.Reset{Epoch: 7, Node: peer, Value: 1, Floor: []crdt.Slot{{Node: own, P: 5}, {Node: peer, P: 3}}}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if own > peer && len(tt.state.Slots) == 2 { // keep the slots sorted
				tt.state.Slots[0], tt.state.Slots[1] = tt.state.Slots[1], tt.state.Slots[0]
				tt.state.Reset.Floor = tt.state.Slots
			}
			if err := n.MergeStates(ctx, []CounterState{{NS: "ns", Key: "k", State: tt.state}}); err != nil {
				t.Fatalf("MergeStates: %v", err)
			}
			if got := mustGet(t, n, "ns", "k"); got != tt.want {
				t.Fatalf("ns/k = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestRegressBatchOnOutOfRangeCounterDoesNotPanic: valid peer states can
// carry a counter's merged value beyond int64 (concurrent updates); a batch
// that steps back into range and out again used to pass the batch check
// (which simulated the clamped value) and panic in the apply loop with
// every touched stripe locked. It is refused as an overflow now.
func TestRegressBatchOnOutOfRangeCounterDoesNotPanic(t *testing.T) {
	ctx := context.Background()
	n := openTest(t, testConfig(t, vfs.NewMem()))
	a, b := crdt.NodeIDFromName("n2"), crdt.NodeIDFromName("n3")
	if a > b {
		a, b = b, a
	}
	huge := crdt.Counter{Slots: []crdt.Slot{{Node: a, P: 1 << 62}, {Node: b, P: 1<<62 + 1<<61}}}
	if err := n.MergeStates(ctx, []CounterState{{NS: "ns", Key: "k", State: huge}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ops     []int64
		wantErr error
	}{
		{"back then out again", []int64{-1, 1}, ErrOverflow},
		{"further out", []int64{1}, ErrOverflow},
		{"back towards zero", []int64{-5}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ops []BatchOp
			for _, by := range tt.ops {
				ops = append(ops, BatchOp{NS: "ns", Key: "k", By: by})
			}
			var err error
			within(t, "the batch", func() { _, err = n.Batch(ctx, ops, "", false) })
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			within(t, "a read after the batch", func() {
				if got := mustGet(t, n, "ns", "k"); got != math.MaxInt64 {
					t.Errorf("ns/k = %d, want the clamped %d", got, int64(math.MaxInt64))
				}
			})
		})
	}
}

// A node that joins after another left for good still takes that node's
// data: anti-entropy sends a departed origin's changes with its range, and
// another origin's delta may carry the departed node's reset and floor.
func TestDataOfAnOriginThatLeftIsAccepted(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	gone := crdt.NodeIDFromName("left-last-year") // no member, not in the vector
	peer := crdt.NodeIDFromName("n2")
	// gone's own chunk: its delta and its range.
	err := n.Replica().Apply(change.Batch{
		Ranges: []change.Range{{Origin: gone, After: 0, Upto: 1}},
		Deltas: []change.Delta{{NS: "ns", Key: "a", Origin: gone, Seq: 1, State: crdt.Counter{Slots: []crdt.Slot{{Node: gone, P: 4}}}}},
	})
	if err != nil {
		t.Fatalf("a departed origin's chunk: %v", err)
	}
	if got := mustGet(t, n, "ns", "a"); got != 4 {
		t.Fatalf("ns/a = %d, want 4", got)
	}
	// A member's delta that carries gone's reset and its floor entry, in a
	// batch without gone's range.
	floor := []crdt.Slot{{Node: crdt.NodeIDFromName("gone-too"), P: 9}}
	st := crdt.Counter{Slots: append([]crdt.Slot{{Node: peer, P: 2}}, floor...), Reset: &crdt.Reset{Epoch: 1, Node: crdt.NodeIDFromName("gone-too"), Floor: floor}}
	slices.SortFunc(st.Slots, func(a, b crdt.Slot) int { return cmp.Compare(a.Node, b.Node) })
	err = n.Replica().Apply(change.Batch{
		Ranges: []change.Range{{Origin: peer, After: 0, Upto: 1}},
		Deltas: []change.Delta{{NS: "ns", Key: "b", Origin: peer, Seq: 1, State: st}},
	})
	if err != nil {
		t.Fatalf("a member's delta with a departed node's reset and floor: %v", err)
	}
	if got := mustGet(t, n, "ns", "b"); got != 2 {
		t.Fatalf("ns/b = %d, want 2 (the floor entry adds nothing)", got)
	}
}

// An anti-entropy chunk's vouch (the sending member's word that it holds
// data of those origins) lets a member's change name a node that left
// before this one came, and this node then knows it: a later input naming
// it unvouched (a quorum write's full state) is taken. Without the vouch
// the same chunk is refused whole, and nothing of it is applied.
func TestVouchedOriginsAreAcceptedAndLearned(t *testing.T) {
	ctx := context.Background()
	n := openTest(t, testConfig(t, vfs.NewMem()))
	gone := crdt.NodeIDFromName("left-before-n1-came")
	peer := crdt.NodeIDFromName("n2")
	slots := []crdt.Slot{{Node: peer, P: 2}, {Node: gone, P: 3}}
	slices.SortFunc(slots, func(a, b crdt.Slot) int { return cmp.Compare(a.Node, b.Node) })
	chunk := change.Batch{
		Ranges: []change.Range{{Origin: peer, After: 0, Upto: 1}},
		Deltas: []change.Delta{{NS: "ns", Key: "v", Origin: peer, Seq: 1, State: crdt.Counter{Slots: slots}}},
	}
	if err := n.Replica().Apply(chunk); !errors.Is(err, ErrInvalidPeerData) {
		t.Fatalf("a chunk naming an unknown node, unvouched: %v, want ErrInvalidPeerData", err)
	}
	if got := mustGet(t, n, "ns", "v"); got != 0 {
		t.Fatalf("ns/v = %d after a refused chunk, want 0", got)
	}
	chunk.Vouched = []crdt.NodeID{gone, peer}
	if err := n.Replica().Apply(chunk); err != nil {
		t.Fatalf("the same chunk, vouched for: %v", err)
	}
	if got := mustGet(t, n, "ns", "v"); got != 5 {
		t.Fatalf("ns/v = %d, want 5", got)
	}
	if !n.Replica().Known(gone) {
		t.Fatal("the vouched node named by an applied chunk is not known afterwards")
	}
	if n.Replica().Known(crdt.NodeIDFromName("vouched-never-named")) {
		t.Fatal("a vouched node the chunk never named became known")
	}
	st := crdt.Counter{Slots: slots}
	if err := n.MergeStates(ctx, []CounterState{{NS: "ns", Key: "w", State: st}}); err != nil {
		t.Fatalf("a full state naming the learned node: %v", err)
	}
	// A vouch beyond the bound is refused.
	big := change.Batch{Ranges: chunk.Ranges, Deltas: chunk.Deltas, Vouched: make([]crdt.NodeID, replica.MaxVouched+1)}
	if err := n.Replica().Apply(big); !errors.Is(err, ErrInvalidPeerData) {
		t.Fatalf("a vouch of %d origins: %v, want ErrInvalidPeerData", len(big.Vouched), err)
	}
}

// A node catching up after a restart (not ready) has not learned every
// node a peer may name: a quorum write's full state naming an incarnation
// that left before is refused as unavailable, not as invalid peer input
// (which the metric counts and an alert reports as a faulty or hostile
// peer). Once the node is ready the same state is invalid input.
func TestUnknownNodeBeforeReadyIsUnavailableNotInvalid(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, vfs.NewMem())
	cfg.StartUnready = true
	n := openTest(t, cfg)
	gone := crdt.NodeIDFromName("left-before-the-restart")
	st := []CounterState{{NS: "ns", Key: "k", State: crdt.Counter{Slots: []crdt.Slot{{Node: gone, P: 3}}}}}
	refused := testutil.ToFloat64(n.metrics.PeerRefused)
	err := n.MergeStates(ctx, st)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidPeerData) || strings.Contains(err.Error(), "invalid") {
		t.Fatalf("before ready: %v, want ErrUnavailable and not ErrInvalidPeerData (nor its words)", err)
	}
	if got := testutil.ToFloat64(n.metrics.PeerRefused) - refused; got != 0 {
		t.Fatalf("before ready the refusal counted %v invalid peer inputs, want 0", got)
	}
	// Malformed input is invalid whether or not the node is ready.
	bad := []CounterState{{NS: "ns", Key: "k", State: crdt.Counter{Slots: []crdt.Slot{{Node: 9, P: 1}, {Node: 9, P: 2}}}}}
	if err := n.MergeStates(ctx, bad); !errors.Is(err, ErrInvalidPeerData) {
		t.Fatalf("duplicate slots before ready: %v, want ErrInvalidPeerData", err)
	}
	n.MarkReady()
	refused = testutil.ToFloat64(n.metrics.PeerRefused)
	if err := n.MergeStates(ctx, st); !errors.Is(err, ErrInvalidPeerData) {
		t.Fatalf("once ready: %v, want ErrInvalidPeerData", err)
	}
	if got := testutil.ToFloat64(n.metrics.PeerRefused) - refused; got != 1 {
		t.Fatalf("once ready the refusal counted %v invalid peer inputs, want 1", got)
	}
	if got := mustGet(t, n, "ns", "k"); got != 0 {
		t.Fatalf("ns/k = %d after refused merges, want 0", got)
	}
}
