//go:build race

package node

// approxRace is set when the race detector is on: it slows the node path
// about tenfold and its own allocations make heap measurements meaningless.
const approxRace = true
