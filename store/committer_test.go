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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func wait(t testing.TB, tk *Ticket) error {
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
					node := crdt.NodeID(w + 1)
					mine := map[string]uint64{}
					for i := range perWriter {
						key := fmt.Sprintf("k%d", (w+i)%keys)
						src.incr(node, key, 1)
						mine[key]++
						if err := wait(t, c.Ticket(syncTicket)); err != nil {
							t.Errorf("Wait: %v", err)
							return
						}
						got, found, err := s.GetCounter(testNS, key)
						if err != nil || !found || got.Slot(node).P < mine[key] {
							t.Errorf("after Wait %q: %+v, %v, %v; want slot %d >= %d", key, got, found, err, node, mine[key])
							return
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
					total += got.Slot(crdt.NodeID(w + 1)).P
				}
				if total != perWriter {
					t.Errorf("writer %d: %d increments stored, want %d", w, total, perWriter)
				}
			}
		})
	}
}
