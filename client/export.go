package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// ContentTypeNDJSON is the media type of an export stream.
const ContentTypeNDJSON = "application/x-ndjson"

// ErrCutShort is an export stream that ended without its end record: the
// node or the connection failed part way, and the data is incomplete.
var ErrCutShort = errors.New("client: export cut short")

// ExportSummary counts what an export held, from its end record.
type ExportSummary struct {
	Namespaces int64 `json:"namespaces"`
	Counters   int64 `json:"counters"`
	Bytes      int64 `json:"bytes"`
}

// ImportSummary is what an import applied.
type ImportSummary struct {
	Namespaces int64 `json:"namespaces"`
	Counters   int64 `json:"counters"`
}

// Export streams GET /v1/export (of namespace ns, or of every namespace when
// ns is empty) into w, as it arrives: every namespace config and every
// counter's full state, one JSON record a line (docs/api.md). It checks
// that the stream ends with its end record (else ErrCutShort) and returns
// the counts. Config.Timeout does not apply: the export lasts as long as
// the data does; bound it with ctx.
func (c *Client) Export(ctx context.Context, ns string, w io.Writer) (ExportSummary, error) {
	var q url.Values
	if ns != "" {
		q = url.Values{"ns": {ns}}
	}
	req, err := c.newHTTPRequest(ctx, request{method: http.MethodGet, path: "/v1/export", query: q, accept: ContentTypeNDJSON})
	if err != nil {
		return ExportSummary{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return ExportSummary{}, c.transportError(http.MethodGet, "/v1/export", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ExportSummary{}, decodeError(resp)
	}
	tail := &lastLine{}
	n, err := io.Copy(io.MultiWriter(w, tail), resp.Body)
	sum := ExportSummary{Bytes: n}
	if err != nil {
		return sum, fmt.Errorf("client: export after %d bytes: %w", n, err)
	}
	var end struct {
		Type       string `json:"type"`
		Namespaces int64  `json:"namespaces"`
		Counters   int64  `json:"counters"`
	}
	if json.Unmarshal(tail.line(), &end) != nil || end.Type != "end" {
		return sum, fmt.Errorf("%w: the stream ended after %d bytes without its end record; export again", ErrCutShort, n)
	}
	sum.Namespaces, sum.Counters = end.Namespaces, end.Counters
	return sum, nil
}

// lastLine keeps the last complete line written to it (up to 4 KiB; the
// end record is short).
type lastLine struct {
	cur, last []byte
}

func (l *lastLine) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.cur = appendCapped(l.cur, rest)
			break
		}
		l.cur = appendCapped(l.cur, rest[:i])
		l.last, l.cur = append(l.last[:0], l.cur...), l.cur[:0]
		rest = rest[i+1:]
	}
	return len(p), nil
}

func (l *lastLine) line() []byte { return l.last }

func appendCapped(dst, p []byte) []byte {
	const maxLine = 4 << 10
	if len(dst) >= maxLine {
		return dst
	}
	return append(dst, p[:min(len(p), maxLine-len(dst))]...)
}

// Import streams r, an export stream (what Export wrote), to POST
// /v1/import: the node merges every record into its state, as replication
// merges a peer's, so importing the same stream twice changes nothing and a
// node that holds newer state keeps it. A bad line is a *Error (400) whose
// message names the line and what was applied before it. Config.Timeout
// does not apply; bound the import with ctx.
func (c *Client) Import(ctx context.Context, r io.Reader) (ImportSummary, error) {
	req, err := c.newHTTPRequest(ctx, request{method: http.MethodPost, path: "/v1/import"})
	if err != nil {
		return ImportSummary{}, err
	}
	req.Body = io.NopCloser(r)
	req.ContentLength = -1
	req.Header.Set("Content-Type", ContentTypeNDJSON)
	resp, err := c.hc.Do(req)
	if err != nil {
		return ImportSummary{}, c.transportError(http.MethodPost, "/v1/import", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ImportSummary{}, decodeError(resp)
	}
	var sum ImportSummary
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&sum); err != nil {
		return ImportSummary{}, fmt.Errorf("client: POST /v1/import: decoding answer: %w", err)
	}
	return sum, nil
}
