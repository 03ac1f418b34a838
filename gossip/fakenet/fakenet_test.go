package fakenet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/countmesh/countmesh/internal/wait"
)

func dialPair(t *testing.T, nw *Network, from, to *Host) (client, server net.Conn) {
	t.Helper()
	l, err := to.Listen(to.ReplAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client, err = from.Dial(context.Background(), to.ReplAddr())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case server = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("accept timed out")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestStreamDeliversInOrderWithDelay(t *testing.T) {
	nw := New(1, 0)
	nw.SetFaults(Faults{StreamDelay: 3 * time.Millisecond})
	a, b := nw.Host("a", "r1"), nw.Host("b", "r2")
	c, s := dialPair(t, nw, a, b)
	go func() {
		for i := 0; i < 200; i++ {
			c.Write([]byte{byte(i)})
		}
		c.Close()
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 200 {
		t.Fatalf("read %d bytes, want 200", len(got))
	}
	for i, x := range got {
		if x != byte(i) {
			t.Fatalf("byte %d = %d: the stream reordered", i, x)
		}
	}
}

func TestStreamBackPressureAndDeadlines(t *testing.T) {
	nw := New(1, 1024)
	a, b := nw.Host("a", "r1"), nw.Host("b", "r1")
	c, s := dialPair(t, nw, a, b)
	// Nobody reads: a write beyond the buffer blocks until its deadline.
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := c.Write(make([]byte, 4096))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != 1024 {
		t.Fatalf("write into a full pipe: n=%d err=%v; want 1024 and a deadline error", n, err)
	}
	s.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	if n, err := io.ReadFull(s, buf[:1024]); err != nil || n != 1024 {
		t.Fatalf("read = %d, %v", n, err)
	}
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := s.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of an empty pipe: %v, want a deadline error", err)
	}
	// A cleared deadline lets a blocked read wait for data.
	s.SetReadDeadline(time.Time{})
	c.SetWriteDeadline(time.Time{})
	go c.Write([]byte("x"))
	if n, err := s.Read(buf); err != nil || n != 1 {
		t.Fatalf("read after clearing the deadline = %d, %v", n, err)
	}
}

func TestPartitionBreaksConnectionsAndRefusesDials(t *testing.T) {
	nw := New(1, 0)
	a, b, c := nw.Host("a", "r1"), nw.Host("b", "r2"), nw.Host("c", "r2")
	ab, ba := dialPair(t, nw, a, b)
	nw.PartitionRegions([]string{"r1"})
	if _, err := ab.Write([]byte("x")); !IsReset(err) {
		t.Fatalf("write across a new cut: %v, want a reset", err)
	}
	if _, err := ba.Read(make([]byte, 1)); !IsReset(err) {
		t.Fatalf("read across a new cut: %v, want a reset", err)
	}
	if _, err := a.Dial(context.Background(), c.ReplAddr()); err == nil {
		t.Fatal("dial across the cut succeeded")
	}
	if !nw.Connected("b", "c") || nw.Connected("a", "c") {
		t.Fatal("the cut is not by region")
	}
	nw.Partition([]string{"a", "c"})
	if !nw.Connected("a", "c") || nw.Connected("a", "b") {
		t.Fatal("the cut is not by node set")
	}
	nw.Heal()
	if !nw.Connected("a", "b") {
		t.Fatal("heal did not reconnect")
	}
	b.Down()
	if nw.Connected("a", "b") {
		t.Fatal("a host that is down is reachable")
	}
	b.Up()
	if _, err := a.Dial(context.Background(), b.ReplAddr()); err == nil {
		t.Fatal("dial to a host whose listener went down with it succeeded")
	}
}

func TestPacketsDropDuplicateAndAreSeeded(t *testing.T) {
	run := func(seed uint64) Stats {
		nw := New(seed, 0)
		nw.SetFaults(Faults{PacketDrop: 0.2, PacketDup: 0.1})
		a, b := nw.Host("a", "r"), nw.Host("b", "r")
		ta, tb := a.NewTransport(), b.NewTransport()
		defer ta.Shutdown()
		defer tb.Shutdown()
		for i := 0; i < 1000; i++ {
			if _, err := ta.WriteTo([]byte{1}, b.GossipAddr()); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		for {
			select {
			case p := <-tb.PacketCh():
				if p.From.String() != a.GossipAddr() {
					t.Fatalf("packet from %s, want %s", p.From, a.GossipAddr())
				}
				got++
				continue
			default:
			}
			break
		}
		st := nw.Stats()
		if want := int(st.Packets - st.PacketsDropped + st.PacketsDuplicated); got != want {
			t.Fatalf("received %d packets, want %d (%+v)", got, want, st)
		}
		return st
	}
	s1, s2, s3 := run(7), run(7), run(8)
	if s1 != s2 {
		t.Fatalf("same seed, different fates: %+v vs %+v", s1, s2)
	}
	if s1 == s3 {
		t.Fatalf("different seeds, same fates: %+v", s1)
	}
	if s1.PacketsDropped < 150 || s1.PacketsDropped > 250 || s1.PacketsDuplicated < 50 {
		t.Fatalf("fault rates off: %+v", s1)
	}
}

func TestTransportRunsMemberlist(t *testing.T) {
	nw := New(3, 0)
	nw.SetFaults(Faults{PacketDrop: 0.05, PacketDelay: 2 * time.Millisecond, StreamDelay: time.Millisecond})
	var mls []*memberlist.Memberlist
	for _, name := range []string{"m1", "m2", "m3"} {
		cfg := memberlist.DefaultLocalConfig()
		cfg.Name = name
		cfg.Transport = nw.Host(name, "r").NewTransport()
		cfg.ProbeInterval = 50 * time.Millisecond
		cfg.ProbeTimeout = 25 * time.Millisecond
		cfg.GossipInterval = 10 * time.Millisecond
		cfg.LogOutput = io.Discard
		ml, err := memberlist.Create(cfg)
		if err != nil {
			t.Fatal(err)
		}
		mls = append(mls, ml)
		t.Cleanup(func() { ml.Shutdown() })
	}
	for _, ml := range mls[1:] {
		if _, err := ml.Join([]string{nw.Host("m1", "r").GossipAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(want int) {
		t.Helper()
		wait.Until(t, 10*time.Second, fmt.Sprintf("memberlists reaching %d members", want), func() bool {
			return mls[0].NumMembers() == want && mls[1].NumMembers() == want
		})
	}
	wait(3)
	// Cut m3 off: the others declare it dead.
	nw.Partition([]string{"m3"})
	wait(2)
}

func TestListenerCloseRefusesAndIsIdempotent(t *testing.T) {
	nw := New(1, 0)
	a, b := nw.Host("a", "r"), nw.Host("b", "r")
	l, err := b.Listen(b.ReplAddr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Listen(b.ReplAddr()); err == nil {
		t.Fatal("second listen on the same address succeeded")
	}
	if _, err := a.Listen(b.ReplAddr()); err == nil {
		t.Fatal("listen on another host's address succeeded")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("accept after close: %v", err)
		}
	}()
	l.Close()
	l.Close()
	wg.Wait()
	if _, err := a.Dial(context.Background(), b.ReplAddr()); err == nil {
		t.Fatal("dial to a closed listener succeeded")
	}
}
