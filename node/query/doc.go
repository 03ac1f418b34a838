// Package query answers the questions asked of many counters at once: the
// top K of a namespace (TopSets) and aggregates over a prefix
// (Aggregates), of all time or of a window's current bucket.
//
// TopSets keeps, for each namespace that has been asked for its top, the
// largest counters in memory and updates them on every change the node
// feeds it (Observe, called under the counter's stripe lock), so that a
// query sorts at most a few thousand entries and never scans the namespace;
// a ranking it cannot vouch for is marked inexact and the set is rebuilt
// from a scan. Aggregates scan the counters on each query.
//
// Both read the counters only through Config.Scan (keyspace.Set.Scan:
// Pebble merged with the counters not yet checkpointed), so they see every
// change without forcing a checkpoint. The package does not import node;
// node builds them in Open and forwards Node.Top and Node.Aggregate.
package query
