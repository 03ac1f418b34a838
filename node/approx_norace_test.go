//go:build !race

package node

// approxRace is set when the race detector is on (see approx_race_test.go).
const approxRace = false
