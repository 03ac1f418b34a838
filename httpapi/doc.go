// Package httpapi serves countmesh's public HTTP/JSON API (spec/API.md) over
// a node: chi routes, request validation, the JSON and msgpack codecs, and the
// mapping of node errors to status codes. It holds no business logic.
//
// Every error answer is {"error":{"code","message"}} with the codes of
// spec/API.md; the mapping from the node's sentinel errors lives in one
// function, writeError. A refused request changes nothing.
package httpapi
