// Package pki issues and loads the certificates that secure countmesh.
//
// # Issuing
//
// CreateCA writes a self-signed certificate authority (ca.crt, ca.key) and
// CreateNode issues a node certificate signed by it (<name>.crt,
// <name>.key). Both use ECDSA P-256 keys, written PEM-encoded as PKCS #8
// ("PRIVATE KEY") with mode 0600; certificates are written with mode 0644.
// Neither ever overwrites a file: an existing file is an error naming it.
//
// A node certificate has the node's --node-name as its Subject Common Name
// and as a DNS name; the hosts given become further subject alternative
// names (IP addresses as IP SANs, the rest as DNS names). It is valid for
// both TLS server and TLS client authentication, so the same certificate
// serves both directions of mutual TLS, and, for NodeYears (2) years (never
// past the CA's own expiry). The CA is valid for CAYears (10) years.
//
// # Peer identity
//
// Peers are dialled by IP address and advertise addresses change, so a peer's
// identity is its node name (the certificate's Common Name), not a host name.
// PeerTLS verifies certificate chains against the CA itself: the server side
// requires and verifies a client certificate (crypto/tls does it), and the
// client side checks the server's chain and, when asked, its node name.
// PeerName reads the verified peer's node name from a connection, so that a
// server can check that a peer's hello names itself truthfully.
//
// # Rotation
//
// LoadPeerTLS and LoadServerCert read their files once; Reload reads them
// again and swaps the result in atomically, keeping the old certificates when
// the new files are bad. The tls.Configs they hand out fetch the current
// certificates on every handshake, so a reload (on SIGHUP) applies to new
// connections without a restart; established connections are not affected.
// The CA file may hold several CA certificates (a bundle), which is how a CA
// is rotated: ship a bundle of the old and the new CA first, then the new
// node certificates, then a CA file with only the new CA.
//
// Only TLS 1.3 is accepted between peers. LoadServerCert is for the public
// HTTP and RESP listeners and accepts TLS 1.2 and later.
package pki
