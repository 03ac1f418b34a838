package node

import (
	"runtime"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/write"
	"github.com/countmesh/countmesh/store"
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

// releaseFollowUps are the ticks after a release for a burst at which the
// node releases again if it is still quiet: the walks that pack the
// burst's last entries (idle packIdleAfter ticks, walked every
// packIdleEvery) and the flushes of its last checkpoints make garbage
// after the first release, and nothing else collects it while the node
// is idle (docs/benchmarks.md, "Issue 11 on a quiet box").
var releaseFollowUps = [...]int{7, 17}

// An entry of the hot set idle for packIdleAfter seconds is packed (when
// the cache holds packed records at all; see hotCounters), by a walk of
// the entries every packIdleEvery seconds.
const (
	packIdleAfter = 10
	packIdleEvery = 5
)

// releaseHeap collects garbage and returns the free pages to the kernel,
// after Pebble let go of a large checkpoint's batch (store.ReleaseLarge)
// and the write path's and the hot set's scratch room is let go.
func releaseHeap(log *zap.Logger, keys *keyspace.Set, st *store.Store) {
	var before, after runtime.MemStats
	t0 := time.Now()
	st.ReleaseLarge()
	runtime.ReadMemStats(&before)
	write.DropFree()
	keys.DropScratch()
	debug.FreeOSMemory()
	runtime.ReadMemStats(&after)
	log.Debug("returned free heap pages to the kernel after a burst of evictions ended",
		zap.Uint64("heap_sys_minus_released_before", before.HeapSys-before.HeapReleased),
		zap.Uint64("heap_sys_minus_released_after", after.HeapSys-after.HeapReleased),
		zap.Duration("took", time.Since(t0)))
}
