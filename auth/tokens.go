package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// Sentinel errors; the errors of this package wrap one of them.
var (
	// ErrUnauthenticated: no token, or one that is not in the file.
	ErrUnauthenticated = errors.New("auth: unauthenticated")
	// ErrPermissionDenied: the token's scope or namespaces do not cover
	// the request.
	ErrPermissionDenied = errors.New("auth: permission denied")
	// ErrInvalidFile: the tokens file cannot be used (the message names
	// the line and the problem).
	ErrInvalidFile = errors.New("auth: invalid tokens file")
)

// Limits of the tokens file.
const (
	// MaxFileBytes bounds the tokens file.
	MaxFileBytes = 1 << 20
	// MaxTokens bounds the tokens in the file.
	MaxTokens = 10_000
	// MinTokenLen is the shortest token accepted (countctl token makes
	// 43-character tokens).
	MinTokenLen = 16
	// MaxTokenLen is the longest token accepted.
	MaxTokenLen = 1024
	// maxNamespaceLen is the longest namespace name.
	maxNamespaceLen = 64
)

// Scope is what a token may do. Each scope includes the ones below it:
// ScopeRead < ScopeWrite < ScopeAdmin. The zero Scope is no scope.
type Scope uint8

// The scopes of the tokens file.
const (
	// ScopeRead reads counters, series, listings, the cluster and metrics.
	ScopeRead Scope = iota + 1
	// ScopeWrite also changes counters (incr, decr, reset, delete,
	// batch, rate limits).
	ScopeWrite
	// ScopeAdmin also changes namespace configs.
	ScopeAdmin
)

// String returns the scope as written in the tokens file.
func (s Scope) String() string {
	switch s {
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	case ScopeAdmin:
		return "admin"
	}
	return fmt.Sprintf("Scope(%d)", uint8(s))
}

// ParseScope parses "read", "write" or "admin".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "read":
		return ScopeRead, nil
	case "write":
		return ScopeWrite, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return 0, fmt.Errorf("%w: the scope must be read, write or admin", ErrInvalidFile)
}

// Grant is what one token may do: its scope and namespace patterns.
type Grant struct {
	scope Scope
	// patterns are the namespace patterns; nil covers every namespace.
	patterns []pattern
}

// pattern is one namespace pattern: a name, or a prefix when prefix is set.
type pattern struct {
	name   string
	prefix bool
}

// Scope returns the grant's scope.
func (g *Grant) Scope() Scope { return g.scope }

// Covers reports whether the grant's namespace patterns cover namespace ns,
// whatever the scope; list endpoints use it to filter.
func (g *Grant) Covers(ns string) bool {
	if g.patterns == nil {
		return true
	}
	for _, p := range g.patterns {
		if p.name == ns || (p.prefix && strings.HasPrefix(ns, p.name)) {
			return true
		}
	}
	return false
}

// Allow returns nil when the grant allows an operation that needs scope
// need on namespace ns, and an error wrapping ErrPermissionDenied otherwise.
// ns == "" is a request that names no namespace (the cluster, metrics, the
// namespace list): only the scope counts.
func (g *Grant) Allow(need Scope, ns string) error {
	if g.scope < need {
		return fmt.Errorf("%w: the token has scope %s and this needs %s; use a token with scope %s or above", ErrPermissionDenied, g.scope, need, need)
	}
	if ns != "" && !g.Covers(ns) {
		return fmt.Errorf("%w: the token's namespace patterns do not cover namespace %q; use a token whose patterns do", ErrPermissionDenied, ns)
	}
	return nil
}

// entry is one configured token: only its digest is kept.
type entry struct {
	digest [sha256.Size]byte
	grant  Grant
}

// Tokens is a parsed tokens file. It is immutable and safe for concurrent
// use.
type Tokens struct {
	entries []entry
}

// Len returns the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// Authenticate returns the grant of token, or an error wrapping
// ErrUnauthenticated when token is empty or not configured. It takes the
// same time whichever token matches (see the package doc).
func (t *Tokens) Authenticate(token string) (*Grant, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: no token given", ErrUnauthenticated)
	}
	i, _ := t.lookup(token)
	if i < 0 {
		return nil, fmt.Errorf("%w: the token is not one of the configured API tokens", ErrUnauthenticated)
	}
	return &t.entries[i].grant, nil
}

// lookup returns the index of token's entry (-1: none) and how many
// digests it compared (always all of them; the tests check it).
func (t *Tokens) lookup(token string) (index, compared int) {
	sum := sha256.Sum256([]byte(token))
	index = -1
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(sum[:], t.entries[i].digest[:])
		index = subtle.ConstantTimeSelect(eq, i, index)
		compared++
	}
	return index, compared
}

// Authorize authenticates token and checks that it allows need on ns
// (ns == "": a request that names no namespace). The error wraps
// ErrUnauthenticated or ErrPermissionDenied.
func (t *Tokens) Authorize(token string, need Scope, ns string) error {
	g, err := t.Authenticate(token)
	if err != nil {
		return err
	}
	return g.Allow(need, ns)
}

// Parse reads a tokens file (format in the package doc). The error wraps
// ErrInvalidFile, names the line and never quotes a token.
func Parse(r io.Reader) (*Tokens, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading: %w", ErrInvalidFile, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%w: the file is over %d bytes; a tokens file holds at most %d tokens", ErrInvalidFile, MaxFileBytes, MaxTokens)
	}
	t := &Tokens{}
	seen := make(map[[sha256.Size]byte]int) // digest -> line
	for n, line := range bytes.Split(data, []byte("\n")) {
		lineNo := n + 1
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			continue
		}
		e, err := parseLine(fields)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %s", ErrInvalidFile, lineNo, err.Error())
		}
		if prev, ok := seen[e.digest]; ok {
			return nil, fmt.Errorf("%w: line %d: the same token as line %d; each token may appear once", ErrInvalidFile, lineNo, prev)
		}
		if len(t.entries) == MaxTokens {
			return nil, fmt.Errorf("%w: line %d: more than %d tokens", ErrInvalidFile, lineNo, MaxTokens)
		}
		seen[e.digest] = lineNo
		t.entries = append(t.entries, e)
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("%w: the file holds no tokens; add a line <token> <scope> [<namespace-pattern> ...] (countctl token makes a token)", ErrInvalidFile)
	}
	return t, nil
}

// lineError is a problem with one line; its text never holds a token.
type lineError string

func (e lineError) Error() string { return string(e) }

// parseLine parses the fields of one line.
func parseLine(fields []string) (entry, error) {
	if len(fields) < 2 {
		return entry{}, lineError("want <token> <scope> [<namespace-pattern> ...], got a token without a scope")
	}
	token := fields[0]
	if len(token) < MinTokenLen {
		return entry{}, lineError(fmt.Sprintf("the token is %d characters; tokens must be at least %d (countctl token makes 43-character tokens)", len(token), MinTokenLen))
	}
	if len(token) > MaxTokenLen {
		return entry{}, lineError(fmt.Sprintf("the token is %d characters; tokens may be at most %d", len(token), MaxTokenLen))
	}
	for i := 0; i < len(token); i++ {
		if !isTokenChar(token[i]) {
			return entry{}, lineError(fmt.Sprintf("character %d of the token is not one of A-Z a-z 0-9 - . _ ~ + / =", i+1))
		}
	}
	scope, err := ParseScope(fields[1])
	if err != nil {
		// Not quoted: a line written in the wrong order holds the token here.
		return entry{}, lineError("the second field must be the scope: read, write or admin")
	}
	e := entry{digest: sha256.Sum256([]byte(token)), grant: Grant{scope: scope}}
	for i, f := range fields[2:] {
		p, ok := parsePattern(f)
		if !ok {
			// Not quoted either, for the same reason.
			return entry{}, lineError(fmt.Sprintf("namespace pattern %d is not a namespace name [a-z0-9][a-z0-9_.-]{0,63}, such a name's prefix followed by *, or *", i+1))
		}
		e.grant.patterns = append(e.grant.patterns, p)
	}
	return e, nil
}

// isTokenChar reports whether c may appear in a token: the b64token of
// RFC 6750, which a Bearer header carries unchanged.
func isTokenChar(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '='
}

// parsePattern parses a namespace pattern: a name, a prefix of a name
// followed by "*", or "*".
func parsePattern(s string) (pattern, bool) {
	p := pattern{name: s}
	if strings.HasSuffix(s, "*") {
		p = pattern{name: s[:len(s)-1], prefix: true}
	}
	if len(p.name) > maxNamespaceLen || (!p.prefix && p.name == "") {
		return pattern{}, false
	}
	for i := 0; i < len(p.name); i++ {
		c := p.name[i]
		ok := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '.' || c == '-'))
		if !ok {
			return pattern{}, false
		}
	}
	return p, true
}

// Store holds the current tokens of a file and replaces them on Reload.
// It is safe for concurrent use.
type Store struct {
	path string
	// reloadMu serialises Reload, so that two reloads cannot install
	// their files out of order.
	reloadMu sync.Mutex
	current  atomic.Pointer[Tokens]
}

// LoadFile reads and parses the tokens file at path.
func LoadFile(path string) (*Store, error) {
	s := &Store{path: path}
	t, err := readFile(path)
	if err != nil {
		return nil, err
	}
	s.current.Store(t)
	return s, nil
}

// Reload re-reads the file (on SIGHUP). When the file cannot be read or is
// not valid it keeps the current tokens and returns the error.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	t, err := readFile(s.path)
	if err != nil {
		return err
	}
	s.current.Store(t)
	return nil
}

// Current returns the tokens in force.
func (s *Store) Current() *Tokens { return s.current.Load() }

func readFile(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFile, err)
	}
	defer f.Close()
	t, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
