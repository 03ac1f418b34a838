// Package meshstatus describes the mesh as one node sees it: this node, the
// members and their states, and the replication lag towards each peer, in
// the shape of GET /v1/cluster. Package gossip fills it in; the HTTP layer
// and the rate limiter read it without importing gossip.
package meshstatus
