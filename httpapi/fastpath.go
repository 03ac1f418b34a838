package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/ratelimit"
)

// The fast path serves the hottest routes, POST
// /v1/counters/{ns}/{key}/incr and /decr, GET /v1/counters/{ns}/{key} and
// POST /v1/ratelimit/{ns}/{key},
// without chi and its middleware chain: it matches the path by hand, checks
// the token with the middleware's own code (authorize), calls the same
// handler bodies (serveIncr, serveGet) and records the same latency series.
// What it does not recognise plainly, it leaves to chi: a path whose
// escapes are not the canonical ones (URL.RawPath set, e.g. %2F in a key), a
// query string, an empty segment, another method, or a server mounted under
// another chi router. So every answer (status, headers, body,
// error code and message) and every metric is the one chi's path gives;
// TestFastPathMatchesChi runs a table of requests through both and compares
// them byte for byte.
//
// The handlers take two more shortcuts on any route: an increment's small
// body is read into a pooled buffer and, when it is empty, {} or
// {"by":N}, parsed by hand (parseIncrFast), and so is a rate-limit body of
// limit, window and cost (parseRateLimitFast); and the answers of incr, GET
// and rate limits are appended into a pooled buffer instead of going through
// encoding/json (writeValueFast, writeCounterFast, writeRateLimitFast), the
// first two when their strings need no escaping.
// Anything else takes the general code.

// fastRoute is a route the fast path serves.
type fastRoute struct {
	method  string
	pattern string // the full chi pattern: the route label of the latency metric
	access  access
	// ok caches the latency observer of the answers 200, resolved at the
	// first one (not before, so that /metrics lists the same series as
	// without the fast path).
	ok atomic.Pointer[observerRef]
}

type observerRef struct{ prometheus.Observer }

// observe records one request of rt as instrument does.
func (rt *fastRoute) observe(vec *prometheus.HistogramVec, status int, d time.Duration) {
	if status != http.StatusOK {
		vec.WithLabelValues(rt.pattern, rt.method, strconv.Itoa(status)).Observe(d.Seconds())
		return
	}
	o := rt.ok.Load()
	if o == nil {
		o = &observerRef{vec.WithLabelValues(rt.pattern, rt.method, "200")}
		rt.ok.Store(o)
	}
	o.Observe(d.Seconds())
}

// fastRoutes are the routes of the fast path.
type fastRoutes struct {
	incr, decr, get, rateLimit *fastRoute
}

// newFastRoutes returns the fast routes with the access that the routes
// table declares for them; a route it does not declare is left to chi.
func newFastRoutes(declared map[string]access) fastRoutes {
	mk := func(method, pattern string) *fastRoute {
		acc, ok := declared[accessKey(method, pattern)]
		if !ok {
			return nil
		}
		return &fastRoute{method: method, pattern: pattern, access: acc}
	}
	return fastRoutes{
		incr: mk(http.MethodPost, "/v1/counters/{ns}/{key}/incr"),
		decr: mk(http.MethodPost, "/v1/counters/{ns}/{key}/decr"),
		get:  mk(http.MethodGet, "/v1/counters/{ns}/{key}"),

		rateLimit: mk(http.MethodPost, "/v1/ratelimit/{ns}/{key}"),
	}
}

// serveFast serves r if it is a request of the fast path and says whether
// it did; when it did not, nothing was written.
func (s *Server) serveFast(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawPath != "" || r.URL.RawQuery != "" {
		return false // chi routes on the escaped path; checkQuery reads the query
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/counters/")
	limit := false
	if !ok {
		if rest, ok = strings.CutPrefix(r.URL.Path, "/v1/ratelimit/"); !ok {
			return false
		}
		limit = true
	}
	ns, rest, ok := strings.Cut(rest, "/")
	if !ok || ns == "" {
		return false
	}
	key, op, hasOp := strings.Cut(rest, "/")
	if key == "" {
		return false
	}
	var rt *fastRoute
	var sign int64
	switch {
	case limit:
		if !hasOp && r.Method == http.MethodPost {
			rt = s.fast.rateLimit
		}
	case !hasOp && r.Method == http.MethodGet:
		rt = s.fast.get
	case hasOp && op == "incr" && r.Method == http.MethodPost:
		rt, sign = s.fast.incr, 1
	case hasOp && op == "decr" && r.Method == http.MethodPost:
		rt, sign = s.fast.decr, -1
	}
	if rt == nil {
		return false
	}
	if r.Context().Value(chi.RouteCtxKey) != nil {
		return false // mounted under another chi router, which routes on its own path
	}
	start := time.Now()
	if s.tokens != nil && !rt.access.open {
		// As authenticate does, before chi has matched the route: a refusal
		// is recorded as unmatched. The grant is not put in the context:
		// these handlers do not read it (grantOf).
		if _, err := s.authorize(r, rt.pattern, rt.access, true, ns); err != nil {
			status := s.writeError(w, r, err)
			s.latency.WithLabelValues("unmatched", r.Method, strconv.Itoa(status)).Observe(time.Since(start).Seconds())
			return true
		}
	}
	var status int
	switch rt {
	case s.fast.get:
		status = s.serveGet(w, r, ns, key)
	case s.fast.rateLimit:
		status = s.serveRateLimit(w, r, s.limiter, ns, key)
	default:
		status = s.serveIncr(w, r, sign, ns, key)
	}
	rt.observe(s.latency, status, time.Since(start))
	return true
}

// smallBodyBytes is the size of the pooled buffers that hold an
// increment's body; a longer body is read as readBody does.
const smallBodyBytes = 512

var smallBodies = sync.Pool{New: func() any { return new([smallBodyBytes]byte) }}

// decodeIncrRequest reads and decodes the body of incr or decr as
// decodeBody(w, r, decodeIncr) does, without allocating for a small body.
func decodeIncrRequest(w http.ResponseWriter, r *http.Request) (incrRequest, error) {
	ct := r.Header.Get("Content-Type")
	if r.Body == http.NoBody {
		return decodeIncr(ct, nil)
	}
	buf := smallBodies.Get().(*[smallBodyBytes]byte)
	defer smallBodies.Put(buf) // decodeIncr keeps no reference to the body
	body, err := readSmallBody(w, r, buf[:])
	if err != nil {
		return incrRequest{}, err
	}
	return decodeIncr(ct, body)
}

// readSmallBody reads the body into buf when it fits, and otherwise as
// readBody does (which allocates), with the same errors.
func readSmallBody(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Body.Read(buf[n:])
		n += m
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return nil, badRequest(fmt.Sprintf("reading the body: %v", err))
		}
	}
	// Full: read on, counting what is read already against MaxBodyBytes.
	// The recorder of chi's path hides http.response's requestTooLarge
	// from MaxBytesReader; hiding it here too keeps the answers the same.
	rest := io.NopCloser(io.MultiReader(bytes.NewReader(buf[:n]), r.Body))
	return readBodyFrom(onlyResponseWriter{w}, rest)
}

// onlyResponseWriter hides every method of a ResponseWriter but its own.
type onlyResponseWriter struct{ http.ResponseWriter }

// parseIncrFast decodes the bodies of incr and decr that clients send most:
// none, {} and {"by":N} with a plain integer of at most 15 digits, as JSON
// (Content-Type application/json or none), JSON white space allowed between
// tokens. ok is false for any other body: decodeIncrGeneral decides it. When
// ok, the request is the one decodeIncrGeneral returns.
func parseIncrFast(ct string, body []byte) (req incrRequest, ok bool) {
	if ct != "" && ct != mediaJSON {
		return incrRequest{}, false
	}
	i := skipJSONSpace(body, 0)
	if i == len(body) {
		return incrRequest{by: 1}, true
	}
	if body[i] != '{' {
		return incrRequest{}, false
	}
	i = skipJSONSpace(body, i+1)
	by := int64(1)
	if i < len(body) && body[i] == '"' {
		if !bytes.HasPrefix(body[i:], []byte(`"by"`)) {
			return incrRequest{}, false
		}
		i = skipJSONSpace(body, i+len(`"by"`))
		if i == len(body) || body[i] != ':' {
			return incrRequest{}, false
		}
		i = skipJSONSpace(body, i+1)
		by, i, ok = parseJSONInt(body, i)
		if !ok {
			return incrRequest{}, false
		}
		i = skipJSONSpace(body, i)
	}
	if i == len(body) || body[i] != '}' {
		return incrRequest{}, false
	}
	if skipJSONSpace(body, i+1) != len(body) {
		return incrRequest{}, false
	}
	return incrRequest{by: by}, true
}

// maxFastDigits bounds the integers parseJSONInt takes: 10^15-1 is within
// node.MaxBy, so that every one it takes is a valid by.
const maxFastDigits = 15

// parseJSONInt parses a JSON integer (-?(0|[1-9][0-9]*)) of at most
// maxFastDigits digits at body[i:], not followed by a fraction or exponent.
func parseJSONInt(body []byte, i int) (int64, int, bool) {
	neg := i < len(body) && body[i] == '-'
	if neg {
		i++
	}
	start := i
	var v int64
	for i < len(body) && body[i] >= '0' && body[i] <= '9' {
		v = v*10 + int64(body[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || digits > maxFastDigits || (digits > 1 && body[start] == '0') {
		return 0, i, false
	}
	if i < len(body) && (body[i] == '.' || body[i] == 'e' || body[i] == 'E') {
		return 0, i, false
	}
	if neg {
		v = -v
	}
	return v, i, true
}

// skipJSONSpace returns the index of the first byte at or after i that is
// not JSON white space.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonContentType is the Content-Type value of every JSON answer. It is
// shared by the answers of the fast encoders (writeJSONBytes), which saves
// an allocation per answer; nothing may write into it.
var jsonContentType = []string{mediaJSON}

// writeJSONBytes answers status with the JSON text b, as writeJSON does
// with the value b encodes.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) int {
	w.Header()["Content-Type"] = jsonContentType[:1:1]
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return status
}

// answerBufs holds the buffers the fast encoders append to.
var answerBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 256)
	return &b
}}

// maxPooledAnswer bounds the buffers put back in answerBufs.
const maxPooledAnswer = 4 << 10

func putAnswerBuf(bp *[]byte, b []byte) {
	if cap(b) > maxPooledAnswer {
		return
	}
	*bp = b[:0]
	answerBufs.Put(bp)
}

// plainJSON says whether encoding/json writes s as it is between quotes:
// printable ASCII but for ", \ and the HTML characters <, > and &, which
// it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// writeValueFast answers 200 with the valueAnswer of ns, key, value and
// duplicate, byte for byte as writeJSON would, when ns and key need no
// escaping; ok false means it wrote nothing.
func writeValueFast(w http.ResponseWriter, ns, key string, value int64, duplicate bool) (status int, ok bool) {
	if !plainJSON(ns) || !plainJSON(key) {
		return 0, false
	}
	bp := answerBufs.Get().(*[]byte)
	b := appendValueAnswer((*bp)[:0], ns, key, value, duplicate)
	writeJSONBytes(w, http.StatusOK, b)
	putAnswerBuf(bp, b)
	return http.StatusOK, true
}

// appendValueAnswer appends the JSON of valueAnswer (ns and key plain, see
// plainJSON) and a newline, as json.Encoder writes it.
func appendValueAnswer(b []byte, ns, key string, value int64, duplicate bool) []byte {
	b = append(b, `{"ns":"`...)
	b = append(b, ns...)
	b = append(b, `","key":"`...)
	b = append(b, key...)
	b = append(b, `","value":`...)
	b = strconv.AppendInt(b, value, 10)
	if duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	return append(b, "}\n"...)
}

// writeCounterFast answers 200 with the counterAnswer of c, byte for byte
// as serveGet's general code would, when c is a plain read (no ?at=) and
// ns and key need no escaping; ok false means it wrote nothing.
func writeCounterFast(w http.ResponseWriter, ns, key string, c node.Counter) (status int, ok bool) {
	if c.Resolution != "" || !c.AsOf.IsZero() || c.Window != "" || !c.BucketStart.IsZero() {
		return 0, false
	}
	if !plainJSON(ns) || !plainJSON(key) {
		return 0, false
	}
	if !c.UpdatedAt.IsZero() {
		// time.Time.MarshalJSON refuses years it cannot write in 4 digits.
		if y := c.UpdatedAt.UTC().Year(); y < 0 || y > 9999 {
			return 0, false
		}
	}
	bp := answerBufs.Get().(*[]byte)
	b := appendCounterAnswer((*bp)[:0], ns, key, c)
	writeJSONBytes(w, http.StatusOK, b)
	putAnswerBuf(bp, b)
	return http.StatusOK, true
}

// appendCounterAnswer appends the JSON of the counterAnswer of a plain
// read (see writeCounterFast) and a newline, as json.Encoder writes it.
func appendCounterAnswer(b []byte, ns, key string, c node.Counter) []byte {
	b = append(b, `{"ns":"`...)
	b = append(b, ns...)
	b = append(b, `","key":"`...)
	b = append(b, key...)
	b = append(b, `","value":`...)
	b = strconv.AppendInt(b, c.Value, 10)
	b = append(b, `,"updated_at":`...)
	if c.UpdatedAt.IsZero() {
		b = append(b, "null"...)
	} else {
		// What time.Time.MarshalJSON writes for a UTC time.
		b = append(b, '"')
		b = c.UpdatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if c.Estimate {
		b = append(b, `,"estimate":true,"error_bound":`...)
		b = strconv.AppendInt(b, c.ErrorBound, 10)
	}
	return append(b, "}\n"...)
}

// decodeRateLimitRequest reads and decodes the body of POST
// /v1/ratelimit/{ns}/{key} as decodeBody with decodeRateLimit does, parsing
// the plain body by hand (parseRateLimitFast) and without allocating for a
// small one.
func decodeRateLimitRequest(w http.ResponseWriter, r *http.Request, ns, key string) (ratelimit.Request, error) {
	ct := r.Header.Get("Content-Type")
	if r.Body == http.NoBody {
		return decodeRateLimit(ns, key, ct, nil)
	}
	buf := smallBodies.Get().(*[smallBodyBytes]byte)
	defer smallBodies.Put(buf) // neither decoder keeps a reference to the body
	body, err := readSmallBody(w, r, buf[:])
	if err != nil {
		return ratelimit.Request{}, err
	}
	if b, ok := parseRateLimitFast(ct, body); ok {
		return rateLimitRequest(ns, key, b)
	}
	return decodeRateLimit(ns, key, ct, body)
}

// parseRateLimitFast decodes the body clients send: a JSON object (Content-
// Type application/json or none) of "limit" and "window" and optionally
// "cost", each at most once, in any order, the integers plain (see
// parseJSONInt) and the window a string without escapes, JSON white space
// allowed between tokens. ok is false for any other body, which
// decodeRateLimit decides. When ok, rateLimitRequest of the result is what
// decodeRateLimit returns.
func parseRateLimitFast(ct string, body []byte) (b rateLimitBody, ok bool) {
	if ct != "" && ct != mediaJSON {
		return b, false
	}
	i := skipJSONSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return b, false
	}
	var limit, cost int64
	var window []byte
	for first := true; ; first = false {
		i = skipJSONSpace(body, i+1)
		if i < len(body) && body[i] == '}' && first {
			break
		}
		if i == len(body) || body[i] != '"' {
			return rateLimitBody{}, false
		}
		end := bytes.IndexByte(body[i+1:], '"')
		if end < 0 {
			return rateLimitBody{}, false
		}
		name := body[i+1 : i+1+end]
		i = skipJSONSpace(body, i+end+2)
		if i == len(body) || body[i] != ':' {
			return rateLimitBody{}, false
		}
		i = skipJSONSpace(body, i+1)
		switch string(name) {
		case "limit", "cost":
			var v int64
			if v, i, ok = parseJSONInt(body, i); !ok {
				return rateLimitBody{}, false
			}
			if name[0] == 'l' {
				if b.Limit != nil {
					return rateLimitBody{}, false
				}
				limit, b.Limit = v, &limit
			} else {
				if b.Cost != nil {
					return rateLimitBody{}, false
				}
				cost, b.Cost = v, &cost
			}
		case "window":
			if window != nil || i == len(body) || body[i] != '"' {
				return rateLimitBody{}, false
			}
			end := bytes.IndexByte(body[i+1:], '"')
			if end < 0 {
				return rateLimitBody{}, false
			}
			window = body[i+1 : i+1+end]
			if !plainJSON(string(window)) {
				return rateLimitBody{}, false // escapes, or bytes encoding/json would check
			}
			i += end + 2
		default:
			return rateLimitBody{}, false
		}
		i = skipJSONSpace(body, i)
		if i < len(body) && body[i] == ',' {
			continue
		}
		if i == len(body) || body[i] != '}' {
			return rateLimitBody{}, false
		}
		break
	}
	if skipJSONSpace(body, i+1) != len(body) {
		return rateLimitBody{}, false
	}
	b.Window = string(window)
	return b, true
}

// Canonical header keys (what Header.Set would store) of a rate-limit
// answer, so that the fast writer stores them without canonicalising.
const (
	hdrRateLimitLimit     = "Ratelimit-Limit"
	hdrRateLimitRemaining = "Ratelimit-Remaining"
	hdrRateLimitReset     = "Ratelimit-Reset"
	hdrRateLimitPolicy    = "Ratelimit-Policy"
	hdrRetryAfter         = "Retry-After"
)

// writeRateLimitFast answers 200 with a rate-limit decision, its headers
// and its JSON byte for byte as serveRateLimit's general code writes them.
func writeRateLimitFast(w http.ResponseWriter, req ratelimit.Request, d ratelimit.Decision, ans rateLimitAnswer, retryAfter int64) {
	h := w.Header()
	h[hdrRateLimitLimit] = []string{strconv.FormatInt(d.Limit, 10)}
	h[hdrRateLimitRemaining] = []string{strconv.FormatInt(d.Remaining, 10)}
	h[hdrRateLimitReset] = []string{strconv.FormatInt(ceilSeconds(d.Reset), 10)}
	bp := answerBufs.Get().(*[]byte)
	b := strconv.AppendInt((*bp)[:0], d.Limit, 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, max(ceilSeconds(req.Window), 1), 10)
	h[hdrRateLimitPolicy] = []string{string(b)}
	if !d.Allowed {
		h[hdrRetryAfter] = []string{strconv.FormatInt(retryAfter, 10)}
	}
	b = appendRateLimitAnswer(b[:0], ans)
	writeJSONBytes(w, http.StatusOK, b)
	putAnswerBuf(bp, b)
}

// appendRateLimitAnswer appends the JSON of ans and a newline, as
// json.Encoder writes it.
func appendRateLimitAnswer(b []byte, ans rateLimitAnswer) []byte {
	b = append(b, `{"allowed":`...)
	b = strconv.AppendBool(b, ans.Allowed)
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, ans.Limit, 10)
	b = append(b, `,"remaining":`...)
	b = strconv.AppendInt(b, ans.Remaining, 10)
	b = append(b, `,"reset_ms":`...)
	b = strconv.AppendInt(b, ans.ResetMS, 10)
	if ans.RetryAfterMS != 0 {
		b = append(b, `,"retry_after_ms":`...)
		b = strconv.AppendInt(b, ans.RetryAfterMS, 10)
	}
	return append(b, "}\n"...)
}
