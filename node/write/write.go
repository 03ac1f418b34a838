package write

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/internal/sabotage"
	"github.com/countmesh/countmesh/node/exact"
	"github.com/countmesh/countmesh/node/idem"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/nsconfig"
	"github.com/countmesh/countmesh/node/series"
)

// BatchOp is one increment of a batch.
type BatchOp struct {
	NS  string
	Key string
	By  int64
	ID  string
}

// Result is the answer to a batch.
type Result struct {
	Applied    int
	Duplicates int
	Values     []int64 // value after each op, in op order, when asked for
}

// Config wires a Writer to the node. Every field is required.
type Config struct {
	ID         crdt.NodeID
	Log        *zap.Logger
	Now        func() time.Time
	Keys       *keyspace.Set // the hot set
	Namespaces *nsconfig.Table
	IDs        *idem.IDs       // increment ids: their records and locks
	Rights     *exact.Rights   // the rights that keep the bounds of exact namespaces
	Quorum     *exact.Quorum   // the quorum and all consistency levels
	Caps       *series.Caps    // label series per key
	Windows    *series.Windows // time buckets and label series
	// Changed tells the node's change feed that ns/key changed from
	// before; the caller holds the counter's stripe.
	Changed func(ns, key string, before int64, e *keyspace.Entry)
	// Received remembers an id the store may not hold yet.
	Received func(ns, id, key string)
	// Durable makes the changes made so far durable; with sync it waits
	// for the group commit's fsync.
	Durable func(ctx context.Context, sync bool) error
	// OnApplied counts a write's applied ops and duplicates.
	OnApplied func(applied, duplicates int)
}

// Writer is the one write path of a node. It is safe for concurrent use.
type Writer struct {
	cfg Config
}

// New returns the write path.
func New(cfg Config) *Writer { return &Writer{cfg: cfg} }

// idle reports whether a counter last updated at updatedMs is idle past
// ttl (it then counts from 0).
func (wr *Writer) idle(ttl time.Duration, updatedMs int64) bool {
	if ttl <= 0 || updatedMs <= 0 {
		return false // the clock is read only when it can matter (5 % of a batch's CPU)
	}
	return series.Idle(wr.cfg.Now(), ttl, updatedMs)
}

// batchOp is a validated op with its place in the hot set.
type batchOp struct {
	ck     string
	rck    string // the op's id record, when it has an id
	stripe int
	e      *keyspace.Entry // the entry as prepared; valid while not Gone
}

// Extra is what an increment may carry beyond a batch op: Incr's labels
// and event time.
type Extra struct {
	Labels map[string]string
	At     time.Time // the event time, for the window buckets; zero is now
}

// Request is what Apply applies: validated ops, and how to answer.
type Request struct {
	// Ops are the increments; Apply neither changes nor keeps them, so a
	// batch's decoded ops are applied as they are, without a copy (copying
	// 10,000 ops into a wider type was 3.6 % of countd's CPU under batch
	// ingest).
	Ops []BatchOp
	// Extras is nil, or holds each op's labels and event time (Incr).
	Extras      []Extra
	Consistency string
	Values      bool // answer the value after each op
	Numbered    bool // errors name the op ("op 3: ..."), as a batch's do

	// represents is, in a folded request (see fold), how many ops of the
	// request it was folded from; 0 in any other.
	represents int
}

// labels returns op i's labels.
func (w *Request) labels(i int) map[string]string {
	if w.Extras == nil {
		return nil
	}
	return w.Extras[i].Labels
}

// at returns op i's event time; zero is now.
func (w *Request) at(i int) time.Time {
	if w.Extras == nil {
		return time.Time{}
	}
	return w.Extras[i].At
}

// opErr names op i in err when the request's errors are numbered.
func (w *Request) opErr(i int, err error) error {
	if !w.Numbered {
		return err
	}
	return fmt.Errorf("op %d: %w", i, err)
}

// Apply is the write path of Incr and Batch: it applies validated ops on
// non-approximate namespaces at most once per id, within their namespaces'
// bounds (collecting rights from peers when this node lacks them), counts
// them in their derived counters (label series, window buckets), waits until
// they are as durable as the strictest namespace asks, and replicates them
// to the nodes their consistency level asks for. Values are clamped to the
// namespace's bounds, as reads are. Either every op is applied or none is.
func (wr *Writer) Apply(ctx context.Context, w Request) (Result, error) {
	sc := getScratch()
	defer putScratch(sc)
	// Each op's namespace record, looked up once per run of ops of one
	// namespace.
	sync := false
	recs := sc.recs[:0]
	var lastRec *nsconfig.Record
	for i, op := range w.Ops {
		if lastRec == nil || op.NS != w.Ops[i-1].NS {
			rec, err := wr.cfg.Namespaces.ForWrite(op.NS)
			if err != nil {
				sc.recs = recs
				return Result{}, err
			}
			sync = sync || rec.Config.Durability == nsconfig.DurabilitySync
			lastRec = rec
		}
		recs = append(recs, lastRec)
	}
	sc.recs = recs
	for i, op := range w.Ops {
		if err := wr.cfg.Caps.Reserve(op.NS, op.Key, w.labels(i)); err != nil {
			return Result{}, w.opErr(i, err)
		}
	}

	// Each attempt may lack rights on one more bounded counter: allow one
	// acquisition per bounded counter, and a few more for rights that move.
	bounded := 0
	for i := range w.Ops {
		if b := recs[i].Bounds(); b.Exact && b.Any() {
			bounded++
		}
	}
	req, reqRecs := w, recs
	if f, frecs, ok := fold(w, recs, sc); ok {
		req, reqRecs = f, frecs
	}
	for attempt := 0; ; attempt++ {
		res, err := wr.applyOnce(ctx, req, reqRecs, sync, sc)
		if errors.Is(err, errUnfold) {
			// A counter of the batch is near the int64 range: its ops are
			// checked one by one, in order, as written.
			req, reqRecs = w, recs
			attempt--
			continue
		}
		var need *exact.NeedRights
		if !errors.As(err, &need) {
			if err == nil {
				err = wr.replicateBatch(ctx, req.Ops, req.Consistency)
			}
			return res, err
		}
		if attempt == 3+bounded {
			return Result{}, fmt.Errorf("%w: the rights for the bounded counters written moved away while this node was collecting them; retry", nodeerr.ErrUnavailable)
		}
		// Without the ids' locks: the peers' round trips must not hold up
		// other ids (a retry of one of them meanwhile is seen on the next
		// attempt, which checks the ids again).
		if err := wr.cfg.Rights.Acquire(ctx, need.NS, need.Key, need); err != nil {
			return Result{}, err
		}
	}
}

// errUnfold sends a folded request back to be applied as written: one of
// its counters is near the int64 range, where the order of the ops decides
// which of them overflows.
var errUnfold = errors.New("write: apply the ops as written")

// foldAtLeast is the smallest request that fold considers: below it the
// table costs about what it saves.
const foldAtLeast = 32

// fold sums the ops of w that name the same counter with the same sign into
// one op each, at the place of the first, when that cannot change what the
// request does or answers: no op has an id (each must be recorded), labels
// or an event time (their series and buckets are counted per op), no op's
// namespace has bounds (whose rights and refusals name ops), the request
// does not ask for the value after each op, and the ops' total magnitude is
// below 2^61, so that no op can overflow unless a counter is itself near the
// int64 range (then applyOnce returns errUnfold). Positive and negative ops
// stay apart, so every slot total is what the ops one by one would make it.
// A batch of page views names its hot counters many times (a 10,000-op
// batch drawn from a Zipf distribution over 1,000,000 keys names about
// 3,700): each is then looked up, checked and changed once. ok is false when
// w does not qualify or nothing folds; the result shares sc's space.
func fold(w Request, recs []*nsconfig.Record, sc *scratch) (f Request, frecs []*nsconfig.Record, ok bool) {
	if w.Values || len(w.Ops) < foldAtLeast || w.Extras != nil {
		return w, recs, false
	}
	var total uint64
	for i := range w.Ops {
		op := &w.Ops[i]
		if op.ID != "" || recs[i].Bounds().Any() {
			return w, recs, false
		}
		if total += uint64(abs(op.By)); total >= 1<<61 {
			return w, recs, false
		}
	}
	// An open-addressing table of the folded ops (their index + 1; 0 is
	// empty), at most half full. With a map, fold took 9 % of countd's CPU
	// under Zipf batch ingest; with the table, 3 %.
	size := 1 << bits.Len(uint(2*len(w.Ops)))
	table := sized(sc.foldTable, size)
	sc.foldTable = table
	mask := uint64(size - 1)
	ops, frecs := sc.folded[:0], sc.foldRecs[:0]
	for i := range w.Ops {
		op := &w.Ops[i] // not a copy of the 56-byte op
		neg := op.By < 0
		h := maphash.String(foldSeed, op.Key)
		if neg {
			h = ^h
		}
		for j := h & mask; ; j = (j + 1) & mask {
			k := table[j]
			if k == 0 {
				table[j] = int32(len(ops) + 1)
				ops = append(ops, *op)
				frecs = append(frecs, recs[i])
				break
			}
			// A folded op keeps the sign of its ops: a sum of ops >= 0 is
			// >= 0, of ops < 0 is < 0.
			if f := &ops[k-1]; f.Key == op.Key && f.NS == op.NS && (f.By < 0) == neg {
				f.By += op.By
				break
			}
		}
	}
	sc.folded, sc.foldRecs = ops, frecs
	if len(ops) == len(w.Ops) {
		return w, recs, false
	}
	f = w
	f.Ops = ops
	f.represents = len(w.Ops)
	return f, frecs, true
}

var foldSeed = maphash.MakeSeed()

// scratch is the working space of one Apply, pooled so that a request
// allocates no per-op slices of its own. Its slices are cleared before it
// returns to the pool, so that it pins no entry of the hot set.
type scratch struct {
	recs      []*nsconfig.Record // each op's namespace
	idOps     []idem.Op
	prepared  []batchOp
	touched   []int
	buf       []byte
	ckEnds    []int32 // where each op's composite key ends in buf
	stripeOf  []int32 // each op's stripe
	starts    []int32 // per stripe, where its ops start in order (sortByStripe)
	order     []int32 // op indexes grouped by stripe
	entries   []*keyspace.Entry
	records   []*keyspace.Entry
	dup       []bool
	foldTable []int32
	folded    []BatchOp
	foldRecs  []*nsconfig.Record
}

// scratchFree holds the scratches not in use. A sync.Pool would be emptied
// by every garbage collection, which under batch ingest comes several times
// a second, and each batch would then grow its slices again (growslice was
// 6 % of countd's CPU in a profile of batch ingest with a sync.Pool).
var scratchFree = make(chan *scratch, 16)

func getScratch() *scratch {
	select {
	case sc := <-scratchFree:
		return sc
	default:
		return &scratch{buf: make([]byte, 0, 600)}
	}
}

// DropFree lets the scratches not in use go: up to 16 of about 1.5 MB each
// stay on the free list after a burst of concurrent batches (24 MB of a
// 43 MB heap after 1,000,000 new counters, docs/benchmarks.md, "Memory per
// counter against Redis"). The node calls it when a burst is over, before it
// returns free memory to the kernel; the next batches allocate new ones.
func DropFree() {
	for {
		select {
		case <-scratchFree:
		default:
			return
		}
	}
}

// maxPooledOps bounds the ops whose space returns to the free list: the
// largest batch the API accepts, 10,000 ops (the common body of batch
// ingest), so that ingest reuses its space too; a scratch of that size holds
// about 1.5 MB, and at most 16 are kept. Slices grown by append to 10,000
// have room for a little more (10,240), so the bound is on the length used.
const maxPooledOps = 10_000

// sortByStripe returns the indexes of the ops, whose stripes are
// stripeOf, ordered by stripe (ops of one stripe in their order), in sc's
// space. A batch of a few ops (Incr, an unpipelined RESP command) is sorted
// by insertion; a larger one by counting its ops per stripe, which costs a
// pass over every stripe.
func sortByStripe(stripeOf []int32, stripes int, sc *scratch) []int32 {
	order := sized(sc.order, len(stripeOf))
	sc.order = order
	if len(stripeOf) <= insertionSortOps {
		for i, si := range stripeOf {
			j := i
			for ; j > 0 && stripeOf[order[j-1]] > si; j-- {
				order[j] = order[j-1]
			}
			order[j] = int32(i)
		}
		return order
	}
	starts := sized(sc.starts, stripes+1)
	sc.starts = starts
	for _, si := range stripeOf {
		starts[si+1]++
	}
	for si := 1; si < len(starts); si++ {
		starts[si] += starts[si-1]
	}
	for i, si := range stripeOf { // starts[si] moves to the end of stripe si
		order[starts[si]] = int32(i)
		starts[si]++
	}
	return order
}

// insertionSortOps is the largest batch sortByStripe sorts by insertion.
const insertionSortOps = 16

// maxPooledKeyBytes bounds the composite keys' space (scratch.buf) that
// returns to the free list: 10,000 keys of about 100 bytes.
const maxPooledKeyBytes = 1 << 20

func putScratch(sc *scratch) {
	if len(sc.recs) > maxPooledOps || len(sc.prepared) > maxPooledOps || len(sc.folded) > maxPooledOps {
		return
	}
	if cap(sc.buf) > maxPooledKeyBytes {
		sc.buf = nil // a batch of long keys: not kept
	}
	clear(sc.folded[:cap(sc.folded)])
	clear(sc.foldRecs[:cap(sc.foldRecs)])
	clear(sc.recs[:cap(sc.recs)])
	clear(sc.idOps[:cap(sc.idOps)])
	clear(sc.prepared[:cap(sc.prepared)])
	clear(sc.entries[:cap(sc.entries)])
	clear(sc.records[:cap(sc.records)])
	select {
	case scratchFree <- sc:
	default: // enough are free
	}
}

// sized returns s with length n, reusing its array when it is large enough,
// zeroed.
func sized[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// applyOnce is one attempt of Apply.
func (wr *Writer) applyOnce(ctx context.Context, w Request, recs []*nsconfig.Record, sync bool, sc *scratch) (Result, error) {
	ops := w.Ops
	// Ops with ids: each id names one increment, within the batch too.
	// Without ids there is nothing to lock or check.
	var repeatOf []int
	unlockIDs := func() {}
	if slices.ContainsFunc(ops, func(op BatchOp) bool { return op.ID != "" }) {
		idOps := sized(sc.idOps, len(ops))
		sc.idOps = idOps
		for i, op := range ops {
			idOps[i] = idem.Op{NS: op.NS, Key: op.Key, ID: op.ID, By: op.By}
		}
		var err error
		repeatOf, unlockIDs, err = wr.cfg.IDs.LockBatch(idOps, w.opErr)
		if err != nil {
			return Result{}, err
		}
	}
	idsLocked := true
	releaseIDs := func() {
		if idsLocked {
			idsLocked = false
			unlockIDs()
		}
	}
	defer releaseIDs()

	// Bring every counter into memory, one stripe lock at a time, so that
	// the all-stripes critical section below does no I/O. The ops are
	// grouped by stripe (sortByStripe), so that each touched stripe is
	// locked once rather than once per op.
	prepared := sized(sc.prepared, len(ops))
	sc.prepared = prepared
	touched := sc.touched[:0] // stripe indexes, ascending
	defer func() { sc.touched = touched }()
	cks := sc.buf[:0] // the ops' composite keys, end to end
	defer func() { sc.buf = cks }()
	ends := sized(sc.ckEnds, len(ops))
	stripeOf := sized(sc.stripeOf, len(ops))
	sc.ckEnds, sc.stripeOf = ends, stripeOf
	for i, op := range ops {
		from := len(cks)
		cks = keyspace.Composite(cks, op.NS, op.Key)
		ends[i] = int32(len(cks))
		stripeOf[i] = int32(wr.cfg.Keys.StripeIndex(cks[from:]))
	}
	order := sortByStripe(stripeOf, wr.cfg.Keys.NumStripes(), sc)
	for from := 0; from < len(order); {
		si := stripeOf[order[from]]
		to := from + 1
		for to < len(order) && stripeOf[order[to]] == si {
			to++
		}
		touched = append(touched, int(si))
		s := wr.cfg.Keys.Stripe(int(si))
		s.Lock()
		for _, i := range order[from:to] {
			op := &ops[i] // not a copy: reading ops out of order by value cost 2.6 % of countd's CPU here
			ck := cks[:ends[i]]
			if i > 0 {
				ck = ck[ends[i-1]:]
			}
			e, err := wr.cfg.Keys.Lookup(s, ck, op.NS, op.Key, true)
			var re *keyspace.Entry
			if err == nil && op.ID != "" {
				rk := idem.Key(op.ID, op.Key)
				re, err = wr.cfg.Keys.LookupEvict(s, keyspace.Composite(nil, op.NS, rk), op.NS, rk, true, false)
			}
			if err != nil {
				s.Unlock()
				return Result{}, kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
			}
			prepared[i] = batchOp{ck: e.CK(), stripe: int(si), e: e}
			if re != nil {
				prepared[i].rck = re.CK()
			}
		}
		s.Unlock()
		from = to
	}

	for _, si := range touched {
		wr.cfg.Keys.Stripe(si).Lock()
	}
	sc.entries = sized(sc.entries, len(ops))
	entries, err := wr.batchEntriesLocked(ops, prepared, sc.entries)
	sc.records, sc.dup = sized(sc.records, len(ops)), sized(sc.dup, len(ops))
	records, dup := sc.records, sc.dup
	if err == nil {
		err = wr.batchDuplicatesLocked(w, prepared, repeatOf, records, dup)
	}
	if err == nil {
		err = wr.batchCheckLocked(w, entries, dup, recs)
	}
	if err == nil {
		err = wr.batchBoundsLocked(w, prepared, entries, dup, recs)
	}
	var res Result
	if err == nil {
		now := wr.cfg.Now()
		ms := now.UnixMilli()
		if w.Values {
			res.Values = make([]int64, len(ops))
		}
		for i, op := range ops {
			e := entries[i]
			if dup[i] {
				res.Duplicates++
				if w.Values {
					res.Values[i] = nsconfig.Clamp(recs[i], e.C.Value())
				}
				continue
			}
			if wr.idle(recs[i].Runtime().TTL, e.Updated) && e.C.Live() {
				e.C.SetReset(wr.cfg.ID, 0, true) // idle past its ttl: counts from 0
			}
			before := e.C.Value()
			v, addErr := e.C.Add(wr.cfg.ID, op.By)
			if addErr != nil {
				// batchCheckLocked ran these very updates on copies, so
				// this cannot happen; were it to, refuse rather than crash
				// with every touched stripe locked.
				wr.cfg.Log.Error("write op failed after its check", zap.Int("op", i), zap.Error(addErr))
				err = w.opErr(i, kinderr.New(nodeerr.ErrOverflow, addErr, "%s/%s: %v", op.NS, op.Key, addErr))
				break
			}
			e.Updated = ms
			e.Own = true
			s := wr.cfg.Keys.Stripe(prepared[i].stripe)
			wr.cfg.Keys.MarkDirty(s, e)
			wr.cfg.Changed(op.NS, op.Key, before, e)
			if re := records[i]; re != nil {
				wr.cfg.IDs.SetLocked(s, re, op.By, now)
				wr.cfg.Received(op.NS, op.ID, op.Key)
			}
			if w.Values {
				res.Values[i] = nsconfig.Clamp(recs[i], v)
			}
		}
		res.Applied = len(ops) - res.Duplicates
		if w.represents > 0 {
			res.Applied = w.represents // a folded request has no duplicates
		}
	}
	for _, si := range touched {
		wr.cfg.Keys.Stripe(si).Unlock()
	}
	releaseIDs() // applied with their records: other writes of these ids may go on
	if err != nil {
		return Result{}, err
	}
	for i, op := range ops {
		if dup[i] {
			continue
		}
		if rt := recs[i].Runtime(); len(rt.Windows) > 0 || len(w.labels(i)) > 0 {
			at := w.at(i)
			if at.IsZero() {
				at = wr.cfg.Now()
			}
			wr.cfg.Windows.Count(rt.Windows, op.NS, op.Key, w.labels(i), at, op.By)
		}
	}
	wr.cfg.OnApplied(res.Applied, res.Duplicates)
	// A duplicate waits too: the first attempt may not be durable yet.
	return res, wr.cfg.Durable(ctx, sync)
}

// batchEntriesLocked resolves each op's entry into entries (one per op); the
// caller holds every touched stripe. An entry evicted since it was prepared is read again.
func (wr *Writer) batchEntriesLocked(ops []BatchOp, prepared []batchOp, entries []*keyspace.Entry) ([]*keyspace.Entry, error) {
	for i, p := range prepared {
		if p.e != nil && !p.e.Gone() {
			entries[i] = p.e // still the counter's entry: no second map lookup
			continue
		}
		s := wr.cfg.Keys.Stripe(p.stripe)
		e := s.Get(p.ck)
		if e == nil {
			var err error
			e, err = wr.cfg.Keys.LookupEvict(s, []byte(p.ck), ops[i].NS, ops[i].Key, true, false)
			if err != nil {
				return nil, kinderr.New(nodeerr.ErrUnavailable, err, "read counter: %v", err)
			}
		}
		entries[i] = e
	}
	return entries, nil
}

// batchCheckLocked refuses a batch any of whose ops would overflow, before
// anything is applied.
func (wr *Writer) batchCheckLocked(w Request, entries []*keyspace.Entry, dup []bool, recs []*nsconfig.Record) error {
	ops := w.Ops
	index := func(i int) int { return i }
	if slices.Contains(dup, true) {
		var kept []int
		var keepOps []BatchOp
		var keepEntries []*keyspace.Entry
		for i := range ops {
			if !dup[i] {
				kept = append(kept, i)
				keepOps = append(keepOps, ops[i])
				keepEntries = append(keepEntries, entries[i])
			}
		}
		ops, entries = keepOps, keepEntries
		index = func(i int) int { return kept[i] }
	}
	// Fast path: when every counter is far from the int64 bounds and the
	// batch's total magnitude is small, no op can overflow.
	var total uint64
	for _, op := range ops {
		total += uint64(abs(op.By))
	}
	safe := total < 1<<61
	for _, e := range entries {
		if !safe {
			break
		}
		own := e.C.Slot(wr.cfg.ID)
		v := e.C.Value()
		safe = abs(v) < 1<<61 && own.P < 1<<62 && own.N < 1<<62
	}
	if safe {
		return nil
	}
	if w.represents > 0 {
		return errUnfold
	}
	// Slow path: run the ops in order on copies of the counters, exactly as
	// the apply loop will (the idle reset included): the value's range and
	// this node's slot totals are Add's to judge, out-of-range merged states
	// included.
	sims := make(map[*keyspace.Entry]*crdt.Counter, len(ops))
	for i, op := range ops {
		e := entries[i]
		c, ok := sims[e]
		if !ok {
			cp := e.C.Clone()
			if wr.idle(recs[index(i)].Runtime().TTL, e.Updated) && cp.Live() {
				cp.SetReset(wr.cfg.ID, 0, true)
			}
			c = &cp
			sims[e] = c
		}
		if v, err := c.Add(wr.cfg.ID, op.By); err != nil {
			return w.opErr(index(i), fmt.Errorf("%w: %s/%s is %d; adding %d would leave the int64 range (or this node's count of its changes to it is full)", nodeerr.ErrOverflow, op.NS, op.Key, v, op.By))
		}
	}
	return nil
}

func abs(v int64) int64 {
	if v < 0 {
		if v == math.MinInt64 {
			return math.MaxInt64
		}
		return -v
	}
	return v
}

// batchBoundsLocked checks the batch's net change of each counter of a
// namespace with bounds (the batch applies at once, so only the net change
// matters). The caller holds every touched stripe.
func (wr *Writer) batchBoundsLocked(w Request, prepared []batchOp, entries []*keyspace.Entry, dup []bool, recs []*nsconfig.Record) error {
	ops := w.Ops
	var net map[*keyspace.Entry]int64
	var at map[*keyspace.Entry]int
	for i, op := range ops {
		if dup[i] || !recs[i].Bounds().Any() {
			continue
		}
		if net == nil {
			net, at = make(map[*keyspace.Entry]int64), make(map[*keyspace.Entry]int)
		}
		net[entries[i]] += op.By
		at[entries[i]] = i
	}
	for e, by := range net {
		i := at[e]
		op := ops[i]
		if err := wr.cfg.Rights.CheckLocked(wr.cfg.Keys.Stripe(prepared[i].stripe), recs[i].Bounds(), op.NS, op.Key, e, by); err != nil {
			var need *exact.NeedRights
			if errors.As(err, &need) {
				need.NS, need.Key = op.NS, op.Key
				return need
			}
			return w.opErr(i, err)
		}
	}
	return nil
}

// batchDuplicatesLocked resolves the id records of a batch's ops and tells
// which ops are duplicates, into records and dup (one per op, zeroed); a
// known id with another body is 409. The caller holds every touched stripe.
func (wr *Writer) batchDuplicatesLocked(w Request, prepared []batchOp, repeatOf []int, records []*keyspace.Entry, dup []bool) error {
	ops := w.Ops
	for i, op := range ops {
		if op.ID == "" {
			continue
		}
		if repeatOf[i] >= 0 {
			dup[i] = true
			continue
		}
		s := wr.cfg.Keys.Stripe(prepared[i].stripe)
		re := s.Get(prepared[i].rck)
		if re == nil {
			rk := idem.Key(op.ID, op.Key)
			var err error
			if re, err = wr.cfg.Keys.LookupEvict(s, []byte(prepared[i].rck), op.NS, rk, true, false); err != nil {
				return kinderr.New(nodeerr.ErrUnavailable, err, "read id record: %v", err)
			}
		}
		if st := idem.Read(&re.C, wr.cfg.ID); st.Seen {
			if st.By != op.By {
				return w.opErr(i, fmt.Errorf("%w: id %q was used for an increment of %d on %s/%s; a retry must send the same body (got %d)", nodeerr.ErrConflict, op.ID, st.By, op.NS, op.Key, op.By))
			}
			if sabotage.IDTwice {
				continue // sabotage (test builds only): counted again, without a record
			}
			dup[i] = true
			continue
		}
		records[i] = re
	}
	return nil
}

// replicateBatch brings a batch's counters (and id records) to the nodes
// the consistency level of each namespace asks for.
func (wr *Writer) replicateBatch(ctx context.Context, ops []BatchOp, consistency string) error {
	type group struct {
		level string
		keys  []string
		seen  map[string]bool
	}
	var groups map[string]*group
	localNS := "" // the last namespace found local: most batches name one
	for _, op := range ops {
		if op.NS == localNS && localNS != "" {
			continue
		}
		g := groups[op.NS]
		if g == nil {
			lvl := wr.cfg.Namespaces.ConsistencyFor(op.NS, consistency)
			if lvl == exact.ConsistencyLocal {
				localNS = op.NS
				continue
			}
			if groups == nil {
				groups = make(map[string]*group)
			}
			g = &group{level: lvl, seen: make(map[string]bool)}
			groups[op.NS] = g
		}
		for _, k := range []string{op.Key, idKeyOrEmpty(op.ID, op.Key)} {
			if k != "" && !g.seen[k] {
				g.seen[k] = true
				g.keys = append(g.keys, k)
			}
		}
	}
	for ns, g := range groups {
		if err := wr.cfg.Quorum.Replicate(ctx, g.level, ns, g.keys...); err != nil {
			return err
		}
	}
	return nil
}

func idKeyOrEmpty(id, key string) string {
	if id == "" {
		return ""
	}
	return idem.Key(id, key)
}
