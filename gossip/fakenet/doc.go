// Package fakenet is an in-process network for tests of package gossip:
// named hosts in regions, each with a memberlist transport (Host.NewTransport:
// datagrams that are dropped, duplicated and delayed at seeded random) and
// replication streams (Host.Listen and Host.Dial: ordered, delayed, bounded
// buffers that push back on writers, deadlines, random resets). Partition
// cuts it by node set or by region, breaking the connections that cross the
// cut; Heal restores it; Host.Down takes a host off the network as a crash
// would.
//
// Every random choice comes from one generator seeded by New, so a run is
// repeatable as far as goroutine scheduling allows. A stream cannot lose or
// duplicate bytes (TCP does not); its faults are delay and resets, after
// which the sender's resend duplicates data at the application level.
package fakenet
