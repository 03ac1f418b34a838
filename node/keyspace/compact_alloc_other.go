//go:build !unix

package keyspace

// allocChunk returns a zeroed chunk from the Go heap where slabs cannot be
// mapped outside it.
func allocChunk() []byte { return make([]byte, chunkSize) }

// freeChunk leaves a chunk to the garbage collector.
func freeChunk([]byte) {}
