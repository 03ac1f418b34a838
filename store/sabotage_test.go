//go:build sabotage_ack_before_fsync

package store

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Under sabotage_ack_before_fsync a sync ticket completes before the commit
// that carries its change is written: a crash right after the
// acknowledgement loses the acknowledged change. (The same steps without
// the tag keep it: TestCommitterAsyncThenSync.)
func TestSabotageAckBeforeFsyncLosesAckedWrite(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openTest(t, fs, "db")
	src := newMapSource()
	// MaxDelay of an hour: the sabotaged write waits that long (or Close).
	c := newTestCommitter(t, s, src, time.Hour)

	src.incr(nodeA, "k", 1)
	if err := waitTicket(t, c.Ticket(true)); err != nil {
		t.Fatalf("sync Wait: %v", err)
	}
	if st := c.Stats(); st.Commits != 0 || st.Fsyncs != 0 {
		t.Fatalf("stats %+v at the acknowledgement, want no commit and no fsync yet", st)
	}
	crashed := openTest(t, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}), "db")
	if got := readP(t, crashed, "k", nodeA); got != 0 {
		t.Fatalf("after a crash just after the acknowledgement: %d, want 0 (the acknowledged write lost)", got)
	}
	// The source hears of the commit (and would replicate it) only after
	// the write, so no peer holds a copy that could repair the loss.
	if calls := src.committedCalls(); len(calls) != 0 {
		t.Fatalf("Committed calls %+v before the write, want none", calls)
	}
}
