package store

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
)

// Checkpoints. The group committer appends every change to the operation
// log; a checkpoint writes the state of every counter changed since the
// previous one to Pebble, with its (origin, seq) index entries and the
// version vector it covers, in one synced batch, then drops the log segments
// that state covers. Recover is the other half: at start it replays the log
// the previous run left into the caller's hot set.

// Unsaved is the in-memory side of checkpoints: the hot set of counters
// whose state Pebble does not hold yet (package node's keyspace).
type Unsaved interface {
	// Changed reports how many counters wait for the committer (dirty)
	// and for a checkpoint (unsaved); with both zero a checkpoint has
	// nothing to write.
	Changed() (dirty, unsaved int64)
	// Collect calls put for every counter changed since the last
	// checkpoint: its record, and what the last checkpoint wrote to the
	// (origin, seq) index for it. It marks them as being written by
	// checkpoint num.
	Collect(num uint64, put func(ns, key string, r Record, indexed []OriginSeq))
	// Saved ends checkpoint num: Pebble holds what Collect handed out
	// when err is nil; else those counters are unsaved again.
	Saved(num uint64, err error)
	// VersionVector is the version vector durable before the checkpoint
	// collects: the log records it replaces hold no change beyond it.
	VersionVector() []OriginSeq
}

// CheckpointConfig configures a Checkpointer.
type CheckpointConfig struct {
	// Interval is how often Run checkpoints; LogBytes of operation log
	// start one sooner.
	Interval time.Duration
	LogBytes int64
	Logger   *zap.Logger
	// Observe, when set, is called after every committed checkpoint.
	Observe func(saved int64, took time.Duration)
}

// Checkpointer writes the counters of an Unsaved to Pebble. Checkpoint is
// safe for concurrent use; checkpoints run one at a time.
type Checkpointer struct {
	st   *Store
	src  Unsaved
	cfg  CheckpointConfig
	kick chan struct{}
	done atomic.Uint64 // the last checkpoint committed to Pebble

	mu    sync.Mutex       // serialises checkpoints; guards seq and stage
	seq   uint64           // the last checkpoint started
	stage *checkpointStage // kept between the checkpoints of a burst; nil else
}

// checkpointBytesPerCounter is about what a checkpoint writes to its batch
// per counter of the common shape: a record of one or two slots and its
// index entries, with Pebble's per-entry headers.
const checkpointBytesPerCounter = 128

// metaVV is the meta key of the version vector a checkpoint covers.
const metaVV = "vv"

// NewCheckpointer returns a Checkpointer of src's counters into s.
func (s *Store) NewCheckpointer(cfg CheckpointConfig, src Unsaved) *Checkpointer {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Checkpointer{st: s, src: src, cfg: cfg, kick: make(chan struct{}, 1)}
}

// Done returns the number of the last checkpoint Pebble holds: a counter
// written by it or an earlier one may leave memory.
func (c *Checkpointer) Done() uint64 { return c.done.Load() }

// Kick asks Run for a checkpoint now; it never blocks.
func (c *Checkpointer) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run checkpoints every Interval, or sooner when the log grows past
// LogBytes or Kick is called, until stop is closed.
func (c *Checkpointer) Run(stop <-chan struct{}) {
	t := time.NewTicker(c.cfg.Interval / 4)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-c.kick:
		case <-t.C:
			if time.Since(last) < c.cfg.Interval && c.st.LogBytes() < c.cfg.LogBytes {
				continue
			}
		}
		last = time.Now()
		if err := c.Checkpoint(); err != nil {
			if errors.Is(err, ErrDiskFailed) {
				// Nothing can be written until a restart; the store
				// logged the failure once.
				c.cfg.Logger.Info("checkpoints stop: the disk failed", zap.Error(err))
				return
			}
			c.cfg.Logger.Error("checkpoint failed; the operation log keeps every change, and the checkpoint will be retried", zap.Error(err))
		}
	}
}

// Checkpoint makes Pebble reflect every change made before the call.
// Counters still waiting for the committer are written too (their state is
// at least what the log will hold).
func (c *Checkpointer) Checkpoint() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	dirty, unsaved := c.src.Changed()
	if dirty == 0 && unsaved == 0 && c.seq > 0 {
		// Nothing changed since the last checkpoint: anti-entropy scans
		// ask for one, and most find nothing to do. The writes have
		// stopped, so a large checkpoint's batch can go, and the stage.
		c.st.ReleaseLarge()
		c.stage = nil
		return nil
	}
	start := time.Now()
	vv := c.src.VersionVector() // durable before anything collected below
	// Every record appended before the rotation is in a segment below cut,
	// and every counter it holds was unsaved before it was appended, so
	// the collection below covers it.
	cut, err := c.st.RotateLog()
	if err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	c.seq++
	num := c.seq
	// Room for each counter's record and two index entries (growing the
	// batch was 3.6 % of the node's CPU in a profile of random-key INCRs).
	room := int(min(dirty+unsaved, 1<<20))
	b := c.st.NewBatchSized(room * checkpointBytesPerCounter)
	defer b.Close()
	st := c.stage
	if st == nil {
		st = newCheckpointStage(room)
	} else {
		st.reset(room)
	}
	var saved int64
	c.src.Collect(num, func(ns, key string, r Record, indexed []OriginSeq) {
		ref := st.putRecord(ns, key, r)
		for _, os := range r.Seqs {
			old := SeqOf(indexed, os.Origin)
			if old == os.Seq {
				continue
			}
			if old != 0 {
				st.deleteIndex(os.Origin, old)
			}
			st.putIndex(os.Origin, os.Seq, ref)
		}
		saved++
	})
	err = st.addTo(b) // the batch holds a copy
	c.stage = nil
	if st.worthKeeping() {
		c.stage = st
	}
	if err == nil {
		err = b.PutMeta(metaVV, vv)
	}
	size := b.memtableBytes() // before the commit, which may take the batch's data
	if err == nil {
		err = b.Commit(true)
	}
	c.src.Saved(num, err)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	c.st.flushLarge(size)
	c.done.Store(num)
	if err := c.st.DropLogBefore(cut); err != nil {
		return fmt.Errorf("drop checkpointed log: %w", err)
	}
	if c.cfg.Observe != nil {
		c.cfg.Observe(saved, time.Since(start))
	}
	c.cfg.Logger.Debug("checkpoint", zap.Uint64("num", num), zap.Int64("counters", saved), zap.Duration("took", time.Since(start)))
	return nil
}

// SeqOf returns origin's sequence in seqs, or 0.
func SeqOf(seqs []OriginSeq, origin crdt.NodeID) uint64 {
	for _, s := range seqs {
		if s.Origin == origin {
			return s.Seq
		}
	}
	return 0
}

// Recover restores what the previous run left: it calls apply for every
// counter change in the operation log, in log order, and returns the
// version vector the last checkpoint covered raised by every replayed
// record's, with the number of records and changes replayed. The caller
// checkpoints what it replayed before it writes.
func (s *Store) Recover(apply func(ns, key string, r Record) error) (vv []OriginSeq, records, changes int, err error) {
	var saved []OriginSeq
	if _, err := s.GetMeta(metaVV, &saved); err != nil {
		return nil, 0, 0, fmt.Errorf("read version vector: %w", err)
	}
	m := make(map[crdt.NodeID]uint64)
	RaiseVV(m, saved)
	records, err = s.ReplayLog(func(payload []byte) error {
		recVV, err := DecodeLog(payload, func(ns, key string, r Record) error {
			changes++
			return apply(ns, key, r)
		})
		RaiseVV(m, recVV)
		return err
	})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("replay operation log: %w", err)
	}
	return SortedVV(m), records, changes, nil
}

// SortedVV returns a version vector (origin -> highest sequence held) as a
// list sorted by origin, the form logs and checkpoints store.
func SortedVV(vv map[crdt.NodeID]uint64) []OriginSeq {
	out := make([]OriginSeq, 0, len(vv))
	for o, s := range vv {
		out = append(out, OriginSeq{Origin: o, Seq: s})
	}
	slices.SortFunc(out, func(a, b OriginSeq) int { return cmp.Compare(a.Origin, b.Origin) })
	return out
}

// RaiseVV raises vv to every entry of list.
func RaiseVV(vv map[crdt.NodeID]uint64, list []OriginSeq) {
	for _, s := range list {
		vv[s.Origin] = max(vv[s.Origin], s.Seq)
	}
}
