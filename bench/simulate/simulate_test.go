package simulate

import (
	"context"
	"testing"
	"time"
)

// TestRunFullReplication: a small mesh under full replication delivers
// every probe to every node, and each node applies about every change of
// the mesh (its own and everyone else's): the flat line of the scale-out
// curves.
func TestRunFullReplication(t *testing.T) {
	cfg := Config{
		Nodes: 4, Regions: 2, Rate: 300, Keys: 1000, HotKeys: 10, HotShare: 0.5,
		Duration: 2 * time.Second, ProbeEvery: 100 * time.Millisecond, Settle: 10 * time.Second, Seed: 1,
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Nodes != 4 || res.Replicas != 0 {
		t.Errorf("result for %d nodes, %d replicas; want 4 and 0", res.Nodes, res.Replicas)
	}
	if res.Unconverged != 0 || res.Probes < 10 {
		t.Errorf("%d probes, %d of them unconverged; want at least 10, all converged", res.Probes, res.Unconverged)
	}
	if res.ConvergenceP50Ms <= 0 || res.ConvergenceP99Ms < res.ConvergenceP50Ms || res.ConvergenceP99Ms >= 10_000 {
		t.Errorf("convergence p50 %v ms, p99 %v ms", res.ConvergenceP50Ms, res.ConvergenceP99Ms)
	}
	// Every node applies every change once, give or take the changes that
	// a commit coalesced (two to one hot counter within 10 ms) and the
	// ticks a loaded machine skips.
	if lo, hi := 0.5*cfg.Rate, 1.2*cfg.Rate; res.AppliedPerNodePerS < lo || res.AppliedPerNodePerS > hi {
		t.Errorf("%.0f changes applied per node per second; want %.0f to %.0f under full replication", res.AppliedPerNodePerS, lo, hi)
	}
	if res.BytesPerNodePerS <= 0 {
		t.Errorf("%.0f bytes per node per second", res.BytesPerNodePerS)
	}
	// Every node holds every counter written: up to 10 hot, the cold ones
	// drawn, and one per probe.
	if res.CountersPerNode < float64(res.Probes) || res.CountersPerNode > float64(cfg.Keys+cfg.HotKeys+res.Probes) {
		t.Errorf("%.1f counters per node with %d probes", res.CountersPerNode, res.Probes)
	}
}

func TestConfigRefusals(t *testing.T) {
	ok := Config{Nodes: 3, Regions: 1, Rate: 1, Keys: 1, HotKeys: 1, Duration: time.Second, ProbeEvery: time.Second, Settle: time.Second}
	for name, bad := range map[string]func(*Config){
		"one node":        func(c *Config) { c.Nodes = 1 },
		"more regions":    func(c *Config) { c.Regions = 4 },
		"no rate":         func(c *Config) { c.Rate = 0 },
		"hot share":       func(c *Config) { c.HotShare = 1.5 },
		"no keys":         func(c *Config) { c.Keys = 0 },
		"no duration":     func(c *Config) { c.Duration = 0 },
		"negative copies": func(c *Config) { c.Replicas = -1 },
	} {
		c := ok
		bad(&c)
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
	}
}

// TestRunSharded: with one replica per region of three nodes, every probe
// reaches its owners, and a node applies about a third of the changes
// (the owner share) plus its own writes to counters it does not own:
// well under full replication's every change.
func TestRunSharded(t *testing.T) {
	cfg := Config{
		Nodes: 6, Regions: 2, Replicas: 1, Rate: 300, Keys: 1000, HotKeys: 10, HotShare: 0.5,
		Duration: 2 * time.Second, ProbeEvery: 100 * time.Millisecond, Settle: 10 * time.Second, Seed: 2,
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Unconverged != 0 || res.Probes < 10 {
		t.Errorf("%d probes, %d of them unconverged; want at least 10, all converged", res.Probes, res.Unconverged)
	}
	if want := 2.0 / 6; res.OwnerShare != want {
		t.Errorf("owner share %v, want %v (1 replica in each of 2 regions of 6 nodes)", res.OwnerShare, want)
	}
	// Owners apply a third of the changes; writers their own besides (a
	// sixth of the changes each, two thirds of them to counters they do
	// not own): about 0.44 of the changes made, against 1 unsharded.
	if lo, hi := 0.25*res.ChangesPerS, 0.6*res.ChangesPerS; res.AppliedPerNodePerS < lo || res.AppliedPerNodePerS > hi {
		t.Errorf("%.0f changes applied per node per second of %.0f made; want %.0f to %.0f with one replica per region of three",
			res.AppliedPerNodePerS, res.ChangesPerS, lo, hi)
	}
}
