package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every answer of Handler: the page
// may load scripts, styles and images only from its own origin and call only
// its own origin; nothing inline, no frames, no form posts elsewhere.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Config configures Handler.
type Config struct {
	// TokenRequired makes the page ask for an API token before its first
	// API call (the node was started with --api-tokens-file).
	TokenRequired bool
	// NotFound answers a path under /ui/ that names no asset; nil means
	// http.NotFound.
	NotFound http.Handler
}

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// authMarker is the attribute of index.html that tells the script whether
// to ask for a token; Handler rewrites it when Config.TokenRequired.
const authMarker = `data-auth="none"`

// Handler serves the dashboard: GET /ui/ is the page and /ui/<name> its
// assets. It expects the full request path (mount it at /ui/*).
func Handler(cfg Config) (http.Handler, error) {
	assets, err := load(cfg.TokenRequired)
	if err != nil {
		return nil, err
	}
	notFound := cfg.NotFound
	if notFound == nil {
		notFound = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		name, _ := strings.CutPrefix(r.URL.Path, "/ui/")
		if name == "" {
			name = "index.html"
		}
		a, ok := assets[name]
		if !ok {
			notFound.ServeHTTP(w, r)
			return
		}
		// Revalidated on every load (a new binary serves new assets), and
		// answered 304 while the ETag holds.
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Type", a.contentType)
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	}), nil
}

// contentTypes are the types of the embedded files by extension; a file of
// another extension is refused by load, so that none is served as
// something a browser might sniff.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// load reads the embedded files into assets by name.
func load(tokenRequired bool) (map[string]asset, error) {
	assets := map[string]asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return fmt.Errorf("ui: read %s: %w", p, err)
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("ui: %s has no known content type", p)
		}
		name := strings.TrimPrefix(p, "static/")
		if name == "index.html" {
			if bytes.Count(body, []byte(authMarker)) != 1 {
				return errors.New("ui: index.html must hold " + authMarker + " exactly once")
			}
			if tokenRequired {
				body = bytes.Replace(body, []byte(authMarker), []byte(`data-auth="token"`), 1)
			}
		}
		sum := sha256.Sum256(body)
		assets[name] = asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := assets["index.html"]; !ok {
		return nil, errors.New("ui: index.html is not embedded")
	}
	return assets, nil
}
