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

	BytesSent, BytesReceived, FramesSent, FramesReceived atomic.Uint64
	CrossSent, CrossReceived                             atomic.Uint64
	AEBytesSent, AEBytesReceived                         atomic.Uint64
	AECrossSent, AECrossReceived                         atomic.Uint64
	Published, PublishedDeltas                           atomic.Uint64
	DeltasStreamed, DeltasReceived, Forwarded            atomic.Uint64
	Drops, DroppedDeltas                                 atomic.Uint64
	AERounds, AEServed, AEFailures                       atomic.Uint64
	AEDeltasSent, AEDeltasReceived                       atomic.Uint64
	ApplyErrors, Reconnects                              atomic.Uint64
	RefusedConns, RefusedPeers                           atomic.Uint64

	regionMu sync.RWMutex // guards byRegion (the counters inside are atomic)
	byRegion map[string]*regionBytes
}

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

// CountSent counts a frame sent. region is the peer's region, ""
// while unknown.
func (c *Counters) CountSent(region string, n int, ae bool) {
	c.FramesSent.Add(1)
	c.BytesSent.Add(uint64(n))
	if ae {
		c.AEBytesSent.Add(uint64(n))
	}
	if region == "" {
		return
	}
	c.region(region).sent.Add(uint64(n))
	if region != c.SelfRegion {
		c.CrossSent.Add(uint64(n))
		if ae {
			c.AECrossSent.Add(uint64(n))
		}
	}
}

// CountReceived counts a frame received.
func (c *Counters) CountReceived(region string, n int, ae bool) {
	c.FramesReceived.Add(1)
	c.BytesReceived.Add(uint64(n))
	if ae {
		c.AEBytesReceived.Add(uint64(n))
	}
	if region == "" {
		return
	}
	c.region(region).received.Add(uint64(n))
	if region != c.SelfRegion {
		c.CrossReceived.Add(uint64(n))
		if ae {
			c.AECrossReceived.Add(uint64(n))
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
