package auth_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/countmesh/countmesh/auth"
)

func ExampleParse() {
	toks, err := auth.Parse(strings.NewReader(`
# dashboards read everything; the ingester writes pages and clicks-*
dashboard-token-0123456789 read
ingest-token-0123456789abc write pages clicks-*
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	g, err := toks.Authenticate("ingest-token-0123456789abc")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(g.Scope(), g.Allow(auth.ScopeWrite, "clicks-eu") == nil)
	err = g.Allow(auth.ScopeWrite, "views")
	fmt.Println(errors.Is(err, auth.ErrPermissionDenied))
	_, err = toks.Authenticate("guessed-token-0000000000")
	fmt.Println(errors.Is(err, auth.ErrUnauthenticated))
	// Output:
	// write true
	// true
	// true
}
