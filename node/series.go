package node

import (
	"fmt"
	"sync"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/keyspace"
)

// seriesCaps enforces Config.MaxSeriesPerKey: how many label series one
// counter key may have.
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
type seriesCaps struct {
	mu     sync.Mutex     // guards counts
	counts map[string]int // ns 0x00 key -> label series of the key
}

// reserveSeries admits an increment of ns/key with labels: nil when its
// series exists or one more fits under the cap (then reserved), else an
// error wrapping ErrTooManySeries.
func (n *Node) reserveSeries(ns, key string, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	sk := seriesKey(key, labels)
	if _, found, err := n.counterState(ns, sk); err != nil {
		return kinderr.New(ErrUnavailable, err, "read label series: %v", err)
	} else if found {
		return nil
	}
	limit := n.cfg.MaxSeriesPerKey
	n.series.mu.Lock()
	defer n.series.mu.Unlock()
	id := ns + "\x00" + key
	count, ok := n.series.counts[id]
	if !ok {
		prefix := string([]byte{keyspace.KindSeries}) + key + "\x00"
		err := n.store.ScanCounters(ns, prefix, "", func(string, crdt.Counter) bool {
			count++
			return count <= limit
		})
		if err != nil {
			return kinderr.New(ErrUnavailable, err, "count label series: %v", err)
		}
	}
	if count >= limit {
		if n.series.counts == nil {
			n.series.counts = make(map[string]int)
		}
		n.series.counts[id] = count
		return fmt.Errorf("%w: %s/%s has %d label series, the limit; these labels would add one more (reuse existing label values, or put the varying part in the key)",
			ErrTooManySeries, ns, key, limit)
	}
	if n.series.counts == nil {
		n.series.counts = make(map[string]int)
	}
	n.series.counts[id] = count + 1
	return nil
}
