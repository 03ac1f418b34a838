package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
)

// MaxBatchOps bounds the operations of one batch.
const MaxBatchOps = 10_000

// BatchOp is one increment of a batch.
type BatchOp struct {
	NS  string
	Key string
	By  int64
	ID  string
}

// BatchResult is the answer to a batch.
type BatchResult struct {
	Applied    int
	Duplicates int
	Values     []int64 // value after each op, in op order, when asked for
}

// batchOp is a validated op with its place in the hot set.
type batchOp struct {
	ck     string
	rck    string // the op's id record, when it has an id
	stripe int
}

// Batch applies ops atomically with respect to validation: either every op
// is applied, or (bad input, overflow, overload) none is. It returns once the
// changes are as durable as the strictest namespace involved asks.
func (n *Node) Batch(ctx context.Context, ops []BatchOp, consistency string, returnValues bool) (BatchResult, error) {
	if len(ops) > MaxBatchOps {
		return BatchResult{}, fmt.Errorf("%w: a batch holds at most %d ops, got %d; split it", ErrTooLarge, MaxBatchOps, len(ops))
	}
	if err := validateConsistency(consistency); err != nil {
		return BatchResult{}, err
	}
	for i, op := range ops {
		if err := validateWrite(op.NS, op.Key, op.By, WriteOptions{ID: op.ID}); err != nil {
			return BatchResult{}, fmt.Errorf("op %d: %w", i, err)
		}
	}
	if err := n.checkWritable(len(ops)); err != nil {
		return BatchResult{}, err
	}
	if res, done, err := n.batchWithApprox(ctx, ops, consistency, returnValues); done {
		return res, err
	}
	sync := false
	lastNS := ""
	var windowed map[string]*nsRuntime // namespaces whose ops also count in buckets
	recs := make(map[string]*namespaceRecord)
	for _, op := range ops {
		if op.NS == lastNS {
			continue
		}
		lastNS = op.NS
		rec, err := n.namespaceForWrite(op.NS)
		if err != nil {
			return BatchResult{}, err
		}
		sync = sync || rec.Config.Durability == DurabilitySync
		recs[op.NS] = rec
		if rt := rec.runtime(); len(rt.windows) > 0 {
			if windowed == nil {
				windowed = make(map[string]*nsRuntime)
			}
			windowed[op.NS] = rt
		}
	}

	// Each attempt may lack rights on one more bounded counter: allow one
	// acquisition per bounded counter, and a few more for rights that move.
	bounded := map[string]bool{}
	for _, op := range ops {
		if b := recs[op.NS].bounds(); b.exact && b.any() {
			bounded[op.NS+"\x00"+op.Key] = true
		}
	}
	for attempt := 0; ; attempt++ {
		res, err := n.batchOnce(ctx, ops, recs, sync, windowed, returnValues)
		var need *errNeedRights
		if !errors.As(err, &need) {
			if err == nil {
				err = n.replicateBatch(ctx, ops, consistency)
			}
			return res, err
		}
		if attempt == 3+len(bounded) {
			return BatchResult{}, fmt.Errorf("%w: the rights for the batch's bounded counters moved away while this node was collecting them; retry", ErrUnavailable)
		}
		if err := n.acquireRights(ctx, need.ns, need.key, need); err != nil {
			return BatchResult{}, err
		}
	}
}

// batchOnce is one attempt of Batch after validation.
func (n *Node) batchOnce(ctx context.Context, ops []BatchOp, recs map[string]*namespaceRecord, sync bool, windowed map[string]*nsRuntime, returnValues bool) (BatchResult, error) {
	// Ops with ids: each id names one increment, within the batch too.
	repeatOf, unlockIDs, err := n.batchIDs(ops)
	if err != nil {
		return BatchResult{}, err
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
	// the all-stripes critical section below does no I/O.
	prepared := make([]batchOp, len(ops))
	touched := make([]bool, len(n.stripes))
	buf := make([]byte, 0, 600)
	for i, op := range ops {
		buf = compositeKey(buf[:0], op.NS, op.Key)
		si := n.stripeOf(buf)
		s := &n.stripes[si]
		s.mu.Lock()
		e, err := n.lookupLocked(s, buf, op.NS, op.Key, true)
		var re *entry
		if err == nil && op.ID != "" {
			rk := idKey(op.ID, op.Key)
			re, err = n.lookupEvictLocked(s, compositeKey(nil, op.NS, rk), op.NS, rk, true, false)
		}
		s.mu.Unlock()
		if err != nil {
			return BatchResult{}, fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
		}
		prepared[i] = batchOp{ck: e.ck, stripe: si}
		if re != nil {
			prepared[i].rck = re.ck
		}
		touched[si] = true
	}

	for i := range touched {
		if touched[i] {
			n.stripes[i].mu.Lock()
		}
	}
	entries, err := n.batchEntriesLocked(ops, prepared)
	var records []*entry
	var dup []bool
	if err == nil {
		records, dup, err = n.batchDuplicatesLocked(ops, prepared, repeatOf)
	}
	if err == nil {
		err = n.batchCheckLocked(ops, entries, dup, recs)
	}
	if err == nil {
		err = n.batchBoundsLocked(ops, prepared, entries, dup, recs)
	}
	var res BatchResult
	if err == nil {
		now := n.cfg.Now()
		ms := now.UnixMilli()
		if returnValues {
			res.Values = make([]int64, len(ops))
		}
		for i, op := range ops {
			e := entries[i]
			if dup[i] {
				res.Duplicates++
				if returnValues {
					res.Values[i] = e.c.Value()
				}
				continue
			}
			if n.idle(recs[op.NS].runtime().ttl, e.updated) && e.c.Live() {
				e.c.SetReset(n.id, 0, true) // idle past its ttl: counts from 0
			}
			before := e.c.Value()
			v, addErr := e.c.Add(n.id, op.By)
			if addErr != nil {
				// batchCheckLocked ran these very updates on copies, so
				// this cannot happen; were it to, refuse rather than crash
				// with every touched stripe locked.
				n.log.Error("batch op failed after its check", zap.Int("op", i), zap.Error(addErr))
				err = fmt.Errorf("op %d: %w: %s/%s: %v", i, ErrOverflow, op.NS, op.Key, addErr)
				break
			}
			e.updated = ms
			e.own = true
			s := &n.stripes[prepared[i].stripe]
			n.markDirtyLocked(s, e)
			n.changedLocked(op.NS, op.Key, before, e)
			if re := records[i]; re != nil {
				n.setIDLocked(s, re, op.By, now)
				n.recent.add(op.NS, op.ID, op.Key)
			}
			if returnValues {
				res.Values[i] = v
			}
		}
		res.Applied = len(ops) - res.Duplicates
	}
	for i := range touched {
		if touched[i] {
			n.stripes[i].mu.Unlock()
		}
	}
	releaseIDs() // applied with their records: other writes of these ids may go on
	if err != nil {
		return BatchResult{}, err
	}
	if windowed != nil {
		now := n.cfg.Now()
		for i, op := range ops {
			if rt := windowed[op.NS]; rt != nil && !dup[i] {
				n.applyDerived(rt, op.NS, op.Key, nil, now, op.By)
			}
		}
	}
	n.metrics.batches.Inc()
	n.metrics.increments.Add(float64(res.Applied))
	n.metrics.duplicates.Add(float64(res.Duplicates))
	return res, n.durable(ctx, sync)
}

// batchEntriesLocked resolves each op's entry; the caller holds every
// touched stripe. An entry evicted since it was prepared is read again.
func (n *Node) batchEntriesLocked(ops []BatchOp, prepared []batchOp) ([]*entry, error) {
	entries := make([]*entry, len(ops))
	for i, p := range prepared {
		s := &n.stripes[p.stripe]
		e := s.m[p.ck]
		if e == nil {
			var err error
			e, err = n.lookupEvictLocked(s, []byte(p.ck), ops[i].NS, ops[i].Key, true, false)
			if err != nil {
				return nil, fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
			}
		}
		entries[i] = e
	}
	return entries, nil
}

// batchCheckLocked refuses a batch any of whose ops would overflow, before
// anything is applied.
func (n *Node) batchCheckLocked(ops []BatchOp, entries []*entry, dup []bool, recs map[string]*namespaceRecord) error {
	if slices.Contains(dup, true) {
		var keepOps []BatchOp
		var keepEntries []*entry
		for i := range ops {
			if !dup[i] {
				keepOps = append(keepOps, ops[i])
				keepEntries = append(keepEntries, entries[i])
			}
		}
		ops, entries = keepOps, keepEntries
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
		own := e.c.Slot(n.id)
		v := e.c.Value()
		safe = abs(v) < 1<<61 && own.P < 1<<62 && own.N < 1<<62
	}
	if safe {
		return nil
	}
	// Slow path: run the ops in order on copies of the counters, exactly as
	// the apply loop will (the idle reset included): the value's range and
	// this node's slot totals are Add's to judge, out-of-range merged states
	// included.
	sims := make(map[*entry]*crdt.Counter, len(ops))
	for i, op := range ops {
		e := entries[i]
		c, ok := sims[e]
		if !ok {
			cp := e.c.Clone()
			if n.idle(recs[op.NS].runtime().ttl, e.updated) && cp.Live() {
				cp.SetReset(n.id, 0, true)
			}
			c = &cp
			sims[e] = c
		}
		if v, err := c.Add(n.id, op.By); err != nil {
			return fmt.Errorf("op %d: %w: %s/%s is %d; adding %d would leave the int64 range (or this node's count of its changes to it is full)", i, ErrOverflow, op.NS, op.Key, v, op.By)
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
func (n *Node) batchBoundsLocked(ops []BatchOp, prepared []batchOp, entries []*entry, dup []bool, recs map[string]*namespaceRecord) error {
	var net map[*entry]int64
	var at map[*entry]int
	for i, op := range ops {
		if dup[i] || !recs[op.NS].bounds().any() {
			continue
		}
		if net == nil {
			net, at = make(map[*entry]int64), make(map[*entry]int)
		}
		net[entries[i]] += op.By
		at[entries[i]] = i
	}
	for e, by := range net {
		i := at[e]
		op := ops[i]
		if err := n.checkBoundsLocked(&n.stripes[prepared[i].stripe], recs[op.NS], op.NS, op.Key, e, by); err != nil {
			var need *errNeedRights
			if errors.As(err, &need) {
				need.ns, need.key = op.NS, op.Key
				return need
			}
			return fmt.Errorf("op %d: %w", i, err)
		}
	}
	return nil
}

// batchWithApprox serves a batch with ops on approximate namespaces: the
// other ops as a batch, then the sketch ops (checked up front, so that only
// an int64 overflow of a sketch total could fail after the rest applied).
// done is false when the batch has no such op.
func (n *Node) batchWithApprox(ctx context.Context, ops []BatchOp, consistency string, returnValues bool) (BatchResult, bool, error) {
	var approx []int
	for i, op := range ops {
		rec := n.approxNamespace(op.NS)
		if rec == nil {
			continue
		}
		switch {
		case op.By < 0:
			return BatchResult{}, true, fmt.Errorf("op %d: %w", i, errApproxRefused(op.NS, "decrements are refused because a sketch keeps its error bound only for non-negative counts"))
		case op.ID != "":
			return BatchResult{}, true, fmt.Errorf("op %d: %w", i, errApproxRefused(op.NS, "increment ids are not remembered there; send the op without an id"))
		case consistency != "" && consistency != ConsistencyLocal:
			return BatchResult{}, true, fmt.Errorf("op %d: %w", i, errApproxRefused(op.NS, "only consistency local is served there; leave consistency out"))
		}
		approx = append(approx, i)
	}
	if len(approx) == 0 {
		return BatchResult{}, false, nil
	}
	rest := make([]BatchOp, 0, len(ops)-len(approx))
	for i, op := range ops {
		if !slices.Contains(approx, i) {
			rest = append(rest, op)
		}
	}
	var res BatchResult
	if len(rest) > 0 {
		var err error
		if res, err = n.Batch(ctx, rest, consistency, returnValues); err != nil {
			return BatchResult{}, true, err
		}
	}
	var values []int64
	if returnValues {
		values = make([]int64, len(ops))
		j := 0
		for i := range ops {
			if !slices.Contains(approx, i) {
				values[i] = res.Values[j]
				j++
			}
		}
	}
	sync := false
	for _, i := range approx {
		op := ops[i]
		est, s, err := n.addApprox(n.approxNamespace(op.NS), op.NS, op.Key, op.By)
		if err != nil {
			return BatchResult{}, true, fmt.Errorf("op %d: %w", i, err)
		}
		sync = sync || s
		if returnValues {
			values[i] = est
		}
	}
	res.Applied += len(approx)
	res.Values = values
	return res, true, n.durable(ctx, sync)
}

// replicateBatch brings a batch's counters (and id records) to the nodes
// the consistency level of each namespace asks for.
func (n *Node) replicateBatch(ctx context.Context, ops []BatchOp, consistency string) error {
	type group struct {
		level string
		keys  []string
		seen  map[string]bool
	}
	var groups map[string]*group
	for _, op := range ops {
		g := groups[op.NS]
		if g == nil {
			lvl := n.consistencyFor(op.NS, consistency)
			if lvl == ConsistencyLocal {
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
		if err := n.replicateTo(ctx, g.level, ns, g.keys...); err != nil {
			return err
		}
	}
	return nil
}

func idKeyOrEmpty(id, key string) string {
	if id == "" {
		return ""
	}
	return idKey(id, key)
}
