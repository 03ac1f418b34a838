package keyspace

import (
	"slices"
	"strings"

	"github.com/countmesh/countmesh/store"
)

// Scanned is one counter as a scan sees it: its freshest state, from the
// hot set when it holds the counter.
type Scanned struct {
	Key       string
	Value     int64
	UpdatedMs int64 // 0 when unknown
	Live      bool  // not deleted, and not idle (see Scan)
	HasReset  bool  // the state carries a reset record (a reset or a delete)
}

// Scan calls fn, in key order, for every counter of ns whose key starts
// with prefix and sorts after `after`, with its freshest state, until fn
// returns false. Pebble holds what the last checkpoint wrote; the counters
// changed since (dirty, unsaved, or being written by a checkpoint) are
// merged into the scan, so that it sees every change without forcing a
// checkpoint. idle, when set, reports a counter last changed at updatedMs
// as not live (a namespace's ttl). It takes stripe locks one at a time and
// none while fn runs.
func (h *Set) Scan(ns, prefix, after string, idle func(updatedMs int64) bool, fn func(c Scanned) bool) error {
	if idle == nil {
		idle = func(int64) bool { return false }
	}
	pending := h.unsavedKeys(ns, prefix, after)
	next := 0
	stopped := false
	emitPending := func(upto string) bool { // the pending keys before upto
		for next < len(pending) && (upto == "" || pending[next] < upto) {
			key := pending[next]
			next++
			c, ok, err := h.freshest(ns, key, nil, idle)
			if err == nil && ok && !fn(c) {
				return false
			}
		}
		return true
	}
	var readErr error
	err := h.st.ScanRecords(ns, prefix, after, func(key string, stored store.Record) bool {
		if !emitPending(key) {
			stopped = true
			return false
		}
		if next < len(pending) && pending[next] == key {
			next++ // the hot set's copy is read below
		}
		c, _, err := h.freshest(ns, key, &stored, idle)
		if err != nil {
			readErr = err
			return false
		}
		if !fn(c) {
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
// whose state Pebble may not hold yet: the entries changed since the last
// checkpoint (unsaved), waiting for the committer (dirty), or being written
// by the checkpoint in progress (saving).
func (h *Set) unsavedKeys(ns, prefix, after string) []string {
	want := ns + "\x00" + prefix
	var keys []string
	for i := range h.stripes {
		s := &h.stripes[i]
		s.mu.Lock()
		for _, list := range [3][]*Entry{s.unsaved, s.dirty, s.saving} {
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
func (h *Set) freshest(ns, key string, stored *store.Record, idle func(int64) bool) (Scanned, bool, error) {
	var buf [600]byte
	ck := Composite(buf[:0], ns, key)
	s := h.StripeOf(ck)
	s.mu.Lock()
	if e := s.m[string(ck)]; e != nil {
		out := Scanned{Key: key, Value: e.C.Value(), UpdatedMs: e.Updated, HasReset: e.C.Reset != nil}
		out.Live = e.C.Live() && !idle(e.Updated)
		s.mu.Unlock()
		return out, true, nil
	}
	s.mu.Unlock()
	if stored == nil {
		// Checkpointed and evicted since the scan began.
		r, found, err := h.st.GetRecord(ns, key)
		if err != nil || !found {
			return Scanned{}, false, err
		}
		stored = &r
	}
	c := stored.Counter
	return Scanned{Key: key, Value: c.Value(), UpdatedMs: stored.UpdatedMs, Live: c.Live() && !idle(stored.UpdatedMs), HasReset: c.Reset != nil}, true, nil
}
