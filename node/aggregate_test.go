package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestLargeAggregateOverHundredThousandCounters writes 100,000 counters with
// labels and checks aggregates by prefix and by label against sums kept by
// the test.
func TestLargeAggregateOverHundredThousandCounters(t *testing.T) {
	cfg := testConfig(t, vfs.NewMem())
	cfg.Logger = nil
	n := openTest(t, cfg)
	ctx := context.Background()
	if _, err := n.PutNamespace(ctx, "ev", NamespacePatch{Durability: ptr(DurabilityAsync)}); err != nil {
		t.Fatal(err)
	}
	const nkeys = 100_000
	countries := []string{"us", "de", "fr", "jp", "br"}
	prefixes := []string{"signup/", "login/", "buy/"}
	type write struct {
		key     string
		by      int64
		country string // "" writes without labels
	}
	rng := rand.New(rand.NewPCG(9, 9))
	var writes []write
	for i := range nkeys {
		key := fmt.Sprintf("%s%06d", prefixes[i%len(prefixes)], i)
		writes = append(writes, write{key, rng.Int64N(200) - 50, countries[rng.IntN(len(countries))]})
		switch rng.IntN(5) {
		case 0: // a second series of the key
			writes = append(writes, write{key, rng.Int64N(100), countries[rng.IntN(len(countries))]})
		case 1: // and some counting without labels
			writes = append(writes, write{key, rng.Int64N(100), ""})
		}
	}
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(writes); i += workers {
				wr := writes[i]
				var labels map[string]string
				if wr.country != "" {
					labels = map[string]string{"country": wr.country, "device": "web"}
				}
				if _, err := n.Incr(ctx, "ev", wr.key, wr.by, WriteOptions{Labels: labels}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// The reference.
	total := map[string]int64{}
	byCountry := map[string]map[string]int64{}
	for _, wr := range writes {
		total[wr.key] += wr.by
		if wr.country != "" {
			if byCountry[wr.country] == nil {
				byCountry[wr.country] = map[string]int64{}
			}
			byCountry[wr.country][wr.key] += wr.by
		}
	}
	stats := func(vals map[string]int64, prefix string) Stats {
		var s Stats
		for k, v := range vals {
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			if s.Count == 0 || v < s.Min {
				s.Min = v
			}
			if s.Count == 0 || v > s.Max {
				s.Max = v
			}
			s.Count++
			s.Sum += v
		}
		if s.Count > 0 {
			s.Avg = float64(s.Sum) / float64(s.Count)
		}
		return s
	}
	for _, prefix := range []string{"", "login/", "buy/00"} {
		res, err := n.Aggregate(ctx, "ev", prefix, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if want := stats(total, prefix); res.Stats != want {
			t.Fatalf("aggregate prefix %q = %+v, want %+v", prefix, res.Stats, want)
		}
		if prefix == "" && res.Count != nkeys {
			t.Fatalf("count = %d, want %d", res.Count, nkeys)
		}
		grouped, err := n.Aggregate(ctx, "ev", prefix, "", "country")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range countries {
			if want := stats(byCountry[c], prefix); grouped.Groups[c] != want {
				t.Fatalf("prefix %q country %s = %+v, want %+v", prefix, c, grouped.Groups[c], want)
			}
		}
		if len(grouped.Groups) != len(countries) {
			t.Fatalf("groups %v, want one per country", grouped.Groups)
		}
	}
	// A label every series carries has one group.
	res, err := n.Aggregate(ctx, "ev", "buy/", "", "device")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Groups) != 1 || res.Groups["web"].Count == 0 {
		t.Fatalf("device groups = %v", res.Groups)
	}
}
