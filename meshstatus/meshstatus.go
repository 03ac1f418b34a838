package meshstatus

import "github.com/countmesh/countmesh/crdt"

// Member states in Status.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// NodeInfo describes this node in Status.
type NodeInfo struct {
	Name       string `json:"name"`
	Region     string `json:"region"`
	HTTPAddr   string `json:"http_addr"`
	GossipAddr string `json:"gossip_addr"`
	ReplAddr   string `json:"-"`
}

// Member is one node of the mesh as this node sees it.
type Member struct {
	Name     string `json:"name"`
	Region   string `json:"region"`
	State    string `json:"state"` // alive, suspect, dead or left
	HTTPAddr string `json:"http_addr"`
	// GossipAddr and ReplAddr are the member's memberlist and replication
	// addresses; not part of the public cluster API.
	GossipAddr string `json:"-"`
	ReplAddr   string `json:"-"`
	// ID is the member's slot id (its counters' slot and its origin in
	// version vectors).
	ID crdt.NodeID `json:"-"`
}

// PeerLag is the replication lag towards one peer this node streams to.
type PeerLag struct {
	Peer   string `json:"peer"`
	Region string `json:"region"`
	// LagMS is the larger of the age of the oldest change published but not
	// yet acknowledged by the peer (queued, in flight, or dropped and not yet
	// repaired by anti-entropy) and the publish-to-ack time of the last
	// acknowledged frame, in milliseconds.
	LagMS int64 `json:"lag_ms"`
}

// Status is the mesh as seen from this node, shaped like GET /v1/cluster.
type Status struct {
	Self        NodeInfo  `json:"node"`
	Members     []Member  `json:"members"`
	Replication []PeerLag `json:"replication"`
}
