package bench

import (
	"math"
	"testing"
)

func TestUniformIsFlatAndInRange(t *testing.T) {
	const n, draws = 10, 100_000
	g, err := NewKeyGen(Uniform, n, 0, 7)
	if err != nil {
		t.Fatal(err)
	}
	var counts [n]int
	for range draws {
		k := g.Next()
		if k >= n {
			t.Fatalf("key %d out of [0, %d)", k, n)
		}
		counts[k]++
	}
	for k, c := range counts {
		if want := draws / n; math.Abs(float64(c-want)) > 0.05*float64(want) {
			t.Errorf("key %d drawn %d times, want %d ± 5%%", k, c, want)
		}
	}
}

func TestZipfFollowsItsLaw(t *testing.T) {
	const n, draws, s = 1000, 200_000, 1.1
	g, err := NewKeyGen(Zipf, n, s, 7)
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, n)
	for range draws {
		k := g.Next()
		if k >= n {
			t.Fatalf("key %d out of [0, %d)", k, n)
		}
		counts[k]++
	}
	// P(k) is proportional to (k+1)^-s.
	for _, k := range []int{1, 3, 9} {
		got := float64(counts[0]) / float64(counts[k])
		want := math.Pow(float64(k+1), s)
		if math.Abs(got-want) > 0.15*want {
			t.Errorf("count(k0)/count(k%d) = %.2f, want %.2f ± 15%%", k, got, want)
		}
	}
	// The head is heavy: the 10 hottest keys of 1000 take a large share.
	head := 0
	for _, c := range counts[:10] {
		head += c
	}
	if share := float64(head) / draws; share < 0.3 {
		t.Errorf("the 10 hottest keys took %.2f of the draws, want more than 0.3", share)
	}
}

func TestKeyGenIsDeterministicPerSeed(t *testing.T) {
	for _, d := range []Dist{Uniform, Zipf} {
		a, _ := NewKeyGen(d, 1_000_000, 1.1, 3)
		b, _ := NewKeyGen(d, 1_000_000, 1.1, 3)
		c, _ := NewKeyGen(d, 1_000_000, 1.1, 4)
		same, differ := true, false
		for range 100 {
			x, y, z := a.Next(), b.Next(), c.Next()
			same = same && x == y
			differ = differ || x != z
		}
		if !same || !differ {
			t.Errorf("%s: same seed same sequence = %v, other seed differs = %v; want both", d, same, differ)
		}
	}
}

func TestKeyGenEdges(t *testing.T) {
	g, err := NewKeyGen(Zipf, 1, 1.1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if k := g.Next(); k != 0 {
		t.Errorf("one key: drew %d, want 0", k)
	}
	bad := []struct {
		d Dist
		n uint64
		s float64
	}{{Uniform, 0, 0}, {Zipf, 10, 1}, {Zipf, 10, 0.5}, {"pareto", 10, 2}}
	for _, b := range bad {
		if _, err := NewKeyGen(b.d, b.n, b.s, 1); err == nil {
			t.Errorf("NewKeyGen(%q, %d, %v) succeeded, want an error", b.d, b.n, b.s)
		}
	}
}

func TestKeyName(t *testing.T) {
	for i, want := range map[uint64]string{0: "k00000000", 42: "k00000042", 99_999_999: "k99999999", 123_456_789: "k123456789"} {
		if got := KeyName(i); got != want {
			t.Errorf("KeyName(%d) = %q, want %q", i, got, want)
		}
	}
	buf := make([]byte, 0, 32)
	if allocs := testing.AllocsPerRun(100, func() { buf = AppendKeyName(buf[:0], 12345) }); allocs != 0 {
		t.Errorf("AppendKeyName allocates %v times per call, want 0", allocs)
	}
}
