package node

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/node/idem"
	"github.com/countmesh/countmesh/node/nsconfig"
	"github.com/countmesh/countmesh/node/series"
)

// DropExpired runs retention, TTL and id expiry at once (they also run in
// the background); tests and operators use it.
func (n *Node) DropExpired(ctx context.Context) error {
	return expirePass(ctx, n.windows, n.ttl, n.ns, n.ids, true)
}

// expirePass drops the buckets past their retention (series.Windows), then
// the counters idle past their namespace's ttl (series.TTL), then, with
// ids, the id records past their idempotency window (idem.IDs).
func expirePass(ctx context.Context, w *series.Windows, ttl *series.TTL, nss *nsconfig.Table, idRecs *idem.IDs, ids bool) error {
	if err := w.DropExpired(); err != nil {
		return err
	}
	var idle []series.NSTTL
	for _, j := range nss.With(func(rt *nsconfig.Runtime) time.Duration { return rt.TTL }) {
		idle = append(idle, series.NSTTL{NS: j.NS, TTL: j.D})
	}
	if err := ttl.Expire(ctx, idle); err != nil {
		return err
	}
	if !ids {
		return nil
	}
	var windows []idem.Window
	for _, j := range nss.With(func(rt *nsconfig.Runtime) time.Duration { return rt.IDWindow }) {
		windows = append(windows, idem.Window{NS: j.NS, Win: j.D})
	}
	return idRecs.Expire(ctx, windows)
}

// expiryLoop runs pass every interval until done closes; every sixth pass
// expires id records too (they are many, and their windows are long).
func expiryLoop(done <-chan struct{}, interval time.Duration, log *zap.Logger, pass func(ids bool) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-done:
			return
		case <-t.C:
			if err := pass(i%6 == 0); err != nil {
				log.Warn("expiry pass failed", zap.Error(err))
			}
		}
	}
}
