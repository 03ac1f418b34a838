//go:build unix

package keyspace

import (
	"sync"
	"syscall"
)

// Chunks of the compact tier come from slabs mapped outside the Go heap:
// the garbage collector neither scans them nor counts them toward its
// goal, so the tier's resident size is the bytes it holds (a heap of
// pointer-free slices would still grow to twice its live size between
// collections). Slabs are never unmapped, so a stale slice can never fault;
// a freed chunk gives its pages back to the kernel (MADV_DONTNEED, which
// also zeroes them) and waits on a free list for its next use.
const slabSize = 64 * chunkSize // 4 MiB

var chunks struct {
	mu   sync.Mutex
	free [][]byte
	slab []byte // what is left of the slab being carved
}

// allocChunk returns a zeroed chunk, or nil when memory cannot be mapped.
func allocChunk() []byte {
	chunks.mu.Lock()
	defer chunks.mu.Unlock()
	if n := len(chunks.free); n > 0 {
		ch := chunks.free[n-1]
		chunks.free = chunks.free[:n-1]
		return ch
	}
	if len(chunks.slab) == 0 {
		slab, err := syscall.Mmap(-1, 0, slabSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			return nil
		}
		chunks.slab = slab
	}
	ch := chunks.slab[:chunkSize:chunkSize]
	chunks.slab = chunks.slab[chunkSize:]
	return ch
}

// freeChunk returns a chunk to the free list, its pages to the kernel.
func freeChunk(ch []byte) {
	if syscall.Madvise(ch, syscall.MADV_DONTNEED) != nil {
		clear(ch)
	}
	chunks.mu.Lock()
	chunks.free = append(chunks.free, ch)
	chunks.mu.Unlock()
}
