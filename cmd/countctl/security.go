package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/countmesh/countmesh/internal/pki"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the build information.
var version = ""

// localCommands run without talking to a node.
var localCommands = map[string]bool{"certs": true, "keygen": true, "token": true, "version": true}

// printJSONValue prints v as one line of JSON.
func (c *cli) printJSONValue(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the output: %w", err)
	}
	c.printJSON(b)
	return nil
}

func (c *cli) certs() error {
	if len(c.args) == 0 {
		return usagef("certs takes create-ca DIR, or create-node DIR NAME HOST...")
	}
	sub, rest := c.args[0], c.args[1:]
	switch sub {
	case "create-ca":
		if len(rest) != 1 {
			return usagef("certs create-ca takes DIR")
		}
		dir := rest[0]
		if err := pki.CreateCA(dir); err != nil {
			return err
		}
		crt, key := filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile)
		if c.json {
			return c.printJSONValue(map[string]string{"cert": crt, "key": key})
		}
		fmt.Fprintf(c.out, "wrote %s and %s (valid %d years)\n", crt, key, pki.CAYears)
		fmt.Fprintf(c.out, "keep %s secret and off the nodes; give every node %s\n", key, crt)
		return nil
	case "create-node":
		if len(rest) < 3 {
			return usagef("certs create-node takes DIR NAME HOST... (NAME is the node's --node-name; give at least one IP address or DNS name it is reached at)")
		}
		dir, name, hosts := rest[0], rest[1], rest[2:]
		if err := pki.CreateNode(dir, name, hosts); err != nil {
			if errors.Is(err, pki.ErrBadName) || errors.Is(err, pki.ErrBadHost) {
				return usagef("%v", err)
			}
			return err
		}
		ca, crt, key := filepath.Join(dir, pki.CACertFile), filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		p, err := pki.LoadPeerTLS(ca, crt, key) // proves the files work as countd will load them
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSONValue(map[string]string{
				"name": p.Name(), "ca": ca, "cert": crt, "key": key,
				"not_after": p.NotAfter().UTC().Format(time.RFC3339),
			})
		}
		fmt.Fprintf(c.out, "wrote %s and %s for node %s (hosts %s), valid until %s\n",
			crt, key, p.Name(), strings.Join(hosts, ", "), p.NotAfter().UTC().Format(time.DateOnly))
		fmt.Fprintf(c.out, "start it with: countd --node-name %s --tls-ca %s --tls-cert %s --tls-key %s\n", name, ca, crt, key)
		return nil
	case "init-mesh":
		if len(rest) < 2 {
			return usagef("certs init-mesh takes DIR NAME=HOST[,HOST...]... (one argument per node)")
		}
		return c.initMesh(rest[0], rest[1:])
	}
	return usagef("unknown certs command %q: want create-ca, create-node or init-mesh", sub)
}

// Files that certs init-mesh writes besides the certificates.
const (
	gossipKeyFile = "gossip.key"
	tokensFile    = "tokens"
)

// initMesh makes everything a secured mesh needs in one directory, for
// an init container or a first deployment: the CA, a certificate per
// node, a gossip key and a tokens file with one admin token. It is
// idempotent: what exists already is kept, so running it again (a
// restarted compose project) changes nothing. It prints the admin token
// last, alone on its line.
func (c *cli) initMesh(dir string, nodes []string) error {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	if !exists(pki.CACertFile) {
		if err := pki.CreateCA(dir); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "wrote the CA in %s\n", dir)
	}
	for _, spec := range nodes {
		name, hostList, ok := strings.Cut(spec, "=")
		if !ok || name == "" || hostList == "" {
			return usagef("certs init-mesh: %q is not NAME=HOST[,HOST...]", spec)
		}
		if exists(name + ".crt") {
			continue
		}
		if err := pki.CreateNode(dir, name, strings.Split(hostList, ",")); err != nil {
			if errors.Is(err, pki.ErrBadName) || errors.Is(err, pki.ErrBadHost) {
				return usagef("%v", err)
			}
			return err
		}
		fmt.Fprintf(c.out, "wrote the certificate of %s\n", name)
	}
	if !exists(gossipKeyFile) {
		key, err := newGossipKey()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, gossipKeyFile), []byte(key+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "wrote %s\n", filepath.Join(dir, gossipKeyFile))
	}
	if !exists(tokensFile) {
		tok, err := newToken()
		if err != nil {
			return err
		}
		line := "# <token> <scope> [<namespace-pattern> ...]; see docs/security.md\n" + tok + " admin\n"
		if err := os.WriteFile(filepath.Join(dir, tokensFile), []byte(line), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "wrote %s with one admin token\n", filepath.Join(dir, tokensFile))
	}
	raw, err := os.ReadFile(filepath.Join(dir, tokensFile))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && !strings.HasPrefix(f[0], "#") && f[1] == "admin" {
			if c.json {
				return c.printJSONValue(map[string]string{"dir": dir, "token": f[0]})
			}
			fmt.Fprintln(c.out, f[0])
			return nil
		}
	}
	return fmt.Errorf("%s has no admin token", filepath.Join(dir, tokensFile))
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("reading random bytes: %w", err)
	}
	return b, nil
}

// newGossipKey returns a random 32-byte gossip key, standard base64, as
// --gossip-key-file takes it (one key a line).
func newGossipKey() (string, error) {
	b, err := randomBytes(32)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// newToken returns a random API token: 32 random bytes, base64url without
// padding (43 characters).
func newToken() (string, error) {
	b, err := randomBytes(32)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// keygen prints a new gossip key.
func (c *cli) keygen() error { return c.printSecret("key", newGossipKey) }

// token prints a new API token.
func (c *cli) token() error { return c.printSecret("token", newToken) }

// printSecret prints what gen makes, alone on its line, or as {name: ...}
// with --json.
func (c *cli) printSecret(name string, gen func() (string, error)) error {
	if err := c.nargs(0, 0, "no arguments"); err != nil {
		return err
	}
	v, err := gen()
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSONValue(map[string]string{name: v})
	}
	fmt.Fprintln(c.out, v)
	return nil
}

// versionString is the build's version: -X main.version, else the module
// version, else the VCS revision.
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}

func (c *cli) version() error {
	if err := c.nargs(0, 0, "no arguments"); err != nil {
		return err
	}
	if c.json {
		return c.printJSONValue(map[string]string{"version": versionString(), "go": runtime.Version()})
	}
	fmt.Fprintf(c.out, "countctl %s (%s)\n", versionString(), runtime.Version())
	return nil
}
