package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/countmesh/countmesh/crdt"
)

// BenchmarkCommitter measures a sync increment through the group committer
// with many parallel writers: ns/op is the throughput cost of one
// acknowledged increment, not its latency. "mem" runs on vfs.NewMem (no real
// fsync), "disk" on the OS file system in a temporary directory, where
// fsync latency dominates and group commit matters.
//
//	go test -run '^$' -bench Committer -benchtime 2s ./store/
func BenchmarkCommitter(b *testing.B) {
	for _, where := range []string{"mem", "disk"} {
		for _, par := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/writers=%dxGOMAXPROCS", where, par), func(b *testing.B) {
				fs, dir := vfs.FS(vfs.NewMem()), "db"
				if where == "disk" {
					fs, dir = vfs.Default, b.TempDir()
				}
				s := openTest(b, fs, dir)
				src := newMapSource()
				c := newTestCommitter(b, s, src, defaultMaxDelay)
				ctx := context.Background()
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
					for pb.Next() {
						src.incr(nodeA, fmt.Sprint("k", rng.IntN(10_000)), 1)
						if err := c.Ticket(true).Wait(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				st := c.Stats()
				if st.Commits > 0 {
					b.ReportMetric(float64(st.Tickets)/float64(st.Commits), "tickets/commit")
					b.ReportMetric(float64(st.Changes)/float64(st.Commits), "writes/commit")
				}
				if st.Fsyncs > 0 {
					b.ReportMetric(float64(st.FsyncTime/time.Microsecond)/float64(st.Fsyncs), "µs/fsync")
				}
			})
		}
	}
}

func benchCounters() map[string]crdt.Counter {
	one := crdt.Counter{Slots: []crdt.Slot{{Node: crdt.NodeIDFromName("countd-1"), P: 12345}}}
	three := one.Clone()
	three.Add(crdt.NodeIDFromName("countd-2"), 999)
	three.Add(crdt.NodeIDFromName("countd-3"), -17)
	reset := three.Clone()
	reset.SetReset(crdt.NodeIDFromName("countd-2"), 0, false)
	return map[string]crdt.Counter{"1slot": one, "3slots": three, "3slots+reset": reset}
}

// BenchmarkEncodeCounter measures the encoding PutCounter does on the
// commit path (a reused encoder, as in a Batch).
func BenchmarkEncodeCounter(b *testing.B) {
	for name, c := range benchCounters() {
		b.Run(name, func(b *testing.B) {
			e := newCounterEncoder()
			b.ReportAllocs()
			var n int
			for b.Loop() {
				n = len(e.encode(c))
			}
			b.ReportMetric(float64(n), "bytes")
		})
	}
}

func BenchmarkDecodeCounter(b *testing.B) {
	for name, c := range benchCounters() {
		b.Run(name, func(b *testing.B) {
			data := EncodeCounter(nil, c)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeCounter(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPutCounter is the whole per-counter cost in a batch: key,
// encoding, and the copy into the Pebble batch.
func BenchmarkPutCounter(b *testing.B) {
	s := openTest(b, vfs.NewMem(), "db")
	c := benchCounters()["1slot"]
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("page/%08d", i)
	}
	b.ReportAllocs()
	batch := s.NewBatch()
	i := 0
	for b.Loop() {
		batch.PutCounter("pageviews", keys[i%len(keys)], c)
		if i++; i%1000 == 0 {
			batch.Close()
			batch = s.NewBatch()
		}
	}
	batch.Close()
}
