package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

const (
	mediaJSON    = "application/json"
	mediaMsgpack = "application/msgpack"
)

// mediaType returns the media type of a body with Content-Type ct: JSON
// (also when unnamed) or msgpack; mediaOther for another type.
func mediaType(ct string, allowMsgpack bool) (string, error) {
	if ct == "" {
		return mediaJSON, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", &apiError{http.StatusUnsupportedMediaType, codeUnsupportedMediaType, fmt.Sprintf("bad Content-Type %q", ct)}
	}
	switch {
	case mt == mediaJSON || strings.HasSuffix(mt, "+json"):
		return mediaJSON, nil
	case allowMsgpack && (mt == mediaMsgpack || mt == "application/x-msgpack" || mt == "application/vnd.msgpack"):
		return mediaMsgpack, nil
	}
	// Another type (curl -d sends application/x-www-form-urlencoded): the
	// body decides, see sniffJSON.
	return mediaOther, nil
}

// mediaOther marks a body whose declared type is neither JSON nor msgpack.
const mediaOther = "other"

// sniffJSON accepts a body of another declared type when it is a JSON
// object (what `curl -d '{"by":5}'` sends), and refuses anything else with
// 415: the spec refuses bodies that are neither JSON nor msgpack.
func sniffJSON(ct string, body []byte, allowMsgpack bool) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] == '{' {
		return nil
	}
	accepted := mediaJSON
	if allowMsgpack {
		accepted += " or " + mediaMsgpack
	}
	return &apiError{http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
		fmt.Sprintf("the body (Content-Type %q) is neither JSON nor msgpack; send %s", ct, accepted)}
}

// readBody reads the whole body, refusing more than MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return readBodyFrom(w, r.Body)
}

// readBodyFrom is readBody of the body rc.
func readBodyFrom(w http.ResponseWriter, rc io.ReadCloser) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, rc, MaxBodyBytes))
	if err != nil {
		return nil, bodyError(err)
	}
	return body, nil
}

// bodyError is the answer to an error reading a body: 413 past
// MaxBodyBytes, 400 otherwise.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("the body is over %d bytes; split the request", MaxBodyBytes)}
	}
	return badRequest(fmt.Sprintf("reading the body: %v", err))
}

// bodyFree holds body buffers for readBodyReused. Batch bodies are large
// (about 400 KB for 10,000 ops) and come back to back under ingest: read
// by io.ReadAll, each grew its slice from 512 bytes, copying and zeroing on
// the way (4 % of countd's CPU under JSON batch ingest), and left it to the
// garbage collector. At most cap(bodyFree) buffers of up to maxReusedBody
// bytes are kept.
var bodyFree = make(chan []byte, 8)

const maxReusedBody = 2 << 20

// readBodyReused is readBody into a reused buffer, for a request that
// declares a length up to maxReusedBody (any other is read by readBody).
// The caller calls release once nothing refers to the body's bytes any
// more; the body must not be used after it.
func readBodyReused(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	n := r.ContentLength
	if n <= 0 || n > maxReusedBody {
		body, err := readBody(w, r)
		return body, func() {}, err
	}
	var buf []byte
	select {
	case buf = <-bodyFree:
	default:
	}
	if buf == nil {
		// Not sized from the declared length: a client that declares 2 MB
		// and then trickles its body would pin 2 MB a connection. The
		// buffer grows as bytes arrive, as io.ReadAll's does.
		buf = make([]byte, 0, 512)
	}
	buf, err = readAllInto(buf[:0], http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	release = func() {
		if cap(buf) <= maxReusedBody {
			select {
			case bodyFree <- buf[:0]:
			default: // enough are kept
			}
		}
	}
	if err != nil {
		release()
		return nil, func() {}, bodyError(err)
	}
	return buf, release, nil
}

// readAllInto is io.ReadAll appending to buf.
func readAllInto(buf []byte, rd io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// decodeBody reads the body (readBody) and decodes it with decode, which
// gets the request's Content-Type.
func decodeBody[T any](w http.ResponseWriter, r *http.Request, decode func(ct string, body []byte) (T, error)) (T, error) {
	body, err := readBody(w, r)
	if err != nil {
		var zero T
		return zero, err
	}
	return decode(r.Header.Get("Content-Type"), body)
}

// decodeJSON reads an optional JSON body and decodes it into v (see
// decodeJSONBody).
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	_, err := decodeBody(w, r, func(ct string, body []byte) (struct{}, error) {
		return struct{}{}, decodeJSONBody(ct, body, v)
	})
	return err
}

// decodeJSONBody decodes an optional JSON body with Content-Type ct into v,
// refusing other media types, unknown fields and trailing data. An empty
// body leaves v as it is. Its errors are 400 or 415.
func decodeJSONBody(ct string, body []byte, v any) error {
	mt, err := mediaType(ct, false)
	if err != nil {
		return err
	}
	if mt == mediaOther {
		if err := sniffJSON(ct, body, false); err != nil {
			return err
		}
	}
	return unmarshalJSON(body, v)
}

func unmarshalJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed JSON body: " + jsonErrorText(err))
	}
	if dec.More() {
		return badRequest("malformed JSON body: data after the JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("malformed JSON body: data after the JSON value")
	}
	return nil
}

// jsonErrorText makes encoding/json's errors readable for a client.
func jsonErrorText(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		field := ute.Field
		if field == "" {
			field = "the body"
		}
		return fmt.Sprintf("%s must be %s, got %s", field, ute.Type.String(), ute.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
