package node

import (
	"fmt"
	"sync"
	"time"
)

// nsTable holds the namespaces' records. A record is immutable once
// installed; a change of config installs a new one.
type nsTable struct {
	sync.RWMutex // guards m; creation of a namespace holds the write lock
	m            map[string]*namespaceRecord
}

// get returns the record of ns, or nil when ns does not exist (it does not
// create it).
func (t *nsTable) get(ns string) *namespaceRecord {
	t.RLock()
	defer t.RUnlock()
	return t.m[ns]
}

// approx returns the record of ns when ns exists and is approximate, else
// nil.
func (t *nsTable) approx(ns string) *namespaceRecord {
	if rec := t.get(ns); rec != nil && rec.counterType().sketch() {
		return rec
	}
	return nil
}

// consistencyFor resolves the level of an operation on ns: the requested
// one, else quorum for an exact namespace, else local.
func (t *nsTable) consistencyFor(ns, requested string) string {
	if requested != "" {
		return requested
	}
	if rec := t.get(ns); rec != nil {
		return rec.counterType().consistency()
	}
	return ConsistencyLocal
}

// clamp keeps a read of a bounded exact counter within its bounds. The
// merged state never crosses them; a node that has seen a decrement before
// the increment or transfer that allowed it could, until that arrives.
func (t *nsTable) clamp(ns string, v int64) int64 { return clampRec(t.get(ns), v) }

// refuseBoundedReset refuses resets and deletes in an exact namespace with
// bounds.
func (t *nsTable) refuseBoundedReset(ns, what string) error {
	rec := t.get(ns)
	if rec != nil && rec.counterType().escrow() && rec.bounds().Any() {
		return fmt.Errorf("%w: %s in exact namespace %q with bounds is not supported (it would move the value outside the accounting that keeps the bounds); decrement or increment instead", ErrConflict, what, ns)
	}
	return nil
}

// ttlOf returns the ttl of ns (0 for none). It takes the table's lock: never
// call it under a stripe lock (the lock order is n.ns, then stripes).
func (t *nsTable) ttlOf(ns string) time.Duration {
	rec := t.get(ns)
	if rec == nil {
		return 0
	}
	return rec.runtime().ttl
}

// with returns the namespaces whose runtime config has a positive duration
// pick (a ttl, an idempotency window).
func (t *nsTable) with(pick func(*nsRuntime) time.Duration) []nsDuration {
	var out []nsDuration
	t.RLock()
	defer t.RUnlock()
	for ns, rec := range t.m {
		if d := pick(rec.runtime()); d > 0 {
			out = append(out, nsDuration{ns, d})
		}
	}
	return out
}
