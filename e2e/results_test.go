//go:build e2e

package e2e

import (
	"cmp"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// dist summarises a set of durations in milliseconds.
type dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// summarise uses nearest-rank percentiles: p99 of 100 measurements is the
// second largest.
func summarise(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return dist{N: len(s), Min: ms(s[0]), P50: ms(rank(0.50)), P90: ms(rank(0.90)), P99: ms(rank(0.99)),
		Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

func millis(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// writeResult writes v, with the machine and the command, to
// results/<name>.json (gitignored) for docs/benchmarks.md.
func writeResult(t *testing.T, name string, v any) {
	t.Helper()
	out := map[string]any{
		"test":    t.Name(),
		"when":    time.Now().UTC().Format(time.RFC3339),
		"command": "make e2e",
		"machine": map[string]any{"cpus": runtime.NumCPU(), "goos": runtime.GOOS, "goarch": runtime.GOARCH,
			"setup": "6 countd containers (3 regions x 2) and the test on one host"},
		"result": v,
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("results", 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join("results", name+".json")
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote e2e/%s", p)
}
