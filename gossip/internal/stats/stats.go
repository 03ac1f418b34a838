package stats

import (
	"sync"
	"sync/atomic"
)

// Counters are the mesh's cumulative statistics.
type Counters struct {
	// SelfRegion is this node's region: bytes to or from a peer of another
	// region count as cross-region.
	SelfRegion string

	// Sent and Received count the frames of the peer transport.
	Sent, Received Traffic

	Published, PublishedDeltas                atomic.Uint64
	DeltasStreamed, DeltasReceived, Forwarded atomic.Uint64
	Drops, DroppedDeltas                      atomic.Uint64
	AERounds, AEServed, AEFailures            atomic.Uint64
	AEDeltasSent, AEDeltasReceived            atomic.Uint64
	ApplyErrors, Reconnects                   atomic.Uint64
	RefusedConns, RefusedPeers                atomic.Uint64

	regionMu sync.RWMutex // guards byRegion (the counters inside are atomic)
	byRegion map[string]*regionBytes
}

// Traffic counts one direction of the transport's frames.
type Traffic struct {
	Frames, Bytes atomic.Uint64
	// AEBytes is the part of Bytes on anti-entropy sessions.
	AEBytes atomic.Uint64
	// Cross and AECross are the parts of Bytes and AEBytes whose peer is
	// in another region.
	Cross, AECross atomic.Uint64
}

// regionBytes holds the bytes sent to and received from one region.
type regionBytes struct {
	sent, received atomic.Uint64
}

func (c *Counters) region(r string) *regionBytes {
	c.regionMu.RLock()
	rb := c.byRegion[r]
	c.regionMu.RUnlock()
	if rb != nil {
		return rb
	}
	c.regionMu.Lock()
	defer c.regionMu.Unlock()
	if c.byRegion == nil {
		c.byRegion = make(map[string]*regionBytes)
	}
	if rb = c.byRegion[r]; rb == nil {
		rb = new(regionBytes)
		c.byRegion[r] = rb
	}
	return rb
}

// CountSent counts a frame of n bytes sent to a peer of region ("" while
// unknown), on an anti-entropy session when ae.
func (c *Counters) CountSent(region string, n int, ae bool) {
	c.count(&c.Sent, region, n, ae, func(rb *regionBytes) *atomic.Uint64 { return &rb.sent })
}

// CountReceived counts a frame received (see CountSent).
func (c *Counters) CountReceived(region string, n int, ae bool) {
	c.count(&c.Received, region, n, ae, func(rb *regionBytes) *atomic.Uint64 { return &rb.received })
}

func (c *Counters) count(t *Traffic, region string, n int, ae bool, byRegion func(*regionBytes) *atomic.Uint64) {
	t.Frames.Add(1)
	t.Bytes.Add(uint64(n))
	if ae {
		t.AEBytes.Add(uint64(n))
	}
	if region == "" {
		return
	}
	byRegion(c.region(region)).Add(uint64(n))
	if region != c.SelfRegion {
		t.Cross.Add(uint64(n))
		if ae {
			t.AECross.Add(uint64(n))
		}
	}
}

// ByRegion returns the bytes sent and received by the peer's region.
func (c *Counters) ByRegion() (sent, received map[string]uint64) {
	sent, received = make(map[string]uint64), make(map[string]uint64)
	c.regionMu.RLock()
	defer c.regionMu.RUnlock()
	for r, rb := range c.byRegion {
		sent[r] = rb.sent.Load()
		received[r] = rb.received.Load()
	}
	return sent, received
}
