package main

import (
	"io"
	"strings"
	"testing"
)

func TestFlagsEnvironmentAndPrecedence(t *testing.T) {
	env := map[string]string{
		"COUNTMESH_DATA_DIR":       "/from/env",
		"COUNTMESH_HTTP_ADDR":      "127.0.0.1:9999",
		"COUNTMESH_CACHE_COUNTERS": "42",
		"COUNTMESH_DURABILITY":     "async",
	}
	getenv := func(k string) string { return env[k] }
	o, err := parseFlags([]string{"--http-addr", "127.0.0.1:7000", "--region", "eu"}, io.Discard, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if o.dataDir != "/from/env" || o.cacheCounters != 42 || o.durability != "async" {
		t.Fatalf("environment not applied: %+v", o)
	}
	if o.httpAddr != "127.0.0.1:7000" || o.region != "eu" {
		t.Fatalf("flags must win over the environment: %+v", o)
	}
	if o.gossipAddr != "127.0.0.1:7946" || o.logLevel != "info" || o.logFormat != "" {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestBadFlagsExitWithUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--cache-counters", "many"},
		{"--no-such-flag"},
		{"stray-argument"},
		{"--log-level", "loud"},
		{"--log-format", "xml"},
	} {
		var stderr strings.Builder
		if code := run(args, &stderr, nil); code != 2 {
			t.Errorf("countd %v exited %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
	bad := func(k string) string {
		if k == "COUNTMESH_CACHE_COUNTERS" {
			return "lots"
		}
		return ""
	}
	if _, err := parseFlags(nil, io.Discard, bad); err == nil || !strings.Contains(err.Error(), "COUNTMESH_CACHE_COUNTERS") {
		t.Fatalf("bad environment value: %v", err)
	}
}

func TestInvalidConfigIsRefusedAtStart(t *testing.T) {
	var stderr strings.Builder
	code := run([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--gossip-addr", "off", "--durability", "eventually"}, &stderr, nil)
	if code != 1 {
		t.Fatalf("bad durability: exit %d, want 1", code)
	}
}

func TestAdvertisedHTTP(t *testing.T) {
	for _, c := range []struct{ listen, advertise, gossip, want string }{
		{"127.0.0.1:7070", "", "127.0.0.1:7946", "127.0.0.1:7070"},
		{"0.0.0.0:7070", "10.0.0.5:7946", "0.0.0.0:7946", "10.0.0.5:7070"},
		{"[::]:7070", "", "192.168.1.9:7946", "192.168.1.9:7070"},
		{":7070", "", "0.0.0.0:7946", ":7070"},
		{"0.0.0.0:7070", "node-3.example:7946", "0.0.0.0:7946", "node-3.example:7070"},
	} {
		if got := advertisedHTTP(c.listen, c.advertise, c.gossip); got != c.want {
			t.Errorf("advertisedHTTP(%q, %q, %q) = %q, want %q", c.listen, c.advertise, c.gossip, got, c.want)
		}
	}
}
