package store

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/crdt"
)

// shuffled is an Unsaved of n counters handed out in a random order, as the
// hot set's hash stripes hand them out. With update set each counter had an
// index entry of an earlier change, which the checkpoint deletes.
type shuffled struct {
	round  int
	n      int
	update bool
	order  []int
	keys   []string // by counter
	taken  bool
}

func (s *shuffled) Changed() (int64, int64) {
	if s.taken {
		return 0, 0
	}
	return int64(s.n), 0
}

func (s *shuffled) Collect(_ uint64, put func(ns, key string, r Record, indexed []OriginSeq)) {
	if s.taken {
		return
	}
	s.taken = true
	base := uint64(s.round) * uint64(s.n) * 2
	for _, i := range s.order {
		seq := base + uint64(i) + 1
		var indexed []OriginSeq
		if s.update {
			indexed = []OriginSeq{{Origin: 7, Seq: seq + uint64(s.n)}}
			seq += 2 * uint64(s.n)
		}
		put("counter", s.keys[i], Record{
			Counter: crdt.Counter{Slots: []crdt.Slot{{Node: 7, P: uint64(s.round + 1)}}},
			Seqs:    []OriginSeq{{Origin: 7, Seq: seq}},
		}, indexed)
	}
}

func (s *shuffled) Saved(uint64, error) {}

func (s *shuffled) VersionVector() []OriginSeq { return []OriginSeq{{Origin: 7, Seq: 1}} }

// BenchmarkCheckpoint measures one checkpoint of 300,000 counters handed
// out in a random order (the shape of a checkpoint after pipelined INCRs of
// random keys): new counters (a record and an index entry each) and
// updated ones (the old index entry deleted too). The batch is far larger
// than half a memtable (the default size), so Pebble sorts it on its own
// (newFlushableBatch). The file system is in memory: the numbers are CPU.
//
//	go test ./store/ -run '^$' -bench Checkpoint -benchtime 5x -count 3
func BenchmarkCheckpoint(b *testing.B) {
	for _, update := range []bool{false, true} {
		name := "new"
		if update {
			name = "updated"
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Dir = "db"
			cfg.FS = vfs.NewMem()
			cfg.CacheSize = 8 << 20
			s, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.ReplayLog(func([]byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
			const n = 300_000
			order := rand.New(rand.NewPCG(1, 2)).Perm(n)
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("%012d", i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				src := &shuffled{round: i, n: n, update: update, order: order, keys: keys}
				c := s.NewCheckpointer(CheckpointConfig{Interval: 1 << 62}, src)
				if err := c.Checkpoint(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/counter")
		})
	}
}
