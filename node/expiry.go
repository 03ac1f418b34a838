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
func (n *Node) DropExpired(ctx context.Context) error { return n.expirePass(ctx, true) }

// expirePass drops the buckets past their retention (series.Windows), then
// the counters idle past their namespace's ttl (series.TTL), then, with
// ids, the id records past their idempotency window (idem.IDs).
func (n *Node) expirePass(ctx context.Context, ids bool) error {
	if err := n.windows.DropExpired(); err != nil {
		return err
	}
	var idle []series.NSTTL
	for _, j := range n.ns.With(func(rt *nsconfig.Runtime) time.Duration { return rt.TTL }) {
		idle = append(idle, series.NSTTL{NS: j.NS, TTL: j.D})
	}
	if err := n.ttl.Expire(ctx, idle); err != nil {
		return err
	}
	if !ids {
		return nil
	}
	var windows []idem.Window
	for _, j := range n.ns.With(func(rt *nsconfig.Runtime) time.Duration { return rt.IDWindow }) {
		windows = append(windows, idem.Window{NS: j.NS, Win: j.D})
	}
	return n.ids.Expire(ctx, windows)
}

// expiryLoop runs expiry passes in the background.
func (n *Node) expiryLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ExpiryInterval)
	defer t.Stop()
	for pass := 1; ; pass++ {
		select {
		case <-n.done:
			return
		case <-t.C:
			if !n.Ready() {
				continue
			}
			// Id records are scanned less often: they are many, and
			// their windows are long.
			if err := n.expirePass(n.ctx(), pass%6 == 0); err != nil {
				n.log.Warn("expiry pass failed", zap.Error(err))
			}
		}
	}
}
