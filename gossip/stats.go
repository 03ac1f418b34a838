package gossip

import "github.com/countmesh/countmesh/gossip/internal/stats"

// snapshot copies the counters into Stats.
func snapshot(c *stats.Counters) Stats {
	s := Stats{
		BytesSent:                           c.Sent.Bytes.Load(),
		BytesReceived:                       c.Received.Bytes.Load(),
		FramesSent:                          c.Sent.Frames.Load(),
		FramesReceived:                      c.Received.Frames.Load(),
		CrossRegionBytesSent:                c.Sent.Cross.Load(),
		CrossRegionBytesReceived:            c.Received.Cross.Load(),
		AntiEntropyBytesSent:                c.Sent.AEBytes.Load(),
		AntiEntropyBytesReceived:            c.Received.AEBytes.Load(),
		AntiEntropyCrossRegionBytesSent:     c.Sent.AECross.Load(),
		AntiEntropyCrossRegionBytesReceived: c.Received.AECross.Load(),
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
