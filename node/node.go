package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/hlc"
	"github.com/countmesh/countmesh/store"
)

// Node is one countmesh peer: it owns the in-memory hot set of counters, the
// write path and its durability, and the namespaces. It is safe for
// concurrent use.
type Node struct {
	cfg       Config
	id        crdt.NodeID
	log       *zap.Logger
	store     *store.Store
	committer *store.Committer
	clock     *hlc.Clock
	metrics   *metrics

	stripes   []stripe
	stripeCap int // entries per stripe before eviction
	// dirtyStripes has a bit set for every stripe whose dirty list may be
	// non-empty, so that a commit visits only those.
	dirtyStripes []atomic.Uint64

	tick         atomic.Uint32 // seconds since start, for eviction recency
	pending      atomic.Int64  // dirty entries waiting for a Fill
	fillSeq      atomic.Uint64 // sequence of the last Fill
	committedSeq atomic.Uint64 // highest Fill sequence known durable
	unsaved      atomic.Int64  // entries waiting for a checkpoint
	ckptDone     atomic.Uint64 // the last checkpoint committed to Pebble
	logEnc       *store.LogEncoder
	ckptMu       sync.Mutex // serialises checkpoints; guards ckptSeq
	ckptSeq      uint64     // the last checkpoint started
	ckptKick     chan struct{}
	ownSeq       uint64 // this node's last own sequence number; committer goroutine only (and recovery)
	publisher    atomic.Pointer[Publisher]

	vv struct {
		sync.Mutex // guards m and ahead
		// m is the version vector: origin -> highest seq such that every
		// change of that origin up to it is durably held here.
		m map[crdt.NodeID]uint64
		// ahead holds single changes past a gap in m, durably held here
		// (from quorum pushes): m moves over them once the gap is filled.
		// In memory only: after a restart the streams and anti-entropy
		// fill m as before.
		ahead map[crdt.NodeID]map[uint64]struct{}
	}
	failed atomic.Pointer[error]
	ready  atomic.Bool

	tops    sync.Map    // namespace -> *nsTops, for namespaces asked for their top
	anyTops atomic.Bool // tops is not empty
	approx  approxSet   // approximate namespaces' sketch layouts and heavy hitters (approx.go)
	watch   struct {
		sync.RWMutex // guards byNS
		byNS         map[string][]*Subscription
		count        atomic.Int64 // subscriptions open
	}
	idLocks        idLocks          // serialise the writes of one id (idempotency.go)
	recent         recentIDs        // ids not yet in the store, for the cross-key check
	series         seriesCaps       // label series per key, for Config.MaxSeriesPerKey (series.go)
	retentionMu    sync.Mutex       // serialises retention passes; guards retentionEdges
	retentionEdges map[string]int64 // ns 0x00 window -> bucket start dropped up to

	ns struct {
		sync.RWMutex // guards m; creation of a namespace holds the write lock
		m            map[string]*namespaceRecord
	}

	done      chan struct{}
	baseCtx   context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens the store in cfg.Store.Dir, recovers the namespaces and starts
// the committer. The node is ready when Open returns.
func Open(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Store.Logger == nil {
		cfg.Store.Logger = cfg.Logger
	}
	start := time.Now()
	st, err := store.Open(cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("node: open store: %w", err)
	}
	n := &Node{
		cfg:     cfg,
		id:      crdt.NodeIDOf(cfg.Name, cfg.Incarnation),
		log:     cfg.Logger,
		store:   st,
		clock:   hlc.New(cfg.Now),
		stripes: make([]stripe, cfg.Stripes),
		done:    make(chan struct{}),
	}
	n.baseCtx, n.cancel = context.WithCancel(context.Background())
	n.vv.m = make(map[crdt.NodeID]uint64)
	n.stripeCap = max(1, (cfg.CacheCounters+cfg.Stripes-1)/cfg.Stripes)
	for i := range n.stripes {
		n.stripes[i].m = make(map[string]*entry)
		n.stripes[i].index = i
	}
	n.dirtyStripes = make([]atomic.Uint64, (len(n.stripes)+63)/64)
	n.ns.m = make(map[string]*namespaceRecord)
	if err := n.loadNamespaces(); err != nil {
		st.Close()
		return nil, err
	}
	n.metrics = newMetrics(n, cfg.Registerer)
	n.logEnc = store.NewLogEncoder()
	n.ckptKick = make(chan struct{}, 1)
	if err := n.recoverLog(); err != nil {
		st.Close()
		return nil, err
	}
	ccfg := store.DefaultCommitterConfig()
	ccfg.MaxDelay = cfg.CommitMaxDelay
	ccfg.Logger = cfg.Logger
	n.committer, err = st.NewCommitter(ccfg, n)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("node: start committer: %w", err)
	}
	n.wg.Add(3)
	go n.ticker()
	go n.checkpointLoop()
	go n.expiryLoop()
	n.ready.Store(!cfg.StartUnready)
	n.log.Info("node open",
		zap.String("name", cfg.Name), zap.String("region", cfg.Region),
		zap.Uint64("slot", uint64(n.id)), zap.String("data_dir", cfg.Store.Dir),
		zap.Int("namespaces", len(n.ns.m)), zap.Duration("took", time.Since(start)))
	return n, nil
}

// ticker advances the coarse clock used for eviction recency.
func (n *Node) ticker() {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
			n.tick.Add(1)
		}
	}
}

// Close commits what is pending and closes the store. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.ready.Store(false)
		n.cancel()
		close(n.done)
		n.wg.Wait()
		errC := n.committer.Close()
		var errK error
		if errC == nil && n.failed.Load() == nil && n.store.Err() == nil {
			// A clean shutdown leaves no log to replay.
			errK = n.checkpoint()
		}
		errS := n.store.Close()
		n.closeErr = errors.Join(errC, errK, errS)
		n.log.Info("node closed", zap.Error(n.closeErr))
	})
	return n.closeErr
}

// ctx is a context that ends when the node closes.
func (n *Node) ctx() context.Context { return n.baseCtx }

// MarkReady reports the node ready (see Config.StartUnready).
func (n *Node) MarkReady() {
	select {
	case <-n.done:
	default:
		n.ready.Store(true)
	}
}

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Region returns the node's region.
func (n *Node) Region() string { return n.cfg.Region }

// Ready reports whether the node has recovered and can serve. A node whose
// commits failed, or whose store failed (store.Store.Err: a write or fsync
// error, a full disk), is not ready until it is restarted.
func (n *Node) Ready() bool {
	return n.ready.Load() && n.failed.Load() == nil && n.store.Err() == nil
}

// Store returns the node's store (for operations such as measuring disk use).
func (n *Node) Store() *store.Store { return n.store }

// ackError turns a failed durability wait, or the store's failure, into the
// error a client sees. It is the one place a store failure becomes
// ErrUnavailable (503 unavailable) for a write.
func (n *Node) ackError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: the write was applied but not yet acknowledged as durable: %v", ErrUnavailable, err)
	case errors.Is(err, store.ErrClosed):
		return fmt.Errorf("%w: the node is shutting down", ErrUnavailable)
	case errors.Is(err, store.ErrDiskFailed):
		return fmt.Errorf("%w: the disk failed, so this node acknowledges no more writes; "+
			"free space or replace the disk, then restart the node: %v", ErrUnavailable, err)
	default:
		return fmt.Errorf("%w: the write could not be made durable: %v", ErrUnavailable, err)
	}
}

// durable makes the changes made so far durable: with sync it waits for the
// group commit's WAL fsync; without, it only wakes the committer, which
// commits and fsyncs within CommitMaxDelay.
func (n *Node) durable(ctx context.Context, sync bool) error {
	t := n.committer.Ticket(sync)
	if !sync {
		return nil
	}
	return n.ackError(t.Wait(ctx))
}

// checkWritable refuses writes while the node is failed or overloaded.
func (n *Node) checkWritable(ops int) error {
	if errp := n.failed.Load(); errp != nil {
		if errors.Is(*errp, store.ErrDiskFailed) {
			return n.ackError(*errp)
		}
		return fmt.Errorf("%w: storage failed: %v", ErrUnavailable, *errp)
	}
	if err := n.store.Err(); err != nil {
		// Failed before the committer noticed (a checkpoint's commit).
		return n.ackError(err)
	}
	if !n.ready.Load() {
		return fmt.Errorf("%w: the node is not ready", ErrUnavailable)
	}
	if n.pending.Load()+int64(ops) > int64(n.cfg.MaxPending) {
		n.metrics.shed.Inc()
		return fmt.Errorf("%w: %d changes are waiting for the disk; retry with backoff", ErrOverloaded, n.pending.Load())
	}
	return nil
}

// WriteOptions are the optional fields of an increment.
type WriteOptions struct {
	ID          string
	Consistency string
	Labels      map[string]string
	At          time.Time
}

// Result is the answer to a counter write.
type Result struct {
	Value     int64
	Duplicate bool
}

// Incr adds by (a decrement when negative) to the counter ns/key and returns
// the value after the change, once it is as durable as the namespace asks.
// With labels it also counts in the key's label series; in a namespace with
// windows, in the buckets of the event time opts.At (default now).
func (n *Node) Incr(ctx context.Context, ns, key string, by int64, opts WriteOptions) (Result, error) {
	if err := validateWrite(ns, key, by, opts); err != nil {
		return Result{}, err
	}
	if rec := n.approxNamespace(ns); rec != nil {
		return n.incrApprox(ctx, rec, ns, key, by, opts)
	}
	at, err := n.eventTime(opts.At)
	if err != nil {
		return Result{}, err
	}
	if err := n.checkWritable(1 + len(opts.Labels)); err != nil {
		return Result{}, err
	}
	rec, err := n.namespaceForWrite(ns)
	if err != nil {
		return Result{}, err
	}
	if err := n.reserveSeries(ns, key, opts.Labels); err != nil {
		return Result{}, err
	}
	res, err := n.applyIncr(ctx, rec, ns, key, by, opts.ID)
	if err != nil {
		return Result{}, err
	}
	if !res.Duplicate {
		n.applyDerived(rec.runtime(), ns, key, opts.Labels, at, by)
		n.metrics.increments.Inc()
	} else {
		n.metrics.duplicates.Inc()
	}
	// A duplicate waits too: the first attempt may not be durable yet.
	if err := n.durable(ctx, rec.Config.Durability == DurabilitySync); err != nil {
		return res, err
	}
	if lvl := n.consistencyFor(ns, opts.Consistency); lvl != ConsistencyLocal {
		keys := []string{key}
		if opts.ID != "" {
			// The id record travels with the counter, so that a retry
			// reaching any node of the quorum is known as a duplicate.
			keys = append(keys, idKey(opts.ID, key))
		}
		return res, n.replicateTo(ctx, lvl, ns, keys...)
	}
	return res, nil
}

// Reset sets the counter ns/key to value. Increments concurrent with the reset
// (not yet seen by this node) are kept on top of it.
func (n *Node) Reset(ctx context.Context, ns, key string, value int64) (Result, error) {
	if err := validateName(ns, key); err != nil {
		return Result{}, err
	}
	if n.approxNamespace(ns) != nil {
		return Result{}, errApproxRefused(ns, "a key cannot be reset, since its count is spread over cells shared with other keys")
	}
	if err := n.refuseBoundedReset(ns, "a reset"); err != nil {
		return Result{}, err
	}
	var before, v int64
	sync, err := n.update(ns, key, true, func(e *entry) error {
		before = e.c.Value()
		e.c.SetReset(n.id, value, false)
		v = e.c.Value()
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	n.recordJump(ns, key, jumpOf(before, v)) // for reads as of a time before it
	return Result{Value: v}, n.durable(ctx, sync)
}

// Delete makes the counter read 0 and leave listings until it is next
// written. Deleting a counter this node has never seen changes nothing.
func (n *Node) Delete(ctx context.Context, ns, key string) error {
	if err := validateName(ns, key); err != nil {
		return err
	}
	if n.approxNamespace(ns) != nil {
		return errApproxRefused(ns, "a key cannot be deleted, since its count is spread over cells shared with other keys")
	}
	if err := n.refuseBoundedReset(ns, "a delete"); err != nil {
		return err
	}
	var before int64
	sync, err := n.update(ns, key, false, func(e *entry) error {
		before = e.c.Value()
		e.c.SetReset(n.id, 0, true)
		return nil
	})
	if err != nil {
		return err
	}
	n.recordJump(ns, key, jumpOf(before, 0)) // for reads as of a time before it
	return n.durable(ctx, sync)
}

// update applies fn, a change of this node's own slot, to the counter
// ns/key under its stripe lock, and queues it for the group commit. Without
// create, a counter that does not exist is left alone (fn is not called).
// It reports whether the namespace asks for sync durability.
func (n *Node) update(ns, key string, create bool, fn func(e *entry) error) (sync bool, err error) {
	if err := n.checkWritable(1); err != nil {
		return false, err
	}
	rec, err := n.namespaceForWrite(ns)
	if err != nil {
		return false, err
	}
	if err := n.modify(ns, key, create, fn); err != nil {
		return false, err
	}
	return rec.Config.Durability == DurabilitySync, nil
}

// modify is update's change under the stripe lock, for callers that have
// checked the node is writable and resolved the namespace.
func (n *Node) modify(ns, key string, create bool, fn func(e *entry) error) error {
	var buf [700]byte
	ck := compositeKey(buf[:0], ns, key)
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := n.lookupLocked(s, ck, ns, key, create)
	if err != nil {
		return fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
	}
	if e == nil {
		return nil
	}
	before := e.c.Value()
	if err := fn(e); err != nil {
		return err
	}
	e.updated = n.cfg.Now().UnixMilli()
	e.own = true
	n.markDirtyLocked(s, e)
	n.changedLocked(ns, key, before, e)
	return nil
}

// Counter is a counter as read.
type Counter struct {
	NS        string
	Key       string
	Value     int64
	UpdatedAt time.Time // zero when unknown or never written
	// Resolution and AsOf say how a read as of a time (ReadOptions.At)
	// was resolved: the window, and the time rounded down to it.
	Resolution string
	AsOf       time.Time
	// Window and BucketStart name the bucket a read at a time in a window
	// answered from (ReadOptions.At with ReadOptions.Window).
	Window      string
	BucketStart time.Time
	// Estimate marks a value read from an approximate namespace's sketch:
	// at least the true count, and with the namespace's confidence at most
	// ErrorBound above it.
	Estimate   bool
	ErrorBound int64
}

// ReadOptions are the optional fields of a read.
type ReadOptions struct {
	Consistency string
	// At reads the value as of that time; with Window, the change during
	// that window's bucket holding At (pointintime.go).
	At     time.Time
	Window string
}

// Get returns the counter ns/key; a counter never written reads 0.
func (n *Node) Get(ctx context.Context, ns, key string, opts ReadOptions) (Counter, error) {
	if err := validateName(ns, key); err != nil {
		return Counter{}, err
	}
	if err := validateConsistency(opts.Consistency); err != nil {
		return Counter{}, err
	}
	if opts.Window != "" && opts.At.IsZero() {
		return Counter{}, fmt.Errorf("%w: window %q needs at, the time whose bucket to read", ErrInvalidArgument, opts.Window)
	}
	if err := n.checkReadable(); err != nil {
		return Counter{}, err
	}
	if rec := n.approxNamespace(ns); rec != nil {
		return n.getApprox(ctx, rec, ns, key, opts)
	}
	if !opts.At.IsZero() {
		return n.readAt(ctx, ns, key, opts)
	}
	var merged *crdt.Counter // the quorum's state, which a quorum read answers
	if lvl := n.consistencyFor(ns, opts.Consistency); lvl != ConsistencyLocal {
		c, err := n.gatherFrom(ctx, lvl, ns, key)
		if err != nil {
			return Counter{}, err
		}
		merged = &c
	}
	ttl := n.ttlOf(ns) // before the stripe lock
	var buf [600]byte
	ck := compositeKey(buf[:0], ns, key)
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	e, err := n.lookupLocked(s, ck, ns, key, false)
	if err != nil {
		s.mu.Unlock()
		return Counter{}, fmt.Errorf("%w: read counter: %v", ErrUnavailable, err)
	}
	out := Counter{NS: ns, Key: key}
	if e != nil && !n.idle(ttl, e.updated) {
		out.Value = e.c.Value()
		if merged != nil {
			out.Value = merged.Value()
		}
		if e.updated > 0 {
			out.UpdatedAt = time.UnixMilli(e.updated)
		}
	}
	s.mu.Unlock()
	out.Value = n.clampToBounds(ns, out.Value)
	n.metrics.reads.Inc()
	return out, nil
}

// Page is one page of a listing.
type Page struct {
	Items      []Counter
	NextCursor string // the last key of this page when more may follow
}

// MaxListLimit bounds the page size of List.
const MaxListLimit = 1000

// List returns the live counters of ns whose key starts with prefix, after
// the key cursor, in key order.
func (n *Node) List(ctx context.Context, ns, prefix, cursor string, limit int) (Page, error) {
	if err := ValidateNamespace(ns); err != nil {
		return Page{}, err
	}
	if limit < 1 || limit > MaxListLimit {
		return Page{}, fmt.Errorf("%w: limit must be 1 to %d, got %d", ErrInvalidArgument, MaxListLimit, limit)
	}
	// Make every change so far visible to the store scan.
	if err := n.Checkpoint(); err != nil {
		return Page{}, err
	}
	if cursor < firstUserKey {
		cursor = firstUserKey // internal counters are not listed
	}
	var page Page
	var scanErr error
	err := n.store.ScanCounters(ns, prefix, cursor, func(key string, c crdt.Counter) bool {
		item, live := n.overlay(ns, key, c)
		if !live {
			return true
		}
		if len(page.Items) == limit {
			page.NextCursor = page.Items[limit-1].Key
			return false
		}
		page.Items = append(page.Items, item)
		return ctx.Err() == nil
	})
	if err == nil {
		err = scanErr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return Page{}, fmt.Errorf("%w: list counters: %v", ErrUnavailable, err)
	}
	return page, nil
}

// overlay returns the freshest state of a counter found by a store scan: the
// hot set's copy when it has one.
func (n *Node) overlay(ns, key string, stored crdt.Counter) (Counter, bool) {
	return n.overlayIdle(ns, key, stored, true)
}

// overlayIdle is overlay; without checkIdle it ignores the namespace's ttl
// (for callers that hold n.ns).
func (n *Node) overlayIdle(ns, key string, stored crdt.Counter, checkIdle bool) (Counter, bool) {
	var ttl time.Duration
	if checkIdle {
		ttl = n.ttlOf(ns) // before the stripe lock
	}
	var buf [600]byte
	ck := compositeKey(buf[:0], ns, key)
	s := &n.stripes[n.stripeOf(ck)]
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Counter{NS: ns, Key: key}
	if e := s.m[string(ck)]; e != nil {
		out.Value = e.c.Value()
		if e.updated > 0 {
			out.UpdatedAt = time.UnixMilli(e.updated)
		}
		return out, e.c.Live() && !n.idle(ttl, e.updated)
	}
	out.Value = stored.Value()
	return out, stored.Live()
}

// validateName checks a namespace and a key.
func validateName(ns, key string) error {
	if err := ValidateNamespace(ns); err != nil {
		return err
	}
	return ValidateKey(key)
}

// validateWrite checks the arguments of an increment.
func validateWrite(ns, key string, by int64, opts WriteOptions) error {
	if err := validateName(ns, key); err != nil {
		return err
	}
	if err := ValidateBy(by); err != nil {
		return err
	}
	if err := validateConsistency(opts.Consistency); err != nil {
		return err
	}
	if opts.ID != "" {
		if err := ValidateID(opts.ID); err != nil {
			return err
		}
	}
	return validateLabels(opts.Labels)
}

// MaxLabels bounds the labels of one increment.
const MaxLabels = 8

func validateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%w: at most %d labels, got %d", ErrInvalidArgument, MaxLabels, len(labels))
	}
	for k, v := range labels {
		if err := ValidateNamespace(k); err != nil {
			return fmt.Errorf("%w: label name %q must match [a-z0-9][a-z0-9_.-]{0,63}", ErrInvalidArgument, k)
		}
		if len(v) > 256 {
			return fmt.Errorf("%w: label %q: value must be at most 256 bytes", ErrInvalidArgument, k)
		}
	}
	return nil
}

func validateConsistency(c string) error {
	switch c {
	case "", "local", "quorum", "all":
		return nil
	}
	return fmt.Errorf("%w: consistency must be local, quorum or all; got %q", ErrInvalidArgument, c)
}

// clampAdd reports whether v+by stays in int64.
func clampAdd(v, by int64) bool {
	return !((by > 0 && v > math.MaxInt64-by) || (by < 0 && v < math.MinInt64-by))
}
