package oplog

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// FuzzReplaySegment: whatever bytes the last segment holds (a crash can
// leave any prefix of appends, zeros of the room ahead, bytes written out
// of order), replay never fails and never panics, hands over exactly the
// longest run of whole records from the start (each with its checksum),
// and leaves the segment so that a second replay hands over the same.
func FuzzReplaySegment(f *testing.F) {
	rec := func(p string) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(p)))
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum([]byte(p), crcTable))
		return append(b, p...)
	}
	two := append(rec("one"), rec("two")...)
	f.Add(two)
	f.Add(append(append([]byte(nil), two...), make([]byte, 64)...))
	f.Add(append(append(append([]byte(nil), two...), make([]byte, 16)...), 7))
	f.Add(two[:len(two)-1])
	f.Add(make([]byte, 8))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want []string
		end := 0
		for off := 0; off+HeaderSize <= len(data); {
			size := int(binary.LittleEndian.Uint32(data[off:]))
			if size == 0 || size > len(data)-off-HeaderSize {
				break
			}
			p := data[off+HeaderSize : off+HeaderSize+size]
			if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(data[off+4:]) {
				break
			}
			want = append(want, string(p))
			off += HeaderSize + size
			end = off
		}
		// What the segment holds after the replay: as it was when its
		// records end at its end or in zeros, else cut after them.
		after := data
		if !allZero(data[end:]) {
			after = data[:end]
		}
		fs := vfs.NewMem()
		l, err := Open(fs, "db", zap.NewNop(), 0)
		if err != nil {
			t.Fatal(err)
		}
		w, err := fs.Create(l.path(1), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		// A copy: under the race detector MemFS scribbles over what it
		// was given to write.
		w.Write(append([]byte(nil), data...))
		w.Close()
		l.segments = []uint64{1}
		for round := range 2 {
			var got []string
			if _, err := l.Replay(func(p []byte) error { got = append(got, string(p)); return nil }); err != nil {
				t.Fatalf("replay %d: %v", round, err)
			}
			if len(got) != len(want) {
				t.Fatalf("replay %d handed over %d records, want %d", round, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("replay %d: record %d = %q, want %q", round, i, got[i], want[i])
				}
			}
			r, err := fs.Open(l.path(1))
			if err != nil {
				t.Fatal(err)
			}
			held, _ := io.ReadAll(r)
			r.Close()
			if string(held) != string(after) {
				t.Fatalf("after replay %d the segment holds %d bytes, want %d", round, len(held), len(after))
			}
			if l, err = Open(fs, "db", zap.NewNop(), 0); err != nil {
				t.Fatal(err)
			}
		}
	})
}
