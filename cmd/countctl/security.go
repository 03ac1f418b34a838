package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
	}
	return usagef("unknown certs command %q: want create-ca or create-node", sub)
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("reading random bytes: %w", err)
	}
	return b, nil
}

// keygen prints a 32-byte gossip key, standard base64, as --gossip-key-file
// takes it (one key a line).
func (c *cli) keygen() error {
	if err := c.nargs(0, 0, "no arguments"); err != nil {
		return err
	}
	b, err := randomBytes(32)
	if err != nil {
		return err
	}
	key := base64.StdEncoding.EncodeToString(b)
	if c.json {
		return c.printJSONValue(map[string]string{"key": key})
	}
	fmt.Fprintln(c.out, key)
	return nil
}

// token prints a random API token: 32 random bytes, base64url without
// padding (43 characters).
func (c *cli) token() error {
	if err := c.nargs(0, 0, "no arguments"); err != nil {
		return err
	}
	b, err := randomBytes(32)
	if err != nil {
		return err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	if c.json {
		return c.printJSONValue(map[string]string{"token": tok})
	}
	fmt.Fprintln(c.out, tok)
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
