package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/faultfs"

	"github.com/countmesh/countmesh/store/internal/oplog"
)

// logSource is a fake node that, like package node, commits its changes as
// operation-log records (mapSource writes Pebble keys instead).
type logSource struct {
	mu sync.Mutex
	// guarded by mu
	counters map[string]crdt.Counter
	dirty    map[string]struct{}
	enc      *LogEncoder
}

func newLogSource() *logSource {
	return &logSource{counters: map[string]crdt.Counter{}, dirty: map[string]struct{}{}, enc: NewLogEncoder()}
}

func (m *logSource) incr(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.counters[key]
	if _, err := c.Add(nodeA, 1); err != nil {
		panic(err)
	}
	m.counters[key] = c
	m.dirty[key] = struct{}{}
}

func (m *logSource) Fill(b *Batch) (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enc.Reset()
	for k := range m.dirty {
		m.enc.Add(testNS, k, Record{Counter: m.counters[k]})
	}
	clear(m.dirty)
	if m.enc.Len() > 0 {
		m.enc.AppendTo(b, nil)
	}
	return nil, nil
}

func (m *logSource) Committed(any, error) {}

// replayCounters opens a store on fs and replays its operation log into
// counters, as package node does at start-up.
func replayCounters(t *testing.T, fs vfs.FS) (*Store, map[string]uint64) {
	t.Helper()
	s := openLogStore(t, fs)
	got := map[string]crdt.Counter{}
	_, err := s.ReplayLog(func(p []byte) error {
		_, err := DecodeLog(p, func(ns, key string, r Record) error {
			c := got[key]
			c.Merge(r.Counter)
			got[key] = c
			return nil
		})
		return err
	})
	if err != nil {
		s.Close()
		t.Fatalf("replay after the disk failure: %v", err)
	}
	vals := map[string]uint64{}
	for k, c := range got {
		vals[k] = c.Slot(nodeA).P
	}
	return s, vals
}

// TestDiskFailure injects a failed fsync and a full disk into the
// operation log under a committer: the write in flight gets an error, not
// an acknowledgement; every later write is refused even once the disk is
// healthy again; the failure is logged once; and a restart recovers every
// acknowledged write, from a crash image holding only what was fsynced as
// well as from the file system as the failure left it.
func TestDiskFailure(t *testing.T) {
	tests := []struct {
		name  string
		fault faultfs.Fault
		// osErr is the OS error the message must name.
		osErr string
	}{
		{"fsync fails", faultfs.SyncError, "input/output error"},
		{"disk full", faultfs.NoSpace, "no space left on device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			ffs := faultfs.New(mem, func(path string) bool { return strings.Contains(path, oplog.Dir+"/") })
			core, logs := observer.New(zapcore.InfoLevel)
			logger := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
			cfg := DefaultConfig()
			cfg.Dir, cfg.FS, cfg.Logger = "db", ffs, logger
			s, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			replayAll(t, s)
			src := newLogSource()
			c, err := s.NewCommitter(CommitterConfig{MaxDelay: time.Millisecond, Logger: logger}, src)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			const acked = 20
			for range acked {
				src.incr("k")
				if err := waitTicket(t, c.Ticket(true)); err != nil {
					t.Fatalf("write before the fault: %v", err)
				}
			}

			ffs.Arm(tt.fault, 0)
			src.incr("k") // attempted, never acknowledged
			err = waitTicket(t, c.Ticket(true))
			if !errors.Is(err, ErrDiskFailed) || !errors.Is(err, ErrCommitFailed) {
				t.Fatalf("write in flight at the fault: %v, want ErrDiskFailed and ErrCommitFailed", err)
			}
			for _, want := range []string{tt.osErr, "00000000000000000001.log"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if ffs.Injected() == 0 {
				t.Fatal("no fault was injected")
			}
			if err := s.Err(); !errors.Is(err, ErrDiskFailed) {
				t.Fatalf("Store.Err after the fault: %v, want ErrDiskFailed", err)
			}

			// Healthy again, but nothing more is acknowledged: no retry.
			ffs.Disarm()
			for _, sync := range []bool{true, false, true} {
				src.incr("k")
				if err := waitTicket(t, c.Ticket(sync)); !errors.Is(err, ErrDiskFailed) {
					t.Fatalf("later write (sync %v): %v, want ErrDiskFailed", sync, err)
				}
			}
			b := s.NewBatch()
			b.AppendLog([]byte("direct"))
			if err := b.Commit(true); !errors.Is(err, ErrDiskFailed) {
				t.Fatalf("direct log append after the fault: %v, want ErrDiskFailed", err)
			}
			b.Close()
			if _, err := s.RotateLog(); !errors.Is(err, ErrDiskFailed) {
				t.Fatalf("RotateLog after the fault: %v, want ErrDiskFailed", err)
			}
			if got := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); got != 1 {
				t.Fatalf("%d error lines, want the failure logged once: %v", got, logs.FilterLevelExact(zapcore.ErrorLevel).All())
			}
			if msg := logs.FilterLevelExact(zapcore.ErrorLevel).All()[0].Message; !strings.Contains(msg, "restart") {
				t.Errorf("the error line %q does not tell the operator to restart", msg)
			}

			// A power cut now keeps only what was fsynced.
			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			if err := c.Close(); !errors.Is(err, ErrDiskFailed) {
				t.Errorf("Committer.Close: %v, want the failure", err)
			}
			t.Logf("Store.Close after the failure: %v", s.Close())

			r, vals := replayCounters(t, crashed)
			r.Close()
			if vals["k"] != acked {
				t.Errorf("after a crash: k = %d, want the %d acknowledged increments", vals["k"], acked)
			}
			// The same file system, as the failure left it.
			r, vals = replayCounters(t, mem)
			if vals["k"] < acked || vals["k"] > acked+1 {
				t.Errorf("after a restart: k = %d, want %d acknowledged (+1 attempted at the fault)", vals["k"], acked)
			}
			// The restarted store takes writes, and opens again without a
			// corruption error (a torn record of the full disk is cut off,
			// not left in the middle of the log).
			appendLog(t, r, "after", true)
			r.Close()
			r = openLogStore(t, mem)
			defer r.Close()
			if got := replayAll(t, r); len(got) == 0 || got[len(got)-1] != "after" {
				t.Fatalf("second restart replayed %d records, want the last to be the one written after the first restart", len(got))
			}
		})
	}
}

// TestLogTornTailIsCutOff: a torn last record is cut off at the replay, so
// that the segment the store then appends to does not turn it into a bad
// record in the middle of the log (which would fail the next start with
// ErrCorrupt).
func TestLogTornTailIsCutOff(t *testing.T) {
	for _, mode := range writeAheadModes {
		t.Run(mode.name, func(t *testing.T) { testLogTornTailIsCutOff(t, mode.bytes) })
	}
}

func testLogTornTailIsCutOff(t *testing.T, writeAhead int64) {
	fs := vfs.NewMem()
	s := openLogStoreAhead(t, fs, writeAhead)
	replayAll(t, s)
	appendLog(t, s, "one", true)
	appendLog(t, s, "two", true)
	s.Close()
	rewriteSegment(t, fs, 1, func(d []byte) []byte { return tear(d, 1) })
	// A crash while a previous cut was being written leaves a temporary file.
	stale, err := fs.Create(fs.PathJoin("db", oplog.Dir, fmt.Sprintf("%020d%s%s", 1, oplog.Ext, oplog.TmpExt)), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	stale.Write([]byte("junk"))
	stale.Close()

	for i, want := range []string{"[one]", "[one three]", "[one three four]"} {
		s = openLogStoreAhead(t, fs, writeAhead)
		if got := fmt.Sprint(replayAll(t, s)); got != want {
			t.Fatalf("start %d: replayed %s, want %s", i, got, want)
		}
		appendLog(t, s, []string{"three", "four", "five"}[i], true)
		s.Close()
	}
	names, err := fs.List(fs.PathJoin("db", oplog.Dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, oplog.TmpExt) {
			t.Errorf("stale temporary file %s left behind", n)
		}
	}
}
