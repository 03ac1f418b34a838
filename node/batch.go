package node

import (
	"context"
	"fmt"
	"slices"

	"github.com/countmesh/countmesh/node/approx"
	"github.com/countmesh/countmesh/node/nsconfig"
	"github.com/countmesh/countmesh/node/write"
)

// MaxBatchOps bounds the operations of one batch.
const MaxBatchOps = 10_000

// BatchOp is one increment of a batch.
type BatchOp = write.BatchOp

// BatchResult is the answer to a batch.
type BatchResult = write.Result

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
		// A batch names few namespaces, in runs: each is checked once a run.
		if i == 0 || op.NS != ops[i-1].NS {
			if err := ValidateNamespace(op.NS); err != nil {
				return BatchResult{}, fmt.Errorf("op %d: %w", i, err)
			}
		}
		if err := validateOp(op); err != nil {
			return BatchResult{}, fmt.Errorf("op %d: %w", i, err)
		}
		if (i == 0 || op.NS != ops[i-1].NS || op.ID != "") && n.ReplicasOf(op.NS) > 0 {
			if err := shardedWriteOptions(op.NS, op.ID != "", false, consistency); err != nil {
				return BatchResult{}, fmt.Errorf("op %d: %w", i, err)
			}
		}
	}
	if err := n.checkWritable(len(ops)); err != nil {
		return BatchResult{}, err
	}
	// Ops on approximate namespaces: the other ops as a batch, then the
	// sketch ops (checked up front, so that only an int64 overflow of a
	// sketch total could fail after the rest applied).
	var sketchOps []int
	var rec *nsconfig.Record
	for i, op := range ops {
		if i == 0 || op.NS != ops[i-1].NS { // looked up once per run of one namespace
			rec = n.ns.Approx(op.NS)
		}
		if rec == nil {
			continue
		}
		switch {
		case op.By < 0:
			return BatchResult{}, fmt.Errorf("op %d: %w", i, errApproxRefused(op.NS, "decrements are refused because a sketch keeps its error bound only for non-negative counts"))
		case op.ID != "":
			return BatchResult{}, fmt.Errorf("op %d: %w", i, errApproxRefused(op.NS, "increment ids are not remembered there; send the op without an id"))
		case consistency != "" && consistency != ConsistencyLocal:
			return BatchResult{}, fmt.Errorf("op %d: %w", i, errApproxRefused(op.NS, "only consistency local is served there; leave consistency out"))
		}
		sketchOps = append(sketchOps, i)
	}
	if len(sketchOps) > 0 {
		rest := make([]BatchOp, 0, len(ops)-len(sketchOps))
		for i, op := range ops {
			if !slices.Contains(sketchOps, i) {
				rest = append(rest, op)
			}
		}
		var res BatchResult
		if len(rest) > 0 {
			var err error
			if res, err = n.Batch(ctx, rest, consistency, returnValues); err != nil {
				return BatchResult{}, err
			}
		}
		var values []int64
		if returnValues {
			values = make([]int64, len(ops))
			j := 0
			for i := range ops {
				if !slices.Contains(sketchOps, i) {
					values[i] = res.Values[j]
					j++
				}
			}
		}
		sync := false
		for _, i := range sketchOps {
			op := ops[i]
			p, err := approx.ParamsOf(op.NS, n.ns.Approx(op.NS))
			var est int64
			var s bool
			if err == nil {
				est, s, err = n.sketches.Add(op.NS, p, op.Key, op.By)
			}
			if err != nil {
				return BatchResult{}, fmt.Errorf("op %d: %w", i, err)
			}
			n.metrics.Increments.Inc()
			sync = sync || s
			if returnValues {
				values[i] = est
			}
		}
		res.Applied += len(sketchOps)
		res.Values = values
		return res, n.durable(ctx, sync)
	}
	unlock, err := n.guardReleased(ctx, ops)
	if err != nil {
		return BatchResult{}, err
	}
	res, err := n.writer.Apply(ctx, write.Request{Ops: ops, Consistency: consistency, Values: returnValues, Numbered: true})
	unlock()
	if err == nil {
		n.metrics.Batches.Inc()
		if returnValues {
			err = n.shardedValues(ctx, ops, res.Values)
		}
	}
	return res, err
}

// validateOp checks what validateWrite does of a batch op but its
// namespace, which Batch checks once per run of ops in one namespace.
func validateOp(op BatchOp) error {
	if err := ValidateKey(op.Key); err != nil {
		return err
	}
	if err := ValidateBy(op.By); err != nil {
		return err
	}
	if op.ID != "" {
		return ValidateID(op.ID)
	}
	return nil
}
