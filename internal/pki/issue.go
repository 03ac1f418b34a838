package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Lifetimes of the certificates this package issues.
const (
	// CAYears is how long a CA made by CreateCA is valid.
	CAYears = 10
	// NodeYears is how long a node certificate made by CreateNode is valid
	// (cut short to the CA's own expiry). Rotate node certificates before
	// then: replace the files and send countd SIGHUP.
	NodeYears = 2
)

// File names inside a certificate directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// clockSkew backdates NotBefore so that a peer whose clock is a little behind
// accepts a certificate issued just now.
const clockSkew = 5 * time.Minute

// Errors of this package; they are wrapped with the file or name concerned.
var (
	ErrExists        = errors.New("pki: file already exists; remove it first or use another directory")
	ErrBadName       = errors.New("pki: bad node name")
	ErrBadHost       = errors.New("pki: bad host")
	ErrNotPEM        = errors.New("pki: not a PEM file of the expected kind")
	ErrKeyMismatch   = errors.New("pki: private key does not match the certificate")
	ErrNotSignedByCA = errors.New("pki: certificate is not signed by the CA")
	ErrExpired       = errors.New("pki: certificate is expired or not valid yet")
	ErrUsage         = errors.New("pki: certificate is not usable for mutual TLS")
	ErrNoPeerCert    = errors.New("pki: no verified peer certificate")
	ErrWrongPeer     = errors.New("pki: peer certificate names another node")
	ErrNameChanged   = errors.New("pki: the new certificate names another node")
)

// CreateCA writes a new self-signed CA into dir (created with mode 0700 when
// missing): CACertFile and CAKeyFile. It refuses to overwrite either.
func CreateCA(dir string) error {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if err := refuseExisting(certPath, keyPath); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generating the CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "countmesh CA"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(CAYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // signs node certificates only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("pki: creating the CA certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: creating %s: %w", dir, err)
	}
	return writePair(certPath, keyPath, der, key)
}

// CreateNode issues a certificate for node name, signed by the CA in dir, and
// writes it to dir/<name>.crt and dir/<name>.key. The certificate's Common
// Name is name; its DNS names are name and every host that is not an IP
// address; its IP addresses are the hosts that are. It is valid for server
// and client authentication for NodeYears years, or until the CA expires if
// that is sooner. CreateNode refuses to overwrite either file.
func CreateNode(dir, name string, hosts []string) error {
	if err := checkName(name); err != nil {
		return err
	}
	dnsNames, ips, err := splitHosts(name, hosts)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := refuseExisting(certPath, keyPath); err != nil {
		return err
	}
	ca, caKey, err := loadCA(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return err
	}
	now := time.Now()
	notAfter := now.AddDate(NodeYears, 0, 0)
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	if !notAfter.After(now) {
		return fmt.Errorf("pki: %s: the CA expired on %s: %w", filepath.Join(dir, CACertFile), ca.NotAfter.Format(time.DateOnly), ErrExpired)
	}
	key, der, err := issueNode(ca, caKey, name, dnsNames, ips, now.Add(-clockSkew), notAfter)
	if err != nil {
		return err
	}
	return writePair(certPath, keyPath, der, key)
}

// issueNode signs a node certificate valid from notBefore to notAfter.
func issueNode(ca *x509.Certificate, caKey crypto.Signer, name string, dnsNames []string, ips []net.IP, notBefore, notAfter time.Time) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generating the key of %s: %w", name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: signing the certificate of %s: %w", name, err)
	}
	return key, der, nil
}

// checkName accepts a node name that is safe as a file name and as a DNS
// subject alternative name: printable ASCII without spaces or path
// separators, not starting with a dot, at most 253 bytes.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: it is empty; give the node's --node-name", ErrBadName)
	case len(name) > 253:
		return fmt.Errorf("%w: %.20q... is longer than 253 bytes", ErrBadName, name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%w: %q contains a path separator", ErrBadName, name)
	case name[0] == '.':
		return fmt.Errorf("%w: %q starts with a dot", ErrBadName, name)
	case name == "ca":
		return fmt.Errorf("%w: %q is the CA's file name", ErrBadName, name)
	}
	for _, r := range name {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("%w: %q: use letters, digits, '.', '-' and '_' only", ErrBadName, name)
		}
	}
	return nil
}

// splitHosts sorts hosts into DNS names (name first) and IP addresses,
// dropping duplicates.
func splitHosts(name string, hosts []string) ([]string, []net.IP, error) {
	dnsNames := []string{name}
	var ips []net.IP
	seen := map[string]bool{name: true}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		if err := checkDNSName(h); err != nil {
			return nil, nil, err
		}
		if h = strings.ToLower(h); !seen[h] {
			seen[h] = true
			dnsNames = append(dnsNames, h)
		}
	}
	return dnsNames, ips, nil
}

// checkDNSName accepts a host name, optionally with a leading "*." wildcard.
func checkDNSName(h string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %q %s; give an IP address or a DNS name", ErrBadHost, h, why)
	}
	if h == "" {
		return bad("is empty")
	}
	if len(h) > 253 {
		return bad("is longer than 253 bytes")
	}
	labels := strings.Split(strings.TrimPrefix(h, "*."), ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return bad("has an empty or too long label")
		}
		for _, r := range l {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
			if !ok {
				return bad(fmt.Sprintf("contains %q", r))
			}
		}
	}
	return nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: generating a serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// refuseExisting fails when any of paths exists.
func refuseExisting(paths ...string) error {
	for _, p := range paths {
		_, err := os.Lstat(p)
		if err == nil {
			return fmt.Errorf("%s: %w", p, ErrExists)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pki: %w", err)
		}
	}
	return nil
}

// writePair writes a certificate (0644) and its key (0600), never
// overwriting, and removes what it wrote when the second file fails.
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: encoding the key: %w", err)
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// writeNew creates path with data; an existing file is ErrExists.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", path, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("pki: writing %s: %w", path, err)
	}
	return nil
}
