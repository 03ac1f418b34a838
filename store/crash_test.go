package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/countmesh/countmesh/crdt"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/internal/wait"
)

// TestCrash crashes a store while writers are in flight and checks, for
// every counter, acknowledged <= recovered <= attempted: no acknowledged
// increment is lost and nothing is invented.
//
// The crash is real as far as Pebble can tell: vfs.CrashClone copies the
// file system keeping only what was fsynced (files and directory entries)
// plus a random share of the rest, as a power cut would; the new Store
// opens the copy and recovers from it.
func TestCrash(t *testing.T) {
	seeds := 48
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			crashOnce(t, uint64(seed))
		})
	}
}

func crashOnce(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	const writers, keys = 6, 40
	// Small memtables in half the runs, so that crashes also hit
	// memtable flushes and WAL rotations.
	memTable := uint64(1 << 20)
	if seed%2 == 1 {
		memTable = 32 << 10
	}
	// Acknowledgements to wait for before crashing (0: crash at once).
	target := rng.Int64N(3000)
	unsynced := rng.IntN(101)
	asyncShare := rng.IntN(3) * 25 // percent of async tickets: 0, 25 or 50
	t.Logf("memtable %d, crash after %d acks, %d%% of unsynced data kept, %d%% async tickets",
		memTable, target, unsynced, asyncShare)

	fs := vfs.NewCrashableMem()
	cfg := DefaultConfig()
	cfg.Dir, cfg.FS, cfg.Logger = "db", fs, zaptest.NewLogger(t)
	cfg.CacheSize, cfg.MemTableSize = 1<<20, memTable
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := newMapSource()
	c, err := s.NewCommitter(CommitterConfig{MaxDelay: 2 * time.Millisecond, Logger: cfg.Logger}, src)
	if err != nil {
		t.Fatal(err)
	}

	var attempted, acked [keys]atomic.Int64
	var totalAcked atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range writers {
		wrng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			for !stop.Load() {
				k := wrng.IntN(keys)
				sync := wrng.IntN(100) >= asyncShare
				// Count the attempt before the change becomes visible,
				// so that attempted bounds every value Fill can write.
				attempted[k].Add(1)
				src.incr(nodeA, crashKey(k), 1)
				err := c.Ticket(sync).Wait(context.Background())
				if err != nil {
					if !stop.Load() {
						t.Errorf("Wait before the crash: %v", err)
					}
					return
				}
				acked[k].Add(1)
				totalAcked.Add(1)
			}
		})
	}

	wait.For(t, 10*time.Second, fmt.Sprintf("%d acknowledgements", target), func() (bool, string) { return totalAcked.Load() >= target, "" })
	// Acknowledged before the crash: must survive it.
	var ackedBefore [keys]int64
	for k := range keys {
		ackedBefore[k] = acked[k].Load()
	}
	// The crash, while writers are in flight.
	crashed := fs.CrashClone(vfs.CrashCloneCfg{
		UnsyncedDataPercent: unsynced,
		RNG:                 rand.New(rand.NewPCG(seed, 0xc1a5)),
	})
	// Attempted by the time of the crash: nothing beyond may appear.
	var attemptedBefore [keys]int64
	for k := range keys {
		attemptedBefore[k] = attempted[k].Load()
	}
	stop.Store(true)
	if err := c.Close(); err != nil {
		t.Errorf("Committer.Close: %v", err)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	files, _ := crashed.List("db")
	t.Logf("files after the crash: %q", files)
	cfg.FS = crashed
	r, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open after the crash: %v", err)
	}
	defer r.Close()
	var ackedTotal, recoveredTotal int64
	for k := range keys {
		cnt, _, err := r.GetCounter(testNS, crashKey(k))
		if err != nil {
			t.Fatalf("GetCounter after the crash: %v", err)
		}
		got := int64(cnt.Slot(nodeA).P)
		if got < ackedBefore[k] || got > attemptedBefore[k] {
			t.Errorf("%s: recovered %d, want acknowledged %d <= value <= attempted %d",
				crashKey(k), got, ackedBefore[k], attemptedBefore[k])
		}
		ackedTotal += ackedBefore[k]
		recoveredTotal += got
	}
	t.Logf("acknowledged %d, recovered %d", ackedTotal, recoveredTotal)
	// The recovered store takes writes again.
	b := r.NewBatch()
	defer b.Close()
	b.PutCounter(testNS, "after", crdt.Counter{})
	if err := b.Commit(true); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
}

func crashKey(k int) string { return fmt.Sprintf("page/%03d", k) }
