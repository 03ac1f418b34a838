package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tokens of the tests (each at least MinTokenLen characters).
const (
	tokRead  = "read-token-0123456789abcdef"
	tokWrite = "write-token-0123456789abcdef"
	tokAdmin = "admin-token-0123456789abcdef"
)

func mustParse(t *testing.T, file string) *Tokens {
	t.Helper()
	toks, err := Parse(strings.NewReader(file))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return toks
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, file string
		want       string // in the error message
	}{
		{"empty file", "", "holds no tokens"},
		{"only comments", "# nothing here\n\n   # still nothing\n", "holds no tokens"},
		{"no scope", "# c\n" + tokRead + "\n", "line 2: want <token> <scope>"},
		{"short token", "shorttoken read\n", "line 1: the token is 10 characters; tokens must be at least 16 (countctl token makes 43-character tokens)"},
		{"long token", strings.Repeat("a", MaxTokenLen+1) + " read\n", "line 1: the token is 1025 characters"},
		{"bad token character", "token-with-a-\"quote\"-in-it read\n", "line 1: character 14 of the token"},
		{"unknown scope", tokRead + " readonly\n", "line 1: the second field must be the scope"},
		{"scope first", "read " + tokRead + "\n", "line 1: the token is 4 characters"},
		{"bad pattern", tokRead + " read pages Bad\n", "line 1: namespace pattern 2 is not a namespace name"},
		{"star in the middle", tokRead + " read pa*ges\n", "line 1: namespace pattern 1"},
		{"pattern starting with a dash", tokRead + " read -x*\n", "line 1: namespace pattern 1"},
		{"pattern too long", tokRead + " read " + strings.Repeat("n", 65) + "\n", "line 1: namespace pattern 1"},
		{"double star", tokRead + " read **\n", "line 1: namespace pattern 1"},
		{"duplicate token", tokRead + " read\n\n" + tokWrite + " write\n" + tokRead + " admin\n", "line 4: the same token as line 1"},
		{"file too large", tokRead + " read\n" + strings.Repeat("#", MaxFileBytes), "over 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.file))
			if !errors.Is(err, ErrInvalidFile) {
				t.Fatalf("err = %v, want ErrInvalidFile", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.want)
			}
			for _, tok := range []string{tokRead, tokWrite, tokAdmin} {
				if strings.Contains(err.Error(), tok) {
					t.Fatalf("the error %q quotes a token", err)
				}
			}
		})
	}
}

func TestParseTooManyTokens(t *testing.T) {
	var b strings.Builder
	for i := range MaxTokens + 1 {
		b.WriteString("token-number-")
		b.WriteString(strings.Repeat("x", 4))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(itoa(i))
		b.WriteString(" read\n")
	}
	_, err := Parse(strings.NewReader(b.String()))
	if !errors.Is(err, ErrInvalidFile) || !strings.Contains(err.Error(), "line 10001: more than 10000 tokens") {
		t.Fatalf("err = %v", err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestAuthorize(t *testing.T) {
	toks := mustParse(t, `
# scopes and patterns
`+tokRead+`   read                 # every namespace
`+tokWrite+"\twrite pages clicks-* \r\n"+
		tokAdmin+` admin *
all-star-token-0123456789 write *
`)
	if toks.Len() != 4 {
		t.Fatalf("Len = %d, want 4", toks.Len())
	}
	tests := []struct {
		name  string
		token string
		need  Scope
		ns    string
		want  error
	}{
		{"no token", "", ScopeRead, "pages", ErrUnauthenticated},
		{"unknown token", "unknown-token-0123456789", ScopeRead, "pages", ErrUnauthenticated},
		{"prefix of a token", tokRead[:20], ScopeRead, "pages", ErrUnauthenticated},
		{"read reads", tokRead, ScopeRead, "anything", nil},
		{"read cannot write", tokRead, ScopeWrite, "pages", ErrPermissionDenied},
		{"read without namespace", tokRead, ScopeRead, "", nil},
		{"write reads", tokWrite, ScopeRead, "pages", nil},
		{"write writes its namespace", tokWrite, ScopeWrite, "pages", nil},
		{"exact pattern is exact", tokWrite, ScopeWrite, "pages2", ErrPermissionDenied},
		{"prefix pattern", tokWrite, ScopeWrite, "clicks-eu", nil},
		{"prefix pattern matches the prefix itself", tokWrite, ScopeWrite, "clicks-", nil},
		{"prefix pattern is a prefix", tokWrite, ScopeWrite, "clicks", ErrPermissionDenied},
		{"foreign namespace", tokWrite, ScopeRead, "views", ErrPermissionDenied},
		{"write without namespace", tokWrite, ScopeWrite, "", nil},
		{"write is not admin", tokWrite, ScopeAdmin, "pages", ErrPermissionDenied},
		{"admin does everything", tokAdmin, ScopeAdmin, "anything", nil},
		{"admin writes", tokAdmin, ScopeWrite, "x", nil},
		{"star covers all", "all-star-token-0123456789", ScopeWrite, "zz", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := toks.Authorize(tt.token, tt.need, tt.ns)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Authorize = %v, want %v", err, tt.want)
			}
			if err != nil && tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Fatalf("the error %q quotes the token", err)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	toks := mustParse(t, tokWrite+" write pages clicks-*\n"+tokRead+" read\n")
	g, err := toks.Authenticate(tokWrite)
	if err != nil {
		t.Fatal(err)
	}
	if g.Scope() != ScopeWrite {
		t.Fatalf("Scope = %v", g.Scope())
	}
	for ns, want := range map[string]bool{"pages": true, "clicks-a": true, "clicks": false, "views": false} {
		if got := g.Covers(ns); got != want {
			t.Errorf("Covers(%q) = %v, want %v", ns, got, want)
		}
	}
	g, _ = toks.Authenticate(tokRead)
	if !g.Covers("anything") {
		t.Error("a token without patterns must cover every namespace")
	}
}

// TestLookupComparesEveryToken checks the constant-time path: the lookup
// compares the digest with every configured one whether the token is the
// first, the last, or none of them.
func TestLookupComparesEveryToken(t *testing.T) {
	var b strings.Builder
	var all []string
	for i := range 50 {
		tok := "constant-time-token-" + itoa(1000+i)
		all = append(all, tok)
		b.WriteString(tok + " read\n")
	}
	toks := mustParse(t, b.String())
	for _, tt := range []struct {
		token string
		index int
	}{{all[0], 0}, {all[25], 25}, {all[49], 49}, {"constant-time-token-9999", -1}} {
		index, compared := toks.lookup(tt.token)
		if index != tt.index || compared != len(all) {
			t.Errorf("lookup(%s) = index %d after %d compares, want %d after %d", tt.token, index, compared, tt.index, len(all))
		}
	}
}

func TestScopeOrder(t *testing.T) {
	if !(ScopeRead < ScopeWrite && ScopeWrite < ScopeAdmin) {
		t.Fatal("scopes are not ordered read < write < admin")
	}
	for _, s := range []Scope{ScopeRead, ScopeWrite, ScopeAdmin} {
		got, err := ParseScope(s.String())
		if err != nil || got != s {
			t.Errorf("ParseScope(%q) = %v, %v", s.String(), got, err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStoreReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, tokRead+" read\n")
	st, err := LoadFile(path)
	if err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	if err := st.Current().Authorize(tokRead, ScopeRead, "x"); err != nil {
		t.Fatalf("before reload: %v", err)
	}

	// A valid file replaces the tokens.
	writeFile(t, path, tokWrite+" write\n")
	if err := st.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := st.Current().Authorize(tokRead, ScopeRead, "x"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("removed token: %v", err)
	}
	if err := st.Current().Authorize(tokWrite, ScopeWrite, "x"); err != nil {
		t.Fatalf("added token: %v", err)
	}

	// An invalid or missing file keeps them.
	for name, breakIt := range map[string]func(){
		"invalid": func() { writeFile(t, path, tokAdmin+" root\n") },
		"missing": func() { os.Remove(path) },
	} {
		breakIt()
		err := st.Reload()
		if !errors.Is(err, ErrInvalidFile) {
			t.Fatalf("%s file: Reload = %v, want ErrInvalidFile", name, err)
		}
		if strings.Contains(err.Error(), tokAdmin) {
			t.Fatalf("%s file: the error %q quotes a token", name, err)
		}
		if err := st.Current().Authorize(tokWrite, ScopeWrite, "x"); err != nil {
			t.Fatalf("%s file: the old tokens are gone: %v", name, err)
		}
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, ErrInvalidFile) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrInvalidFile and ErrNotExist", err)
	}
}
