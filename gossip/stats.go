package gossip

import (
	"sync"
	"sync/atomic"
)

// counters are the mesh's cumulative statistics.
type counters struct {
	selfRegion string

	bytesSent, bytesReceived, framesSent, framesReceived atomic.Uint64
	crossSent, crossReceived                             atomic.Uint64
	aeBytesSent, aeBytesReceived                         atomic.Uint64
	aeCrossSent, aeCrossReceived                         atomic.Uint64
	published, publishedDeltas                           atomic.Uint64
	deltasStreamed, deltasReceived, forwarded            atomic.Uint64
	drops, droppedDeltas                                 atomic.Uint64
	aeRounds, aeServed, aeFailures                       atomic.Uint64
	aeDeltasSent, aeDeltasReceived                       atomic.Uint64
	applyErrors, reconnects                              atomic.Uint64
	refusedConns, refusedPeers                           atomic.Uint64

	regionMu sync.RWMutex // guards byRegion (the counters inside are atomic)
	byRegion map[string]*regionBytes
}

type regionBytes struct {
	sent, received atomic.Uint64
}

func (c *counters) region(r string) *regionBytes {
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

// countSent implements trafficCounter. region is the peer's region, ""
// while unknown.
func (c *counters) countSent(region string, n int, ae bool) {
	c.framesSent.Add(1)
	c.bytesSent.Add(uint64(n))
	if ae {
		c.aeBytesSent.Add(uint64(n))
	}
	if region == "" {
		return
	}
	c.region(region).sent.Add(uint64(n))
	if region != c.selfRegion {
		c.crossSent.Add(uint64(n))
		if ae {
			c.aeCrossSent.Add(uint64(n))
		}
	}
}

// countReceived implements trafficCounter.
func (c *counters) countReceived(region string, n int, ae bool) {
	c.framesReceived.Add(1)
	c.bytesReceived.Add(uint64(n))
	if ae {
		c.aeBytesReceived.Add(uint64(n))
	}
	if region == "" {
		return
	}
	c.region(region).received.Add(uint64(n))
	if region != c.selfRegion {
		c.crossReceived.Add(uint64(n))
		if ae {
			c.aeCrossReceived.Add(uint64(n))
		}
	}
}

func (c *counters) snapshot() Stats {
	s := Stats{
		BytesSent:                           c.bytesSent.Load(),
		BytesReceived:                       c.bytesReceived.Load(),
		FramesSent:                          c.framesSent.Load(),
		FramesReceived:                      c.framesReceived.Load(),
		CrossRegionBytesSent:                c.crossSent.Load(),
		CrossRegionBytesReceived:            c.crossReceived.Load(),
		AntiEntropyBytesSent:                c.aeBytesSent.Load(),
		AntiEntropyBytesReceived:            c.aeBytesReceived.Load(),
		AntiEntropyCrossRegionBytesSent:     c.aeCrossSent.Load(),
		AntiEntropyCrossRegionBytesReceived: c.aeCrossReceived.Load(),
		Published:                           c.published.Load(),
		PublishedDeltas:                     c.publishedDeltas.Load(),
		DeltasStreamed:                      c.deltasStreamed.Load(),
		DeltasReceived:                      c.deltasReceived.Load(),
		Forwarded:                           c.forwarded.Load(),
		Drops:                               c.drops.Load(),
		DroppedDeltas:                       c.droppedDeltas.Load(),
		AntiEntropyRounds:                   c.aeRounds.Load(),
		AntiEntropyServed:                   c.aeServed.Load(),
		AntiEntropyFailures:                 c.aeFailures.Load(),
		AntiEntropyDeltasSent:               c.aeDeltasSent.Load(),
		AntiEntropyDeltasReceived:           c.aeDeltasReceived.Load(),
		ApplyErrors:                         c.applyErrors.Load(),
		RefusedConns:                        c.refusedConns.Load(),
		RefusedPeers:                        c.refusedPeers.Load(),
		Reconnects:                          c.reconnects.Load(),
		BytesSentByRegion:                   make(map[string]uint64),
		BytesReceivedByRegion:               make(map[string]uint64),
	}
	c.regionMu.RLock()
	defer c.regionMu.RUnlock()
	for r, rb := range c.byRegion {
		s.BytesSentByRegion[r] = rb.sent.Load()
		s.BytesReceivedByRegion[r] = rb.received.Load()
	}
	return s
}
