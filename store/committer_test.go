package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/countmesh/countmesh/crdt"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/internal/wait"
)

const testNS = "ns"

// mapSource is a fake node: counters in a map under a mutex, the keys
// changed since the last Fill in a dirty set.
type mapSource struct {
	mu sync.Mutex
	// guarded by mu
	counters map[string]crdt.Counter
	dirty    map[string]struct{}
	fillErr  error
	fills    int
	// committed records Committed calls: the token (a fill number) and err.
	committed []committedCall
}

type committedCall struct {
	token any
	err   error
}

func newMapSource() *mapSource {
	return &mapSource{counters: map[string]crdt.Counter{}, dirty: map[string]struct{}{}}
}

// incr adds by to key on node's slot and returns the new value.
func (m *mapSource) incr(node crdt.NodeID, key string, by int64) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.counters[key]
	v, err := c.Add(node, by)
	if err != nil {
		panic(err)
	}
	m.counters[key] = c
	m.dirty[key] = struct{}{}
	return v
}

func (m *mapSource) setFillErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fillErr = err
}

func (m *mapSource) Fill(b *Batch) (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fills++
	if m.fillErr != nil {
		return m.fills, m.fillErr
	}
	for k := range m.dirty {
		b.PutCounter(testNS, k, m.counters[k])
	}
	clear(m.dirty)
	return m.fills, nil
}

func (m *mapSource) Committed(token any, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.committed = append(m.committed, committedCall{token, err})
}

func (m *mapSource) committedCalls() []committedCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]committedCall(nil), m.committed...)
}

// walFS wraps fs so that WAL fsyncs take delay and fail while failing is
// set. Only WAL files are touched: Pebble treats other write errors as fatal.
type walFS struct {
	*errorfs.FS
	delay   time.Duration
	failing atomic.Bool
	syncs   atomic.Int64
}

func newWALFS(fs vfs.FS, delay time.Duration) *walFS {
	w := &walFS{delay: delay}
	w.FS = errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if w.failing.Load() {
				return errorfs.ErrInjected
			}
			w.syncs.Add(1)
			if w.delay > 0 {
				time.Sleep(w.delay) // simulated disk latency, not synchronisation
			}
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt:
			if w.failing.Load() {
				return errorfs.ErrInjected
			}
		}
		return nil
	}))
	return w
}

// newTestCommitter starts a committer that is closed at cleanup.
func newTestCommitter(t testing.TB, s *Store, src Source, maxDelay time.Duration) *Committer {
	t.Helper()
	cfg := DefaultCommitterConfig()
	cfg.MaxDelay = maxDelay
	cfg.Logger = zaptest.NewLogger(t)
	c, err := s.NewCommitter(cfg, src)
	if err != nil {
		t.Fatalf("NewCommitter: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitTicket(t testing.TB, tk *Ticket) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := tk.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("ticket did not complete within 10s")
	}
	return err
}

func TestCommitterGroupsConcurrentWriters(t *testing.T) {
	for _, syncTicket := range []bool{true, false} {
		t.Run(fmt.Sprintf("sync=%v", syncTicket), func(t *testing.T) {
			// A WAL fsync of 200µs, so that tickets pile up behind it as
			// they do on a real disk.
			fs := newWALFS(vfs.NewMem(), 200*time.Microsecond)
			s := openTest(t, fs, "db")
			src := newMapSource()
			c := newTestCommitter(t, s, src, 2*time.Millisecond)

			const writers, perWriter, keys = 16, 100, 8
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					// Each writer owns one slot, so it knows what the store
					// must hold at least once its ticket completes.
					node := crdt.NodeID(crdt.MaxRetiredGen) + crdt.NodeID(w+1)
					mine := map[string]uint64{}
					for i := range perWriter {
						key := fmt.Sprintf("k%d", (w+i)%keys)
						src.incr(node, key, 1)
						mine[key]++
						tk := c.Ticket(syncTicket)
						// Visible first (for async tickets usually before
						// durable), then durable; readable at both points.
						for _, waitFn := range []func(context.Context) error{tk.WaitVisible, tk.Wait} {
							if err := waitFn(context.Background()); err != nil {
								t.Errorf("Wait: %v", err)
								return
							}
							got, found, err := s.GetCounter(testNS, key)
							if err != nil || !found || got.Slot(node).P < mine[key] {
								t.Errorf("after Wait %q: %+v, %v, %v; want slot %d >= %d", key, got, found, err, node, mine[key])
								return
							}
						}
					}
				})
			}
			wg.Wait()
			st := c.Stats()
			t.Logf("stats: %+v", st)
			const tickets = writers * perWriter
			if st.Tickets != tickets {
				t.Errorf("Stats().Tickets = %d, want %d", st.Tickets, tickets)
			}
			if st.Commits >= tickets || st.Commits == 0 {
				t.Errorf("%d commits for %d tickets: no group commit", st.Commits, tickets)
			}
			if syncTicket && st.Fsyncs < st.Commits {
				t.Errorf("sync tickets: %d fsyncs for %d commits", st.Fsyncs, st.Commits)
			}
			var sum uint64
			for _, n := range st.CommitSizes {
				sum += n
			}
			if sum != st.Commits {
				t.Errorf("CommitSizes sum to %d, want %d commits", sum, st.Commits)
			}
			// Every increment is in the store.
			for w := range writers {
				var total uint64
				for k := range keys {
					got, _, err := s.GetCounter(testNS, fmt.Sprintf("k%d", k))
					if err != nil {
						t.Fatal(err)
					}
					total += got.Slot(crdt.NodeID(crdt.MaxRetiredGen) + crdt.NodeID(w+1)).P
				}
				if total != perWriter {
					t.Errorf("writer %d: %d increments stored, want %d", w, total, perWriter)
				}
			}
		})
	}
}

// readValue reads node's slot of key from s.
func readP(t testing.TB, s *Store, key string, node crdt.NodeID) uint64 {
	t.Helper()
	c, _, err := s.GetCounter(testNS, key)
	if err != nil {
		t.Fatalf("GetCounter(%q): %v", key, err)
	}
	return c.Slot(node).P
}

// An async ticket waits for a WAL fsync after its NoSync commit; a later
// sync ticket with nothing new to write must still fsync, and that fsync
// completes the earlier async ticket too. What was acknowledged survives a
// crash that keeps only synced data.
func TestCommitterAsyncThenSync(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openTest(t, fs, "db")
	src := newMapSource()
	// MaxDelay of an hour: only the sync ticket can complete the async one.
	c := newTestCommitter(t, s, src, time.Hour)

	src.incr(nodeA, "k", 1)
	async := c.Ticket(false)
	wait.For(t, 10*time.Second, "the NoSync commit", func() (bool, string) { return c.Stats().Commits == 1, "" })
	if got := readP(t, s, "k", nodeA); got != 1 {
		t.Fatalf("committed value %d, want 1", got)
	}
	// Visible to reads, not yet durable.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := async.WaitVisible(ctx); err != nil {
		t.Fatalf("WaitVisible: %v", err)
	}
	select {
	case <-async.Done():
		t.Fatal("async ticket completed before any WAL fsync")
	default:
	}
	if st := c.Stats(); st.Fsyncs != 0 {
		t.Fatalf("%d fsyncs before the sync ticket", st.Fsyncs)
	}

	// No new change: the Fill is empty, yet the ticket must wait for an
	// fsync covering the earlier commit.
	if err := waitTicket(t, c.Ticket(true)); err != nil {
		t.Fatalf("sync Wait: %v", err)
	}
	select {
	case <-async.Done():
		if err := waitTicket(t, async); err != nil {
			t.Fatalf("async Wait: %v", err)
		}
	default:
		t.Fatal("the WAL fsync did not complete the earlier async ticket")
	}
	if st := c.Stats(); st.Fsyncs != 1 || st.Commits != 1 {
		t.Fatalf("stats %+v, want 1 commit and 1 fsync", st)
	}
	crashed := openTest(t, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}), "db")
	if got := readP(t, crashed, "k", nodeA); got != 1 {
		t.Fatalf("after crash: %d, want 1", got)
	}
	// Committed comes once per filled generation, in order, without error,
	// just after the tickets complete.
	wait.For(t, 10*time.Second, "two Committed calls", func() (bool, string) { return len(src.committedCalls()) >= 2, "" })
	calls := src.committedCalls()
	if len(calls) != 2 || calls[0].token != 1 || calls[1].token != 2 || calls[0].err != nil || calls[1].err != nil {
		t.Fatalf("Committed calls %+v, want tokens 1 and 2 without error", calls)
	}
}

// Async tickets complete by themselves within MaxDelay (plus the fsync).
func TestCommitterAsyncCompletes(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	src := newMapSource()
	c := newTestCommitter(t, s, src, 5*time.Millisecond)
	var tickets []*Ticket
	for i := range 50 {
		src.incr(nodeA, fmt.Sprint("k", i%5), 1)
		tickets = append(tickets, c.Ticket(false))
	}
	for _, tk := range tickets {
		if err := waitTicket(t, tk); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Stats()
	if st.Fsyncs == 0 || st.Fsyncs > st.Commits {
		t.Fatalf("stats %+v: want between 1 fsync and one per commit", st)
	}
	for i := range 5 {
		if got := readP(t, s, fmt.Sprint("k", i), nodeA); got != 10 {
			t.Errorf("k%d = %d, want 10", i, got)
		}
	}
}

func TestCommitterClose(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openTest(t, fs, "db")
	src := newMapSource()
	c := newTestCommitter(t, s, src, time.Hour)

	// Pending work of three kinds: a committed but unsynced change with
	// an async ticket, a change with a ticket not yet taken, and a change
	// that no ticket will ever cover.
	src.incr(nodeA, "async", 1)
	async := c.Ticket(false)
	wait.For(t, 10*time.Second, "the NoSync commit", func() (bool, string) { return c.Stats().Commits == 1, "" })
	src.incr(nodeA, "untracked", 1)

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := waitTicket(t, async); err != nil {
		t.Fatalf("async ticket after Close: %v", err)
	}
	// Close synced everything: a crash now loses nothing.
	crashed := openTest(t, fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}), "db")
	for _, k := range []string{"async", "untracked"} {
		if got := readP(t, crashed, k, nodeA); got != 1 {
			t.Errorf("%s after Close and crash = %d, want 1", k, got)
		}
	}
	for _, sync := range []bool{true, false} {
		tk := c.Ticket(sync)
		if err := waitTicket(t, tk); !errors.Is(err, ErrClosed) {
			t.Errorf("Ticket(%v) after Close: %v, want ErrClosed", sync, err)
		}
		if err := tk.WaitVisible(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Ticket(%v).WaitVisible after Close: %v, want ErrClosed", sync, err)
		}
	}
}

// Store.Close closes the committers still running, committing their work.
func TestStoreCloseClosesCommitters(t *testing.T) {
	fs := vfs.NewMem()
	s := openTest(t, fs, "db")
	src := newMapSource()
	c := newTestCommitter(t, s, src, time.Hour)
	src.incr(nodeA, "k", 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitTicket(t, c.Ticket(true)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ticket after Store.Close: %v, want ErrClosed", err)
	}
	s = openTest(t, fs, "db")
	if got := readP(t, s, "k", nodeA); got != 1 {
		t.Fatalf("after reopen: %d, want 1", got)
	}
}

func TestCommitterFailure(t *testing.T) {
	tests := []struct {
		name string
		// break makes the next commit fail.
		breakIt func(fs *walFS, src *mapSource)
		sync    bool
		// storeFailed: the store refuses writes afterwards too.
		storeFailed bool
	}{
		{
			name:        "WAL fsync fails on a sync commit",
			breakIt:     func(fs *walFS, _ *mapSource) { fs.failing.Store(true) },
			sync:        true,
			storeFailed: true,
		},
		{
			name:        "WAL fsync fails after an async commit",
			breakIt:     func(fs *walFS, _ *mapSource) { fs.failing.Store(true) },
			sync:        false,
			storeFailed: true,
		},
		{
			name:    "Fill fails",
			breakIt: func(_ *walFS, src *mapSource) { src.setFillErr(errors.New("node broke")) },
			sync:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newWALFS(vfs.NewMem(), 0)
			cfg := DefaultConfig()
			cfg.Dir, cfg.FS, cfg.Logger = "db", fs, zaptest.NewLogger(t)
			s, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			// Pebble may report the broken WAL again on Close; what
			// matters is that it does not hang or panic.
			defer func() { t.Logf("Store.Close after the failure: %v", s.Close()) }()
			src := newMapSource()
			c := newTestCommitter(t, s, src, time.Millisecond)

			src.incr(nodeA, "k", 1)
			if err := waitTicket(t, c.Ticket(tt.sync)); err != nil {
				t.Fatalf("first ticket: %v", err)
			}
			tt.breakIt(fs, src)
			src.incr(nodeA, "k", 1)
			err = waitTicket(t, c.Ticket(tt.sync))
			if !errors.Is(err, ErrCommitFailed) {
				t.Fatalf("ticket after the failure: %v, want ErrCommitFailed", err)
			}
			t.Logf("ticket error: %v", err)
			// Every later ticket fails at once, even when the cause is gone.
			fs.failing.Store(false)
			src.setFillErr(nil)
			src.incr(nodeA, "k", 1)
			for _, sync := range []bool{true, false} {
				tk := c.Ticket(sync)
				if err := waitTicket(t, tk); !errors.Is(err, ErrCommitFailed) {
					t.Fatalf("later ticket(%v): %v, want ErrCommitFailed", sync, err)
				}
				if err := tk.WaitVisible(context.Background()); !errors.Is(err, ErrCommitFailed) {
					t.Fatalf("later ticket(%v).WaitVisible: %v, want ErrCommitFailed", sync, err)
				}
			}
			// The source hears about the failure (just after the tickets
			// complete).
			wait.For(t, 10*time.Second, "Committed with the error", func() (bool, string) {
				calls := src.committedCalls()
				return errors.Is(calls[len(calls)-1].err, ErrCommitFailed), fmt.Sprint(calls[len(calls)-1].err)
			})
			if err := c.Close(); !errors.Is(err, ErrCommitFailed) {
				t.Fatalf("Close: %v, want the failure", err)
			}
			b := s.NewBatch()
			defer b.Close()
			b.PutCounter(testNS, "other", crdt.Counter{})
			err = b.Commit(true)
			if tt.storeFailed != errors.Is(err, ErrDiskFailed) {
				t.Fatalf("store write after the failure: %v (want refused: %v)", err, tt.storeFailed)
			}
			// Reads keep working; the first, acknowledged increment is there.
			if got := readP(t, s, "k", nodeA); got < 1 {
				t.Fatalf("acknowledged increment lost: %d", got)
			}
		})
	}
}

func TestNewCommitterValidates(t *testing.T) {
	s := openTest(t, vfs.NewMem(), "db")
	if _, err := s.NewCommitter(CommitterConfig{MaxDelay: -1}, newMapSource()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("negative MaxDelay: %v, want ErrInvalidConfig", err)
	}
	if _, err := s.NewCommitter(DefaultCommitterConfig(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil Source: %v, want ErrInvalidConfig", err)
	}
}
