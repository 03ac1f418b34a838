package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"

	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/countmesh/countmesh/client"
)

// The raw client: a minimal HTTP/1.1 keep-alive client for the single-request
// modes. Go's net/http client costs tens of microseconds of CPU a request;
// on a 2-core machine shared with the server that is most of what the
// generator measures. This one writes a request prepared in a reused buffer
// and parses only the status line and Content-Length of the answer.

// rawConn is one keep-alive connection. It is not safe for concurrent use.
type rawConn struct {
	addr string // host:port
	host string
	c    net.Conn
	br   *bufio.Reader
	req  []byte
}

func newRawConn(base string) (*rawConn, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bench: bad address %q", base)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("bench: the raw client speaks plain http, not %q", u.Scheme)
	}
	return &rawConn{addr: u.Host, host: u.Host}, nil
}

// do sends method path with body and returns the status, reading the answer
// fully so that the connection can be reused.
func (r *rawConn) do(ctx context.Context, method string, path []byte, body []byte, contentType string) (int, error) {
	if r.c == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", r.addr)
		if err != nil {
			return 0, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		r.c, r.br = c, bufio.NewReaderSize(c, 4096)
	}
	if dl, ok := ctx.Deadline(); ok {
		if !time.Now().Before(dl) {
			// The run is over (the context's timer may not have fired yet).
			return 0, context.DeadlineExceeded
		}
		r.c.SetDeadline(dl)
	} else {
		r.c.SetDeadline(time.Time{})
	}
	req := append(r.req[:0], method...)
	req = append(req, ' ')
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, r.host...)
	req = append(req, "\r\nUser-Agent: countbench-raw\r\n"...)
	if body != nil {
		req = append(req, "Content-Type: "...)
		req = append(req, contentType...)
		req = append(req, "\r\nContent-Length: "...)
		req = strconv.AppendInt(req, int64(len(body)), 10)
		req = append(req, "\r\n"...)
	}
	req = append(req, "\r\n"...)
	req = append(req, body...)
	r.req = req
	if _, err := r.c.Write(req); err != nil {
		r.close()
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return 0, context.DeadlineExceeded
		}
		return 0, err
	}
	status, err := r.readResponse()
	if err != nil {
		r.close()
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return 0, context.DeadlineExceeded // cut by the end of the run
		}
		return 0, err
	}
	return status, nil
}

func (r *rawConn) readResponse() (int, error) {
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bench: bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bench: bad status line %q", line)
	}
	length := -1
	for {
		h, err := r.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 { // the blank line
			break
		}
		if len(h) > 16 && bytes.EqualFold(h[:15], []byte("Content-Length:")) {
			length, err = strconv.Atoi(string(bytes.TrimSpace(h[15:])))
			if err != nil {
				return 0, fmt.Errorf("bench: bad Content-Length %q", h)
			}
		}
	}
	if length < 0 {
		return 0, fmt.Errorf("bench: answer without Content-Length (status %d)", status)
	}
	if _, err := r.br.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

func (r *rawConn) close() {
	if r.c != nil {
		r.c.Close()
		r.c, r.br = nil, nil
	}
}

// op sends one request and counts it as one operation when it succeeds
// (a 2xx answer).
func (r *rawConn) op(ctx context.Context, method string, path, body []byte, contentType string) (int64, error) {
	status, err := r.do(ctx, method, path, body, contentType)
	if err == nil {
		err = statusErr(status)
	}
	if err != nil {
		return 0, err
	}
	return 1, nil
}

func statusErr(status int) error {
	if status >= 200 && status < 300 {
		return nil
	}
	return &client.Error{Status: status, Code: "http_" + strconv.Itoa(status), Message: "status " + strconv.Itoa(status)}
}

// RawIncrOp is IncrOp over one raw keep-alive connection to base.
func RawIncrOp(base, ns string, gen KeyGen, body []byte) (Op, error) {
	rc, err := newRawConn(base)
	if err != nil {
		return nil, err
	}
	prefix := counterPrefix(ns)
	path := make([]byte, 0, len(prefix)+32)
	return func(ctx context.Context) (int64, error) {
		path = append(path[:0], prefix...)
		path = AppendKeyName(path, gen.Next())
		path = append(path, "/incr"...)
		return rc.op(ctx, "POST", path, body, client.ContentTypeJSON)
	}, nil
}

// RawReadOp is ReadOp over one raw keep-alive connection to base.
func RawReadOp(base, ns string, gen KeyGen, consistency client.Consistency) (Op, error) {
	rc, err := newRawConn(base)
	if err != nil {
		return nil, err
	}
	prefix := counterPrefix(ns)
	suffix := ""
	if consistency != "" {
		suffix = "?consistency=" + url.QueryEscape(string(consistency))
	}
	path := make([]byte, 0, len(prefix)+len(suffix)+32)
	return func(ctx context.Context) (int64, error) {
		path = append(path[:0], prefix...)
		path = AppendKeyName(path, gen.Next())
		path = append(path, suffix...)
		return rc.op(ctx, "GET", path, nil, "")
	}, nil
}
