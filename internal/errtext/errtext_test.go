package errtext

import (
	"fmt"
	"testing"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/node"
)

func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: key must be 1 to 512 bytes", node.ErrInvalidArgument), "key must be 1 to 512 bytes"},
		{fmt.Errorf("op 3: %w", fmt.Errorf("%w: no", auth.ErrPermissionDenied)), "op 3: no"},
		{fmt.Errorf("plain"), "plain"},
	} {
		if got := Message(tc.err); got != tc.want {
			t.Errorf("Message(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
