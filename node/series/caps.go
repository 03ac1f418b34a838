package series

import (
	"fmt"
	"sync"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/internal/nodeerr"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/store"
)

// Caps enforces a limit on how many label series one counter key may have.
//
// counts holds, per key that gained a series through this node since it
// started, the series known to exist or reserved: it starts from the
// series in the store when the key first gains one, and grows by one for
// each new series an increment reserves before it applies. An increment
// that then fails, or two that race for the same new series, leave the
// count one high: the cap errs on the side of refusing. Series that arrive
// only by replication count once checkpointed and the key's count is
// (re)read, so the cap bounds what clients of this node create; each node
// of the mesh enforces it for its own clients.
type Caps struct {
	limit  int
	store  *store.Store
	exists func(ns, key string) (bool, error)

	mu     sync.Mutex     // guards counts
	counts map[string]int // ns 0x00 key -> label series of the key
}

// NewCaps returns caps of limit series per key, counting a key's series in
// st; exists reports whether the counter ns/key exists (in memory or st).
func NewCaps(limit int, st *store.Store, exists func(ns, key string) (bool, error)) *Caps {
	return &Caps{limit: limit, store: st, exists: exists}
}

// Reserve admits an increment of ns/key with labels: nil when its series
// exists or one more fits under the cap (then reserved), else an error
// wrapping ErrTooManySeries.
func (c *Caps) Reserve(ns, key string, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	sk := Key(key, labels)
	if found, err := c.exists(ns, sk); err != nil {
		return kinderr.New(nodeerr.ErrUnavailable, err, "read label series: %v", err)
	} else if found {
		return nil
	}
	limit := c.limit
	c.mu.Lock()
	defer c.mu.Unlock()
	id := ns + "\x00" + key
	count, ok := c.counts[id]
	if !ok {
		prefix := string([]byte{keyspace.KindSeries}) + key + "\x00"
		err := c.store.ScanCounters(ns, prefix, "", func(string, crdt.Counter) bool {
			count++
			return count <= limit
		})
		if err != nil {
			return kinderr.New(nodeerr.ErrUnavailable, err, "count label series: %v", err)
		}
	}
	if c.counts == nil {
		c.counts = make(map[string]int)
	}
	if count >= limit {
		c.counts[id] = count
		return fmt.Errorf("%w: %s/%s has %d label series, the limit; these labels would add one more (reuse existing label values, or put the varying part in the key)",
			nodeerr.ErrTooManySeries, ns, key, limit)
	}
	c.counts[id] = count + 1
	return nil
}
