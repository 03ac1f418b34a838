package httpapi

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/countmesh/countmesh/node"
)

// incrBody is the optional body of incr and decr.
type incrBody struct {
	By          *int64            `json:"by"`
	ID          string            `json:"id"`
	Consistency string            `json:"consistency"`
	Labels      map[string]string `json:"labels"`
	At          string            `json:"at"`
}

type valueAnswer struct {
	NS        string `json:"ns"`
	Key       string `json:"key"`
	Value     int64  `json:"value"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// incrRequest is a decoded and validated incr or decr body.
type incrRequest struct {
	by   int64
	opts node.WriteOptions
}

// decodeIncr decodes and validates the body of incr and decr (Content-Type
// ct); its errors are 400 or 415. The common bodies (none, {} and
// {"by":N}) take parseIncrFast; every other goes through encoding/json
// (decodeIncrGeneral), which gives the same answers.
func decodeIncr(ct string, body []byte) (incrRequest, error) {
	if req, ok := parseIncrFast(ct, body); ok {
		return req, nil
	}
	return decodeIncrGeneral(ct, body)
}

// decodeIncrGeneral is decodeIncr through encoding/json, for any body.
func decodeIncrGeneral(ct string, body []byte) (incrRequest, error) {
	var b incrBody
	if err := decodeJSONBody(ct, body, &b); err != nil {
		return incrRequest{}, err
	}
	req := incrRequest{by: 1, opts: node.WriteOptions{ID: b.ID, Consistency: b.Consistency, Labels: b.Labels}}
	if b.By != nil {
		req.by = *b.By
	}
	if err := node.ValidateBy(req.by); err != nil {
		return incrRequest{}, err
	}
	at, err := parseTime("at", b.At)
	if err != nil {
		return incrRequest{}, err
	}
	req.opts.At = at
	if err := validateLabels(b.Labels); err != nil {
		return incrRequest{}, err
	}
	return req, nil
}

// Bounds of labels (the node's too).
const (
	maxLabelNameBytes  = 64
	maxLabelValueBytes = 256
)

// validateLabels checks the labels of an increment: at most node.MaxLabels,
// names and values of valid UTF-8 without control characters and bounded
// in length. The node keeps a label series under a key that separates the
// labels with control bytes, so a control character in a value could forge
// another label in group_by.
func validateLabels(labels map[string]string) error {
	if len(labels) > node.MaxLabels {
		return badRequest(fmt.Sprintf("at most %d labels, got %d", node.MaxLabels, len(labels)))
	}
	for k, v := range labels {
		if len(k) == 0 {
			return badRequest("a label name is empty; label names match [a-z0-9][a-z0-9_.-]{0,63}")
		}
		if err := checkLabelText(fmt.Sprintf("label name %q", k), k, maxLabelNameBytes); err != nil {
			return err
		}
		if err := checkLabelText(fmt.Sprintf("the value of label %q", k), v, maxLabelValueBytes); err != nil {
			return err
		}
	}
	return nil
}

func checkLabelText(what, s string, maxBytes int) error {
	if len(s) > maxBytes {
		return badRequest(fmt.Sprintf("%s must be at most %d bytes, got %d", what, maxBytes, len(s)))
	}
	if !utf8.ValidString(s) {
		return badRequest(what + " must be valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return badRequest(fmt.Sprintf("%s must not contain control characters (found U+%04X)", what, r))
		}
	}
	return nil
}

// parseTime parses an RFC 3339 time; empty is the zero time.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest(fmt.Sprintf("%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", field, s))
	}
	return t, nil
}

// incr serves incr (sign 1) and decr (sign -1) as routed by chi.
func (s *Server) incr(sign int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.serveIncr(w, r, sign, chi.URLParam(r, "ns"), chi.URLParam(r, "key"))
	}
}

// serveIncr serves incr (sign 1) or decr (sign -1) of the counter whose
// {ns} and {key} path parameters, as routed, are rawNS and rawKey. It
// returns the status it answered. Both chi and the fast path (fastpath.go)
// call it.
func (s *Server) serveIncr(w http.ResponseWriter, r *http.Request, sign int64, rawNS, rawKey string) int {
	ns, key, err := nsKeyOf(r, rawNS, rawKey)
	if err != nil {
		return s.writeError(w, r, err)
	}
	var req incrRequest
	if s.noFast {
		req, err = decodeBody(w, r, decodeIncrGeneral)
	} else {
		req, err = decodeIncrRequest(w, r)
	}
	if err != nil {
		return s.writeError(w, r, err)
	}
	res, err := s.node.Incr(r.Context(), ns, key, sign*req.by, req.opts)
	if err != nil {
		return s.writeError(w, r, err)
	}
	if !s.noFast {
		if status, ok := writeValueFast(w, ns, key, res.Value, res.Duplicate); ok {
			return status
		}
	}
	writeJSON(w, http.StatusOK, valueAnswer{NS: ns, Key: key, Value: res.Value, Duplicate: res.Duplicate})
	return http.StatusOK
}

type counterAnswer struct {
	NS        string     `json:"ns"`
	Key       string     `json:"key"`
	Value     int64      `json:"value"`
	UpdatedAt *time.Time `json:"updated_at"`
	// Resolution and At say how a read with ?at= was resolved: value is
	// the counter's value as of At, T rounded down to the window
	// Resolution.
	Resolution string     `json:"resolution,omitempty"`
	At         *time.Time `json:"at,omitempty"`
	// Window and BucketStart name the bucket a read with ?at=&window=
	// answered from: value is the change of the counter during it.
	Window      string     `json:"window,omitempty"`
	BucketStart *time.Time `json:"bucket_start,omitempty"`
	// Estimate and ErrorBound mark a read of an approximate namespace:
	// value is at least the true count and, with the namespace's
	// confidence, at most error_bound above it.
	Estimate   bool   `json:"estimate,omitempty"`
	ErrorBound *int64 `json:"error_bound,omitempty"`
}

// getCounter serves GET of a counter as routed by chi.
func (s *Server) getCounter(w http.ResponseWriter, r *http.Request) {
	s.serveGet(w, r, chi.URLParam(r, "ns"), chi.URLParam(r, "key"))
}

// serveGet serves GET of the counter whose {ns} and {key} path parameters,
// as routed, are rawNS and rawKey, and returns the status it answered. Both
// chi and the fast path (fastpath.go) call it.
func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, rawNS, rawKey string) int {
	ns, key, err := nsKeyOf(r, rawNS, rawKey)
	if err != nil {
		return s.writeError(w, r, err)
	}
	var opts node.ReadOptions
	if r.URL.RawQuery != "" { // without a query every option is empty, as URL.Query would say
		q := r.URL.Query()
		at, err := parseTime("at", q.Get("at"))
		if err != nil {
			return s.writeError(w, r, err)
		}
		opts = node.ReadOptions{Consistency: q.Get("consistency"), At: at, Window: q.Get("window")}
	}
	c, err := s.node.Get(r.Context(), ns, key, opts)
	if err != nil {
		return s.writeError(w, r, err)
	}
	if !s.noFast {
		if status, ok := writeCounterFast(w, ns, key, c); ok {
			return status
		}
	}
	ans := counterAnswer{NS: ns, Key: key, Value: c.Value, Resolution: c.Resolution, Window: c.Window, Estimate: c.Estimate}
	if !c.AsOf.IsZero() {
		t := c.AsOf
		ans.At = &t
	}
	if c.Estimate {
		b := c.ErrorBound
		ans.ErrorBound = &b
	}
	if !c.BucketStart.IsZero() {
		t := c.BucketStart
		ans.BucketStart = &t
	}
	if !c.UpdatedAt.IsZero() {
		t := c.UpdatedAt.UTC()
		ans.UpdatedAt = &t
	}
	writeJSON(w, http.StatusOK, ans)
	return http.StatusOK
}

type resetBody struct {
	Value *int64 `json:"value"`
}

func (s *Server) resetCounter(w http.ResponseWriter, r *http.Request) {
	ns, key, err := nsKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body resetBody
	if err := decodeJSON(w, r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Value == nil {
		s.writeError(w, r, badRequest(`the body must give the new value, e.g. {"value": 0}`))
		return
	}
	res, err := s.node.Reset(r.Context(), ns, key, *body.Value)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, valueAnswer{NS: ns, Key: key, Value: res.Value})
}

func (s *Server) deleteCounter(w http.ResponseWriter, r *http.Request) {
	ns, key, err := nsKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.node.Delete(r.Context(), ns, key); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, valueAnswer{NS: ns, Key: key, Value: 0})
}

type listItem struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
}

type listAnswer struct {
	Items      []listItem `json:"items"`
	NextCursor string     `json:"next_cursor"`
}

func (s *Server) listCounters(w http.ResponseWriter, r *http.Request) {
	ns, err := pathParam(r, "ns")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	limit := 100
	if l := q.Get("limit"); l != "" {
		limit, err = strconv.Atoi(l)
		if err != nil || limit < 1 || limit > node.MaxListLimit {
			s.writeError(w, r, badRequest(fmt.Sprintf("limit must be a whole number from 1 to %d, got %q", node.MaxListLimit, l)))
			return
		}
	}
	after := ""
	if c := q.Get("cursor"); c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			s.writeError(w, r, badRequest("cursor is not one this server issued; pass next_cursor from the previous page"))
			return
		}
		after = string(raw)
	}
	page, err := s.node.List(r.Context(), ns, q.Get("prefix"), after, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ans := listAnswer{Items: make([]listItem, len(page.Items))}
	for i, c := range page.Items {
		ans.Items[i] = listItem{Key: c.Key, Value: c.Value}
	}
	if page.NextCursor != "" {
		ans.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(page.NextCursor))
	}
	writeJSON(w, http.StatusOK, ans)
}
