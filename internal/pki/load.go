package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// readCerts reads every CERTIFICATE block of a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: %w: it holds no PEM \"CERTIFICATE\" block", path, ErrNotPEM)
	}
	return certs, nil
}

// readKey reads the first private key of a PEM file (PKCS #8, SEC 1 "EC
// PRIVATE KEY" or PKCS #1).
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%s: %w: it holds no PEM private key block", path, ErrNotPEM)
		}
		var key any
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", path, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: %w: unsupported key type %T", path, ErrNotPEM, key)
		}
		return s, nil
	}
}

// sameKey reports whether key is the private half of cert's public key.
func sameKey(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// checkValidity fails when cert is not valid at now.
func checkValidity(path string, cert *x509.Certificate, now time.Time) error {
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("%s: %w: valid from %s to %s, now is %s", path, ErrExpired,
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// loadCA reads a CA certificate and its key, for signing.
func loadCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certs, err := readCerts(certPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, nil, err
	}
	ca := certs[0]
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("%s: %w: it is not a CA certificate", certPath, ErrUsage)
	}
	if !sameKey(ca, key) {
		return nil, nil, fmt.Errorf("%s and %s: %w", keyPath, certPath, ErrKeyMismatch)
	}
	return ca, key, nil
}

// loadKeyPair reads a certificate (leaf first, then any intermediates) and
// its key, checks that they match and that the leaf is valid now.
func loadKeyPair(certPath, keyPath string, now time.Time) (*tls.Certificate, error) {
	certs, err := readCerts(certPath)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if !sameKey(leaf, key) {
		return nil, fmt.Errorf("%s and %s: %w", keyPath, certPath, ErrKeyMismatch)
	}
	if err := checkValidity(certPath, leaf, now); err != nil {
		return nil, err
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range certs {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

// PeerTLS holds the CA and the node certificate of the peer listener and
// hands out tls.Configs for both sides of mutual TLS 1.3. It is safe for
// concurrent use; Reload may run while connections are being made.
type PeerTLS struct {
	caFile, certFile, keyFile string
	cur                       atomic.Pointer[peerState]
}

// peerState is one loaded generation of the files; never modified.
type peerState struct {
	cert   *tls.Certificate
	roots  *x509.CertPool
	server *tls.Config // the server side's config for this generation
}

// LoadPeerTLS reads the CA file (one or more PEM CA certificates), the node
// certificate and its key. It fails, naming the file, when one is not PEM,
// the key does not match the certificate, the certificate is not valid now,
// is not signed by one of the CAs, or is not usable for both server and
// client authentication.
func LoadPeerTLS(caFile, certFile, keyFile string) (*PeerTLS, error) {
	p := &PeerTLS{caFile: caFile, certFile: certFile, keyFile: keyFile}
	st, err := p.load()
	if err != nil {
		return nil, err
	}
	p.cur.Store(st)
	return p, nil
}

// Reload reads the three files again and, when they are good, makes them the
// ones used by new connections. On error the old ones stay in use. A new
// certificate must name the same node as the old one.
func (p *PeerTLS) Reload() error {
	st, err := p.load()
	if err != nil {
		return err
	}
	if old, now := p.cur.Load().cert.Leaf.Subject.CommonName, st.cert.Leaf.Subject.CommonName; old != now {
		return fmt.Errorf("%s: %w: %q instead of %q; the node name cannot change while running", p.certFile, ErrNameChanged, now, old)
	}
	p.cur.Store(st)
	return nil
}

func (p *PeerTLS) load() (*peerState, error) {
	now := time.Now()
	cas, err := readCerts(p.caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		if !ca.IsCA {
			return nil, fmt.Errorf("%s: %w: %q is not a CA certificate", p.caFile, ErrUsage, ca.Subject.CommonName)
		}
		roots.AddCert(ca)
	}
	cert, err := loadKeyPair(p.certFile, p.keyFile, now)
	if err != nil {
		return nil, err
	}
	leaf := cert.Leaf
	if leaf.Subject.CommonName == "" {
		return nil, fmt.Errorf("%s: %w: its Common Name (the node name) is empty", p.certFile, ErrUsage)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, u) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return nil, fmt.Errorf("%s: %w: it lacks the server or client authentication usage; issue it with countctl certs create-node", p.certFile, ErrUsage)
		}
	}
	if _, err := verifyChain(roots, cert.Certificate, x509.ExtKeyUsageAny, now); err != nil {
		return nil, fmt.Errorf("%s: %w %s: %w", p.certFile, ErrNotSignedByCA, p.caFile, err)
	}
	st := &peerState{cert: cert, roots: roots}
	st.server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
	}
	return st, nil
}

// verifyChain verifies a DER chain (leaf first) against roots.
func verifyChain(roots *x509.CertPool, chain [][]byte, usage x509.ExtKeyUsage, now time.Time) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, ErrNoPeerCert
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("pki: peer certificate %d: %w", i+1, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// Name returns the node name of the loaded certificate (its Common Name).
// countd should check that it equals --node-name.
func (p *PeerTLS) Name() string { return p.cur.Load().cert.Leaf.Subject.CommonName }

// NotAfter returns when the loaded node certificate expires.
func (p *PeerTLS) NotAfter() time.Time { return p.cur.Load().cert.Leaf.NotAfter }

// ServerConfig returns the peer listener's tls.Config: TLS 1.3 only, a client
// certificate signed by the CA required and verified. Each handshake uses the
// certificates loaded last (GetConfigForClient), so a Reload applies to new
// connections. Use PeerName on the accepted connection's state to learn which
// node connected.
func (p *PeerTLS) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return p.cur.Load().server, nil
		},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return p.cur.Load().cert, nil
		},
	}
}

// ClientConfig returns the tls.Config for dialling a peer: TLS 1.3 only,
// presenting this node's certificate. The server's certificate must chain to
// the CA and allow server authentication; when expectName is not empty, its
// Common Name must be expectName. Host names and IP addresses are not
// checked (peers are dialled by address and identified by node name), which
// is why the config sets InsecureSkipVerify and verifies in VerifyConnection.
func (p *PeerTLS) ClientConfig(expectName string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below against the CA, by node name
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return p.cur.Load().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw := make([][]byte, len(cs.PeerCertificates))
			for i, c := range cs.PeerCertificates {
				raw[i] = c.Raw
			}
			leaf, err := verifyChain(p.cur.Load().roots, raw, x509.ExtKeyUsageServerAuth, time.Now())
			if err != nil {
				return fmt.Errorf("%w: %w", ErrNotSignedByCA, err)
			}
			if expectName != "" && leaf.Subject.CommonName != expectName {
				return fmt.Errorf("%w: dialled %q, its certificate names %q", ErrWrongPeer, expectName, leaf.Subject.CommonName)
			}
			return nil
		},
	}
}

// PeerName returns the node name (Common Name) of the peer's verified
// certificate. On the server side of ServerConfig that is the client that
// connected; call it after the handshake. On the client side of
// ClientConfig, crypto/tls records no verified chain (the verification is
// done by the config itself), so PeerName fails there: use the expectName
// given to ClientConfig instead.
func PeerName(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", ErrNoPeerCert
	}
	name := cs.VerifiedChains[0][0].Subject.CommonName
	if name == "" {
		return "", fmt.Errorf("%w: the peer certificate has no Common Name", ErrNoPeerCert)
	}
	return name, nil
}

// ServerCert is the certificate of the public HTTPS (and RESP over TLS)
// listener. It is safe for concurrent use.
type ServerCert struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadServerCert reads a certificate (leaf first, then any intermediates)
// and its key, failing, with the file named, when one is not PEM, they do
// not match or the certificate is not valid now.
func LoadServerCert(certFile, keyFile string) (*ServerCert, error) {
	s := &ServerCert{certFile: certFile, keyFile: keyFile}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again; on error the old certificate stays in use.
func (s *ServerCert) Reload() error {
	c, err := loadKeyPair(s.certFile, s.keyFile, time.Now())
	if err != nil {
		return err
	}
	s.cur.Store(c)
	return nil
}

// NotAfter returns when the loaded certificate expires.
func (s *ServerCert) NotAfter() time.Time { return s.cur.Load().Leaf.NotAfter }

// TLSConfig returns a server tls.Config (TLS 1.2 and later) that serves the
// certificate loaded last. Use it as it is: setting Certificates as well
// would make crypto/tls serve those, not the reloaded one, to clients that
// send no server name (clients that dial an IP address).
func (s *ServerCert) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load(), nil
		},
	}
}
