package node

import (
	"fmt"
	"sync"

	"github.com/countmesh/countmesh/node/idem"
)

// Idempotent increments: the id records are package node/idem's; the node
// wires them to its hot set, remembers the ids the store may not hold yet,
// and decides in the write path which ops of a batch are duplicates.

// MaxIDBytes bounds an increment id.
const MaxIDBytes = 256

// ValidateID checks an increment id: 1 to 256 bytes of UTF-8 without control
// characters.
func ValidateID(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("%w: id must be at most %d bytes, got %d", ErrInvalidArgument, MaxIDBytes, len(id))
	}
	if err := ValidateKey(id); err != nil {
		return fmt.Errorf("%w: id must be 1 to %d bytes of UTF-8 without control characters", ErrInvalidArgument, MaxIDBytes)
	}
	return nil
}

// idKey returns the internal key of the id record of (id, key).
func idKey(id, key string) string { return idem.Key(id, key) }

// zigzag maps by to the body of an id record's slot (less one).
func zigzag(by int64) uint64 { return idem.Zigzag(by) }

// newIDs wires the id records (package node/idem) to the node.
func newIDs(n *Node) *idem.IDs {
	return idem.New(idem.Config{
		ID:           n.id,
		Keys:         n.keys,
		Store:        n.store,
		Now:          n.cfg.Now,
		Log:          n.log,
		Recent:       n.recent.get,
		Changed:      n.feed.changedLocked,
		OnCompensate: func() { n.metrics.Compensations.Inc() },
		OnExpired:    func(k int) { n.metrics.ExpiredIDs.Add(float64(k)) },
	})
}

// recentIDs remembers the ids written or received since the last two
// checkpoints, for the cross-key check of ids the store does not hold yet.
type recentIDs struct {
	mu        sync.Mutex        // guards cur and prev
	cur, prev map[string]string // ns 0x00 id -> key
}

func (r *recentIDs) add(ns, id, key string) {
	r.mu.Lock()
	if r.cur == nil {
		r.cur = make(map[string]string)
	}
	r.cur[ns+"\x00"+id] = key
	r.mu.Unlock()
}

func (r *recentIDs) get(ns, id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k, ok := r.cur[ns+"\x00"+id]; ok {
		return k, true
	}
	k, ok := r.prev[ns+"\x00"+id]
	return k, ok
}

// rotate is called when a checkpoint has committed: what was added before
// the previous one ended is in the store now.
func (r *recentIDs) rotate() {
	r.mu.Lock()
	r.prev, r.cur = r.cur, nil
	r.mu.Unlock()
}
