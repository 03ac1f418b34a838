package store_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/store"
)

// Open a store, write a counter and a namespace config in one atomic,
// synced batch, read them back.
func Example() {
	cfg := store.DefaultConfig()
	cfg.Dir = "data"
	cfg.FS = vfs.NewMem() // leave nil for the real file system
	s, err := store.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	self := crdt.NodeIDFromName("countd-1")
	var c crdt.Counter
	c.Add(self, 3)

	b := s.NewBatch()
	defer b.Close()
	b.PutCounter("pageviews", "home", c)
	b.PutCounter("pageviews", "about", c)
	if err := b.PutNamespace("pageviews", map[string]string{"type": "eventual"}); err != nil {
		log.Fatal(err)
	}
	if err := b.Commit(true); err != nil { // true: return after the WAL fsync
		log.Fatal(err)
	}

	got, found, err := s.GetCounter("pageviews", "home")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("home:", got.Value(), found)
	_ = s.ScanCounters("pageviews", "", "", func(key string, c crdt.Counter) bool {
		fmt.Println("listed:", key, c.Value())
		return true
	})
	var ns map[string]string
	if _, err := s.GetNamespace("pageviews", &ns); err != nil {
		log.Fatal(err)
	}
	fmt.Println("type:", ns["type"])
	// Output:
	// home: 3 true
	// listed: about 3
	// listed: home 3
	// type: eventual
}

// counters is a minimal Source: counters in memory under a mutex, with the
// keys changed since the last Fill.
type counters struct {
	mu    sync.Mutex
	vals  map[string]crdt.Counter
	dirty map[string]bool
}

func (cs *counters) incr(key string, by int64) int64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.vals[key]
	v, _ := c.Add(crdt.NodeIDFromName("countd-1"), by)
	cs.vals[key] = c
	cs.dirty[key] = true
	return v
}

func (cs *counters) Fill(b *store.Batch) (any, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for k := range cs.dirty {
		b.PutCounter("pageviews", k, cs.vals[k]) // encodes now: safe to keep mutating
	}
	clear(cs.dirty)
	return nil, nil
}

func (cs *counters) Committed(any, error) {}

// A writer applies its change in memory, then takes a ticket and waits for
// it: the group committer writes every change made since its last round in
// one batch, so concurrent writers share fsyncs.
func ExampleCommitter() {
	s, err := store.Open(store.Config{Dir: "data", FS: vfs.NewMem()})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	src := &counters{vals: map[string]crdt.Counter{}, dirty: map[string]bool{}}
	c, err := s.NewCommitter(store.DefaultCommitterConfig(), src)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // before s.Close: commits what is pending

	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			src.incr("home", 1)
			// sync=true: acknowledge only after the WAL fsync.
			if err := c.Ticket(true).Wait(context.Background()); err != nil {
				log.Print(err) // the node answers 503 and acknowledges nothing
			}
		})
	}
	wg.Wait()
	got, _, _ := s.GetCounter("pageviews", "home")
	fmt.Println(got.Value())
	// Output: 10
}
