package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkDecide measures single decisions on the real clock and reports
// their latency percentiles (p50-ns, p99-ns, max-ns):
//
//	owner: this node owns the limit (the node alone, or 1/n of the keys);
//	owner-100k-keys: the same over 100,000 keys (map lookups, cache misses);
//	lease: another node owns it; decided from the lease this node holds;
//	parallel: RunParallel over 10,000 keys owned here (latency under
//	contention on both cores).
//
// Run: go test -run '^$' -bench Decide -benchtime 2000000x ./ratelimit/
func BenchmarkDecide(b *testing.B) {
	realClock := func(c *Config) { c.Now = time.Now; c.MembersTTL = 100 * time.Millisecond }
	big := Request{NS: "api", Key: "user:1", Limit: MaxLimit, Window: time.Minute, Cost: 1}

	b.Run("owner", func(b *testing.B) {
		m := newMesh(b, time.Now(), realClock, "a")
		benchSerial(b, m.nodes["a"], func(int) Request { return big })
	})
	b.Run("owner-100k-keys", func(b *testing.B) {
		m := newMesh(b, time.Now(), realClock, "a")
		keys := make([]string, 100_000)
		for i := range keys {
			keys[i] = fmt.Sprintf("user:%d", i)
		}
		benchSerial(b, m.nodes["a"], func(i int) Request {
			r := big
			r.Key = keys[i%len(keys)]
			return r
		})
	})
	b.Run("lease", func(b *testing.B) {
		key := keyOwnedBy(b, "a", time.Minute, "a", "b")
		m := newMesh(b, time.Now(), realClock, "a", "b")
		m.net.latency = 0
		r := big
		r.Key = key
		benchSerial(b, m.nodes["b"], func(int) Request { return r })
		if s := m.nodes["b"].Stats(); s.Lease < int64(b.N) {
			b.Fatalf("%d of %d decisions from the lease", s.Lease, b.N)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		m := newMesh(b, time.Now(), realClock, "a")
		l := m.nodes["a"]
		keys := make([]string, 10_000)
		for i := range keys {
			keys[i] = fmt.Sprintf("user:%d", i)
		}
		var mu sync.Mutex
		var all []time.Duration
		var seq int
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			off := seq * 7919
			seq++
			mu.Unlock()
			lat := make([]time.Duration, 0, 1<<16)
			ctx := context.Background()
			r := big
			for i := off; pb.Next(); i++ {
				r.Key = keys[i%len(keys)]
				t0 := time.Now()
				if _, err := l.Decide(ctx, r); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
		b.StopTimer()
		reportPercentiles(b, all)
	})
}

func benchSerial(b *testing.B, l *Limiter, req func(int) Request) {
	ctx := context.Background()
	for i := range 1000 { // warm: lease in hand, keys created
		if _, err := l.Decide(ctx, req(i)); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := req(i)
		t0 := time.Now()
		d, err := l.Decide(ctx, r)
		lat[i] = time.Since(t0)
		if err != nil || !d.Allowed {
			b.Fatalf("%+v %v", d, err)
		}
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
}
