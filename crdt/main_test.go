package crdt_test

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// propertyChecks is how many cases each rapid property runs under a plain
// `go test` (rapid's own default is 100). An explicit -rapid.checks flag or a
// RAPID_CHECKS environment variable still wins; -short divides by 5 as rapid
// always does.
const propertyChecks = "10000"

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" {
			explicit = true
		}
	})
	if _, fromEnv := os.LookupEnv("RAPID_CHECKS"); !explicit && !fromEnv {
		if err := flag.Set("rapid.checks", propertyChecks); err != nil {
			fmt.Fprintf(os.Stderr, "crdt tests: set -rapid.checks: %v\n", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}
