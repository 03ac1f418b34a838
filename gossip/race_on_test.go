//go:build race

package gossip_test

// raceEnabled is set when the race detector is on: it slows the CPU-bound
// measurements about tenfold, so they run a lighter load.
const raceEnabled = true
