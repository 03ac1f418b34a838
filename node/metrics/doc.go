// Package metrics holds a node's Prometheus metrics: the counters its
// subsystems bump (increments, reads, replicated changes, refused peer
// input, checkpoints, rights, ids, expiry, watchers), and the gauges read
// from the node's state when scraped (Sources: pending and unsaved
// counters, operation-log bytes, cached counters, commits and fsyncs, disk
// use). The metric names are those of docs/operations.md.
//
// node.Open builds Metrics and hands each subsystem the counters it bumps
// as function values; with a nil Registerer nothing is registered.
package metrics
