package gossip

import (
	"errors"
	"fmt"
	"testing"

	"github.com/countmesh/countmesh/crdt"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Name = "n1"
	if err := ok.validate(); err != nil {
		t.Fatalf("default config with a name: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no name", func(c *Config) { c.Name = "" }},
		{"no region", func(c *Config) { c.Region = "" }},
		{"bad gossip addr", func(c *Config) { c.GossipAddr = "nope" }},
		{"probe timeout too long", func(c *Config) { c.Membership.ProbeTimeout = c.Membership.ProbeInterval }},
		{"zero flush", func(c *Config) { c.FlushInterval = 0 }},
		{"bad fan-out", func(c *Config) { c.FanOut = 7 }},
		{"tiny queue", func(c *Config) { c.MaxQueueBytes = 10 }},
		{"bad remote probability", func(c *Config) { c.AntiEntropyRemote = 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if got := ok.replBindAddr(); got != "127.0.0.1:7947" {
		t.Errorf("derived replication address = %q, want 127.0.0.1:7947", got)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := &Mesh{cfg: Config{Region: "eu", HTTPAddr: "10.0.0.1:7070"}}
	m.setMeta("10.0.0.1:7947", false)
	b := *m.meta.Load()
	if len(b) > 512 {
		t.Fatalf("meta is %d bytes, over memberlist's limit", len(b))
	}
	md, err := decodeMeta(b)
	if err != nil || md.Region != "eu" || md.HTTPAddr != "10.0.0.1:7070" || md.ReplAddr != "10.0.0.1:7947" {
		t.Fatalf("meta = %+v, %v", md, err)
	}
	if _, err := decodeMeta([]byte("garbage")); !errors.Is(err, ErrProtocol) {
		t.Fatalf("garbage meta: %v", err)
	}
}

func TestRendezvousBridge(t *testing.T) {
	members := []string{"b1", "b2", "b3", "b4"}
	counts := make(map[string]int)
	for i := 0; i < 400; i++ {
		origin := crdt.NodeIDFromName(fmt.Sprintf("origin-%d", i))
		br := Bridge(origin, members)
		// Order of candidates does not matter.
		if got := Bridge(origin, []string{"b4", "b3", "b2", "b1"}); got != br {
			t.Fatalf("bridge depends on order: %s vs %s", got, br)
		}
		// Removing a member that is not the bridge keeps the bridge.
		for _, gone := range members {
			if gone == br {
				continue
			}
			var rest []string
			for _, m := range members {
				if m != gone {
					rest = append(rest, m)
				}
			}
			if got := Bridge(origin, rest); got != br {
				t.Fatalf("origin %d: removing %s moved the bridge from %s to %s", i, gone, br, got)
			}
		}
		counts[br]++
	}
	for _, m := range members {
		if counts[m] < 60 {
			t.Errorf("member %s bridges %d of 400 origins; the load is skewed: %v", m, counts[m], counts)
		}
	}
	if Bridge(1, nil) != "" {
		t.Error("bridge of an empty region is not empty")
	}
}

func TestBuildRoutes(t *testing.T) {
	self := crdt.NodeIDFromName("a1")
	alive := map[string]peerInfo{
		"a2": {name: "a2", region: "A"}, "b1": {name: "b1", region: "B"}, "b2": {name: "b2", region: "B"},
		"c1": {name: "c1", region: "C"},
	}
	r := buildRoutes("a1", "A", self, alive, FanOutBridge)
	if len(r.local) != 1 || r.local[0].name != "a2" {
		t.Fatalf("local = %+v", r.local)
	}
	if len(r.publish) != 3 {
		t.Fatalf("bridge publish targets = %+v, want a2 + one of B + c1", r.publish)
	}
	if r.relay[0] || !r.relay[1] || !r.relay[2] {
		t.Fatalf("relay = %v, want local false, bridges true", r.relay)
	}
	if want := Bridge(self, []string{"b1", "b2"}); r.publish[1].name != want {
		t.Fatalf("bridge of B = %s, want %s", r.publish[1].name, want)
	}
	d := buildRoutes("a1", "A", self, alive, FanOutDirect)
	if len(d.publish) != 4 {
		t.Fatalf("direct publish targets = %+v, want all 4 peers", d.publish)
	}
	for _, rl := range d.relay {
		if rl {
			t.Fatal("direct fan-out asks for relay")
		}
	}
}
