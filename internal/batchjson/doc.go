// Package batchjson decodes the JSON bodies of POST /v1/batch that have the
// plain shape clients send, without reflection and with one allocation per
// string, for the bulk-ingest path.
//
// It is a fast path, not a JSON decoder: Decode says ok only for bodies it
// decodes exactly as encoding/json does (httpapi's reference decoder) and
// leaves every other body, valid or not, to encoding/json, so that answers
// and errors stay those of encoding/json.
package batchjson
