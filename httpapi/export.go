package httpapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/node"
)

// streamIdle is how long an export or import may go without moving a byte
// before the connection is dropped. It replaces the server's whole-request
// timeouts for these two routes, which last as long as the data does.
const streamIdle = 30 * time.Second

// mediaNDJSON is the media type of an export stream.
const mediaNDJSON = "application/x-ndjson"

// exportAnswer is the answer of POST /v1/import.
type importAnswer struct {
	Namespaces int64 `json:"namespaces"`
	Counters   int64 `json:"counters"`
}

// exportAll answers GET /v1/export[?ns=NS]: the node's namespace configs
// and counters as an export stream (node.Export). A token limited to some
// namespaces exports those.
func (s *Server) exportAll(w http.ResponseWriter, r *http.Request) {
	opts := node.ExportOptions{NS: r.URL.Query().Get("ns")}
	if opts.NS != "" {
		if err := node.ValidateNamespace(opts.NS); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if g := grantOf(r); g != nil {
		if opts.NS != "" {
			if err := g.Allow(auth.ScopeAdmin, opts.NS); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		opts.Covers = g.Covers
	}
	sw := &streamWriter{w: w, rc: http.NewResponseController(w)}
	st, err := s.node.Export(r.Context(), opts, sw)
	switch {
	case err == nil:
	case !sw.started:
		s.writeError(w, r, err)
	default:
		// The status is sent: the stream ends without its end record,
		// which tells the reader (and an import) that it was cut short.
		s.log.Warn("export cut short", zap.String("ns", opts.NS), zap.Int64("counters", st.Counters), zap.Error(err))
	}
}

// streamWriter sends the answer's header on the first write and gives each
// write streamIdle to leave.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func (sw *streamWriter) Write(p []byte) (int, error) {
	if !sw.started {
		sw.started = true
		sw.w.Header().Set("Content-Type", mediaNDJSON)
		sw.w.WriteHeader(http.StatusOK)
	}
	_ = sw.rc.SetWriteDeadline(time.Now().Add(streamIdle))
	return sw.w.Write(p)
}

// importAll answers POST /v1/import: it merges an export stream into the
// node (node.Import). A token limited to some namespaces may import
// records of those only. A bad line is answered at once (the body may
// still be arriving; the rest of it is read and dropped, so that the
// client, still sending, gets the answer).
func (s *Server) importAll(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	body := bufio.NewReaderSize(&streamReader{r: r.Body, rc: rc}, 256<<10)
	if err := checkStreamType(r.Header.Get("Content-Type"), body); err != nil {
		s.writeError(w, r, err)
		return
	}
	var opts node.ImportOptions
	if g := grantOf(r); g != nil {
		opts.Allow = func(ns string) error { return g.Allow(auth.ScopeAdmin, ns) }
	}
	st, err := s.node.Import(r.Context(), body, opts)
	// The server's write timeout counts from the request's start, which an
	// import outlasts: the answer gets its own.
	_ = rc.SetWriteDeadline(time.Now().Add(streamIdle))
	if err != nil {
		// The answer goes out whole, with its length, while the client
		// may still be sending: it can read the answer to its end and stop.
		held := &heldAnswer{w: w}
		s.writeError(held, r, err)
		_ = rc.EnableFullDuplex()
		w.Header().Set("Connection", "close")
		held.send()
		_ = rc.Flush()
		_, _ = io.Copy(io.Discard, body)
		return
	}
	writeJSON(w, http.StatusOK, importAnswer{Namespaces: st.Namespaces, Counters: st.Counters})
}

// heldAnswer holds a whole answer, to send it with its Content-Length.
type heldAnswer struct {
	w      http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (h *heldAnswer) Header() http.Header         { return h.w.Header() }
func (h *heldAnswer) WriteHeader(status int)      { h.status = status }
func (h *heldAnswer) Write(p []byte) (int, error) { return h.body.Write(p) }

func (h *heldAnswer) send() {
	h.w.Header().Set("Content-Length", strconv.Itoa(h.body.Len()))
	h.w.WriteHeader(h.status)
	_, _ = h.w.Write(h.body.Bytes())
}

// streamReader gives each read of the body streamIdle to arrive.
type streamReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (sr *streamReader) Read(p []byte) (int, error) {
	_ = sr.rc.SetReadDeadline(time.Now().Add(streamIdle))
	return sr.r.Read(p)
}

// checkStreamType accepts an import body declared as NDJSON or JSON, or of
// another declared type when it starts as an export does (with '{'): what
// curl --data-binary sends. Anything else is 415.
func checkStreamType(ct string, body *bufio.Reader) error {
	if mt, err := mediaType(ct, false); err != nil {
		return err
	} else if mt == mediaJSON && ct != "" {
		return nil
	}
	if mt, _, _ := mime.ParseMediaType(ct); mt == mediaNDJSON || mt == "application/jsonl" {
		return nil
	}
	head, err := body.Peek(64)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return badRequest(fmt.Sprintf("reading the body: %v", err))
	}
	if t := bytes.TrimSpace(head); len(t) > 0 && t[0] == '{' {
		return nil
	}
	return &apiError{http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
		fmt.Sprintf("the body (Content-Type %q) is not an export stream; send the output of countctl export as %s", ct, mediaNDJSON)}
}
