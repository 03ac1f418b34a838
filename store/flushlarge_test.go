package store

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/crdt"
)

// manyNew is an Unsaved of n new counters, each with one slot and one
// index entry, handed out by the first checkpoint.
type manyNew struct {
	n     int
	taken atomic.Bool
}

func (m *manyNew) Changed() (int64, int64) {
	if m.taken.Load() {
		return 0, 0
	}
	return int64(m.n), 0
}

func (m *manyNew) Collect(_ uint64, put func(ns, key string, r Record, indexed []OriginSeq)) {
	if m.taken.Swap(true) {
		return
	}
	for i := range m.n {
		put("bench", fmt.Sprintf("k%08d", i), Record{
			Counter: crdt.Counter{Slots: []crdt.Slot{{Node: 7, P: 1}}},
			Seqs:    []OriginSeq{{Origin: 7, Seq: uint64(i + 1)}},
		}, nil)
	}
}

func (m *manyNew) Saved(uint64, error) {}

func (m *manyNew) VersionVector() []OriginSeq {
	return []OriginSeq{{Origin: 7, Seq: uint64(m.n)}}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestLargeCheckpointLetsItsBatchGo checks that a checkpoint too large for
// Pebble's memtable does not stay in the heap once the writes stop. Without
// ReleaseLarge the batch of 200,000 new counters (its data and the room it
// was given, 33 MB of heap here) stayed reachable until later writes
// rotated Pebble's memtables; with one forced flush instead of two it still
// did. The flushes wait for the next checkpoint that has nothing (or little)
// to write: made after every large checkpoint, they cost compactions while
// the burst goes on.
func TestLargeCheckpointLetsItsBatchGo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: writes a checkpoint of 200,000 counters")
	}
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.FS = vfs.Default
	cfg.CacheSize = 1 << 20
	cfg.MemTableSize = 16 << 20 // a batch of 8 MB is large; this one is about 12 times that, as Pebble counts it
	cfg.Logger = zaptest.NewLogger(t)
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if _, err := s.ReplayLog(func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	before := heapInUse()
	const n = 200_000
	c := s.NewCheckpointer(CheckpointConfig{}, &manyNew{n: n})
	if err := c.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	// No flush yet: the burst may go on.
	if f := s.db.Metrics().Flush.Count; f != 0 {
		t.Fatalf("%d flushes right after the large checkpoint, want none until the writes stop", f)
	}
	if s.largeUnflushed.Load() != 1 {
		t.Fatal("the large checkpoint was not noted for ReleaseLarge")
	}
	// The next checkpoint finds nothing to write: the burst is over.
	if err := c.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if f := s.db.Metrics().Flush.Count; f < 2 {
		t.Fatalf("%d flushes after a checkpoint with nothing to write, want the 2 of ReleaseLarge", f)
	}
	var queued int64
	var after uint64
	for deadline := time.Now().Add(20 * time.Second); ; {
		queued = s.db.Metrics().MemTable.Count
		after = heapInUse()
		// Without the flushes the heap kept 33 MB more (the batch's
		// data and the room it was given), and 32 MB more when the
		// checkpointer kept its stage; what stays is the memtable
		// Pebble starts with (256 KB, doubling) and the runtime's own.
		if queued == 1 && after < before+8<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after a checkpoint of %d new counters: %d memtables and flushables queued (want 1, the mutable one), heap in use %d MB against %d MB before it",
				n, queued, after>>20, before>>20)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("heap in use %d KB before the checkpoint, %d KB after it; %d memtable queued", before>>10, after>>10, queued)
	runtime.KeepAlive(c) // what it holds (its stage) counts

	// What the checkpoint wrote is there.
	r, found, err := s.GetRecord("bench", fmt.Sprintf("k%08d", n-1))
	if err != nil || !found || r.Counter.Value() != 1 {
		t.Fatalf("last counter after the flush: found %v, value %d, err %v", found, r.Counter.Value(), err)
	}
}
