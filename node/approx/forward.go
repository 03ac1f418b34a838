package approx

import (
	"context"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/nsconfig"
)

// The refusals of approximate namespaces: what a sketch cannot honour.

// ParamsOf returns the sketch dimensions of the approximate namespace ns
// with config rec.
func ParamsOf(ns string, rec *nsconfig.Record) (crdt.SketchParams, error) {
	p, err := rec.Config.SketchParams()
	if err != nil {
		return p, kinderr.New(nodeerr.ErrInvalidArgument, err, "namespace %q: %v", ns, err)
	}
	return p, nil
}

// WriteOptions are the optional fields of an increment that a sketch
// refuses.
type WriteOptions struct {
	ID          string
	Consistency string
	Labels      int // how many labels the increment carries
	At          time.Time
}

// Incr counts by more occurrences of key in the approximate namespace ns
// (config rec) and returns the key's estimate after the change, once it is
// as durable as the namespace asks. Decrements are
// refused: with negative updates a Count-Min Sketch loses its one-sided
// bound (an estimate could fall below the truth, and the ε·N bound no longer
// holds). Ids, labels and event times are refused too, since the sketch
// keeps no per-key record to honour them with, and so are the quorum
// consistency levels, not built for sketches.
func (s *Sketches) Incr(ctx context.Context, rec *nsconfig.Record, ns, key string, by int64, opts WriteOptions) (int64, error) {
	switch {
	case by < 0:
		return 0, Refused(ns, "decrements are refused because a sketch keeps its error bound only for non-negative counts; use an eventual namespace to count down")
	case opts.ID != "":
		return 0, Refused(ns, "increment ids are not remembered there; send the increment without an id")
	case opts.Labels > 0:
		return 0, Refused(ns, "it keeps no label series; send the increment without labels")
	case !opts.At.IsZero():
		return 0, Refused(ns, "it keeps no time buckets; send the increment without at")
	case opts.Consistency != "" && opts.Consistency != "local":
		return 0, Refused(ns, "only consistency local is served there (quorum over the sketch's cells is not built); leave consistency out")
	}
	p, err := ParamsOf(ns, rec)
	if err != nil {
		return 0, err
	}
	if by == 0 {
		est, _, err := s.Estimate(ns, p, key)
		return est, err
	}
	est, sync, err := s.Add(ns, p, key, by)
	if err != nil {
		return 0, err
	}
	s.cfg.OnIncrement()
	return est, s.cfg.Durable(ctx, sync)
}

// Get reads the estimate of key in the approximate namespace ns (config
// rec) and its error bound; a read at a time or at another consistency
// than local is refused.
func (s *Sketches) Get(rec *nsconfig.Record, ns, key string, at time.Time, consistency string) (est, bound int64, err error) {
	if !at.IsZero() {
		return 0, 0, Refused(ns, "it keeps no history, so it cannot be read at a time; leave at out")
	}
	if consistency != "" && consistency != "local" {
		return 0, 0, Refused(ns, "only consistency local is served there (quorum over the sketch's cells is not built); leave consistency out")
	}
	p, err := ParamsOf(ns, rec)
	if err != nil {
		return 0, 0, err
	}
	est, bound, err = s.Estimate(ns, p, key)
	if err != nil {
		return 0, 0, err
	}
	s.cfg.OnRead()
	return est, bound, nil
}
