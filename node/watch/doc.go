// Package watch is the node's change feed for subscribers: a Hub holds the
// open subscriptions per namespace, and Notify hands each change of a
// counter to the subscriptions watching it (one counter, or a key prefix).
// A subscription collects the keys that changed, coalescing every change of
// a key between two deliveries into one, and never blocks the writer that
// notifies it: past MaxPending keys it overflows and collects nothing more,
// and its reader must start again.
package watch
