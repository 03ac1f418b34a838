package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/auth"
	"github.com/countmesh/countmesh/internal/errtext"
	"github.com/countmesh/countmesh/node"
)

// Error codes of docs/api.md.
const (
	codeInvalidArgument      = "invalid_argument"
	codeUnauthenticated      = "unauthenticated"
	codePermissionDenied     = "permission_denied"
	codeNotFound             = "not_found"
	codeMethodNotAllowed     = "method_not_allowed"
	codeConflict             = "conflict"
	codeTooLarge             = "too_large"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeOverflow             = "overflow"
	codeOverloaded           = "overloaded"
	codeUnavailable          = "unavailable"
	codeInternal             = "internal"
)

// apiError is an error that carries its HTTP status and code; the decoding
// helpers return it for problems found before the node is involved.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, codeInvalidArgument, msg} }

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// classify maps an error to its status and code.
func classify(err error) (int, string) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.code
	case errors.Is(err, node.ErrInvalidArgument):
		return http.StatusBadRequest, codeInvalidArgument
	case errors.Is(err, node.ErrTooManyNamespaces), errors.Is(err, node.ErrTooManySeries):
		// A cap of the node: retrying will not help, so not 429 (which
		// says the node sheds load); the message names the cap.
		return http.StatusBadRequest, codeInvalidArgument
	case errors.Is(err, auth.ErrUnauthenticated):
		return http.StatusUnauthorized, codeUnauthenticated
	case errors.Is(err, auth.ErrPermissionDenied):
		return http.StatusForbidden, codePermissionDenied
	case errors.Is(err, node.ErrNotFound):
		return http.StatusNotFound, codeNotFound
	case errors.Is(err, node.ErrConflict):
		return http.StatusConflict, codeConflict
	case errors.Is(err, node.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, codeTooLarge
	case errors.Is(err, node.ErrOverflow):
		return http.StatusUnprocessableEntity, codeOverflow
	case errors.Is(err, node.ErrOverloaded):
		return http.StatusTooManyRequests, codeOverloaded
	case errors.Is(err, node.ErrUnavailable), errors.Is(err, node.ErrClosed):
		return http.StatusServiceUnavailable, codeUnavailable
	default:
		return http.StatusInternalServerError, codeInternal
	}
}

// writeError answers with the JSON error body for err and returns the
// status it answered.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) int {
	status, code := classify(err)
	var body errorBody
	body.Error.Code = code
	body.Error.Message = userMessage(err)
	if status >= 500 && r.Context().Err() == nil { // a client that hung up is not the server's failure
		s.log.Warn("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", status), zap.Error(err))
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="countmesh"`)
	}
	writeJSON(w, status, body)
	return status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// userMessage is err's text without the sentinel prefixes ("node: invalid
// argument: key must be ..." reads "key must be ...").
func userMessage(err error) string { return errtext.Message(err) }
