package splitmix

import "testing"

// The reference values of splitmix64's finaliser (the outputs of the
// generator seeded with 0 are Mix of 0x9e3779b97f4a7c15, then of twice it).
func TestMixMatchesSplitmix64(t *testing.T) {
	const gamma = 0x9e3779b97f4a7c15
	for i, want := range []uint64{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4} {
		if got := Mix(gamma * uint64(i+1)); got != want {
			t.Errorf("Mix(%d * gamma) = %#x, want %#x", i+1, got, want)
		}
	}
}
