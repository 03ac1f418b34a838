package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap/zaptest"

	"github.com/countmesh/countmesh/crdt"

	"github.com/countmesh/countmesh/store/internal/oplog"
)

func openLogStore(t *testing.T, fs vfs.FS) *Store {
	t.Helper()
	return openLogStoreAhead(t, fs, 0)
}

// openLogStoreAhead opens a store whose log zeroes segments ahead for up
// to writeAhead bytes (0: the default, which is off in memory; negative:
// not at all).
func openLogStoreAhead(t *testing.T, fs vfs.FS, writeAhead int64) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = "db"
	cfg.FS = fs
	cfg.LogWriteAhead = writeAhead
	cfg.Logger = zaptest.NewLogger(t)
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func replayAll(t *testing.T, s *Store) []string {
	t.Helper()
	var got []string
	if _, err := s.ReplayLog(func(p []byte) error { got = append(got, string(p)); return nil }); err != nil {
		t.Fatalf("replay: %v", err)
	}
	return got
}

func appendLog(t *testing.T, s *Store, payload string, sync bool) {
	t.Helper()
	b := s.NewBatch()
	defer b.Close()
	b.AppendLog([]byte(payload))
	if err := b.Commit(sync); err != nil {
		t.Fatalf("append %q: %v", payload, err)
	}
}

func TestLogReplayRotateDrop(t *testing.T) {
	fs := vfs.NewMem()
	s := openLogStore(t, fs)
	if got := replayAll(t, s); len(got) != 0 {
		t.Fatalf("new store replays %v", got)
	}
	b := s.NewBatch()
	b.AppendLog([]byte("x"))
	b.Close()
	appendLog(t, s, "a", true)
	appendLog(t, s, "b", false)
	_, err := s.RotateLog()
	if err != nil {
		t.Fatal(err)
	}
	appendLog(t, s, "c", true)
	if s.LogBytes() != int64(oplog.HeaderSize+1) {
		t.Fatalf("LogBytes = %d after one record past the rotation", s.LogBytes())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openLogStore(t, fs)
	if got := fmt.Sprint(replayAll(t, s)); got != "[a b c]" {
		t.Fatalf("replay after reopen = %s, want [a b c]", got)
	}
	if _, err := s.ReplayLog(func([]byte) error { return nil }); err == nil {
		t.Fatal("a second replay was allowed")
	}
	cut, err := s.RotateLog()
	if err != nil {
		t.Fatal(err)
	}
	appendLog(t, s, "d", true)
	if err := s.DropLogBefore(cut); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openLogStore(t, fs)
	defer s.Close()
	if got := fmt.Sprint(replayAll(t, s)); got != "[d]" {
		t.Fatalf("replay after dropping = %s, want [d]", got)
	}
}

func TestLogRefusesAppendBeforeReplay(t *testing.T) {
	s := openLogStore(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	defer b.Close()
	b.AppendLog([]byte("early"))
	if err := b.Commit(true); err == nil {
		t.Fatal("append before ReplayLog succeeded: records of the previous run could be skipped")
	}
}

// writeAheadModes are the two forms of segment a test of the log's files
// runs over: zeroed ahead (the default on a disk) and grown by each append
// (the default on the in-memory file systems of tests).
var writeAheadModes = []struct {
	name  string
	bytes int64
}{{"zeroed", 16 << 20}, {"growing", -1}}

// recordsEnd is where the records in a segment's content end: the first
// zero header of a segment zeroed ahead, else the content's end.
func recordsEnd(d []byte) int {
	off := 0
	for off+oplog.HeaderSize <= len(d) {
		size := int(binary.LittleEndian.Uint32(d[off:]))
		if size == 0 {
			break
		}
		off += oplog.HeaderSize + size
	}
	return min(off, len(d))
}

// tear makes the last n bytes of a segment's last record what a crash in
// the middle of its write leaves: missing from a segment that grows, still
// zero in a segment zeroed ahead.
func tear(d []byte, n int) []byte {
	end := recordsEnd(d)
	if end == len(d) {
		return d[:end-n]
	}
	clear(d[end-n : end])
	return d
}

// rewriteSegment replaces a segment's content with f(content).
func rewriteSegment(t *testing.T, fs vfs.FS, n uint64, f func([]byte) []byte) {
	t.Helper()
	path := fs.PathJoin("db", oplog.Dir, fmt.Sprintf("%020d%s", n, oplog.Ext))
	r, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(r)
	r.Close()
	w, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(f(data))
	w.Close()
}

func TestLogTornTailAndCorruption(t *testing.T) {
	for _, mode := range writeAheadModes {
		t.Run(mode.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := openLogStoreAhead(t, fs, mode.bytes)
			replayAll(t, s)
			appendLog(t, s, "one", true)
			s.RotateLog()
			appendLog(t, s, "two", true)
			appendLog(t, s, "three", true)
			s.Close()

			// A torn last record in the last segment ends the replay quietly.
			rewriteSegment(t, fs, 2, func(d []byte) []byte { return tear(d, 2) })
			s = openLogStoreAhead(t, fs, mode.bytes)
			if got := fmt.Sprint(replayAll(t, s)); got != "[one two]" {
				t.Fatalf("replay with a torn tail = %s, want [one two]", got)
			}
			s.Close()

			// A bad checksum in an earlier segment is corruption.
			rewriteSegment(t, fs, 1, func(d []byte) []byte { d[recordsEnd(d)-1] ^= 0xff; return d })
			s = openLogStoreAhead(t, fs, mode.bytes)
			defer s.Close()
			_, err := s.ReplayLog(func([]byte) error { return nil })
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("replay over a corrupt middle segment: %v, want ErrCorrupt", err)
			}
		})
	}
}

// Crash in the middle of synced appends and rotations: every acknowledged
// record is replayed, in order, and nothing is invented. Records of 8 KiB
// fill segments zeroed ahead, so that crashes also fall while the next
// segment is being zeroed and after appends switched to it.
func TestLogCrashKeepsAcknowledgedRecords(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 5
	}
	for _, mode := range writeAheadModes {
		for _, pad := range []int{0, 8 << 10} {
			t.Run(fmt.Sprintf("%s/pad=%d", mode.name, pad), func(t *testing.T) {
				testLogCrash(t, seeds, mode.bytes, strings.Repeat("x", pad))
			})
		}
	}
}

func testLogCrash(t *testing.T, seeds int, writeAhead int64, pad string) {
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 99))
			fs := vfs.NewCrashableMem()
			s := openLogStoreAhead(t, fs, writeAhead)
			replayAll(t, s)
			var mu sync.Mutex
			acked := -1
			crashAt := 20 + rng.IntN(200)
			crashed := make(chan *vfs.MemFS, 1)
			for i := 0; ; i++ {
				if i == crashAt {
					crashed <- fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(uint64(seed), 1))})
					break
				}
				b := s.NewBatch()
				b.AppendLog([]byte(fmt.Sprintf("r%05d%s", i, pad)))
				sync := rng.IntN(4) != 0
				if err := b.Commit(sync); err != nil {
					t.Fatal(err)
				}
				b.Close()
				if sync {
					mu.Lock()
					acked = i
					mu.Unlock()
				}
				if rng.IntN(25) == 0 {
					if _, err := s.RotateLog(); err != nil {
						t.Fatal(err)
					}
					mu.Lock()
					acked = i // rotation fsyncs everything before it
					mu.Unlock()
				}
			}
			clone := <-crashed
			s.Close()
			s2 := openLogStoreAhead(t, clone, writeAhead)
			defer s2.Close()
			got := replayAll(t, s2)
			for i, p := range got {
				if want := fmt.Sprintf("r%05d%s", i, pad); p != want {
					t.Fatalf("record %d = %.6q (%d bytes), want %.6q (%d bytes)", i, p, len(p), want, len(want))
				}
			}
			if len(got) < acked+1 {
				t.Fatalf("replayed %d records, but %d were acknowledged", len(got), acked+1)
			}
		})
	}
}

// TestLogEncoderLetsABurstsRoomGo: Reset keeps the body's room while
// records stay about as large, and lets it go after a record that used
// less than a sixteenth of it; records encode the same either way.
func TestLogEncoderLetsABurstsRoomGo(t *testing.T) {
	e := NewLogEncoder()
	c := crdt.Counter{Slots: []crdt.Slot{{Node: 1 << 30, P: 5}}}
	for i := range 20000 {
		e.Add("ns", fmt.Sprintf("k%06d", i), Record{Counter: c})
	}
	big := cap(e.body)
	if big <= logEncoderKeep {
		t.Fatalf("a burst of 20,000 counters grew the body to %d bytes, want more than %d", big, logEncoderKeep)
	}
	e.Reset()
	if cap(e.body) != big {
		t.Fatalf("Reset after a full record: room %d, want %d kept", cap(e.body), big)
	}
	e.Add("ns", "small", Record{Counter: c})
	want := e.Encode(nil)
	e.Reset()
	if cap(e.body) != 0 {
		t.Fatalf("Reset after a small record: room %d, want the burst's %d let go", cap(e.body), big)
	}
	e.Add("ns", "small", Record{Counter: c})
	if got := e.Encode(nil); string(got) != string(want) {
		t.Fatalf("record after the room went: %x, want %x", got, want)
	}
}

func TestLogRecordRoundTrip(t *testing.T) {
	e := NewLogEncoder()
	a := crdt.Counter{Slots: []crdt.Slot{{Node: 1, P: 5, N: 2}}}
	b := crdt.Counter{Slots: []crdt.Slot{{Node: 1, P: 1}, {Node: 9, P: 300, N: 4}}}
	b.SetReset(9, 7, true)
	seqs := []OriginSeq{{Origin: 1, Seq: 4}, {Origin: 9, Seq: 1 << 40}}
	e.Add("ns", "a", Record{Counter: a})
	e.Add("other", "key/with spaces", Record{Counter: b, UpdatedMs: 1700000000123, Seqs: seqs})
	if e.Len() != 2 {
		t.Fatalf("Len = %d", e.Len())
	}
	vv := []OriginSeq{{Origin: 1, Seq: 10}, {Origin: 9, Seq: 1 << 41}}
	payload := e.Encode(vv)
	var got []string
	gotVV, err := DecodeLog(payload, func(ns, key string, r Record) error {
		got = append(got, fmt.Sprintf("%s/%s=%d@%d%v", ns, key, r.Counter.Value(), r.UpdatedMs, r.Seqs))
		if key == "a" && !r.Counter.Equal(a) || key != "a" && !r.Counter.Equal(b) {
			t.Errorf("%s: decoded %+v", key, r.Counter)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[ns/a=3@0[] other/key/with spaces=7@1700000000123[{1 4} {9 1099511627776}]]"; fmt.Sprint(got) != want {
		t.Fatalf("decoded %v, want %s", got, want)
	}
	if fmt.Sprint(gotVV) != fmt.Sprint(vv) {
		t.Fatalf("version vector %v, want %v", gotVV, vv)
	}
	if _, err := DecodeLog(payload[:len(payload)-3], func(string, string, Record) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated record: %v, want ErrCorrupt", err)
	}
	e.Reset()
	if e.Len() != 0 {
		t.Fatal("Reset left data")
	}
}

func TestIndexScan(t *testing.T) {
	s := openLogStore(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	b.PutIndex(7, 1, "ns", "a")
	b.PutIndex(7, 2, "ns", "b/c")
	b.PutIndex(7, 300, "x", "a")
	b.PutIndex(8, 2, "ns", "other origin")
	b.DeleteIndex(7, 2)
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	var got []string
	if err := s.ScanIndex(7, 0, func(seq uint64, ns, key string) bool {
		got = append(got, fmt.Sprintf("%d:%s/%s", seq, ns, key))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1:ns/a 300:x/a]" {
		t.Fatalf("scan from 0: %v", got)
	}
	got = nil
	s.ScanIndex(7, 1, func(seq uint64, ns, key string) bool { got = append(got, fmt.Sprint(seq)); return true })
	if fmt.Sprint(got) != "[300]" {
		t.Fatalf("scan after 1: %v", got)
	}
}

// logEntry is one decoded counter of a log record.
type logEntry struct {
	NS, Key string
	R       Record
}

func decodeLogEntries(payload []byte) ([]OriginSeq, []logEntry, error) {
	var got []logEntry
	vv, err := DecodeLog(payload, func(ns, key string, r Record) error {
		got = append(got, logEntry{ns, key, r})
		return nil
	})
	return vv, got, err
}

// FuzzDecodeLog: DecodeLog never panics, every error it returns wraps
// ErrCorrupt, and whatever it accepts encodes back to a record that decodes
// to the same counters and version vector.
func FuzzDecodeLog(f *testing.F) {
	e := NewLogEncoder()
	f.Add(e.Encode(nil))
	for k, c := range sampleCounters() {
		e.Add("ns", k, Record{Counter: c, UpdatedMs: 1700000000123, Seqs: []OriginSeq{{Origin: 3, Seq: 9}}})
	}
	f.Add(e.Encode([]OriginSeq{{Origin: 1, Seq: 2}, {Origin: 3, Seq: 1 << 40}}))
	f.Add([]byte{0x92, 0x02, 0x90})
	f.Add([]byte{0x93, 0x02, 0x90, 0xc0, 0xa1, 'n', 0xa1, 'k', 0x90})
	f.Fuzz(func(t *testing.T, data []byte) {
		vv, entries, err := decodeLogEntries(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		e := NewLogEncoder()
		for _, en := range entries {
			e.Add(en.NS, en.Key, en.R)
		}
		vv2, again, err := decodeLogEntries(e.Encode(vv))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if fmt.Sprint(vv2) != fmt.Sprint(vv) || len(again) != len(entries) {
			t.Fatalf("round trip: vv %v -> %v, %d -> %d entries", vv, vv2, len(entries), len(again))
		}
		for i := range entries {
			a, b := entries[i], again[i]
			if a.NS != b.NS || a.Key != b.Key || !a.R.Counter.Equal(b.R.Counter) ||
				a.R.UpdatedMs != b.R.UpdatedMs || fmt.Sprint(a.R.Seqs) != fmt.Sprint(b.R.Seqs) {
				t.Fatalf("entry %d: %+v -> %+v", i, a, b)
			}
		}
	})
}

// TestDecodeLogRefusesOversizedString: a string declared longer than the
// record is refused before msgpack reads (and the pooled decoder keeps) a
// buffer for it.
func TestDecodeLogRefusesOversizedString(t *testing.T) {
	head := NewLogEncoder().Encode(nil)
	for _, v := range [][]byte{
		{0xdb, 0x6f, 0x00, 0x24, 0xce, 'x'}, // str32 of 1.8 GB
		{0xc6, 0x6f, 0x00, 0x24, 0xce, 'x'}, // bin32
		{0xa1, 'n', 0xda, 0xff, 0xff, 'x'},  // a key of 64 KiB
	} {
		_, _, err := decodeLogEntries(append(append([]byte(nil), head...), v...))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "bytes with") {
			t.Errorf("% x: %v, want ErrCorrupt naming the declared length", v, err)
		}
	}
}
