package auth

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, and a file it accepts authorizes each of
// its tokens with the token's own scope, on a namespace its first pattern
// covers.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		tokRead + " read\n",
		"# comment\n" + tokWrite + " write pages clicks-* # trailing\r\n\n" + tokAdmin + " admin *\n",
		tokRead + " read a\n" + tokRead + " read b\n",
		"short read\n",
		tokRead + " read Bad*\n",
		tokRead + "#comment read\n",
		"\x00\xff " + tokRead + " admin\n",
		tokRead + " write *\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		toks, err := Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if i := bytes.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			fields := strings.Fields(string(line))
			if len(fields) == 0 {
				continue
			}
			scope, err := ParseScope(fields[1])
			if err != nil {
				t.Fatalf("Parse accepted scope %q", fields[1])
			}
			ns := ""
			if len(fields) > 2 {
				ns = fields[2]
				if p, ok := strings.CutSuffix(ns, "*"); ok {
					ns = p + "x"
				}
			}
			if err := toks.Authorize(fields[0], scope, ns); err != nil {
				t.Fatalf("token of line %q: Authorize(%s, %q) = %v", line, scope, ns, err)
			}
			if err := toks.Authorize(fields[0], scope, ""); err != nil {
				t.Fatalf("token of line %q: Authorize(%s, \"\") = %v", line, scope, err)
			}
		}
	})
}
