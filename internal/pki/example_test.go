package pki_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/countmesh/countmesh/internal/pki"
)

// Issue a CA and a node certificate, then load them for the peer listener.
func ExampleLoadPeerTLS() {
	dir, err := os.MkdirTemp("", "certs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := pki.CreateCA(dir); err != nil {
		log.Fatal(err)
	}
	if err := pki.CreateNode(dir, "node-1", []string{"10.0.0.1", "node-1.internal"}); err != nil {
		log.Fatal(err)
	}
	p, err := pki.LoadPeerTLS(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "node-1.crt"), filepath.Join(dir, "node-1.key"))
	if err != nil {
		log.Fatal(err)
	}
	srv := p.ServerConfig()         // for the peer listener: tls.NewListener(ln, srv)
	cli := p.ClientConfig("node-2") // for dialling node-2
	fmt.Println(p.Name(), srv.MinVersion == cli.MinVersion)
	// Output: node-1 true
}
