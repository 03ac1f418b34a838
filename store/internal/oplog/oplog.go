package oplog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	iofs "io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// The log's files: <dataDir>/Dir/<segment number, 20 digits>Ext, each
// record behind a header of HeaderSize bytes.
const (
	Dir        = "oplog"
	Ext        = ".log"
	TmpExt     = ".tmp" // a segment being rewritten without its torn tail
	HeaderSize = 8
	// maxLogRecord bounds a record, so that a corrupt length cannot ask for
	// more memory than that.
	maxLogRecord = 256 << 20
	// MinWriteAhead is the room a new segment is zeroed for when the
	// segment before it took little, and the unit segment sizes are
	// rounded up to.
	MinWriteAhead = 256 << 10
	// zeroChunk is the size of each write that zeroes a new segment.
	zeroChunk = 256 << 10
)

// zeros is written to zero new segments; nothing writes into it.
var zeros = make([]byte, zeroChunk)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// The log's errors are the store's: the store returns them as they are.
var (
	// ErrClosed is returned by a log that was closed.
	ErrClosed = errors.New("store: closed")
	// ErrCorrupt is a bad record that is not a torn tail.
	ErrCorrupt = errors.New("store: corrupt value")
)

// Log is the store's operation log.
type Log struct {
	fs  vfs.FS
	dir string
	log *zap.Logger

	mu       sync.Mutex // guards every field below
	segments []uint64   // segment numbers on disk, ascending; the last is open when f != nil
	f        vfs.File   // the segment being appended to; nil before the first append
	size     int64      // bytes in f
	unsynced bool       // f holds appended bytes not yet fsynced
	replayed bool       // ReplayLog ran (appends are refused before, so that no record is missed)
	bytes    int64      // bytes appended since the last rotation
	closed   bool
	// broken is the first write or fsync error of f; once set, the log
	// refuses everything and never fsyncs again (see above).
	broken error
	buf    []byte // reused record buffer

	// Write ahead (see doc.go): writeAhead is the most a segment is zeroed
	// for (0: segments are not zeroed); room is how much of f was zeroed
	// (appends past it grow the file); spare is the next segment, being
	// zeroed or ready, and rotating is set while Rotate makes the next
	// segment, so that no spare is begun under the same number.
	writeAhead int64
	room       int64
	spare      *spareSegment
	rotating   bool
}

// spareSegment is a segment zeroed ahead of use by a goroutine of its own.
// Its fields are written before done is closed and read after.
type spareSegment struct {
	done chan struct{}
	num  uint64
	size int64
	f    vfs.File
	err  error
}

// Open opens the log under dataDir, removing what an interrupted rewrite
// left. Appends are refused until Replay has run. New segments are zeroed
// ahead for up to writeAhead bytes (rounded up to MinWriteAhead); 0 turns
// that off.
func Open(fs vfs.FS, dataDir string, log *zap.Logger, writeAhead int64) (*Log, error) {
	dir := fs.PathJoin(dataDir, Dir)
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: create log directory %q: %w", dir, err)
	}
	// Make the directory's own entry durable, so a crash cannot lose the
	// segments with it.
	if d, err := fs.OpenDir(dataDir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("store: sync data directory %q: %w", dataDir, err)
		}
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("store: list log directory %q: %w", dir, err)
	}
	l := &Log{fs: fs, dir: dir, log: log}
	if writeAhead > 0 {
		l.writeAhead = roundUp(writeAhead)
	}
	for _, name := range names {
		if strings.HasSuffix(name, Ext+TmpExt) {
			// Left by a crash while a torn tail was being cut off; the
			// segment itself is still whole.
			if err := fs.Remove(fs.PathJoin(dir, name)); err != nil {
				return nil, fmt.Errorf("store: remove stale log file %q: %w", name, err)
			}
			continue
		}
		num, ok := strings.CutSuffix(name, Ext)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		l.segments = append(l.segments, n)
	}
	slices.Sort(l.segments)
	return l, nil
}

func (l *Log) path(n uint64) string {
	return l.fs.PathJoin(l.dir, fmt.Sprintf("%020d%s", n, Ext))
}

// Replay hands every record of the existing segments to fn, in order.
func (l *Log) Replay(fn func(payload []byte) error) (records int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.replayed {
		return 0, errors.New("store: the log was already replayed")
	}
	for i, n := range l.segments {
		got, err := l.replaySegment(n, l.emptyAfter(i), fn)
		records += got
		if err != nil {
			return records, err
		}
	}
	l.replayed = true
	return records, nil
}

// emptyAfter reports whether no segment after the i-th holds a byte other
// than zero: a segment zeroed ahead, or created, just before a crash holds
// nothing, so the one before it is still the end of the log.
func (l *Log) emptyAfter(i int) bool {
	for _, n := range l.segments[i+1:] {
		if !l.allZero(n) {
			return false
		}
	}
	return true
}

// allZero reports whether segment n holds only zeros; it reads no more
// than the first header of a segment that holds a record.
func (l *Log) allZero(n uint64) bool {
	f, err := l.fs.Open(l.path(n))
	if err != nil {
		return false
	}
	defer f.Close()
	var head [HeaderSize]byte
	if k, err := f.ReadAt(head[:], 0); k > 0 && !allZero(head[:k]) || err != nil && err != io.EOF {
		return false
	}
	data, err := io.ReadAll(f)
	return err == nil && allZero(data)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// replaySegment hands segment n's records to fn. last is set when no later
// segment holds anything: only there may the records end in a torn one.
func (l *Log) replaySegment(n uint64, last bool, fn func([]byte) error) (int, error) {
	f, err := l.fs.Open(l.path(n))
	if err != nil {
		return 0, fmt.Errorf("store: open log segment %d: %w", n, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, fmt.Errorf("store: read log segment %d: %w", n, err)
	}
	records := 0
	for off := 0; off < len(data); {
		bad := ""
		var payload []byte
		switch {
		case len(data)-off < HeaderSize:
			if allZero(data[off:]) {
				return records, nil // the end of a zeroed segment's room
			}
			bad = "truncated header"
		default:
			size := int(binary.LittleEndian.Uint32(data[off:]))
			sum := binary.LittleEndian.Uint32(data[off+4:])
			switch {
			case size == 0 && sum == 0:
				// No record is empty, so this is where the records end
				// in a segment zeroed ahead, if zeros are all that
				// follow. Anything else after a zero header was written
				// past an append that never reached the disk.
				if allZero(data[off:]) {
					return records, nil
				}
				bad = "a zeroed header before written bytes"
			case size == 0:
				bad = "an empty record"
			case size > maxLogRecord || size > len(data)-off-HeaderSize:
				bad = "truncated record"
			default:
				payload = data[off+HeaderSize : off+HeaderSize+size]
				if crc32.Checksum(payload, crcTable) != sum {
					bad = "checksum mismatch"
				}
			}
		}
		if bad != "" {
			if last {
				l.log.Warn("log ends in a torn record (a crash or failed write during an unacknowledged append); replay stops there and cuts it off",
					zap.Uint64("segment", n), zap.Int("offset", off), zap.String("problem", bad))
				return records, l.cutTornTail(n, data[:off])
			}
			return records, fmt.Errorf("%w: log segment %d at offset %d: %s (not the last segment, so this is not a torn write)", ErrCorrupt, n, off, bad)
		}
		if err := fn(payload); err != nil {
			return records, err
		}
		records++
		off += HeaderSize + len(payload)
	}
	return records, nil
}

// cutTornTail makes segment n hold only good, its records before a torn
// tail: it writes them to a temporary file, fsyncs it and renames it over
// the segment. A crash before the rename leaves the segment as it was (and
// the temporary file, removed by the next open).
func (l *Log) cutTornTail(n uint64, good []byte) error {
	path := l.path(n)
	tmp := path + TmpExt
	f, err := l.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("store: cut the torn tail of log segment %d: create %q: %w", n, tmp, err)
	}
	_, err = f.Write(good)
	if err == nil {
		err = f.SyncData()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, path)
	}
	if err == nil {
		err = l.syncDir()
	}
	if err != nil {
		return fmt.Errorf("store: cut the torn tail of log segment %d: %w", n, err)
	}
	return nil
}

// nextNumLocked is the number of the next segment.
func (l *Log) nextNumLocked() uint64 {
	if len(l.segments) == 0 {
		return 1
	}
	return l.segments[len(l.segments)-1] + 1
}

// openNextLocked starts the first segment of this run after every
// existing one.
func (l *Log) openNextLocked() error {
	n := l.nextNumLocked()
	f, room, err := l.create(n, min(l.writeAhead, MinWriteAhead))
	if err != nil {
		return err
	}
	l.segments = append(l.segments, n)
	l.f, l.size, l.room, l.unsynced = f, 0, room, false
	return nil
}

// create makes segment n, zeroed for size bytes (see doc.go), and makes
// its directory entry durable. It returns the room zeroed: 0 if size is 0
// or zeroing failed, which costs speed but nothing else, so it is only
// logged (a full disk fails the appends themselves).
func (l *Log) create(n uint64, size int64) (vfs.File, int64, error) {
	path := l.path(n)
	if size > 0 {
		f, err := l.fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
		if err == nil {
			if err = zero(f, size); err == nil {
				if err = l.syncDir(); err == nil {
					return f, size, nil
				}
			}
			f.Close()
		}
		l.log.Warn("log segment not zeroed ahead; appends to it will be slower to fsync",
			zap.Uint64("segment", n), zap.Int64("bytes", size), zap.Error(err))
	}
	// Create truncates whatever the zeroing left.
	f, err := l.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, 0, fmt.Errorf("store: create log segment: %w", err)
	}
	if err := l.syncDir(); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, 0, nil
}

// zero writes size zero bytes at the start of f (without moving the offset
// that Write appends at) and fsyncs them.
func zero(f vfs.File, size int64) error {
	for off := int64(0); off < size; off += zeroChunk {
		if _, err := f.WriteAt(zeros[:min(zeroChunk, size-off)], off); err != nil {
			return err
		}
	}
	return f.SyncData()
}

// roundUp rounds n up to a multiple of MinWriteAhead.
func roundUp(n int64) int64 {
	return (n + MinWriteAhead - 1) / MinWriteAhead * MinWriteAhead
}

// startSpareLocked begins zeroing the next segment in the background, of
// twice the current segment's room (at most writeAhead).
func (l *Log) startSpareLocked() {
	sp := &spareSegment{
		done: make(chan struct{}),
		num:  l.nextNumLocked(),
		size: min(max(2*l.room, MinWriteAhead), l.writeAhead),
	}
	l.spare = sp
	go func() {
		defer close(sp.done)
		sp.f, sp.size, sp.err = l.create(sp.num, sp.size)
	}()
}

// switchLocked makes f, numbered n and zeroed for room bytes, the segment
// appended to. The segment before it is fsynced first, so that no record
// of a later segment can reach the disk without every earlier one.
func (l *Log) switchLocked(n uint64, f vfs.File, room int64) error {
	if l.f != nil {
		if err := l.syncLocked(); err != nil {
			return err
		}
		if err := l.f.Close(); err != nil {
			return fmt.Errorf("store: close log segment: %w", err)
		}
	}
	l.segments = append(l.segments, n)
	l.f, l.size, l.room, l.unsynced = f, 0, room, false
	return nil
}

func (l *Log) syncDir() error {
	d, err := l.fs.OpenDir(l.dir)
	if err != nil {
		return fmt.Errorf("store: open log directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync log directory: %w", err)
	}
	return nil
}

// Append writes one record, and fsyncs it when sync is set.
func (l *Log) Append(payload []byte, sync bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case l.broken != nil:
		return l.broken
	case !l.replayed:
		return errors.New("store: ReplayLog must run before the log is appended to")
	case len(payload) > maxLogRecord:
		return fmt.Errorf("store: log record of %d bytes is over the limit of %d", len(payload), maxLogRecord)
	case len(payload) == 0:
		// A zero header marks where a zeroed segment's records end.
		return errors.New("store: empty log record")
	}
	if l.f == nil {
		if err := l.openNextLocked(); err != nil {
			return err
		}
	}
	if err := l.writeAheadLocked(int64(HeaderSize + len(payload))); err != nil {
		return err
	}
	// One write per record: header and payload together.
	buf := l.buf[:0]
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(payload)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(payload, crcTable))
	buf = append(buf, payload...)
	if cap(buf) <= 1<<20 {
		l.buf = buf
	}
	if _, err := l.f.Write(buf); err != nil {
		// Part of the record may be in the file: nothing may follow it.
		l.broken = fmt.Errorf("store: append to log segment %s: %w", l.currentNameLocked(), err)
		return l.broken
	}
	l.size += int64(HeaderSize + len(payload))
	l.bytes += int64(HeaderSize + len(payload))
	l.unsynced = true
	if sync {
		return l.syncLocked()
	}
	return nil
}

// writeAheadLocked keeps appends within zeroed room when it can: once a
// segment is half full it has the next one zeroed, and a record that
// would not fit goes to that one if it is ready (else past the room).
func (l *Log) writeAheadLocked(n int64) error {
	if l.writeAhead == 0 || l.rotating {
		return nil
	}
	if sp := l.spare; sp != nil && l.size+n > l.room {
		select {
		case <-sp.done:
		default:
			return nil
		}
		l.spare = nil
		if sp.err != nil {
			// Nothing was made; the next rotation makes the segment.
			l.log.Warn("could not make the next log segment ahead", zap.Error(sp.err))
			return nil
		}
		if err := l.switchLocked(sp.num, sp.f, sp.size); err != nil {
			sp.f.Close()
			l.broken = err
			return err
		}
		return nil
	}
	if l.spare == nil && l.size+n > l.room/2 {
		l.startSpareLocked()
	}
	return nil
}

func (l *Log) syncLocked() error {
	if l.broken != nil {
		return l.broken
	}
	if l.f == nil || !l.unsynced {
		return nil
	}
	if err := l.f.SyncData(); err != nil {
		l.broken = fmt.Errorf("store: fsync log segment %s: %w", l.currentNameLocked(), err)
		return l.broken
	}
	l.unsynced = false
	return nil
}

// currentNameLocked is the file name of the segment being appended to.
func (l *Log) currentNameLocked() string {
	if len(l.segments) == 0 {
		return "(none)"
	}
	return l.fs.PathBase(l.path(l.segments[len(l.segments)-1]))
}

func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.syncLocked()
}

// Rotate switches appends to a new segment and returns a cut: every record
// appended before the call lives in a segment below it. The new segment is
// made (zeroed ahead, and its directory entry synced) before the lock is
// taken, so that the committer's next append does not wait for it; under
// the lock the old segment is only fsynced when it holds unsynced appends,
// and closed. Rotate is called by one goroutine at a time (checkpoints are
// serialised).
func (l *Log) Rotate() (cut uint64, err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.broken != nil {
		l.mu.Unlock()
		return 0, l.broken
	}
	if !l.replayed {
		l.mu.Unlock()
		return 0, errors.New("store: ReplayLog must run before the log is rotated")
	}
	// The spare, if one is being zeroed, becomes the new segment: it has
	// the next number. Until the switch no other spare may take it.
	sp := l.spare
	l.spare = nil
	l.rotating = true
	next := l.nextNumLocked()
	// A segment zeroed for about twice what the last one took.
	var size int64
	if l.writeAhead > 0 {
		size = min(max(roundUp(2*l.bytes), MinWriteAhead), l.writeAhead)
	}
	l.mu.Unlock()

	var f vfs.File
	var room int64
	if sp != nil {
		<-sp.done
		if sp.err == nil {
			f, room = sp.f, sp.size
		}
	}
	if f == nil {
		f, room, err = l.create(next, size)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.rotating = false
	if err != nil {
		return 0, err
	}
	if l.closed {
		f.Close()
		return 0, ErrClosed
	}
	if err := l.switchLocked(next, f, room); err != nil {
		f.Close()
		return 0, err
	}
	l.bytes = 0
	return next, nil
}

// DropBefore removes the segments numbered below cut; the caller has made
// their records durable elsewhere.
func (l *Log) DropBefore(cut uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	keep := l.segments[:0]
	for _, n := range l.segments {
		if n < cut && (l.f == nil || n != l.segments[len(l.segments)-1]) {
			if err := l.fs.Remove(l.path(n)); err != nil && !errors.Is(err, iofs.ErrNotExist) && !os.IsNotExist(err) {
				errs = append(errs, fmt.Errorf("store: remove log segment %d: %w", n, err))
				keep = append(keep, n)
			}
			continue
		}
		keep = append(keep, n)
	}
	l.segments = keep
	return errors.Join(errs...)
}

// size reports the bytes appended since the last rotation.
func (l *Log) PendingBytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}

func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if sp := l.spare; sp != nil {
		// A segment zeroed ahead and never used holds nothing: let it go.
		l.spare = nil
		<-sp.done
		if sp.err == nil {
			sp.f.Close()
			_ = l.fs.Remove(l.path(sp.num))
		}
	}
	if l.f == nil {
		return nil
	}
	var err error
	if l.broken == nil { // never fsync again after a failure
		err = l.syncLocked()
	}
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store: close log segment: %w", cerr)
	}
	l.f = nil
	return err
}
