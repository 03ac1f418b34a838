package watch

import (
	"strings"
	"sync"
	"sync/atomic"
)

// MaxPending bounds the changed counters a subscription holds between two
// deliveries; a subscriber that falls further behind is dropped.
const MaxPending = 10_000

// Hub holds the open subscriptions. It is safe for concurrent use.
type Hub struct {
	mu     sync.RWMutex // guards byNS
	byNS   map[string][]*Sub
	count  atomic.Int64 // subscriptions open
	onOpen func(delta int)
}

// NewHub returns an empty hub; onOpen, when set, is told of every
// subscription opened (+1) and closed (-1).
func NewHub(onOpen func(delta int)) *Hub {
	if onOpen == nil {
		onOpen = func(int) {}
	}
	return &Hub{byNS: make(map[string][]*Sub), onOpen: onOpen}
}

// Active reports whether any subscription is open.
func (h *Hub) Active() bool { return h.count.Load() > 0 }

// Subscribe watches the counter ns/key, or with an empty key every counter
// of ns whose key starts with prefix. Close it when done.
func (h *Hub) Subscribe(ns, key, prefix string) *Sub {
	s := &Sub{hub: h, ns: ns, key: key, prefix: prefix, pending: make(map[string]struct{}), ready: make(chan struct{}, 1)}
	h.mu.Lock()
	h.byNS[ns] = append(h.byNS[ns], s)
	h.mu.Unlock()
	h.count.Add(1)
	h.onOpen(1)
	return s
}

// Notify hands a change of ns/key to the matching subscriptions; it never
// blocks.
func (h *Hub) Notify(ns, key string) {
	h.mu.RLock()
	for _, s := range h.byNS[ns] {
		if s.matches(key) {
			s.add(key)
		}
	}
	h.mu.RUnlock()
}

// Sub is one subscription: a watch of one counter or of a prefix of a
// namespace.
type Sub struct {
	hub    *Hub
	ns     string
	key    string // one counter; empty for a prefix watch
	prefix string

	mu       sync.Mutex // guards pending, overflow and closed
	pending  map[string]struct{}
	overflow bool
	closed   bool
	ready    chan struct{} // has a value when pending is non-empty or overflow is set
}

// NS returns the namespace watched.
func (s *Sub) NS() string { return s.ns }

// Ready is signalled when changes are waiting (or the subscription
// overflowed).
func (s *Sub) Ready() <-chan struct{} { return s.ready }

// Take returns the keys changed since the last Take, and whether the
// subscription fell too far behind (after which it collects nothing more).
func (s *Sub) Take() (keys []string, overflow bool) {
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
func (s *Sub) Overflowed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overflow
}

// Close ends the subscription. It is idempotent.
func (s *Sub) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	h := s.hub
	h.mu.Lock()
	subs := h.byNS[s.ns]
	for i, x := range subs {
		if x == s {
			subs = append(subs[:i:i], subs[i+1:]...)
			break
		}
	}
	if len(subs) == 0 {
		delete(h.byNS, s.ns)
	} else {
		h.byNS[s.ns] = subs
	}
	h.mu.Unlock()
	h.count.Add(-1)
	h.onOpen(-1)
}

func (s *Sub) matches(key string) bool {
	if s.key != "" {
		return key == s.key
	}
	return strings.HasPrefix(key, s.prefix)
}

// add records a change of key; it never blocks.
func (s *Sub) add(key string) {
	s.mu.Lock()
	if s.closed || s.overflow {
		s.mu.Unlock()
		return
	}
	if _, ok := s.pending[key]; !ok {
		if len(s.pending) >= MaxPending {
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
