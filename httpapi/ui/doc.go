// Package ui serves countd's live dashboard at /ui/: one HTML page, a
// script, a style sheet and an icon, embedded in the binary (go:embed) and
// written by hand: no external asset, no JavaScript build step, no library.
//
// The page reads the public API of the node that serves it (docs/api.md):
// GET /v1/cluster for the mesh, GET /v1/namespaces for the configs, the
// top-K and series routes for the charts, and the watch streams (Server-Sent
// Events, read with fetch so that they can carry a token) for the live
// rates and the live value of one counter.
//
// The assets hold nothing secret and are served without a token. When the
// node has API tokens (Config.TokenRequired) the page asks for one, keeps it
// in the tab's sessionStorage and sends it as "Authorization: Bearer" on
// every API call; it never puts a token in a URL. Every answer carries a
// Content-Security-Policy that allows nothing but the node's own origin.
//
// ui imports only the standard library; httpapi routes /ui/ to Handler.
package ui
