package store

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/internal/sabotage"
)

// Source supplies a Committer with changes. Both methods run on the
// committer goroutine, one call at a time, and must not call the
// Committer's Ticket-waiting or Close methods (Ticket itself is fine).
type Source interface {
	// Fill is called with an empty batch; it adds every change made visible
	// since the previous Fill and returns a token that is handed back to
	// Committed. An error fails the committer (see Committer).
	Fill(b *Batch) (token any, err error)
	// Committed is called once the batch holding token's changes is
	// durable (err == nil: its WAL fsync completed) or has failed. Calls
	// come in Fill order.
	Committed(token any, err error)
}

// Committer is the group committer of ARCHITECTURE.md. Writers make a
// change visible to the Source, then take a Ticket, which wakes the
// committer goroutine; the committer collects everything made visible since
// its last round into one batch (Source.Fill) and commits it. While one
// commit (and its fsync) is in flight, new tickets pile up into the next
// generation, so batches grow with the load, without any fixed sleep.
//
// Failure: when a commit, a WAL fsync or Fill fails, the committer fails
// every ticket it had not yet completed and every later ticket with an error
// wrapping ErrCommitFailed (and ErrDiskFailed when the disk failed; the
// store has then logged it), and commits nothing more: a node that cannot
// make its writes durable must not acknowledge any, and a failed fsync is
// never retried. Close then returns that error. Recovery is a restart.
//
// Committer's methods are safe for concurrent use.
type Committer struct {
	s        *Store
	src      Source
	log      *zap.Logger
	maxDelay time.Duration

	// gen is the generation that new tickets join. Only the run
	// goroutine stores it.
	gen atomic.Pointer[Ticket]
	// wake has room for one token: a ticket that finds it full knows the
	// committer is already due for another round.
	wake      chan struct{}
	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	// err is the error that stopped the committer, written by the run
	// goroutine before stopped is closed.
	err error

	stats struct {
		tickets, commits, changes, fsyncs atomic.Uint64
		fsyncNanos                        atomic.Int64
		sizes                             [commitSizeBuckets]atomic.Uint64
	}

	// Owned by the run goroutine.
	// pending holds generations whose batches are committed but not yet
	// fsynced, oldest first.
	pending []*Ticket
	// unsynced is set while a NoSync commit awaits a WAL fsync.
	unsynced bool
}

// Ticket is a writer's claim on the commit that will carry its change.
// Tickets taken between the same two commits are the same value: a ticket
// is one generation of the group commit.
type Ticket struct {
	// state is sealedBit | syncBit | number of tickets taken.
	state atomic.Uint64
	done  chan struct{}
	// err is written before done is closed.
	err error
	// visible is closed once the generation's batch is committed (or has
	// failed); visibleErr is written before.
	visible    chan struct{}
	visibleErr error
	// final generations are complete from birth (closed or failed
	// committer); tickets never join them.
	final bool

	// Owned by the run goroutine.
	token         any
	filled        bool
	visibleClosed bool
}

const (
	sealedBit = 1 << 63
	syncBit   = 1 << 62
	countMask = syncBit - 1
)

func newGeneration() *Ticket {
	return &Ticket{done: make(chan struct{}), visible: make(chan struct{})}
}

// finalGeneration returns a generation that is already complete with err.
func finalGeneration(err error) *Ticket {
	t := &Ticket{done: make(chan struct{}), err: err, visible: make(chan struct{}), visibleErr: err, final: true}
	close(t.done)
	close(t.visible)
	t.visibleClosed = true
	return t
}

// markVisible closes visible once, with err. Run goroutine only.
func (t *Ticket) markVisible(err error) {
	if !t.visibleClosed {
		t.visibleErr = err
		t.visibleClosed = true
		close(t.visible)
	}
}

// join adds a ticket to the generation unless it is sealed.
func (t *Ticket) join(sync bool) bool {
	for {
		s := t.state.Load()
		if s&sealedBit != 0 {
			return false
		}
		n := s + 1
		if sync {
			n |= syncBit
		}
		if t.state.CompareAndSwap(s, n) {
			return true
		}
	}
}

// seal closes the generation to new tickets and returns its final state.
func (t *Ticket) seal() uint64 { return t.state.Or(sealedBit) }

// Wait returns nil once the change the ticket was taken for is durable; the
// commit error (wrapping ErrCommitFailed), ErrClosed (the committer closed
// before the change could be committed), or ctx.Err().
func (t *Ticket) Wait(ctx context.Context) error {
	select {
	case <-t.done:
		return t.err
	default:
	}
	select {
	case <-t.done:
		return t.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the ticket completes; Wait then returns at once with
// its result.
func (t *Ticket) Done() <-chan struct{} { return t.done }

// WaitVisible returns nil once the change the ticket was taken for is
// committed and visible to the store's reads (GetCounter, ScanCounters),
// which for an async ticket is usually well before it is durable; or the
// commit error, ErrClosed, or ctx.Err(). Use it as a barrier before reading
// the store, and Wait before acknowledging a write.
func (t *Ticket) WaitVisible(ctx context.Context) error {
	select {
	case <-t.visible:
		return t.visibleErr
	default:
	}
	select {
	case <-t.visible:
		return t.visibleErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewCommitter starts a committer goroutine that commits src's changes.
// Close stops it; Store.Close closes every committer still running.
func (s *Store) NewCommitter(cfg CommitterConfig, src Source) (*Committer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, fmt.Errorf("%w: nil Source", ErrInvalidConfig)
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = defaultMaxDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	c := &Committer{
		s:        s,
		src:      src,
		log:      cfg.Logger.Named("committer"),
		maxDelay: cfg.MaxDelay,
		wake:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	c.gen.Store(newGeneration())
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.cmu.closing {
		return nil, ErrClosed
	}
	s.cmu.committers[c] = struct{}{}
	go c.run()
	return c, nil
}

// Ticket is called by a writer after it made a change visible to
// Source.Fill (for example after releasing its own lock). It wakes the
// committer and returns a ticket that completes when a commit including
// the change is durable: with sync, after that commit's WAL fsync; without,
// the commit may be NoSync and the fsync follows within MaxDelay. Ticket
// never blocks.
func (c *Committer) Ticket(sync bool) *Ticket {
	for {
		g := c.gen.Load()
		if g.final {
			return g
		}
		if g.join(sync) {
			select {
			case c.wake <- struct{}{}:
			default: // a round is already due; it will see this ticket
			}
			return g
		}
		// g was sealed after we loaded it; the committer has already
		// published the next generation.
	}
}

// Close commits what is pending (with a WAL fsync), completes every
// ticket, and stops the committer goroutine. Tickets taken during or after
// Close fail with ErrClosed. Close is idempotent; it returns the error
// that stopped the committer, if any.
func (c *Committer) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		<-c.stopped
		c.s.cmu.Lock()
		delete(c.s.cmu.committers, c)
		c.s.cmu.Unlock()
	})
	<-c.stopped
	return c.err
}

// commitSizeBuckets is the number of buckets of CommitterStats.CommitSizes.
const commitSizeBuckets = 16

// CommitterStats are cumulative counts since the committer started.
type CommitterStats struct {
	// Tickets counts tickets taken (counted when their generation is
	// committed).
	Tickets uint64
	// Commits counts batches committed (empty rounds are not counted).
	Commits uint64
	// Changes counts writes committed; Changes/Commits is the mean batch
	// size.
	Changes uint64
	// CommitSizes is a histogram of writes per commit: bucket i counts
	// commits of at most 1<<i writes and more than 1<<(i-1); the last
	// bucket counts every larger commit too.
	CommitSizes [commitSizeBuckets]uint64
	// Fsyncs counts WAL fsyncs: sync commits and standalone WAL syncs.
	Fsyncs uint64
	// FsyncTime is the total time of those fsyncs (for a sync commit, of
	// the whole commit).
	FsyncTime time.Duration
}

// Stats returns the committer's counters.
func (c *Committer) Stats() CommitterStats {
	st := CommitterStats{
		Tickets:   c.stats.tickets.Load(),
		Commits:   c.stats.commits.Load(),
		Changes:   c.stats.changes.Load(),
		Fsyncs:    c.stats.fsyncs.Load(),
		FsyncTime: time.Duration(c.stats.fsyncNanos.Load()),
	}
	for i := range st.CommitSizes {
		st.CommitSizes[i] = c.stats.sizes[i].Load()
	}
	return st
}

func (c *Committer) run() {
	defer close(c.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var timerC <-chan time.Time // non-nil while the timer is armed
	for {
		select {
		case <-c.closing:
			c.finish()
			return
		case <-c.wake:
			if c.err == nil {
				c.round(newGeneration(), false)
			}
		case <-timerC:
			timerC = nil
			if c.err == nil && c.unsynced {
				c.syncPending()
			}
		}
		// The timer runs from the first commit still waiting for a WAL
		// fsync; half of MaxDelay leaves the other half for the fsync.
		switch {
		case len(c.pending) > 0 && timerC == nil:
			timer.Reset(c.maxDelay / 2)
			timerC = timer.C
		case len(c.pending) == 0 && timerC != nil:
			timer.Stop()
			timerC = nil
		}
	}
}

// finish is the last round, run by Close.
func (c *Committer) finish() {
	if c.err != nil {
		return
	}
	c.round(finalGeneration(ErrClosed), true)
	if c.err == nil && len(c.pending) > 0 {
		// Cannot happen (the last round syncs), but never strand a ticket.
		c.completePending(nil)
	}
}

// round seals the current generation, publishing next for new tickets,
// collects the changes and commits them. last forces a Fill and an fsync.
func (c *Committer) round(next *Ticket, last bool) {
	// Publish the next generation first, then seal: a ticket that joined g
	// before the seal made its change visible before it joined, so the Fill
	// below sees it; a ticket too late for g finds next.
	g := c.gen.Swap(next)
	st := g.seal()
	count := st & countMask
	if count == 0 && !last {
		// No ticket waits on g (a ticket that lost the race with seal
		// retried on next); its changes, if any, will come with a ticket.
		return
	}
	c.stats.tickets.Add(count)
	sync := st&syncBit != 0 || last

	b := c.s.NewBatch()
	defer b.Close()
	token, err := c.src.Fill(b)
	g.token, g.filled = token, true
	if err != nil {
		c.fail(kinderr.New(ErrCommitFailed, err, "fill: %v", err), g)
		return
	}
	if sabotage.AckBeforeFsync && sync && !last {
		// Sabotage (test builds only): release the waiters first, then
		// write 100 ms later without fsync. A stand-in generation carries
		// the token, so the source's bookkeeping (replication) still
		// follows the write; a kill in between loses acknowledged changes.
		// (A kill does not lose what was written without fsync, and a
		// restarted node gets quorum writes back from the peers they were
		// pushed to, so the window must be long enough for local writes
		// to fall into it.)
		g.markVisible(nil)
		close(g.done)
		g = &Ticket{done: make(chan struct{}), visible: make(chan struct{}), token: token, filled: true}
		sync = false
		select {
		case <-time.After(max(c.maxDelay, 100*time.Millisecond)):
		case <-c.closing:
		}
	}
	switch n := b.Len(); {
	case n > 0 || b.err != nil:
		start := time.Now()
		if err := b.Commit(sync); err != nil {
			c.fail(err, g)
			return
		}
		c.stats.commits.Add(1)
		c.stats.changes.Add(uint64(n))
		c.stats.sizes[min(bits.Len(uint(n-1)), commitSizeBuckets-1)].Add(1)
		if sync {
			c.countFsync(start)
			c.unsynced = false
		} else {
			c.unsynced = true
		}
	case sync && c.unsynced:
		// Nothing new to write, but a change of this generation may have
		// gone out in an earlier NoSync commit.
		if err := c.walSync(); err != nil {
			c.fail(err, g)
			return
		}
	}
	g.markVisible(nil)
	c.pending = append(c.pending, g)
	if !c.unsynced {
		c.completePending(nil)
	}
}

// syncPending fsyncs the WAL for the generations committed with NoSync.
func (c *Committer) syncPending() {
	if err := c.walSync(); err != nil {
		c.fail(err)
		return
	}
	c.completePending(nil)
}

func (c *Committer) walSync() error {
	start := time.Now()
	if err := c.s.syncWAL(); err != nil {
		return err
	}
	c.countFsync(start)
	c.unsynced = false
	return nil
}

func (c *Committer) countFsync(start time.Time) {
	c.stats.fsyncs.Add(1)
	c.stats.fsyncNanos.Add(int64(time.Since(start)))
}

// completePending tells the source, then completes the pending generations
// with err: a waiter released by a commit finds the source's bookkeeping of
// it (the node's version vector, the changes handed to replication) done.
func (c *Committer) completePending(err error) {
	for _, g := range c.pending {
		if g.filled {
			c.src.Committed(g.token, err)
		}
	}
	for i, g := range c.pending {
		g.markVisible(err)
		g.err = err
		close(g.done)
		c.pending[i] = nil
	}
	c.pending = c.pending[:0]
}

// fail stops the committer: every later ticket, every pending generation
// and the given ones fail with err.
func (c *Committer) fail(err error, gens ...*Ticket) {
	if !errors.Is(err, ErrCommitFailed) && !errors.Is(err, ErrClosed) {
		err = kinderr.New(ErrCommitFailed, err, "%v", err)
	}
	if errors.Is(err, ErrDiskFailed) {
		// The store logged it already, once for every committer.
		c.log.Info("committer stopped: the disk failed; failing every waiting and later ticket")
	} else {
		c.log.Error("commit failed; failing every waiting and later ticket", zap.Error(err))
	}
	c.err = err
	// Later tickets get the failed generation; the one published by this
	// round may hold tickets already.
	if next := c.gen.Swap(finalGeneration(err)); !next.final {
		next.seal()
		gens = append(gens, next)
	}
	c.pending = append(c.pending, gens...)
	c.unsynced = false
	c.completePending(err)
}
