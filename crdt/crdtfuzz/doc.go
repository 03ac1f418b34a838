// Package crdtfuzz turns fuzz bytes into CRDT states, for the fuzz targets
// of crdt (merge and validation) and node (peer input). It is test support:
// no production code imports it.
package crdtfuzz
