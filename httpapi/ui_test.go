package httpapi

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/countmesh/countmesh/httpapi/ui"
)

// TestDashboardIsOpenTheAPIIsNot: with tokens, the dashboard's page and
// assets are served without one (with the CSP), the page is told to ask
// for a token, and the API calls it makes still need one. Without tokens
// the page is told not to ask.
func TestDashboardIsOpenTheAPIIsNot(t *testing.T) {
	get := func(url string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	secured, _, _, _ := newAuthAPI(t, nil)
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/style.css", "/ui/favicon.svg", "/ui"} {
		resp, _ := get(secured.url + path)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s without a token: %d, want 200", path, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != ui.CSP {
			t.Errorf("GET %s: Content-Security-Policy %q, want %q", path, got, ui.CSP)
		}
	}
	if _, page := get(secured.url + "/ui/"); !strings.Contains(page, `data-auth="token"`) {
		t.Error("the page of a node with tokens does not ask for one")
	}
	if code, _ := secured.do("GET", "/v1/cluster", "", nil); code != 401 {
		t.Errorf("GET /v1/cluster without a token: %d, want 401", code)
	}
	if code, _ := secured.as(tokRead).do("GET", "/v1/cluster", "", nil); code != 200 {
		t.Errorf("GET /v1/cluster with a read token: %d, want 200", code)
	}
	if resp, body := get(secured.url + "/ui/nothing.js"); resp.StatusCode != 404 || !strings.Contains(body, "not_found") {
		t.Errorf("GET /ui/nothing.js: %d %s, want the JSON 404", resp.StatusCode, body)
	}

	open := newTestAPI(t, nil)
	if _, page := get(open.url + "/ui/"); !strings.Contains(page, `data-auth="none"`) {
		t.Error("the page of a node without tokens asks for one")
	}
}
