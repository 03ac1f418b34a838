//go:build tools

// This file pins the project's chosen modules in go.mod while the packages
// that use them are being written; it is never compiled.
package countmesh

import (
	_ "github.com/HdrHistogram/hdrhistogram-go"
	_ "github.com/anishathalye/porcupine"
	_ "github.com/cockroachdb/pebble/v2"
	_ "github.com/go-chi/chi/v5"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/vmihailenco/msgpack/v5"
	_ "go.uber.org/zap"
	_ "go.uber.org/zap/zaptest"
	_ "pgregory.net/rapid"
)
