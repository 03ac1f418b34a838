package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, h http.Handler, path string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandlerServesTheAssets(t *testing.T) {
	h, err := Handler(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, ctype, holds string }{
		{"/ui/", "text/html; charset=utf-8", `data-auth="none"`},
		{"/ui/index.html", "text/html; charset=utf-8", "<title>"},
		{"/ui/app.js", "text/javascript; charset=utf-8", "'use strict'"},
		{"/ui/style.css", "text/css; charset=utf-8", ":root"},
		{"/ui/favicon.svg", "image/svg+xml", "<svg"},
	} {
		rec := serve(t, h, tc.path, nil)
		if rec.Code != 200 || rec.Header().Get("Content-Type") != tc.ctype || !strings.Contains(rec.Body.String(), tc.holds) {
			t.Errorf("GET %s: %d %q, want 200 %q holding %q", tc.path, rec.Code, rec.Header().Get("Content-Type"), tc.ctype, tc.holds)
		}
		for k, want := range map[string]string{"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"} {
			if got := rec.Header().Get(k); got != want {
				t.Errorf("GET %s: %s %q, want %q", tc.path, k, got, want)
			}
		}
		// Revalidation: the same ETag answers 304.
		etag := rec.Header().Get("ETag")
		if again := serve(t, h, tc.path, map[string]string{"If-None-Match": etag}); etag == "" || again.Code != 304 {
			t.Errorf("GET %s with If-None-Match %s: %d, want 304", tc.path, etag, again.Code)
		}
	}
	if rec := serve(t, h, "/ui/missing.js", nil); rec.Code != 404 {
		t.Errorf("GET /ui/missing.js: %d, want 404", rec.Code)
	}
}

func TestTokenRequiredTellsThePage(t *testing.T) {
	h, err := Handler(Config{TokenRequired: true, NotFound: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(418)
	})})
	if err != nil {
		t.Fatal(err)
	}
	page := serve(t, h, "/ui/", nil).Body.String()
	if !strings.Contains(page, `data-auth="token"`) || strings.Contains(page, authMarker) {
		t.Errorf("with TokenRequired the page does not say so:\n%s", page)
	}
	if rec := serve(t, h, "/ui/missing", nil); rec.Code != 418 {
		t.Errorf("GET /ui/missing: %d, want Config.NotFound's 418", rec.Code)
	}
}

// TestNoExternalLoads reads every embedded file: nothing refers to another
// origin (the only absolute URL allowed is the SVG namespace, which is a
// name, not a load), no inline script or style the CSP would block, and the
// script never builds a URL with a token in it.
func TestNoExternalLoads(t *testing.T) {
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'<>)]*`)
	inline := regexp.MustCompile(`(?i)<script>|<script [^>]*>[^<]|<style|\sstyle=|\son[a-z]+=|javascript:`)
	n := 0
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, _ := static.ReadFile(p)
		for _, m := range url.FindAllString(string(b), -1) {
			if m != "http://www.w3.org/2000/svg" {
				t.Errorf("%s refers to %s: the dashboard loads nothing from elsewhere", p, m)
			}
		}
		if strings.HasSuffix(p, ".html") || strings.HasSuffix(p, ".svg") {
			if m := inline.FindString(string(b)); m != "" {
				t.Errorf("%s has inline code or style %q, which the CSP forbids", p, m)
			}
		}
		if strings.HasSuffix(p, ".js") && regexp.MustCompile(`[?&]token=|access_token`).Match(b) {
			t.Errorf("%s puts a token in a URL", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("only %d embedded files", n)
	}
}
