package node

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/query"
	"github.com/countmesh/countmesh/node/watch"
)

// changeFeed is where every change of a counter's state is told: the top
// sets and the watchers.
type changeFeed struct {
	tops  *query.TopSets
	watch *watch.Hub
	// observe, when set (tests), sees every change with the new value.
	observe atomic.Pointer[func(ns, key string, value int64)]
}

// changedLocked tells the top sets and the watchers that ns/key changed
// from before. Every change of a counter's state passes here (own writes,
// replicated merges, imports, expiry); the caller holds the counter's
// stripe lock.
func (f *changeFeed) changedLocked(ns, key string, before int64, e *keyspace.Entry) {
	if obs := f.observe.Load(); obs != nil {
		(*obs)(ns, key, e.C.Value())
	}
	tops, watched := f.tops.Active(), f.watch.Active()
	if tops {
		f.tops.Observe(ns, key, before, e.C.Value(), e.C.Live())
	}
	if watched && !keyspace.IsInternal(key) {
		f.watch.Notify(ns, key)
	}
}

// MaxWatchPending bounds the changed counters a subscription holds between
// two deliveries; a subscriber that falls further behind is dropped.
const MaxWatchPending = watch.MaxPending

// Subscription is a watch of one counter or of a prefix of a namespace
// (package node/watch). It collects the keys that changed; the reader takes
// them (coalescing every change of a key since the last take into one) and
// reads their values with Current.
type Subscription struct {
	*watch.Sub
	n *Node
}

// Subscribe watches the counter ns/key, or with an empty key every counter of
// ns whose key starts with prefix. Close it when done.
func (n *Node) Subscribe(ns, key, prefix string) (*Subscription, error) {
	if err := ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if err := n.refuseSharded(ns, "watching its counters"); err != nil {
		return nil, err
	}
	if key != "" {
		if err := ValidateKey(key); err != nil {
			return nil, err
		}
	}
	return &Subscription{Sub: n.watch.Subscribe(ns, key, prefix), n: n}, nil
}

// Current reads the subscription's counters for delivery.
func (s *Subscription) Current(ctx context.Context, keys []string) ([]Counter, error) {
	out := make([]Counter, 0, len(keys))
	for _, k := range keys {
		c, err := s.n.Get(ctx, s.NS(), k, ReadOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ChangedSince returns up to limit counters of ns under prefix that changed
// at or after since (a reconnecting prefix watcher's catch-up).
func (n *Node) ChangedSince(ctx context.Context, ns, prefix string, since time.Time, limit int) ([]Counter, error) {
	if err := ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if err := n.refuseSharded(ns, "listing its changed counters"); err != nil {
		return nil, err
	}
	var out []Counter
	edge := since.UnixMilli()
	err := n.scanLive(ns, prefix, keyspace.FirstUserKey, true, func(key string, c scanned) bool {
		if (c.live || c.hasReset) && c.UpdatedAt.UnixMilli() >= edge {
			out = append(out, c.Counter)
		}
		return len(out) < limit && ctx.Err() == nil
	})
	if err != nil {
		return nil, kinderr.New(ErrUnavailable, err, "scan counters: %v", err)
	}
	return out, nil
}
