package node

import (
	"errors"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestValidateKey covers both paths of ValidateKey: printable ASCII is
// decided in one pass, anything else goes through the UTF-8 and control
// character checks.
func TestValidateKey(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"user:42/page?x=1 y", true},
		{"~ !", true},
		{"café", true},
		{"日本語", true},
		{strings.Repeat("k", MaxKeyBytes), true},
		{"", false},
		{strings.Repeat("k", MaxKeyBytes+1), false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\x1fb", false},
		{"a\x7fb", false},    // DEL
		{"a\u0085b", false},  // a C1 control
		{"é\x7f", false},     // DEL after a non-ASCII rune
		{"a\xffb", false},    // not UTF-8
		{"a\xc3", false},     // a truncated rune
		{"\u00a0nbsp", true}, // the first rune past the C1 controls
	}
	for _, tt := range tests {
		err := ValidateKey(tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidateKey(%q) = %v, not ErrInvalidArgument", tt.key, err)
		}
	}
}

// TestBatchValidatesEveryOp: a batch checks each op's namespace, key, by
// and id, also past the first op of a run of one namespace, and names the
// op.
func TestBatchValidatesEveryOp(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	good := BatchOp{NS: "pv", Key: "a", By: 1}
	for _, tt := range []struct {
		name string
		bad  BatchOp
		want string
	}{
		{"namespace", BatchOp{NS: "P V", Key: "a", By: 1}, "op 2: "},
		{"key", BatchOp{NS: "pv", Key: "a\x01", By: 1}, "op 2: "},
		{"by", BatchOp{NS: "pv", Key: "a", By: MaxBy + 1}, "op 2: "},
		{"id", BatchOp{NS: "pv", Key: "a", By: 1, ID: strings.Repeat("i", 10_000)}, "op 2: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.Batch(t.Context(), []BatchOp{good, good, tt.bad, good}, "", false)
			if !errors.Is(err, ErrInvalidArgument) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalidArgument starting %q", err, tt.want)
			}
			if v := mustGet(t, n, "pv", "a"); v != 0 {
				t.Fatalf("a refused batch changed pv/a to %d", v)
			}
		})
	}
}
