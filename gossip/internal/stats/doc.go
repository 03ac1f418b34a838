// Package stats holds the mesh's cumulative counters, shared by the peer
// transport, the replication streams and anti-entropy; package gossip
// copies them into gossip.Stats.
package stats
