package httpapi

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/ratelimit"
)

// rateLimitBody is the body of POST /v1/ratelimit/{ns}/{key}.
type rateLimitBody struct {
	Limit  *int64 `json:"limit"`
	Window string `json:"window"`
	Cost   *int64 `json:"cost"`
}

// rateLimitAnswer is its answer, allowed or not (both 200).
type rateLimitAnswer struct {
	Allowed   bool  `json:"allowed"`
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
	// ResetMS: until the current window ends.
	ResetMS int64 `json:"reset_ms"`
	// RetryAfterMS, when refused: Retry-After in milliseconds (the header
	// has whole seconds only).
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// rateLimit serves POST /v1/ratelimit/{ns}/{key} as routed by chi.
func (s *Server) rateLimit(l *ratelimit.Limiter) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.serveRateLimit(w, r, l, chi.URLParam(r, "ns"), chi.URLParam(r, "key"))
	}
}

// serveRateLimit serves POST /v1/ratelimit/{ns}/{key}, whose path
// parameters, as routed, are rawNS and rawKey, and returns the status it
// answered: a request over the limit is an answer, not an error: 200 with
// "allowed":false and Retry-After (429 is the node shedding load, see
// docs/ratelimit.md). Both chi and the fast path (fastpath.go) call it.
func (s *Server) serveRateLimit(w http.ResponseWriter, r *http.Request, l *ratelimit.Limiter, rawNS, rawKey string) int {
	ns, key, err := nsKeyOf(r, rawNS, rawKey)
	if err != nil {
		return s.writeError(w, r, err)
	}
	var req ratelimit.Request
	if s.noFast {
		req, err = decodeBody(w, r, func(ct string, body []byte) (ratelimit.Request, error) {
			return decodeRateLimit(ns, key, ct, body)
		})
	} else {
		req, err = decodeRateLimitRequest(w, r, ns, key)
	}
	if err != nil {
		return s.writeError(w, r, err)
	}
	if l == nil {
		return s.writeError(w, r, fmt.Errorf("%w: rate limiting is not configured on this node", node.ErrUnavailable))
	}
	d, err := l.Decide(r.Context(), req)
	if err != nil {
		return s.writeError(w, r, rateLimitError(err))
	}
	ans := rateLimitAnswer{Allowed: d.Allowed, Limit: d.Limit, Remaining: d.Remaining, ResetMS: ceilMillis(d.Reset)}
	if !d.Allowed {
		ans.RetryAfterMS = max(ceilMillis(d.RetryAfter), 1)
	}
	retryAfter := max(ceilSeconds(d.RetryAfter), 1)
	if !s.noFast {
		writeRateLimitFast(w, req, d, ans, retryAfter)
		return http.StatusOK
	}
	h := w.Header()
	h.Set("RateLimit-Limit", strconv.FormatInt(d.Limit, 10))
	h.Set("RateLimit-Remaining", strconv.FormatInt(d.Remaining, 10))
	h.Set("RateLimit-Reset", strconv.FormatInt(ceilSeconds(d.Reset), 10))
	h.Set("RateLimit-Policy", fmt.Sprintf("%d;w=%d", d.Limit, max(ceilSeconds(req.Window), 1)))
	if !d.Allowed {
		h.Set("Retry-After", strconv.FormatInt(retryAfter, 10))
	}
	writeJSON(w, http.StatusOK, ans)
	return http.StatusOK
}

// decodeRateLimit decodes and validates the body of POST
// /v1/ratelimit/{ns}/{key} (Content-Type ct); its errors are 400 or 415.
func decodeRateLimit(ns, key, ct string, body []byte) (ratelimit.Request, error) {
	var b rateLimitBody
	if err := decodeJSONBody(ct, body, &b); err != nil {
		return ratelimit.Request{}, err
	}
	return rateLimitRequest(ns, key, b)
}

// rateLimitRequest validates the body: limit and window are required, cost
// defaults to 1.
func rateLimitRequest(ns, key string, body rateLimitBody) (ratelimit.Request, error) {
	req := ratelimit.Request{NS: ns, Key: key, Cost: 1}
	if body.Limit == nil {
		return req, badRequest(`limit is required: the units allowed per window, e.g. {"limit":100,"window":"1m"}`)
	}
	req.Limit = *body.Limit
	if req.Limit < 1 || req.Limit > ratelimit.MaxLimit {
		return req, badRequest(fmt.Sprintf("limit must be a whole number from 1 to 2^53-1, got %d", req.Limit))
	}
	if body.Window == "" {
		return req, badRequest(`window is required: a duration such as "1s", "1m", "1h" or "1d"`)
	}
	win, err := node.ParseDuration(body.Window)
	if err != nil {
		return req, badRequest("window: " + err.Error())
	}
	if win < ratelimit.MinWindow || win > ratelimit.MaxWindow {
		return req, badRequest(fmt.Sprintf("window must be from 1ms to 366d, such as \"1m\", got %q", body.Window))
	}
	req.Window = win
	if body.Cost != nil {
		req.Cost = *body.Cost
		if req.Cost < 1 || req.Cost > req.Limit {
			return req, badRequest(fmt.Sprintf("cost must be a whole number from 1 to the limit (%d), got %d: a cost over the limit could never be admitted", req.Limit, req.Cost))
		}
	}
	return req, nil
}

// rateLimitError maps the ratelimit sentinels to the codes of docs/api.md.
func rateLimitError(err error) error {
	msg := err.Error()
	for _, s := range []error{ratelimit.ErrInvalidArgument, ratelimit.ErrUnavailable, ratelimit.ErrOverloaded} {
		msg = strings.Replace(msg, s.Error()+": ", "", 1)
	}
	switch {
	case errors.Is(err, ratelimit.ErrInvalidArgument):
		return badRequest(msg)
	case errors.Is(err, ratelimit.ErrOverloaded):
		return &apiError{http.StatusTooManyRequests, codeOverloaded, msg}
	case errors.Is(err, ratelimit.ErrUnavailable), errors.Is(err, ratelimit.ErrClosed):
		return &apiError{http.StatusServiceUnavailable, codeUnavailable, msg}
	}
	return err
}

func ceilSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}

func ceilMillis(d time.Duration) int64 {
	return int64(math.Ceil(float64(d) / float64(time.Millisecond)))
}
