package node

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// change is one change of a counter in the reference model: an increment
// at its event time, or the jump of a reset or a delete at the clock.
type change struct {
	at time.Time
	by int64
}

// asOf is the reference: the sum of the changes before t.
func asOf(changes []change, t time.Time) int64 {
	var sum int64
	for _, c := range changes {
		if c.at.Before(t) {
			sum += c.by
		}
	}
	return sum
}

// pitWindow is a window of the reference with its retention (0: forever).
type pitWindow struct {
	name      string
	width     time.Duration
	retention time.Duration
}

// wantResolution is the reference's resolution of a read as of at, at now:
// the finest window whose bucket holding at is still kept.
func wantResolution(ws []pitWindow, at, now time.Time) (pitWindow, bool) {
	for _, w := range ws {
		if w.retention == 0 || !at.Truncate(w.width).Before(now.Add(-w.retention).Truncate(w.width)) {
			return w, true
		}
	}
	return pitWindow{}, false
}

// TestPointInTimeMatchesReferenceOverAWeek drives a week of increments
// (event times up to 10 minutes late and up to 30 minutes ahead), resets
// and deletes through a node on a fake clock, and checks reads as of random
// times, every simulated six hours and at the end after retention dropped
// the old buckets, against a reference that keeps every change: the value,
// the resolution, and the time it rounds to. Two namespaces: windows
// 1m/1h/1d (48h, 5d, forever), and 10s/5m/1h (1h, 1d, 3d) whose coarser
// windows end too, so that old reads are refused.
func TestPointInTimeMatchesReferenceOverAWeek(t *testing.T) {
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: start}
	n := clock.open(t, "n")
	ctx := context.Background()
	spaces := map[string][]pitWindow{
		"an":   {{"1m", time.Minute, 48 * time.Hour}, {"1h", time.Hour, 5 * 24 * time.Hour}, {"1d", 24 * time.Hour, 0}},
		"fine": {{"10s", 10 * time.Second, time.Hour}, {"5m", 5 * time.Minute, 24 * time.Hour}, {"1h", time.Hour, 3 * 24 * time.Hour}},
	}
	putWindows(t, n, "an", []string{"1m", "1h", "1d"}, map[string]string{"1m": "48h", "1h": "5d", "1d": "0"})
	putWindows(t, n, "fine", []string{"10s", "5m", "1h"}, map[string]string{"10s": "1h", "5m": "24h", "1h": "3d"})

	rng := rand.New(rand.NewPCG(3, 4))
	keys := []string{"home", "cart"}
	ref := map[string][]change{} // ns/key -> changes
	current := func(id string) int64 { return asOf(ref[id], time.Unix(1<<40, 0)) }

	check := func(phase string, now time.Time, tries int) {
		t.Helper()
		for ns, ws := range spaces {
			for _, key := range keys {
				id := ns + "/" + key
				if got, want := mustGet(t, n, ns, key), current(id); got != want {
					t.Fatalf("%s: %s = %d, want %d", phase, id, got, want)
				}
				for range tries {
					at := now.Add(-time.Duration(rng.Int64N(int64(8 * 24 * time.Hour)))).Add(time.Duration(rng.Int64N(int64(time.Hour))))
					if at.Before(time.Unix(0, 0)) || at.After(now.Add(MaxFutureEvent)) {
						continue
					}
					c, err := n.Get(ctx, ns, key, ReadOptions{At: at})
					w, ok := wantResolution(ws, at, now)
					if !ok {
						if !errors.Is(err, ErrInvalidArgument) {
							t.Fatalf("%s: %s as of %s (older than every retention): %v, want ErrInvalidArgument", phase, id, at, err)
						}
						continue
					}
					if err != nil {
						t.Fatalf("%s: %s as of %s: %v", phase, id, at, err)
					}
					rounded := at.Truncate(w.width)
					if c.Resolution != w.name || !c.AsOf.Equal(rounded) {
						t.Fatalf("%s: %s as of %s resolved at %s %s, want %s %s", phase, id, at, c.Resolution, c.AsOf, w.name, rounded)
					}
					if want := asOf(ref[id], rounded); c.Value != want {
						t.Fatalf("%s: %s as of %s (%s, now %s) = %d, want %d", phase, id, at, rounded, now, c.Value, want)
					}
				}
			}
		}
	}

	week := 7 * 24 * time.Hour
	const steps = 8000
	nextCheck := start.Add(6 * time.Hour)
	resets, deletes := 0, 0
	for i := range steps {
		now := start.Add(time.Duration(float64(week) * float64(i) / steps))
		clock.Set(now)
		ns := "an"
		if rng.IntN(2) == 0 {
			ns = "fine"
		}
		key := keys[rng.IntN(len(keys))]
		id := ns + "/" + key
		switch r := rng.IntN(100); {
		case r < 2: // reset
			v := rng.Int64N(100) - 20
			before := current(id)
			res, err := n.Reset(ctx, ns, key, v)
			if err != nil || res.Value != v {
				t.Fatalf("reset %s to %d: %v %v", id, v, res, err)
			}
			ref[id] = append(ref[id], change{now, v - before})
			resets++
		case r < 3: // delete
			before := current(id)
			if err := n.Delete(ctx, ns, key); err != nil {
				t.Fatal(err)
			}
			ref[id] = append(ref[id], change{now, -before})
			deletes++
		default:
			at := now.Add(-time.Duration(rng.Int64N(int64(10 * time.Minute))))
			if rng.IntN(10) == 0 {
				at = now.Add(time.Duration(rng.Int64N(int64(30 * time.Minute))))
			}
			by := rng.Int64N(9) - 2
			if _, err := n.Incr(ctx, ns, key, by, WriteOptions{At: at}); err != nil {
				t.Fatalf("incr %s: %v", id, err)
			}
			ref[id] = append(ref[id], change{at.Truncate(time.Second), by})
		}
		if now.After(nextCheck) {
			check("at "+now.Format(time.RFC3339), now, 15)
			nextCheck = nextCheck.Add(6 * time.Hour)
		}
	}
	if resets < 20 || deletes < 10 {
		t.Fatalf("only %d resets and %d deletes", resets, deletes)
	}
	// At the end, with the buckets past retention dropped from the store,
	// and exactly at the retention edges.
	end := start.Add(week)
	clock.Set(end)
	if err := n.DropExpired(ctx); err != nil {
		t.Fatal(err)
	}
	check("at the end", end, 200)
	for ns, ws := range spaces {
		for _, w := range ws {
			if w.retention == 0 {
				continue
			}
			edge := end.Add(-w.retention).Truncate(w.width)
			for _, at := range []time.Time{edge, edge.Add(-time.Second)} {
				got, err := n.Get(ctx, ns, "home", ReadOptions{At: at})
				want, ok := wantResolution(ws, at, end)
				switch {
				case !ok:
					if !errors.Is(err, ErrInvalidArgument) {
						t.Fatalf("%s as of %s, just past every retention: %v %v", ns, at, got, err)
					}
				case err != nil || got.Resolution != want.name || got.Value != asOf(ref[ns+"/home"], at.Truncate(want.width)):
					t.Fatalf("%s as of the %s retention edge %s: %+v %v, want %s and %d", ns, w.name, at, got, err, want.name, asOf(ref[ns+"/home"], at.Truncate(want.width)))
				}
			}
		}
	}
}

// TestPointInTimeAcrossAPeerAndTTL checks that a reset's jump replicates
// (a peer reads the value before the reset as its origin does), and that a
// counter deleted by its ttl still reads its old value as of a time before.
func TestPointInTimeAcrossAPeerAndTTL(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: t0}
	a, b := clock.open(t, "a"), clock.open(t, "b")
	ctx := context.Background()
	putWindows(t, a, "w", []string{"1m"}, map[string]string{"1m": "24h"})
	if _, err := a.PutNamespace(ctx, "t", NamespacePatch{Windows: &[]string{"1m"}, TTL: ptr("1h")}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"w", "t"} {
		if _, err := a.Incr(ctx, ns, "k", 40, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	clock.Set(t0.Add(10 * time.Minute))
	if _, err := a.Reset(ctx, "w", "k", 5); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Incr(ctx, "w", "k", 2, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	antiEntropy(t, a, b)
	for _, c := range []struct {
		at   time.Time
		want int64
	}{{t0, 0}, {t0.Add(time.Minute), 40}, {t0.Add(10 * time.Minute), 40}, {t0.Add(11 * time.Minute), 7}} {
		for _, n := range []*Node{a, b} {
			got, err := n.Get(ctx, "w", "k", ReadOptions{At: c.at})
			if err != nil || got.Value != c.want {
				t.Fatalf("node %s: w/k as of %s = %+v %v, want %d", n.Name(), c.at, got, err, c.want)
			}
		}
	}
	// Two hours on, the ttl pass deletes t/k; before that, it held 40.
	clock.Set(t0.Add(2 * time.Hour))
	if err := a.DropExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, a, "t", "k"); v != 0 {
		t.Fatalf("t/k = %d after its ttl, want 0", v)
	}
	for _, c := range []struct {
		at   time.Time
		want int64
	}{{t0.Add(30 * time.Minute), 40}, {t0.Add(2*time.Hour + time.Minute), 0}} {
		if got, err := a.Get(ctx, "t", "k", ReadOptions{At: c.at}); err != nil || got.Value != c.want {
			t.Fatalf("t/k as of %s = %+v %v, want %d", c.at, got, err, c.want)
		}
	}
}
