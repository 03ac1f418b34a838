package errtext

import (
	"strings"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/node"
)

// sentinels are the errors whose text is a category, not news to the
// client.
var sentinels = []error{
	node.ErrInvalidArgument, node.ErrNotFound, node.ErrConflict, node.ErrOverflow,
	node.ErrOverloaded, node.ErrUnavailable, node.ErrTooLarge, node.ErrClosed,
	auth.ErrUnauthenticated, auth.ErrPermissionDenied,
}

// Message is err's text without the sentinel prefixes.
func Message(err error) string {
	msg := err.Error()
	for _, s := range sentinels {
		msg = strings.Replace(msg, s.Error()+": ", "", 1)
	}
	return msg
}
