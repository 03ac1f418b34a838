package httpapi

import (
	"net/http"
	"testing"

	"github.com/countmesh/countmesh/node"
)

// The node's caps answer 400 invalid_argument (retrying will not help, so
// not 429, which says the node sheds load), and change nothing.
func TestCapsAnswerInvalidArgument(t *testing.T) {
	a := newTestAPI(t, func(c *node.Config) { c.MaxNamespaces, c.MaxSeriesPerKey = 2, 2 })
	for _, ns := range []string{"a", "b"} {
		if status, body := a.do(http.MethodPost, "/v1/counters/"+ns+"/k/incr", "", nil); status != http.StatusOK {
			t.Fatalf("incr in namespace %s: %d %v", ns, status, body)
		}
	}
	status, body := a.do(http.MethodPost, "/v1/counters/c/k/incr", "", nil)
	if status != http.StatusBadRequest || errCode(body) != codeInvalidArgument {
		t.Fatalf("a third namespace past a cap of 2: %d %v, want 400 invalid_argument", status, body)
	}
	if status, _ := a.do(http.MethodGet, "/v1/namespaces/c", "", nil); status != http.StatusNotFound {
		t.Fatalf("the refused write created namespace c: %d", status)
	}
	for _, country := range []string{"fr", "de"} {
		if status, body := a.do(http.MethodPost, "/v1/counters/a/k/incr", "", []byte(`{"labels":{"country":"`+country+`"}}`)); status != http.StatusOK {
			t.Fatalf("labelled incr %s: %d %v", country, status, body)
		}
	}
	status, body = a.do(http.MethodPost, "/v1/counters/a/k/incr", "", []byte(`{"labels":{"country":"it"}}`))
	if status != http.StatusBadRequest || errCode(body) != codeInvalidArgument {
		t.Fatalf("a third label series past a cap of 2: %d %v, want 400 invalid_argument", status, body)
	}
}
