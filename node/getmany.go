package node

import (
	"cmp"
	"context"
	"fmt"
)

// MaxGetMany bounds the counters of one GetMany.
const MaxGetMany = 10_000

// KeyRef names one counter.
type KeyRef struct {
	NS  string
	Key string
}

// GetMany reads the counters keys with one consistency level and returns
// their values in key order; a counter never written reads 0, as with Get.
// Every name is checked before anything is read: one bad name refuses the
// whole read. It serves POST /v1/batch/get and the Redis MGET.
func (n *Node) GetMany(ctx context.Context, keys []KeyRef, consistency string) ([]int64, error) {
	if len(keys) > MaxGetMany {
		return nil, fmt.Errorf("%w: a read holds at most %d keys, got %d; split it", ErrTooLarge, MaxGetMany, len(keys))
	}
	if err := validateConsistency(consistency); err != nil {
		return nil, err
	}
	for i, k := range keys {
		if err := validateName(k.NS, k.Key); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
	}
	values := make([]int64, len(keys))
	opts := ReadOptions{Consistency: consistency}
	var sharded []int // counters of sharded namespaces, read together
	for i, k := range keys {
		if n.ReplicasOf(k.NS) > 0 {
			sharded = append(sharded, i)
			continue
		}
		c, err := n.Get(ctx, k.NS, k.Key, opts)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		values[i] = c.Value
	}
	if len(sharded) > 0 {
		if err := readable(n.ready.Load()); err != nil {
			return nil, err
		}
		if err := n.getManySharded(ctx, keys, sharded, cmp.Or(consistency, ConsistencyLocal), values); err != nil {
			return nil, err
		}
	}
	return values, nil
}
