package node

import (
	"slices"
	"strings"
	"time"

	"github.com/countmesh/countmesh/store"
)

// scanned is one counter as a scan of the namespace sees it: its freshest
// state, from the hot set when it holds the counter.
type scanned struct {
	Counter
	live     bool // not deleted, and not idle past the namespace's ttl
	hasReset bool // the state carries a reset record (a reset or a delete)
}

// scanLive calls fn, in key order, for every counter of ns whose key starts
// with prefix and sorts after `after`, with its freshest state, until fn
// returns false. Pebble holds what the last checkpoint wrote; the counters
// changed since (the hot set's dirty and unsaved entries) are merged into
// the scan, so that a listing sees every change without forcing a
// checkpoint. With checkIdle, a counter idle past the namespace's ttl is
// reported not live (callers that hold n.ns pass false).
func (n *Node) scanLive(ns, prefix, after string, checkIdle bool, fn func(key string, c scanned) bool) error {
	var ttl time.Duration
	if checkIdle {
		ttl = n.ttlOf(ns) // before any stripe lock
	}
	pending := n.unsavedKeys(ns, prefix, after)
	next := 0
	stopped := false
	emitPending := func(upto string) bool { // the pending keys before upto
		for next < len(pending) && (upto == "" || pending[next] < upto) {
			key := pending[next]
			next++
			c, ok, err := n.freshest(ns, key, nil, ttl)
			if err == nil && ok && !fn(key, c) {
				return false
			}
		}
		return true
	}
	var readErr error
	err := n.store.ScanRecords(ns, prefix, after, func(key string, stored store.Record) bool {
		if !emitPending(key) {
			stopped = true
			return false
		}
		if next < len(pending) && pending[next] == key {
			next++ // the hot set's copy is read below
		}
		c, _, err := n.freshest(ns, key, &stored, ttl)
		if err != nil {
			readErr = err
			return false
		}
		if !fn(key, c) {
			stopped = true
			return false
		}
		return true
	})
	if err == nil {
		err = readErr
	}
	if err != nil || stopped {
		return err
	}
	emitPending("")
	return nil
}

// unsavedKeys returns, sorted, the keys of ns under prefix after `after`
// whose state Pebble may not hold yet: the hot set's entries changed since
// the last checkpoint (unsaved), waiting for the committer (dirty), or
// being written by the checkpoint in progress (saving).
func (n *Node) unsavedKeys(ns, prefix, after string) []string {
	want := ns + "\x00" + prefix
	var keys []string
	for i := range n.stripes {
		s := &n.stripes[i]
		s.mu.Lock()
		for _, list := range [3][]*entry{s.unsaved, s.dirty, s.saving} {
			for _, e := range list {
				if strings.HasPrefix(e.ck, want) {
					if key := e.ck[len(ns)+1:]; key > after {
						keys = append(keys, key)
					}
				}
			}
		}
		s.mu.Unlock()
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// freshest returns the state of ns/key: the hot set's copy when it holds
// one, else stored, else (stored nil) the store's. found is false for a
// counter that exists nowhere.
func (n *Node) freshest(ns, key string, stored *store.Record, ttl time.Duration) (scanned, bool, error) {
	var buf [600]byte
	ck := compositeKey(buf[:0], ns, key)
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	if e := s.m[string(ck)]; e != nil {
		out := scanned{Counter: Counter{NS: ns, Key: key, Value: e.c.Value()}, hasReset: e.c.Reset != nil}
		if e.updated > 0 {
			out.UpdatedAt = time.UnixMilli(e.updated)
		}
		out.live = e.c.Live() && !n.idle(ttl, e.updated)
		s.mu.Unlock()
		return out, true, nil
	}
	s.mu.Unlock()
	if stored == nil {
		// Checkpointed and evicted since the scan began.
		r, found, err := n.store.GetRecord(ns, key)
		if err != nil || !found {
			return scanned{}, false, err
		}
		stored = &r
	}
	c, updated := stored.Counter, stored.UpdatedMs
	out := scanned{Counter: Counter{NS: ns, Key: key, Value: c.Value()}, live: c.Live() && !n.idle(ttl, updated), hasReset: c.Reset != nil}
	if updated > 0 {
		out.UpdatedAt = time.UnixMilli(updated)
	}
	return out, true, nil
}
