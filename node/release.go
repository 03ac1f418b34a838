package node

import (
	"runtime"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/node/write"
)

// After a burst of new counters, a checkpoint saves them and the hot set
// evicts (packs) all but its hot entries (node/keyspace/compact.go); the
// entries become garbage, but when the burst is over nothing allocates to
// start a collection, and the runtime gives free pages back to the kernel
// slowly, so the process would keep the burst's peak resident for minutes.
// So once releaseAfterEvicted entries (about 16 MB of them) have been
// evicted since the last release and then none for releaseQuietTicks
// seconds, the node collects and returns the free pages at once. A node
// that keeps evicting (new counters pouring in, or a working set larger
// than the cache) never goes quiet and never pays for a forced collection;
// its heap is the garbage collector's to manage. The write path's free
// scratches, sized for the burst's batches, go first.
const (
	releaseAfterEvicted = 1 << 16
	releaseQuietTicks   = 2
)

// An entry of the hot set idle for packIdleAfter seconds is packed (when
// the cache holds packed records at all; see hotCounters), by a walk of
// the entries every packIdleEvery seconds.
const (
	packIdleAfter = 10
	packIdleEvery = 5
)

// releaseHeap collects garbage and returns the free pages to the kernel.
func releaseHeap(log *zap.Logger) {
	var before, after runtime.MemStats
	t0 := time.Now()
	runtime.ReadMemStats(&before)
	write.DropFree()
	debug.FreeOSMemory()
	runtime.ReadMemStats(&after)
	log.Debug("returned free heap pages to the kernel after a burst of evictions ended",
		zap.Uint64("heap_sys_minus_released_before", before.HeapSys-before.HeapReleased),
		zap.Uint64("heap_sys_minus_released_after", after.HeapSys-after.HeapReleased),
		zap.Duration("took", time.Since(t0)))
}
