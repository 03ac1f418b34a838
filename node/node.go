package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/hlc"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/approx"
	"github.com/countmesh/countmesh/node/exact"
	"github.com/countmesh/countmesh/node/export"
	"github.com/countmesh/countmesh/node/idem"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/metrics"
	"github.com/countmesh/countmesh/node/nsconfig"
	"github.com/countmesh/countmesh/node/query"
	"github.com/countmesh/countmesh/node/replica"
	"github.com/countmesh/countmesh/node/retire"
	"github.com/countmesh/countmesh/node/series"
	"github.com/countmesh/countmesh/node/watch"
	"github.com/countmesh/countmesh/node/write"
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
	metrics   *metrics.Metrics

	keys *keyspace.Set // the hot set

	rep   *replica.Replica    // the replica side: Apply, the committer's source, the version vector
	ckpt  *store.Checkpointer // the replica's checkpointer of the hot set
	ready atomic.Bool

	tops       *query.TopSets    // top-K sets of the namespaces asked for their top
	aggregates *query.Aggregates // aggregate queries
	sketches   *approx.Sketches  // approximate namespaces' sketch layouts and heavy hitters
	quorum     *exact.Quorum     // the quorum and all consistency levels
	rights     *exact.Rights     // the rights that keep the bounds of exact namespaces
	watch      *watch.Hub        // the subscriptions, fed by changedLocked
	ids        *idem.IDs         // increment ids: their records, locks, take-backs and expiry
	recent     recentIDs         // ids not yet in the store, for the cross-key check
	windows    *series.Windows   // time buckets, label series, point-in-time reads, retention
	ttl        *series.TTL       // expiry of counters idle past their namespace's ttl
	seriesCaps *series.Caps      // label series per key, for Config.MaxSeriesPerKey
	writer     *write.Writer     // the one write path of Incr and Batch
	imports    *export.Merger    // the checks and merges of imported records

	retired *retire.List // the retired list: the nodes forgotten for good
	folds   retiredState // how far this node folds their slots (retired.go)

	ns   *nsconfig.Table // the namespaces and their configs
	feed changeFeed      // where every change of a counter's state is told

	done      chan struct{}
	baseCtx   context.Context // cancelled by Close; ends writes and waits of a closing node
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	// releaseMu keeps the drops of released copies (write side) apart
	// from writes of sharded namespaces (read side; copies.go).
	releaseMu sync.RWMutex
	// notSpaces caches the origins of the vector that are nodes' ids, not
	// sequence spaces of shards (ReleaseCopies).
	notSpaces sync.Map
	closeErr  error
}

// Open opens the store in cfg.Store.Dir, recovers the namespaces and starts
// the committer. The node is ready when Open returns, unless
// Config.StartUnready asks it to wait for MarkReady.
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
		cfg:   cfg,
		id:    crdt.NodeIDOf(cfg.Name, cfg.Incarnation),
		log:   cfg.Logger,
		store: st,
		clock: hlc.New(cfg.Now),
		done:  make(chan struct{}),
	}
	hot := hotCounters(cfg.CacheCounters, cfg.HotCounters)
	n.keys = keyspace.New(keyspace.Config{
		Store:         st,
		Stripes:       cfg.Stripes,
		Capacity:      hot,
		Compact:       cfg.CacheCounters - hot,
		OnReadThrough: func() { n.metrics.ReadThrough.Inc() },
		OnEvict:       func() { n.metrics.Evictions.Inc() },
	})
	n.windows = newWindows(n)
	n.ttl = newTTL(n)
	n.seriesCaps = series.NewCaps(cfg.MaxSeriesPerKey, st, func(ns, key string) (bool, error) {
		_, found, err := n.rep.CounterState(ns, key)
		return found, err
	})
	n.sketches = newSketches(n)
	n.quorum = newQuorum(n)
	n.rights = newBoundsRights(n)
	n.ids = newIDs(n)
	n.tops = query.NewTopSets(queryConfig(n))
	n.aggregates = query.NewAggregates(queryConfig(n))
	n.watch = watch.NewHub(func(delta int) { n.metrics.Watchers.Add(float64(delta)) })
	n.feed = changeFeed{tops: n.tops, watch: n.watch}
	n.baseCtx, n.cancel = context.WithCancel(context.Background())
	n.ns = nsconfig.NewTable(nsconfig.TableConfig{
		Store:             st,
		Clock:             n.clock,
		Log:               n.log,
		Now:               cfg.Now,
		DefaultDurability: cfg.DefaultDurability,
		MaxNamespaces:     cfg.MaxNamespaces,
		MaxClockOffset:    cfg.MaxClockOffset,
	})
	if err := n.ns.Load(); err != nil {
		st.Close()
		return nil, err
	}
	if n.retired, err = openRetired(n); err != nil {
		st.Close()
		return nil, err
	}
	n.writer = write.New(write.Config{
		ID:         n.id,
		Log:        n.log,
		Now:        cfg.Now,
		Keys:       n.keys,
		Namespaces: n.ns,
		IDs:        n.ids,
		Rights:     n.rights,
		Quorum:     n.quorum,
		Caps:       n.seriesCaps,
		Windows:    n.windows,
		Changed:    n.feed.changedLocked,
		Received:   n.recent.add,
		Durable:    n.durable,
		OnApplied: func(applied, duplicates int) {
			n.metrics.Increments.Add(float64(applied))
			n.metrics.Duplicates.Add(float64(duplicates))
		},
	})
	n.metrics = metrics.New(cfg.Registerer, metrics.Sources{
		Pending:    n.keys.Pending,
		Unsaved:    n.keys.UnsavedCount,
		LogBytes:   st.LogBytes,
		Cached:     func() int { return n.keys.Count("") },
		Packed:     n.keys.PackedCount,
		Commits:    func() store.CommitterStats { return n.committer.Stats() },
		DiskBytes:  st.DiskUsage,
		RetiredIDs: func() int { return len(n.retired.IDs()) },
		FoldGen:    n.FoldGen,
	})
	n.rep = newReplica(n)
	n.imports = export.NewMerger(export.MergeConfig{
		ID:               n.id,
		Keys:             n.keys,
		Namespaces:       n.ns,
		Replica:          n.rep,
		IDs:              n.ids,
		Clock:            n.clock,
		MaxClockOffset:   cfg.MaxClockOffset,
		Now:              cfg.Now,
		ValidNamespace:   ValidateNamespace,
		ValidKey:         ValidateKey,
		ValidInternalKey: validReplicatedKey,
		Changed:          n.feed.changedLocked,
		Received:         n.recent.add,
	})
	n.ckpt = n.rep.Checkpointer()
	if err := n.rep.Recover(); err != nil {
		st.Close()
		return nil, err
	}
	ccfg := store.DefaultCommitterConfig()
	ccfg.MaxDelay = cfg.CommitMaxDelay
	ccfg.Logger = cfg.Logger
	n.committer, err = st.NewCommitter(ccfg, n.rep)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("node: start committer: %w", err)
	}
	n.wg.Add(4)
	go func() {
		// The filter of keys on disk, so that new counters skip the
		// Pebble point read once it is complete.
		defer n.wg.Done()
		n.keys.RunFilter(n.done, func(scanned, planned uint64, took time.Duration, complete bool, err error) {
			switch {
			case err != nil:
				n.log.Warn("key filter not built; counters not in memory are read from disk, new ones included, until it is",
					zap.Uint64("keys_scanned", scanned), zap.Error(err))
			case !complete:
				n.log.Debug("key filter build stopped", zap.Uint64("keys_scanned", scanned))
			default:
				n.log.Info("key filter ready", zap.Uint64("keys", scanned),
					zap.Uint64("planned_keys", planned), zap.Duration("took", took))
			}
		}, func(layers int, planned uint64) {
			n.log.Info("key filter grew a layer", zap.Int("layers", layers), zap.Uint64("planned_keys", planned))
		})
	}()
	go func() { // the coarse clock of eviction recency
		defer n.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var evicted int64  // since the last release
		quiet := 0         // ticks without an eviction
		var followAt []int // ticks since the last big release that release again
		sinceBig := 0
		for {
			select {
			case <-n.done:
				return
			case <-t.C:
				if n.keys.Tick()%packIdleEvery == 0 {
					n.keys.PackIdle(packIdleAfter)
				}
				if e := n.keys.TakeEvicted(); e > 0 {
					evicted += e
					quiet = 0
				} else {
					quiet++
				}
				sinceBig++
				switch {
				case quiet < releaseQuietTicks:
				case evicted >= releaseAfterEvicted:
					evicted, sinceBig = 0, 0
					followAt = releaseFollowUps[:]
					releaseHeap(n.log, n.keys, n.store)
				case len(followAt) > 0 && sinceBig >= followAt[0]:
					// What the burst left in motion (the walks that
					// pack its last entries, the last checkpoint's
					// memtable flush) makes garbage after the release
					// that nothing else would collect while the node
					// is idle.
					followAt = followAt[1:]
					evicted = 0
					releaseHeap(n.log, n.keys, n.store)
				}
			}
		}
	}()
	go func() {
		defer n.wg.Done()
		n.ckpt.Run(n.done)
	}()
	go func() {
		defer n.wg.Done()
		expiryLoop(n.done, n.cfg.ExpiryInterval, n.log, func(ids bool) error {
			if !n.Ready() {
				return nil
			}
			return expirePass(n.baseCtx, n.windows, n.ttl, n.ns, n.ids, ids)
		})
	}()
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		n.releaseLoop()
	}()
	go func() {
		defer n.wg.Done()
		n.foldLoop()
	}()
	n.ready.Store(!cfg.StartUnready)
	n.log.Info("node open",
		zap.String("name", cfg.Name), zap.String("region", cfg.Region),
		zap.Uint64("slot", uint64(n.id)), zap.String("data_dir", cfg.Store.Dir),
		zap.Int("namespaces", n.ns.Len()), zap.Duration("took", time.Since(start)))
	return n, nil
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
		if errC == nil && n.rep.Failed() == nil && n.store.Err() == nil {
			// A clean shutdown leaves no log to replay.
			errK = n.ckpt.Checkpoint()
		}
		errS := n.store.Close()
		n.keys.ReleasePacked()
		n.closeErr = errors.Join(errC, errK, errS)
		n.log.Info("node closed", zap.Error(n.closeErr))
	})
	return n.closeErr
}

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
	return n.ready.Load() && n.rep.Failed() == nil && n.store.Err() == nil
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
		return kinderr.New(ErrUnavailable, err, "the write was applied but not yet acknowledged as durable: %v", err)
	case errors.Is(err, store.ErrClosed):
		return fmt.Errorf("%w: the node is shutting down", ErrUnavailable)
	case errors.Is(err, store.ErrDiskFailed):
		return kinderr.New(ErrUnavailable, err, "the disk failed, so this node acknowledges no more writes; "+
			"free space or replace the disk, then restart the node: %v", err)
	default:
		return kinderr.New(ErrUnavailable, err, "the write could not be made durable: %v", err)
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
	if err := n.rep.Failed(); err != nil {
		if errors.Is(err, store.ErrDiskFailed) {
			return n.ackError(err)
		}
		return kinderr.New(ErrUnavailable, err, "storage failed: %v", err)
	}
	if err := n.store.Err(); err != nil {
		// Failed before the committer noticed (a checkpoint's commit).
		return n.ackError(err)
	}
	if !n.ready.Load() {
		return fmt.Errorf("%w: the node is not ready", ErrUnavailable)
	}
	if n.keys.Pending()+int64(ops) > int64(n.cfg.MaxPending) {
		n.metrics.Shed.Inc()
		return fmt.Errorf("%w: %d changes are waiting for the disk; retry with backoff", ErrOverloaded, n.keys.Pending())
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
	if n.ReplicasOf(ns) > 0 {
		if err := shardedWriteOptions(ns, opts.ID != "", len(opts.Labels) > 0, opts.Consistency); err != nil {
			return Result{}, err
		}
	}
	if rec := n.ns.Approx(ns); rec != nil {
		est, err := n.sketches.Incr(ctx, rec, ns, key, by, approx.WriteOptions{ID: opts.ID, Consistency: opts.Consistency, Labels: len(opts.Labels), At: opts.At})
		return Result{Value: est}, err
	}
	at, err := series.EventTime(n.cfg.Now(), opts.At)
	if err != nil {
		return Result{}, err
	}
	if err := n.checkWritable(1 + len(opts.Labels)); err != nil {
		return Result{}, err
	}
	// An increment is a batch of one.
	w := write.Request{
		Ops:         []BatchOp{{NS: ns, Key: key, By: by, ID: opts.ID}},
		Extras:      []write.Extra{{Labels: opts.Labels, At: at}},
		Consistency: opts.Consistency,
		Values:      true,
	}
	unlock, err := n.guardReleased(ctx, w.Ops)
	if err != nil {
		return Result{}, err
	}
	res, err := n.writer.Apply(ctx, w)
	unlock()
	if res.Values == nil {
		return Result{}, err
	}
	if err == nil {
		err = n.shardedValues(ctx, w.Ops, res.Values)
	}
	return Result{Value: res.Values[0], Duplicate: res.Duplicates == 1}, err
}

// Reset sets the counter ns/key to value. Increments concurrent with the reset
// (not yet seen by this node) are kept on top of it.
func (n *Node) Reset(ctx context.Context, ns, key string, value int64) (Result, error) {
	if err := validateName(ns, key); err != nil {
		return Result{}, err
	}
	if n.ns.Approx(ns) != nil {
		return Result{}, errApproxRefused(ns, "a key cannot be reset, since its count is spread over cells shared with other keys")
	}
	if err := n.ns.RefuseBoundedReset(ns, "a reset"); err != nil {
		return Result{}, err
	}
	if err := n.checkResetAfterForget(ns, key, "a reset"); err != nil {
		return Result{}, err
	}
	unlock, err := n.guardReleased(ctx, []BatchOp{{NS: ns, Key: key}})
	if err != nil {
		return Result{}, err
	}
	pulled, err := n.pullForReset(ctx, ns, key)
	if err != nil {
		unlock()
		return Result{}, err
	}
	var before, v int64
	sync, err := n.update(ns, key, true, func(e *keyspace.Entry) error {
		if pulled != nil {
			if err := retire.Merge(&e.C, *pulled, n.retired.IDs()); err != nil {
				return kinderr.New(ErrUnavailable, err, "merge the owners' state of %s/%q: %v; retry once the retired list has reached this node", ns, key, err)
			}
		}
		before = e.C.Value()
		e.C.SetReset(n.id, value, false)
		v = e.C.Value()
		return nil
	})
	unlock()
	if err != nil {
		return Result{}, err
	}
	n.windows.RecordJump(ns, key, series.JumpOf(before, v)) // for reads as of a time before it
	return Result{Value: v}, n.durable(ctx, sync)
}

// Delete makes the counter read 0 and leave listings until it is next
// written. Deleting a counter this node has never seen changes nothing.
func (n *Node) Delete(ctx context.Context, ns, key string) error {
	if err := validateName(ns, key); err != nil {
		return err
	}
	if n.ns.Approx(ns) != nil {
		return errApproxRefused(ns, "a key cannot be deleted, since its count is spread over cells shared with other keys")
	}
	if err := n.ns.RefuseBoundedReset(ns, "a delete"); err != nil {
		return err
	}
	if err := n.checkResetAfterForget(ns, key, "a delete"); err != nil {
		return err
	}
	unlock, err := n.guardReleased(ctx, []BatchOp{{NS: ns, Key: key}})
	if err != nil {
		return err
	}
	pulled, err := n.pullForReset(ctx, ns, key)
	if err != nil {
		unlock()
		return err
	}
	var before int64
	sync, err := n.update(ns, key, pulled != nil, func(e *keyspace.Entry) error {
		if pulled != nil {
			if err := retire.Merge(&e.C, *pulled, n.retired.IDs()); err != nil {
				return kinderr.New(ErrUnavailable, err, "merge the owners' state of %s/%q: %v; retry once the retired list has reached this node", ns, key, err)
			}
		}
		before = e.C.Value()
		e.C.SetReset(n.id, 0, true)
		return nil
	})
	unlock()
	if err != nil {
		return err
	}
	n.windows.RecordJump(ns, key, series.JumpOf(before, 0)) // for reads as of a time before it
	return n.durable(ctx, sync)
}

// update applies fn, a change of this node's own slot, to the counter
// ns/key under its stripe lock, and queues it for the group commit. Without
// create, a counter that does not exist is left alone (fn is not called).
// It reports whether the namespace asks for sync durability.
func (n *Node) update(ns, key string, create bool, fn func(e *keyspace.Entry) error) (sync bool, err error) {
	if err := n.checkWritable(1); err != nil {
		return false, err
	}
	rec, err := n.ns.ForWrite(ns)
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
func (n *Node) modify(ns, key string, create bool, fn func(e *keyspace.Entry) error) error {
	return n.withEntry(ns, key, create, func(s *keyspace.Stripe, e *keyspace.Entry) error {
		if e == nil {
			return nil
		}
		before := e.C.Value()
		if err := fn(e); err != nil {
			return err
		}
		e.Updated = n.cfg.Now().UnixMilli()
		e.Own = true
		n.keys.MarkDirty(s, e)
		n.feed.changedLocked(ns, key, before, e)
		return nil
	})
}

// withEntry calls fn with the entry of ns/key (nil when it does not exist
// and create is false) under its stripe's lock.
func (n *Node) withEntry(ns, key string, create bool, fn func(s *keyspace.Stripe, e *keyspace.Entry) error) error {
	var buf [700]byte
	ck := keyspace.Composite(buf[:0], ns, key)
	s := n.keys.StripeOf(ck)
	s.Lock()
	defer s.Unlock()
	e, err := n.keys.Lookup(s, ck, ns, key, create)
	if err != nil {
		return kinderr.New(ErrUnavailable, err, "read counter: %v", err)
	}
	return fn(s, e)
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
	// that window's bucket holding At (package node/series).
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
	if err := readable(n.ready.Load()); err != nil {
		return Counter{}, err
	}
	if r := n.ReplicasOf(ns); r > 0 {
		return n.getSharded(ctx, ns, key, r, opts)
	}
	if rec := n.ns.Approx(ns); rec != nil {
		est, bound, err := n.sketches.Get(rec, ns, key, opts.At, opts.Consistency)
		if err != nil {
			return Counter{}, err
		}
		return Counter{NS: ns, Key: key, Value: est, Estimate: true, ErrorBound: bound}, nil
	}
	if !opts.At.IsZero() {
		at, err := n.windows.ReadAt(ctx, ns, key, opts.At, opts.Window)
		if err != nil {
			return Counter{}, err
		}
		n.metrics.Reads.Inc()
		out := Counter{NS: ns, Key: key, Value: at.Value, Resolution: at.Resolution, AsOf: at.AsOf,
			Window: at.Window, BucketStart: at.BucketStart}
		if at.Resolution != "" {
			out.Value = n.ns.Clamp(ns, out.Value)
		}
		return out, nil
	}
	var merged *crdt.Counter // the quorum's state, which a quorum read answers
	if lvl := n.ns.ConsistencyFor(ns, opts.Consistency); lvl != ConsistencyLocal {
		c, err := n.quorum.Gather(ctx, lvl, ns, key)
		if err != nil {
			return Counter{}, err
		}
		merged = &c
	}
	ttl := n.ns.TTLOf(ns) // before the stripe lock
	var buf [600]byte
	ck := keyspace.Composite(buf[:0], ns, key)
	s := n.keys.StripeOf(ck)
	s.Lock()
	e, err := n.keys.Lookup(s, ck, ns, key, false)
	if err != nil {
		s.Unlock()
		return Counter{}, kinderr.New(ErrUnavailable, err, "read counter: %v", err)
	}
	out := Counter{NS: ns, Key: key}
	if e != nil && !series.Idle(n.cfg.Now(), ttl, e.Updated) {
		out.Value = e.C.Value()
		if merged != nil {
			out.Value = merged.Value()
		}
		if e.Updated > 0 {
			out.UpdatedAt = time.UnixMilli(e.Updated)
		}
	}
	s.Unlock()
	out.Value = n.ns.Clamp(ns, out.Value)
	n.metrics.Reads.Inc()
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
	if err := n.refuseSharded(ns, "listing its counters"); err != nil {
		return Page{}, err
	}
	if cursor < keyspace.FirstUserKey {
		cursor = keyspace.FirstUserKey // internal counters are not listed
	}
	var page Page
	err := n.scanLive(ns, prefix, cursor, true, func(key string, c scanned) bool {
		if !c.live {
			return true
		}
		if len(page.Items) == limit {
			page.NextCursor = page.Items[limit-1].Key
			return false
		}
		page.Items = append(page.Items, c.Counter)
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return Page{}, kinderr.New(ErrUnavailable, err, "list counters: %v", err)
	}
	return page, nil
}

// scanned is one counter as a scan of a namespace sees it.
type scanned struct {
	Counter
	live     bool // not deleted, and not idle past the namespace's ttl
	hasReset bool // the state carries a reset record (a reset or a delete)
}

// scanLive calls fn, in key order, for every counter of ns whose key starts
// with prefix and sorts after `after`, with its freshest state, until fn
// returns false (keyspace.Set.Scan: Pebble merged with the hot set's
// unsaved counters, no checkpoint). With checkIdle, a counter idle past the
// namespace's ttl is not live (callers that hold n.ns pass false).
func (n *Node) scanLive(ns, prefix, after string, checkIdle bool, fn func(key string, c scanned) bool) error {
	var idle func(int64) bool
	if checkIdle {
		ttl := n.ns.TTLOf(ns) // before any stripe lock
		idle = func(updated int64) bool { return series.Idle(n.cfg.Now(), ttl, updated) }
	}
	return n.keys.Scan(ns, prefix, after, idle, func(c keyspace.Scanned) bool {
		out := scanned{Counter: Counter{NS: ns, Key: c.Key, Value: c.Value}, live: c.Live, hasReset: c.HasReset}
		if c.UpdatedMs > 0 {
			out.UpdatedAt = time.UnixMilli(c.UpdatedMs)
		}
		return fn(c.Key, out)
	})
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
