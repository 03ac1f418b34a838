package gossip_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/countmesh/countmesh/gossip"
	"github.com/countmesh/countmesh/gossip/gossiptest"
	"github.com/countmesh/countmesh/internal/pki"
)

// secrets makes a CA in dir with a certificate for each name.
func secrets(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := pki.CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := pki.CreateNode(dir, n, []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
}

func peerTLS(t *testing.T, dir, name string) *gossip.PeerTLS {
	t.Helper()
	p, err := pki.LoadPeerTLS(filepath.Join(dir, "ca.crt"), filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return &gossip.PeerTLS{Server: p.ServerConfig(), Client: p.ClientConfig}
}

func value(n *tnode, ns, key string) int64 {
	c := n.rep.Snapshot()[gossiptest.Key{NS: ns, Key: key}]
	return c.Value()
}

func listed(m *gossip.Mesh, name string) bool {
	for _, mb := range m.Status().Members {
		if mb.Name == name {
			return true
		}
	}
	return false
}

// A mesh on mutual TLS with an encrypted keyring: its members converge; a
// node with the right gossip key but a certificate from another CA, and a
// node with a valid certificate but another gossip key, are never listed
// and none of their writes arrive.
func TestTLSAndGossipKeyKeepStrangersOut(t *testing.T) {
	good, other := t.TempDir(), t.TempDir()
	secrets(t, good, "a", "b", "y")
	secrets(t, other, "x")
	key := bytes.Repeat([]byte{7}, 32)
	otherKey := bytes.Repeat([]byte{9}, 32)
	c := newCluster(t, 21, []string{"a@r1", "b@r2", "x@r1", "y@r1"}, func(cfg *gossip.Config) {
		switch cfg.Name {
		case "x": // the right key, a certificate of another CA
			cfg.TLS, cfg.GossipKeys = peerTLS(t, other, "x"), [][]byte{key}
		case "y": // a good certificate, another key
			cfg.TLS, cfg.GossipKeys = peerTLS(t, good, "y"), [][]byte{otherKey}
		default:
			cfg.TLS, cfg.GossipKeys = peerTLS(t, good, cfg.Name), [][]byte{key}
		}
	})
	for _, n := range c.nodes {
		c.start(n)
	}
	a, b, x, y := c.node("a"), c.node("b"), c.node("x"), c.node("y")
	if _, err := b.mesh.Join([]string{a.host.GossipAddr()}); err != nil {
		t.Fatalf("b joins a: %v", err)
	}
	// x gets into memberlist (it has the key) but can never prove its name.
	_, _ = x.mesh.Join([]string{a.host.GossipAddr()})
	if _, err := y.mesh.Join([]string{a.host.GossipAddr()}); err == nil {
		t.Fatal("y joined with another gossip key")
	}
	c.add(a, "ns", "k", 3)
	c.add(b, "ns", "k", 4)
	c.add(x, "ns", "k", 1000)
	c.add(y, "ns", "k", 1000)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range []*tnode{a, b} {
			for _, stranger := range []string{"x", "y"} {
				if listed(n.mesh, stranger) {
					t.Fatalf("%s lists %s as a member", n.name, stranger)
				}
			}
			if v := value(n, "ns", "k"); v > 7 {
				t.Fatalf("%s reads %d: a stranger's write arrived", n.name, v)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range []*tnode{a, b} {
		if !listed(n.mesh, map[string]string{"a": "b", "b": "a"}[n.name]) {
			t.Fatalf("%s does not list its peer", n.name)
		}
		if v := value(n, "ns", "k"); v != 7 {
			t.Fatalf("%s reads %d, want 7 (3 + 4 from the members)", n.name, v)
		}
	}
	if a.mesh.Stats().RefusedPeers == 0 {
		t.Fatal("a refused no connection, yet x must have tried")
	}
}

// Rotating the gossip key without downtime: add the new key, make it
// first, drop the old one, one step at a time on every node; the members
// stay members throughout, and a node with only the old key cannot join at
// the end.
func TestGossipKeyRotation(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	c := newCluster(t, 22, []string{"a@r1", "b@r1", "late@r1"}, func(cfg *gossip.Config) { cfg.GossipKeys = [][]byte{oldKey} })
	a, b, late := c.node("a"), c.node("b"), c.node("late")
	c.start(a)
	c.start(b)
	if _, err := b.mesh.Join([]string{a.host.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	for _, step := range [][][]byte{{oldKey, newKey}, {newKey, oldKey}, {newKey}} {
		for _, n := range []*tnode{a, b} {
			if err := n.mesh.SetGossipKeys(step); err != nil {
				t.Fatal(err)
			}
		}
		c.add(a, "ns", "k", 1)
		want := value(a, "ns", "k")
		if !gossiptest.WaitFor(10*time.Second, func() bool { return value(b, "ns", "k") == want }) {
			t.Fatalf("b reads %d, a %d: replication stopped during the rotation", value(b, "ns", "k"), want)
		}
		if !listed(a.mesh, "b") || !listed(b.mesh, "a") {
			t.Fatal("a member dropped out during the rotation")
		}
	}
	c.start(late) // only the old key
	if _, err := late.mesh.Join([]string{a.host.GossipAddr()}); err == nil {
		t.Fatal("a node with the dropped key joined")
	}
	if err := a.mesh.SetGossipKeys(nil); err == nil {
		t.Fatal("an empty keyring was accepted")
	}
	if err := a.mesh.SetGossipKeys([][]byte{[]byte("short")}); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
}
