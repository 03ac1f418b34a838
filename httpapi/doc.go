// Package httpapi serves countmesh's public HTTP/JSON API (docs/api.md) over
// a node: chi routes, request validation, the JSON and msgpack codecs, and the
// mapping of node errors to status codes. It holds no business logic.
//
// Every error answer is {"error":{"code","message"}} with the codes of
// docs/api.md; the mapping from the node's sentinel errors lives in one
// function, writeError. A refused request changes nothing.
//
// With Config.Tokens, every route but /healthz, /readyz and the dashboard's
// files (/ui/, package ui) needs "Authorization: Bearer <token>" (401
// unauthenticated without a valid one) whose scope and namespace patterns
// cover the request (403 permission_denied otherwise). Each public route declares the scope it
// needs in one table (access.go); the authenticate middleware checks it
// before the handler runs, and a route that declares nothing needs an admin
// token. A batch is checked op by op, and the namespace list shows only the
// namespaces the token covers.
//
// GET /v1/openapi.json serves openapi.json, the OpenAPI 3.1 description of
// the routes, embedded as written. It is kept by hand beside the routes
// table: TestOpenAPIMatchesTheRouter walks the router and fails when a route
// is routed but not described, described but not routed, or described with
// another scope (x-countmesh-scope), and validates the document and real
// answers against its schemas with kin-openapi.
//
// The hottest routes (incr, decr and GET of a counter) skip chi and its
// middleware chain but run the same checks and handlers, with the same
// answers and metrics (fastpath.go, TestFastPathMatchesChi).
//
// Every input is bounded and validated before it reaches the node: bodies
// (8 MiB, 10,000 ops), names, keys, label names and values (UTF-8 without
// control characters), query strings (a bad percent escape is a 400), and
// the number of open watch streams (Config.MaxWatchStreams, 429 past it).
package httpapi
