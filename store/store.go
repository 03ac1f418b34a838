package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/countmesh/countmesh/crdt"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/store/internal/oplog"
)

// Sentinel errors. Check them with errors.Is; the returned errors wrap them
// with details.
var (
	// ErrClosed is returned by every method of a closed Store or Committer.
	ErrClosed = oplog.ErrClosed
	// ErrInvalidConfig is returned by Open and NewCommitter for a bad Config.
	ErrInvalidConfig = errors.New("store: invalid config")
	// ErrInvalidName is returned for a namespace name the key layout cannot
	// hold (empty, or holding a NUL byte).
	ErrInvalidName = errors.New("store: invalid name")
	// ErrCorrupt is returned when a stored value cannot be decoded.
	ErrCorrupt = oplog.ErrCorrupt
	// ErrCommitFailed is returned by a Committer whose commit failed: a
	// write or fsync (then the error wraps ErrDiskFailed too) or the
	// Source's Fill. The committer then fails every later ticket.
	ErrCommitFailed = errors.New("store: commit failed")
	// ErrDiskFailed is returned when a write or fsync of the operation log,
	// or a Pebble commit or WAL fsync, failed; a full disk (ENOSPC) is one
	// such failure. From then on the Store is failed (see Store.Err): it
	// refuses every write with an error wrapping ErrDiskFailed and never
	// retries, because after a failed fsync the kernel may have dropped the
	// dirty pages and a later fsync could succeed without writing them.
	// Whether the failed write reached the disk is unknown; only a restart,
	// which replays what is durable, finds out. Reads keep working.
	ErrDiskFailed = errors.New("store: disk failed")
)

// Store is countmesh's durable state: counters, namespace configs and node
// metadata in one Pebble database. It is safe for concurrent use.
type Store struct {
	db    *pebble.DB
	log   *zap.Logger
	oplog *oplog.Log
	// largeBatch is the batch size, as a memtable counts it, from which a
	// checkpoint is left for ReleaseLarge to flush out: nine tenths of
	// Pebble's threshold for keeping a batch apart (half a memtable, less
	// an empty one's size). memtableBytes counts 203 bytes and the key and
	// value an entry, Pebble 195 and the key and value (arenaskl.MaxNodeSize), so every batch Pebble keeps
	// apart is above this. A batch between the two went to the memtable
	// and flushes it early; a quarter of a memtable did that for many
	// more. See flushLarge.
	largeBatch int
	// largeUnflushed counts the checkpoints of largeBatch or more since
	// the last ReleaseLarge.
	largeUnflushed atomic.Int32
	// pebbleUnsynced is set by a NoSync Pebble commit and cleared by the
	// WAL fsync that covers it.
	pebbleUnsynced atomic.Bool

	// failed holds the first write error, wrapping ErrDiskFailed; once set
	// every write is refused.
	failed atomic.Pointer[error]

	// mu guards closed. Every use of db holds mu for reading, so that Close
	// (which holds it for writing) never closes Pebble under a reader;
	// Pebble panics on use after Close.
	mu struct {
		sync.RWMutex
		closed bool
	}

	// cmu guards committers and closing; Close stops the committers
	// before it closes Pebble.
	cmu struct {
		sync.Mutex
		closing    bool
		committers map[*Committer]struct{}
	}

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store in cfg.Dir. Pebble replays the
// write-ahead log, so every commit that returned nil with sync, or whose
// WAL fsync completed, is there; nothing is scanned.
func Open(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := cfg.FS.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: create data directory %q: %w", cfg.Dir, err)
	}
	log := cfg.Logger.Named("store")
	db, err := pebble.Open(cfg.Dir, pebbleOptions(cfg, log))
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", cfg.Dir, err)
	}
	ol, err := oplog.Open(cfg.FS, cfg.Dir, log, max(cfg.LogWriteAhead, 0))
	if err != nil {
		_ = catchFatal(db.Close)
		return nil, err
	}
	s := &Store{db: db, log: log, oplog: ol, largeBatch: int(cfg.MemTableSize * 9 / 20)}
	s.cmu.committers = make(map[*Committer]struct{})
	log.Info("opened", zap.String("dir", cfg.Dir))
	return s, nil
}

// pebbleOptions tunes Pebble for countmesh: many small keys (tens of bytes),
// values of about 15-40 bytes, written far more often than read from disk
// (the node serves hot counters from memory), with hot keys overwritten
// again and again.
func pebbleOptions(cfg Config, log *zap.Logger) *pebble.Options {
	opts := &pebble.Options{
		FS: noPreallocFS{cfg.FS},
		// Pin the on-disk format instead of following Pebble's default,
		// which may change between releases.
		FormatMajorVersion: pebble.FormatNewest,
		CacheSize:          cfg.CacheSize,
		// Small memtables (8 MiB, see defaultMemTableSize): a build
		// without cgo allocates each memtable's arena in the Go heap,
		// which zeroes it, so the whole arena is resident from the start,
		// and Pebble keeps the mutable one and one for reuse. Checkpoints
		// of half a memtable or more (the bulk of a busy node's writes)
		// are not copied into memtables anyway: Pebble keeps each such
		// batch apart and flushes it to a table of its own.
		MemTableSize: cfg.MemTableSize,
		// Writes stall once about 256 MiB of memtables and large batches
		// wait to be flushed (32 memtables at the default size, at least
		// 4), so that a burst of large checkpoints can ride out a slow
		// flush.
		MemTableStopWritesThreshold: stopWritesMemTables(cfg.MemTableSize),
		// Compact L0 once it has 4 sublevels (Pebble's default) to keep
		// read amplification of cold reads low, but only stall writes at 32
		// (default 12): with a write-heavy load a brief compaction backlog
		// is better than refusing writes, and the node's queues shed load
		// before Pebble would.
		L0CompactionThreshold: 4,
		L0StopWritesThreshold: 32,
		// Lbase of 256 MiB (default 64 MiB), so that L0->Lbase compactions
		// do not rewrite Lbase for every flush of a large checkpoint.
		LBaseMaxBytes: 256 << 20,
		// Let compactions use up to 4 cores when they fall behind; one
		// in the steady state.
		CompactionConcurrencyRange: func() (int, int) {
			return 1, max(1, min(4, runtime.GOMAXPROCS(0)/2))
		},
		Logger:        pebbleLogger{log.Sugar()},
		EventListener: eventListener(log),
	}
	// Bloom filters (10 bits per key, ~1% false positives) on every level,
	// L0 included: GetCounter is a point read of a whole key, usually of a
	// cold counter, often of one never written; the filter answers most
	// misses without reading a data block. They cost about 1.25 bytes per
	// key on disk. Keys have no MVCC suffix, so the default Comparer's
	// whole-key Split is right.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// Tables of at most 8 MiB (Pebble doubles the target per level, to
	// 64 MiB and more at the bottom), so that each table's filter block
	// (about 1.25 bytes a key) stays small enough for the block cache to
	// keep: see defaultCacheSize.
	opts.TargetFileSizes[0] = 2 << 20
	for i := 1; i < len(opts.TargetFileSizes); i++ {
		opts.TargetFileSizes[i] = min(opts.TargetFileSizes[i-1]*2, 8<<20)
	}
	// The fastest compression (Snappy-class) on every level. zstd in the
	// bottom two (Pebble's "Balanced") kept 7-15 % fewer bytes on disk
	// (TestDiskBytesPerCounter: 16.9 against 18.2 bytes a one-slot counter,
	// 34.8 against 40.7 a three-slot one), but a node's data mostly sits
	// in the bottom level, so every compaction paid for zstd: it was 10 %
	// of countd's CPU under random-key INCRs, and writing 5,000,000 new
	// counters cost 5.0 against 4.1 us of CPU a counter
	// (docs/benchmarks.md, "Issue 11 on a quiet box").
	opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	return opts
}

// stopWritesMemTables returns the memtables' worth of memtables and large
// batches waiting to be flushed at which Pebble stalls writes: about
// 256 MiB, between 4 and 32 memtables. Pebble also keeps that many write-ahead
// logs (one more) for reuse, hence the cap for small memtables.
func stopWritesMemTables(memTableSize uint64) int {
	return int(min(max((256<<20)/max(memTableSize, 1), 4), 32))
}

// eventListener logs the Pebble events an operator needs to see.
func eventListener(log *zap.Logger) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			log.Error("pebble background error", zap.Error(err))
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			log.Error("pebble data corruption", zap.String("path", info.Path), zap.Error(info.Details))
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			log.Warn("disk slow", zap.String("path", info.Path), zap.Duration("duration", info.Duration))
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			log.Warn("pebble write stall", zap.String("reason", info.Reason))
		},
		WriteStallEnd: func() {
			log.Info("pebble write stall ended")
		},
		LowDiskSpace: func(info pebble.LowDiskSpaceInfo) {
			log.Warn("low disk space", zap.Uint64("avail_bytes", info.AvailBytes))
		},
	}
}

// pebbleLogger adapts zap to pebble.Logger.
type pebbleLogger struct{ l *zap.SugaredLogger }

// Pebble's informational lines ("Found 0 WALs", compactions) are for
// debugging the storage engine, not for an operator reading start-up.
func (p pebbleLogger) Infof(format string, args ...any)  { p.l.Debugf(format, args...) }
func (p pebbleLogger) Errorf(format string, args ...any) { p.l.Errorf(format, args...) }

// Fatalf is called by Pebble when it gives up: on a failed commit (a WAL
// write or fsync error) and on broken invariants. It logs and panics with a
// pebbleFatal. On the commit path the store recovers that panic and turns it
// into a permanent write failure (see ErrDiskFailed), so that the
// committer can fail its waiters and the node can report it and shut down
// cleanly; anywhere else (Pebble's background work) the panic ends the
// process, as Pebble intends.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	p.l.Error(err.Error())
	panic(pebbleFatal{err})
}

// pebbleFatal is the panic value of pebbleLogger.Fatalf.
type pebbleFatal struct{ err error }

// catchFatal runs fn and turns a pebbleFatal panic into an error.
func catchFatal(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = f.err
		}
	}()
	return fn()
}

// Close stops the store's committers (committing what they hold), then
// closes Pebble. It is idempotent and returns the first error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cmu.Lock()
		s.cmu.closing = true
		committers := make([]*Committer, 0, len(s.cmu.committers))
		for c := range s.cmu.committers {
			committers = append(committers, c)
		}
		s.cmu.Unlock()
		var errs []error
		for _, c := range committers {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		s.mu.Lock()
		s.mu.closed = true
		if err := s.oplog.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := catchFatal(s.db.Close); err != nil {
			errs = append(errs, fmt.Errorf("store: close pebble: %w", err))
		}
		s.mu.Unlock()
		s.closeErr = errors.Join(errs...)
		s.log.Info("closed", zap.Error(s.closeErr))
	})
	return s.closeErr
}

// readLock takes mu for reading and reports ErrClosed when closed. On nil
// the caller must call s.mu.RUnlock.
func (s *Store) readLock() error {
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// get reads key and hands its value to fn, which must not keep it.
func (s *Store) get(key []byte, fn func(v []byte) error) (found bool, err error) {
	if err := s.readLock(); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: read: %w", err)
	}
	defer closer.Close()
	return true, fn(v)
}

// GetCounter reads one counter. A counter never written (or deleted with
// DeleteCounter) is not found and reads as the zero Counter.
func (s *Store) GetCounter(ns, key string) (c crdt.Counter, found bool, err error) {
	r, found, err := s.GetRecord(ns, key)
	return r.Counter, found, err
}

// GetRecord reads one counter with the time of its last change.
func (s *Store) GetRecord(ns, key string) (r Record, found bool, err error) {
	if err := checkNamespace(ns); err != nil {
		return r, false, err
	}
	var kb [128]byte
	found, err = s.get(appendCounterKey(kb[:0], ns, key), func(v []byte) error {
		var err error
		r, err = DecodeRecord(v)
		if err != nil {
			return fmt.Errorf("%w (ns %q, key %q)", err, ns, key)
		}
		return nil
	})
	return r, found, err
}

// ScanCounters calls fn, in ascending byte order of key, for each counter of
// ns whose key starts with prefix and sorts strictly after `after` ("" starts
// at the beginning; pass the last key seen to resume a listing),
// until fn returns false. It reads a consistent snapshot. fn must not call
// Close. Deleted-but-stored counters (see crdt.Counter.Live) are passed
// too; filtering is the caller's business.
func (s *Store) ScanCounters(ns, prefix, after string, fn func(key string, c crdt.Counter) bool) error {
	return s.ScanRecords(ns, prefix, after, func(key string, r Record) bool { return fn(key, r.Counter) })
}

// ScanRecords is ScanCounters with the time of each counter's last change.
func (s *Store) ScanRecords(ns, prefix, after string, fn func(key string, r Record) bool) error {
	if err := checkNamespace(ns); err != nil {
		return err
	}
	base := appendCounterKey(nil, ns, "")
	lower := appendCounterKey(nil, ns, prefix)
	if after != "" && after >= prefix {
		// The smallest key after `after` is after+"\x00".
		lower = append(appendCounterKey(nil, ns, after), 0)
	}
	upper := prefixEnd(appendCounterKey(nil, ns, prefix))
	// upper is never nil: the key starts with 'c'.
	if bytes.Compare(lower, upper) >= 0 {
		return nil // `after` is past every key with the prefix
	}
	return s.iterate(lower, upper, func(k, v []byte) (bool, error) {
		key := string(k[len(base):])
		r, err := DecodeRecord(v)
		if err != nil {
			return false, fmt.Errorf("%w (ns %q, key %q)", err, ns, key)
		}
		return fn(key, r), nil
	})
}

// iterate calls fn for every key in [lower, upper) until it returns false
// or an error.
func (s *Store) iterate(lower, upper []byte, fn func(k, v []byte) (bool, error)) (err error) {
	if err := s.readLock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("store: iterate: %w", err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store: iterate: %w", cerr)
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("store: iterate: %w", err)
		}
		more, err := fn(it.Key(), v)
		if err != nil || !more {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("store: iterate: %w", err)
	}
	return nil
}

// ScanIndex calls fn, in ascending seq order, for every index entry of
// origin with seq > after, until fn returns false.
func (s *Store) ScanIndex(origin crdt.NodeID, after uint64, fn func(seq uint64, ns, key string) bool) error {
	if after == ^uint64(0) {
		return nil
	}
	lower := appendIndexKey(nil, uint64(origin), after+1)
	upper := prefixEnd(appendIndexKey(nil, uint64(origin), 0)[:9])
	return s.iterate(lower, upper, func(k, v []byte) (bool, error) {
		if len(k) != 17 {
			return false, fmt.Errorf("%w: index key of %d bytes", ErrCorrupt, len(k))
		}
		i := bytes.IndexByte(v, sep)
		if i < 0 {
			return false, fmt.Errorf("%w: index value without separator", ErrCorrupt)
		}
		return fn(binary.BigEndian.Uint64(k[9:]), string(v[:i]), string(v[i+1:])), nil
	})
}

// GetNamespace msgpack-decodes the config of ns into out.
func (s *Store) GetNamespace(ns string, out any) (found bool, err error) {
	if err := checkNamespace(ns); err != nil {
		return false, err
	}
	return s.get(appendNamespaceKey(nil, ns), func(v []byte) error {
		if err := msgpack.Unmarshal(v, out); err != nil {
			return kinderr.New(ErrCorrupt, err, "namespace %q: %v", ns, err)
		}
		return nil
	})
}

// ListNamespaces calls fn for every stored namespace in ascending order,
// until fn returns false. decode msgpack-decodes that namespace's config into
// out; it is valid only during the call to fn.
func (s *Store) ListNamespaces(fn func(ns string, decode func(out any) error) bool) error {
	lower := []byte{spaceNamespace}
	return s.iterate(lower, prefixEnd(lower), func(k, v []byte) (bool, error) {
		ns := string(k[1:])
		decode := func(out any) error {
			if err := msgpack.Unmarshal(v, out); err != nil {
				return kinderr.New(ErrCorrupt, err, "namespace %q: %v", ns, err)
			}
			return nil
		}
		return fn(ns, decode), nil
	})
}

// GetMeta msgpack-decodes the meta value name into out.
func (s *Store) GetMeta(name string, out any) (found bool, err error) {
	return s.get(appendMetaKey(nil, name), func(v []byte) error {
		if err := msgpack.Unmarshal(v, out); err != nil {
			return kinderr.New(ErrCorrupt, err, "meta %q: %v", name, err)
		}
		return nil
	})
}

// DiskUsage returns the bytes the database occupies on disk: WAL, sstables
// (live and obsolete) and manifests. It returns 0 once closed.
func (s *Store) DiskUsage() uint64 {
	if s.readLock() != nil {
		return 0
	}
	defer s.mu.RUnlock()
	return s.db.Metrics().DiskSpaceUsage()
}

// Flush writes the memtables to sstables and waits for it. Benchmarks use
// it before measuring DiskUsage, and ReleaseLarge after a burst.
func (s *Store) Flush() error {
	if err := s.readLock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("store: flush: %w", err)
	}
	return nil
}

// flushLarge is told the size of every checkpoint's batch, in bytes as a
// memtable counts them. One of largeBatch or more (about half a memtable or
// more) Pebble may have kept apart as a flushable batch; flushLarge notes
// it, and lets it go (ReleaseLarge) at the first checkpoint under a quarter
// of that size, a sign that the burst of writes is over.
//
// Pebble writes such a batch to a table by itself, but it drops flushed
// entries from the front of its queue by slicing (compaction.go,
// `queue = queue[n:]`), so the slice's array keeps the batch reachable, with
// the data the batch was given room for, until an append to the queue
// outgrows that array; the appends are memtable rotations, which later
// writes make. While writes go on that costs nothing; after 1,000,000 new
// counters and no writes since, that batch and the WAL writer's blocks that
// carried it were 88 MB of a 153 MB heap (docs/benchmarks.md, "Memory per
// counter against Redis").
//
// The flushes used to be made here, after every large checkpoint; but each
// one also wrote the memtable, with the hot counters it had absorbed, to a
// small table of its own, and the compactions of those tables cost 7-17 %
// of countd's CPU under random-key INCRs (docs/benchmarks.md, "Issue 11 on
// a quiet box").
func (s *Store) flushLarge(size int) {
	switch {
	case size >= s.largeBatch:
		s.largeUnflushed.Add(1)
	case size < s.largeBatch/4:
		s.ReleaseLarge()
	}
}

// maxReleaseFlushes bounds the flushes of one ReleaseLarge.
const maxReleaseFlushes = 16

// ReleaseLarge lets the batches of large checkpoints go once the writes
// have stopped (see flushLarge): when n were committed since the last call,
// it flushes the memtables 2n times (at most maxReleaseFlushes) and waits
// for each. One forced flush left a batch reachable in
// TestLargeCheckpointLetsItsBatchGo, two let it go; a queue that held
// several batches may keep them over more rotations (its array is replaced
// only when an append outgrows it), and a flush of an empty memtable costs
// little. It does nothing otherwise. Checkpoints call it (a small one, or
// one with nothing to write), and so does the node when a burst is over,
// before it returns free memory to the kernel. A failed flush is logged:
// the batch then stays in memory until later writes rotate the memtables.
func (s *Store) ReleaseLarge() {
	n := s.largeUnflushed.Swap(0)
	for range min(2*int(n), maxReleaseFlushes) {
		if err := s.Flush(); err != nil {
			if !errors.Is(err, ErrClosed) { // closing: Pebble lets the batch go with the rest
				s.log.Warn("flush after a burst of large checkpoints failed; the last one's batch stays in memory until later writes", zap.Error(err))
			}
			return
		}
	}
}

// apply commits pb. Any Pebble error makes the store refuse later writes
// (see ErrDiskFailed).
func (s *Store) apply(pb *pebble.Batch, sync bool) error {
	if err := s.readLock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.failedErr(); err != nil {
		return err
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	if err := catchFatal(func() error { return s.db.Apply(pb, opts) }); err != nil {
		return s.fail(err)
	}
	if !sync {
		s.pebbleUnsynced.Store(true)
	}
	return nil
}

// appendLog appends one operation-log record. Any error makes the store
// refuse later writes, as for Pebble commits.
func (s *Store) appendLog(payload []byte, sync bool) error {
	if err := s.readLock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.failedErr(); err != nil {
		return err
	}
	if err := s.oplog.Append(payload, sync); err != nil {
		return s.fail(err)
	}
	return nil
}

// ReplayLog hands every operation-log record left by the previous run to
// fn, oldest first, and returns how many there were. It must be called
// once, before anything is appended; the caller (package node) applies the
// records to its state, writes that state to Pebble (a checkpoint) and then
// drops the replayed segments with RotateLog and DropLogBefore.
func (s *Store) ReplayLog(fn func(payload []byte) error) (int, error) {
	if err := s.readLock(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	return s.oplog.Replay(fn)
}

// RotateLog fsyncs and closes the current log segment and returns a cut:
// every record appended before the call is in a segment below the cut.
// A checkpoint rotates first, then writes the state those records built to
// Pebble with a synced batch, then calls DropLogBefore(cut). A failed
// store (see Err) refuses: a new segment would leave a torn record of the
// failed append in the middle of the log.
func (s *Store) RotateLog() (uint64, error) {
	if err := s.readLock(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	if err := s.failedErr(); err != nil {
		return 0, err
	}
	cut, err := s.oplog.Rotate()
	if err != nil && !errors.Is(err, ErrClosed) {
		return 0, s.fail(err)
	}
	return cut, err
}

// DropLogBefore removes the log segments below cut.
func (s *Store) DropLogBefore(cut uint64) error {
	if err := s.readLock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return s.oplog.DropBefore(cut)
}

// LogBytes reports the bytes appended to the log since the last rotation.
func (s *Store) LogBytes() int64 { return s.oplog.PendingBytes() }

// syncWAL makes every commit so far durable by writing an empty, synced
// record to the WAL (the WAL is sequential, so its fsync covers all earlier
// records).
func (s *Store) syncWAL() error {
	if err := s.readLock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.failedErr(); err != nil {
		return err
	}
	if s.pebbleUnsynced.Swap(false) {
		if err := catchFatal(func() error { return s.db.LogData(nil, pebble.Sync) }); err != nil {
			return s.fail(err)
		}
	}
	if err := s.oplog.Sync(); err != nil {
		return s.fail(err)
	}
	return nil
}

// Err returns nil while the store takes writes, and the error that failed
// it (wrapping ErrDiskFailed) once a write or fsync failed. A failed store
// stays failed until it is closed and opened again.
func (s *Store) Err() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records err as the store's write failure and returns it wrapped.
// Pebble treats a failed WAL write or fsync as fatal (its commit pipeline is
// left unusable and a later commit could panic inside Pebble), so refusing
// every later write is also what keeps the process alive to report the
// error. Whether the failed batch reached the disk is unknown; it is
// visible to reads until the restart.
// It logs the first failure, once, at error level: the one line an operator
// needs, wherever the failure then surfaces.
func (s *Store) fail(err error) error {
	err = kinderr.New(ErrDiskFailed, err, "%v", err)
	if s.failed.CompareAndSwap(nil, &err) {
		s.log.Error("disk failed: refusing every write from now on, without retrying; "+
			"free space or replace the disk, then restart the node (it recovers what was durable)",
			zap.Error(err))
	}
	return err
}

func (s *Store) failedErr() error {
	if p := s.failed.Load(); p != nil {
		return fmt.Errorf("%w (refusing writes after an earlier failure; restart to recover)", *p)
	}
	return nil
}

// CounterKeysEstimate returns a rough estimate of how many counters the
// sstables hold, from their size on disk at 16 bytes a counter (one-slot
// counters took 12 to 21 bytes each, index entries included, in the
// benchmarks of 10 and 100 million counters). Memtables are not counted.
// It returns 0 once closed.
func (s *Store) CounterKeysEstimate() uint64 {
	if s.readLock() != nil {
		return 0
	}
	defer s.mu.RUnlock()
	n, err := s.db.EstimateDiskUsage([]byte{spaceCounter}, []byte{spaceCounter + 1})
	if err != nil {
		return 0
	}
	return n / 16
}

// ScanCounterKeys calls fn with the composite key (ns, 0x00, key) of every
// counter Pebble holds, internal ones included, in key order, a chunk of
// chunk keys at a time: each chunk reads a fresh view, so a counter written
// during the scan may be missed (its writer knows it) but none that Pebble
// held before the scan started and still holds. It stops early, with nil,
// when fn returns false. The slice passed to fn is only valid during the
// call.
func (s *Store) ScanCounterKeys(chunk int, fn func(ck []byte) bool) error {
	chunk = max(chunk, 1)
	lower := []byte{spaceCounter}
	upper := []byte{spaceCounter + 1}
	for {
		n, more := 0, true
		var last []byte
		err := s.iterate(lower, upper, func(k, _ []byte) (bool, error) {
			if !fn(k[1:]) {
				more = false
				return false, nil
			}
			n++
			if n == chunk {
				last = append(last[:0], k...)
				return false, nil
			}
			return true, nil
		})
		if err != nil || !more || last == nil {
			return err
		}
		lower = append(last, 0) // the smallest key after last
	}
}
