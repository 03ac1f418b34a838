package gossip

import "github.com/countmesh/countmesh/gossip/internal/stats"

// snapshot copies the counters into Stats.
func snapshot(c *stats.Counters) Stats {
	s := Stats{
		BytesSent:                           c.BytesSent.Load(),
		BytesReceived:                       c.BytesReceived.Load(),
		FramesSent:                          c.FramesSent.Load(),
		FramesReceived:                      c.FramesReceived.Load(),
		CrossRegionBytesSent:                c.CrossSent.Load(),
		CrossRegionBytesReceived:            c.CrossReceived.Load(),
		AntiEntropyBytesSent:                c.AEBytesSent.Load(),
		AntiEntropyBytesReceived:            c.AEBytesReceived.Load(),
		AntiEntropyCrossRegionBytesSent:     c.AECrossSent.Load(),
		AntiEntropyCrossRegionBytesReceived: c.AECrossReceived.Load(),
		Published:                           c.Published.Load(),
		PublishedDeltas:                     c.PublishedDeltas.Load(),
		DeltasStreamed:                      c.DeltasStreamed.Load(),
		DeltasReceived:                      c.DeltasReceived.Load(),
		Forwarded:                           c.Forwarded.Load(),
		Drops:                               c.Drops.Load(),
		DroppedDeltas:                       c.DroppedDeltas.Load(),
		AntiEntropyRounds:                   c.AERounds.Load(),
		AntiEntropyServed:                   c.AEServed.Load(),
		AntiEntropyFailures:                 c.AEFailures.Load(),
		AntiEntropyDeltasSent:               c.AEDeltasSent.Load(),
		AntiEntropyDeltasReceived:           c.AEDeltasReceived.Load(),
		ApplyErrors:                         c.ApplyErrors.Load(),
		RefusedConns:                        c.RefusedConns.Load(),
		RefusedPeers:                        c.RefusedPeers.Load(),
		Reconnects:                          c.Reconnects.Load(),
	}
	s.BytesSentByRegion, s.BytesReceivedByRegion = c.ByRegion()
	return s
}
