package node

import (
	"context"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/keyspace"
	"strings"
	"sync"
	"time"
)

// changedLocked tells the top sets and the watchers that ns/key changed
// from before. Every change of a counter's state passes here (own writes,
// replicated merges, expiry); the caller holds the counter's stripe lock.
func (n *Node) changedLocked(ns, key string, before int64, e *keyspace.Entry) {
	if !n.anyTops.Load() && n.watch.count.Load() == 0 {
		return
	}
	after := e.C.Value()
	if n.anyTops.Load() {
		n.observeTop(ns, key, before, after, e.C.Live())
	}
	if !keyspace.IsInternal(key) && n.watch.count.Load() > 0 {
		n.notifyWatchers(ns, key)
	}
}

// MaxWatchPending bounds the changed counters a subscription holds between
// two deliveries; a subscriber that falls further behind is dropped.
const MaxWatchPending = 10_000

// Subscription is a watch of one counter or of a prefix of a namespace. It
// collects the keys that changed; the reader takes them (coalescing every
// change of a key since the last take into one) and reads the values.
type Subscription struct {
	n      *Node
	ns     string
	key    string // one counter; empty for a prefix watch
	prefix string

	mu       sync.Mutex // guards pending, overflow and closed
	pending  map[string]struct{}
	overflow bool
	closed   bool
	ready    chan struct{} // has a value when pending is non-empty or overflow is set
}

// Subscribe watches the counter ns/key, or with an empty key every counter of
// ns whose key starts with prefix. Close it when done.
func (n *Node) Subscribe(ns, key, prefix string) (*Subscription, error) {
	if err := ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if key != "" {
		if err := ValidateKey(key); err != nil {
			return nil, err
		}
	}
	s := &Subscription{n: n, ns: ns, key: key, prefix: prefix, pending: make(map[string]struct{}), ready: make(chan struct{}, 1)}
	n.watch.Lock()
	if n.watch.byNS == nil {
		n.watch.byNS = make(map[string][]*Subscription)
	}
	n.watch.byNS[ns] = append(n.watch.byNS[ns], s)
	n.watch.Unlock()
	n.watch.count.Add(1)
	n.metrics.watchers.Inc()
	return s, nil
}

// Ready is signalled when changes are waiting (or the subscription
// overflowed).
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns the keys changed since the last Take, and whether the
// subscription fell too far behind (after which it collects nothing more).
func (s *Subscription) Take() (keys []string, overflow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys = make([]string, 0, len(s.pending))
	for k := range s.pending {
		keys = append(keys, k)
	}
	clear(s.pending)
	return keys, s.overflow
}

// Overflowed reports whether the subscription fell too far behind.
func (s *Subscription) Overflowed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overflow
}

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	n := s.n
	n.watch.Lock()
	subs := n.watch.byNS[s.ns]
	for i, x := range subs {
		if x == s {
			subs = append(subs[:i:i], subs[i+1:]...)
			break
		}
	}
	if len(subs) == 0 {
		delete(n.watch.byNS, s.ns)
	} else {
		n.watch.byNS[s.ns] = subs
	}
	n.watch.Unlock()
	n.watch.count.Add(-1)
	n.metrics.watchers.Dec()
}

func (s *Subscription) matches(key string) bool {
	if s.key != "" {
		return key == s.key
	}
	return strings.HasPrefix(key, s.prefix)
}

// add records a change of key; it never blocks.
func (s *Subscription) add(key string) {
	s.mu.Lock()
	if s.closed || s.overflow {
		s.mu.Unlock()
		return
	}
	if _, ok := s.pending[key]; !ok {
		if len(s.pending) >= MaxWatchPending {
			s.overflow = true
			clear(s.pending)
		} else {
			s.pending[key] = struct{}{}
		}
	}
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// notifyWatchers hands a change of ns/key to the matching subscriptions.
func (n *Node) notifyWatchers(ns, key string) {
	n.watch.RLock()
	subs := n.watch.byNS[ns]
	for _, s := range subs {
		if s.matches(key) {
			s.add(key)
		}
	}
	n.watch.RUnlock()
}

// Current reads the subscription's counters for delivery.
func (s *Subscription) Current(ctx context.Context, keys []string) ([]Counter, error) {
	out := make([]Counter, 0, len(keys))
	for _, k := range keys {
		c, err := s.n.Get(ctx, s.ns, k, ReadOptions{})
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
