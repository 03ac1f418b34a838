package store

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/crdt"
)

// Pebble's write-ahead logs take the disk they hold, not 110 % of the
// memtable each: with the default 64 MiB memtables, a store that has
// committed a few synced batches (a checkpoint's) and flushed once holds a
// few KiB of log, where it held about 140 MiB.
func TestWALsAreNotPreallocated(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig() // the default memtable size, as countd runs
	cfg.Dir = dir
	cfg.FS = vfs.Default
	cfg.Logger = zaptest.NewLogger(t)
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for round := range 3 {
		b := s.NewBatch()
		for i := range 100 {
			var c crdt.Counter
			c.Add(crdt.NodeIDFromName("n1"), int64(round*100+i+1))
			b.PutCounter("ns", string(rune('a'+i%26))+string(rune('a'+i/26)), c)
		}
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if round == 1 {
			if err := s.Flush(); err != nil { // a new WAL, the old one kept for reuse
				t.Fatal(err)
			}
		}
	}
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no Pebble log in %s: %v", dir, err)
	}
	var held int64
	for _, l := range logs {
		var st syscall.Stat_t
		if err := syscall.Stat(l, &st); err != nil {
			t.Fatal(err)
		}
		held += st.Blocks * 512
	}
	t.Logf("%d write-ahead logs hold %d bytes of disk", len(logs), held)
	if held > 4<<20 {
		t.Fatalf("%d write-ahead logs hold %d bytes of disk after 300 small writes; want at most 4 MiB (preallocated?)", len(logs), held)
	}
}
