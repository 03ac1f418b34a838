package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error is a request the server refused: a non-2xx answer. Status is the
// HTTP status; Code and Message come from the server's JSON error body
// {"error":{"code","message"}}. When the body is not such JSON (a proxy's
// page, say), Code is derived from the status as in docs/api.md and Message
// holds the start of the body or the status text.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is the Retry-After header of 429 and 503 answers, if any.
	RetryAfter time.Duration
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("countd: %d %s: %s", e.Status, e.Code, e.Message)
}

// Sentinels for the error codes of docs/api.md. A *Error matches the
// sentinel of its code with errors.Is (or of its status when the code is not
// one of these). Client-side argument checks also wrap ErrInvalidArgument.
var (
	ErrInvalidArgument      = errors.New("client: invalid argument")
	ErrUnauthenticated      = errors.New("client: unauthenticated")
	ErrPermissionDenied     = errors.New("client: permission denied")
	ErrNotFound             = errors.New("client: not found")
	ErrMethodNotAllowed     = errors.New("client: method not allowed")
	ErrConflict             = errors.New("client: conflict")
	ErrTooLarge             = errors.New("client: too large")
	ErrUnsupportedMediaType = errors.New("client: unsupported media type")
	ErrOverflow             = errors.New("client: overflow")
	ErrOverloaded           = errors.New("client: overloaded")
	ErrUnavailable          = errors.New("client: unavailable")
)

// ErrBadCA is a CA file that holds no PEM certificate (TLSConfigForCA).
var ErrBadCA = errors.New("client: bad CA file")

// The error table of docs/api.md.
var errorTable = []struct {
	status   int
	code     string
	sentinel error
}{
	{http.StatusBadRequest, "invalid_argument", ErrInvalidArgument},
	{http.StatusUnauthorized, "unauthenticated", ErrUnauthenticated},
	{http.StatusForbidden, "permission_denied", ErrPermissionDenied},
	{http.StatusNotFound, "not_found", ErrNotFound},
	{http.StatusMethodNotAllowed, "method_not_allowed", ErrMethodNotAllowed},
	{http.StatusConflict, "conflict", ErrConflict},
	{http.StatusRequestEntityTooLarge, "too_large", ErrTooLarge},
	{http.StatusUnsupportedMediaType, "unsupported_media_type", ErrUnsupportedMediaType},
	{http.StatusUnprocessableEntity, "overflow", ErrOverflow},
	{http.StatusTooManyRequests, "overloaded", ErrOverloaded},
	{http.StatusServiceUnavailable, "unavailable", ErrUnavailable},
}

// Is reports whether target is the sentinel of e's code (or, for a code not
// in docs/api.md, of e's status).
func (e *Error) Is(target error) bool {
	for _, row := range errorTable {
		if row.code == e.Code {
			return row.sentinel == target
		}
	}
	for _, row := range errorTable {
		if row.status == e.Status {
			return row.sentinel == target
		}
	}
	return false
}

// codeForStatus is the docs/api.md code of an HTTP status, or "http_<status>".
func codeForStatus(status int) string {
	for _, row := range errorTable {
		if row.status == status {
			return row.code
		}
	}
	return "http_" + strconv.Itoa(status)
}

// StatusCode returns the HTTP status of a refused request, or 0 when err is
// not (and does not wrap) a *Error.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// decodeError turns a non-2xx answer into a *Error. It reads (a bounded part
// of) the body.
func decodeError(resp *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Status: resp.StatusCode}
	var wire struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wire) == nil && wire.Error.Code != "" {
		e.Code = wire.Error.Code
		e.Message = wire.Error.Message
	} else {
		e.Code = codeForStatus(resp.StatusCode)
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		e.Message = msg
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	return e
}

// parseRetryAfter reads a Retry-After header in seconds or as an HTTP date.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
