package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkBatch applies batches of 64 increments, as a RESP pipeline of
// redis-benchmark -P 64 does, over 100,000 counters already in memory of a
// sync namespace on an in-memory store. An op is one batch; run it with
// -benchmem for the allocations per batch.
func BenchmarkBatch(b *testing.B) {
	n := openTest(b, testConfig(b, vfs.NewMem()))
	ctx := context.Background()
	const keys, size = 100_000, 64
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("key:%06d", i)
	}
	warm := make([]BatchOp, 0, 1000)
	for i := range names {
		warm = append(warm, BatchOp{NS: "counter", Key: names[i], By: 1})
		if len(warm) == cap(warm) {
			if _, err := n.Batch(ctx, warm, "", false); err != nil {
				b.Fatal(err)
			}
			warm = warm[:0]
		}
	}
	ops := make([]BatchOp, size)
	b.ResetTimer()
	for i := range b.N {
		for j := range ops {
			ops[j] = BatchOp{NS: "counter", Key: names[(i*size+j*7919)%keys], By: 1}
		}
		if _, err := n.Batch(ctx, ops, "", true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIncr is BenchmarkBatch for single increments (an unpipelined
// RESP INCR).
func BenchmarkIncr(b *testing.B) {
	n := openTest(b, testConfig(b, vfs.NewMem()))
	ctx := context.Background()
	const keys = 100_000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("key:%06d", i)
		if _, err := n.Incr(ctx, "counter", names[i], 1, WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := n.Incr(ctx, "counter", names[(i*7919)%keys], 1, WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
