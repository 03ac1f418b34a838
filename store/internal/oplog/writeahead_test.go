package oplog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"
)

func openLog(t *testing.T, fs vfs.FS, writeAhead int64) *Log {
	t.Helper()
	l, err := Open(fs, "db", zaptest.NewLogger(t), writeAhead)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func replayed(t *testing.T, l *Log) ([]string, error) {
	t.Helper()
	var got []string
	_, err := l.Replay(func(p []byte) error { got = append(got, string(p)); return nil })
	return got, err
}

func fileSize(t *testing.T, fs vfs.FS, l *Log, n uint64) int64 {
	t.Helper()
	st, err := fs.Stat(l.path(n))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// record is payload i: 10 KiB, so that segments fill within a test.
func record(i int) []byte {
	return append([]byte(fmt.Sprintf("r%05d", i)), bytes.Repeat([]byte{'x'}, 10<<10)...)
}

// TestWriteAheadKeepsAppendsInZeroedRoom: appends overwrite zeros and never
// grow a segment while the next one is ready in time; each segment is
// zeroed for twice the one before (up to the limit); replay returns every
// record once, in order.
func TestWriteAheadKeepsAppendsInZeroedRoom(t *testing.T) {
	fs := vfs.NewMem()
	l := openLog(t, fs, 1<<20)
	if _, err := replayed(t, l); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		if err := l.Append(record(i), true); err != nil {
			t.Fatal(err)
		}
		if sp := l.spare; sp != nil {
			<-sp.done // the next segment is ready before this one fills
		}
	}
	var rooms []int64
	for _, seg := range l.segments {
		rooms = append(rooms, fileSize(t, fs, l, seg))
	}
	want := []int64{256 << 10, 512 << 10, 1 << 20}
	if len(rooms) < 4 {
		t.Fatalf("segments of %v bytes after %d records of 10 KiB, want more than 3", rooms, n)
	}
	for i, got := range rooms[:len(rooms)-1] {
		w := want[min(i, len(want)-1)]
		if got != w {
			t.Fatalf("segment %d holds %d bytes (all segments: %v), want its zeroed room %d: an append grew it", i+1, got, rooms, w)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.List(fs.PathJoin("db", Dir))
	if len(names) != len(rooms) {
		t.Fatalf("after Close the log directory holds %v, want the %d segments without the unused spare", names, len(rooms))
	}

	l = openLog(t, fs, 1<<20)
	got, err := replayed(t, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("replayed %d records, want %d", len(got), n)
	}
	for i, p := range got {
		if p != string(record(i)) {
			t.Fatalf("record %d is %.6q, want %.6q", i, p, record(i))
		}
	}
	l.Close()
}

// TestRotateTakesTheSpare: a rotation while the next segment is zeroed
// makes that segment the new one; no number is skipped or used twice.
func TestRotateTakesTheSpare(t *testing.T) {
	fs := vfs.NewMem()
	l := openLog(t, fs, 1<<20)
	replayed(t, l)
	for i := 0; l.spare == nil; i++ {
		if err := l.Append(record(i), false); err != nil {
			t.Fatal(err)
		}
	}
	spare := l.spare.num
	cut, err := l.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if cut != spare || cut != 2 {
		t.Fatalf("cut %d, spare %d; want both 2", cut, spare)
	}
	if l.room != 512<<10 {
		t.Fatalf("the new segment's room is %d, want the spare's 512 KiB", l.room)
	}
	if err := l.Append([]byte("after"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	// The last segment took 8 bytes and a record: the next one is zeroed
	// for the least room.
	if l.room != MinWriteAhead {
		t.Fatalf("room after a quiet segment = %d, want %d", l.room, MinWriteAhead)
	}
	l.Close()
}

func TestEmptyRecordIsRefused(t *testing.T) {
	l := openLog(t, vfs.NewMem(), 1<<20)
	defer l.Close()
	replayed(t, l)
	if err := l.Append(nil, true); err == nil {
		t.Fatal("an empty record was appended: its header would read as the end of a zeroed segment")
	}
}

// TestReplayOfZeroedSegments: what a crash can leave in segments zeroed
// ahead. Zeros after the records end them; written bytes after a zeroed
// stretch are a torn tail in the last segment (an append that never
// reached the disk, written out of order) and corruption elsewhere; a
// segment that holds only zeros holds nothing, so the one before it is
// still the last.
func TestReplayOfZeroedSegments(t *testing.T) {
	setup := func(t *testing.T) (vfs.FS, *Log) {
		fs := vfs.NewMem()
		l := openLog(t, fs, 1<<20)
		replayed(t, l)
		for _, r := range []string{"one", "two"} {
			if err := l.Append([]byte(r), true); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.Rotate(); err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{"three", "four"} {
			if err := l.Append([]byte(r), true); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		return fs, l
	}
	// holeBeforeLast zeroes a segment's last record but leaves one byte of
	// its payload: written bytes after a zeroed header.
	holeBeforeLast := func(d []byte, last string) []byte {
		i := bytes.LastIndex(d, []byte(last))
		clear(d[i-HeaderSize : i+len(last)-1])
		return d
	}
	rewrite := func(t *testing.T, fs vfs.FS, l *Log, n uint64, f func([]byte) []byte) {
		r, err := fs.Open(l.path(n))
		if err != nil {
			t.Fatal(err)
		}
		d, _ := io.ReadAll(r)
		r.Close()
		w, _ := fs.Create(l.path(n), vfs.WriteCategoryUnspecified)
		w.Write(f(d))
		w.Close()
	}

	t.Run("whole", func(t *testing.T) {
		fs, _ := setup(t)
		got, err := replayed(t, openLog(t, fs, 1<<20))
		if err != nil || fmt.Sprint(got) != "[one two three four]" {
			t.Fatalf("replay = %v, %v", got, err)
		}
	})
	t.Run("hole in the last segment", func(t *testing.T) {
		fs, l := setup(t)
		rewrite(t, fs, l, 2, func(d []byte) []byte { return holeBeforeLast(d, "four") })
		got, err := replayed(t, openLog(t, fs, 1<<20))
		if err != nil || fmt.Sprint(got) != "[one two three]" {
			t.Fatalf("replay = %v, %v; want [one two three] and no error", got, err)
		}
		// The cut leaves no written byte behind the records.
		got, err = replayed(t, openLog(t, fs, 1<<20))
		if err != nil || fmt.Sprint(got) != "[one two three]" {
			t.Fatalf("replay after the cut = %v, %v", got, err)
		}
	})
	t.Run("hole in an earlier segment", func(t *testing.T) {
		fs, l := setup(t)
		rewrite(t, fs, l, 1, func(d []byte) []byte { return holeBeforeLast(d, "two") })
		_, err := replayed(t, openLog(t, fs, 1<<20))
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("replay = %v, want ErrCorrupt", err)
		}
	})
	t.Run("torn tail before a segment of zeros", func(t *testing.T) {
		fs, l := setup(t)
		rewrite(t, fs, l, 2, func(d []byte) []byte { return holeBeforeLast(d, "four") })
		z, _ := fs.Create(l.path(3), vfs.WriteCategoryUnspecified)
		z.Write(make([]byte, MinWriteAhead))
		z.Close()
		got, err := replayed(t, openLog(t, fs, 1<<20))
		if err != nil || fmt.Sprint(got) != "[one two three]" {
			t.Fatalf("replay = %v, %v; want [one two three] and no error", got, err)
		}
	})
}

// TestSegmentFullToWithinAHeader: records that leave fewer zero bytes than
// a header at the end of a segment's room, the next record going to the
// next segment; the earlier segment then ends in those few zeros, which
// replay must read as its end, not as a truncated record (in a segment
// that is not the last, that would be corruption).
func TestSegmentFullToWithinAHeader(t *testing.T) {
	fs := vfs.NewMem()
	l := openLog(t, fs, 1<<20)
	replayed(t, l)
	// 4 records of 65,535 bytes with their headers fill 256 KiB but 4.
	payload := bytes.Repeat([]byte{'y'}, 65535-HeaderSize)
	for range 6 {
		if err := l.Append(payload, true); err != nil {
			t.Fatal(err)
		}
		if sp := l.spare; sp != nil {
			<-sp.done
		}
	}
	if len(l.segments) != 2 || fileSize(t, fs, l, 1) != MinWriteAhead {
		t.Fatalf("segments %v, the first of %d bytes; want 2, the first of %d", l.segments, fileSize(t, fs, l, 1), MinWriteAhead)
	}
	l.Close()
	got, err := replayed(t, openLog(t, fs, 1<<20))
	if err != nil || len(got) != 6 {
		t.Fatalf("replay: %d records, %v; want 6 and no error", len(got), err)
	}
}
