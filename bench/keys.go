package bench

import (
	"fmt"
	"math/rand/v2"
	"strconv"
)

// Dist names a key distribution.
type Dist string

// The key distributions.
const (
	// Uniform draws every key with the same probability.
	Uniform Dist = "uniform"
	// Zipf draws key i with probability proportional to 1/(i+1)^s: k00000000
	// is the hottest.
	Zipf Dist = "zipf"
)

// KeyGen draws key indexes in [0, n). It is not safe for concurrent use:
// give each worker its own.
type KeyGen interface {
	Next() uint64
}

// NewKeyGen returns a generator of key indexes in [0, n) following dist;
// s is the Zipf exponent (> 1). The same seed gives the same sequence.
func NewKeyGen(dist Dist, n uint64, s float64, seed uint64) (KeyGen, error) {
	if n == 0 {
		return nil, fmt.Errorf("bench: key space is empty; want at least one key")
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	switch dist {
	case Uniform:
		return uniformGen{r: r, n: n}, nil
	case Zipf:
		if !(s > 1) {
			return nil, fmt.Errorf("bench: zipf exponent %v must be greater than 1", s)
		}
		return zipfGen{z: rand.NewZipf(r, s, 1, n-1)}, nil
	default:
		return nil, fmt.Errorf("bench: unknown key distribution %q; want uniform or zipf", dist)
	}
}

type uniformGen struct {
	r *rand.Rand
	n uint64
}

func (g uniformGen) Next() uint64 { return g.r.Uint64N(g.n) }

type zipfGen struct{ z *rand.Zipf }

func (g zipfGen) Next() uint64 { return g.z.Uint64() }

// KeyName returns the name of key i: "k" and at least 8 digits (k00000042).
func KeyName(i uint64) string { return string(AppendKeyName(nil, i)) }

// AppendKeyName appends the name of key i to dst, without allocating when
// dst has room.
func AppendKeyName(dst []byte, i uint64) []byte {
	dst = append(dst, 'k')
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], i, 10)
	for pad := 8 - len(d); pad > 0; pad-- {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}
