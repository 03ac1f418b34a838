package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultBaseURL is the address countd listens on by default.
const DefaultBaseURL = "http://127.0.0.1:7070"

// Consistency is the consistency level of a read or write (docs/api.md).
// The zero value leaves the choice to the server (local, or quorum in exact
// namespaces).
type Consistency string

// The consistency levels of docs/api.md.
const (
	ConsistencyDefault Consistency = ""
	ConsistencyLocal   Consistency = "local"
	ConsistencyQuorum  Consistency = "quorum"
	ConsistencyAll     Consistency = "all"
)

// Encoding selects how Batch encodes its request body.
type Encoding int

// The batch body encodings the server accepts.
const (
	// EncodingJSON sends Content-Type: application/json.
	EncodingJSON Encoding = iota
	// EncodingMsgpack sends Content-Type: application/msgpack with the same
	// field names as the JSON body.
	EncodingMsgpack
)

// Content types used on the wire.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeMsgpack = "application/msgpack"
)

// ContentType returns the Content-Type header value of the encoding.
func (e Encoding) ContentType() string {
	if e == EncodingMsgpack {
		return ContentTypeMsgpack
	}
	return ContentTypeJSON
}

// String returns "json" or "msgpack".
func (e Encoding) String() string {
	if e == EncodingMsgpack {
		return "msgpack"
	}
	return "json"
}

// Config configures a Client. Start from DefaultConfig and change what you
// need.
type Config struct {
	// BaseURL is the node's HTTP address, e.g. "http://127.0.0.1:7070". A
	// bare "host:port" is taken as http://host:port.
	BaseURL string
	// Timeout bounds each request (not Watch streams). Zero means no limit
	// besides the caller's context.
	Timeout time.Duration
	// HTTPClient sends the requests. Leave its Timeout at zero: it would
	// also cut Watch streams; use Config.Timeout instead.
	HTTPClient *http.Client
	// BatchEncoding is the body encoding Batch uses.
	BatchEncoding Encoding
	// UserAgent is sent with every request.
	UserAgent string
	// Token, when not empty, is sent with every request as
	// "Authorization: Bearer <Token>" (nodes started with --api-tokens-file
	// refuse requests without one: ErrUnauthenticated).
	Token string
	// TLSConfig, when not nil, is used for https:// addresses, e.g. from
	// TLSConfigForCA to trust a private CA. It is set on a clone of
	// HTTPClient's transport, which must then be an *http.Transport.
	TLSConfig *tls.Config
}

// DefaultConfig returns a configuration for a node on the default address
// with a 10 s request timeout and an http.Client tuned for many concurrent
// requests to one host.
func DefaultConfig() Config {
	return Config{
		BaseURL:       DefaultBaseURL,
		Timeout:       10 * time.Second,
		HTTPClient:    NewHTTPClient(1024),
		BatchEncoding: EncodingJSON,
		UserAgent:     "countmesh-client/1",
	}
}

// NewHTTPClient returns an http.Client whose transport keeps up to maxIdle
// keep-alive connections to each host, so that up to maxIdle concurrent
// requests reuse connections instead of opening new ones.
func NewHTTPClient(maxIdle int) *http.Client {
	if maxIdle < 2 {
		maxIdle = 2
	}
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          maxIdle,
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: t}
}

// validate checks the configuration and returns the normalised base URL.
func (c Config) validate() (string, error) {
	base := strings.TrimSpace(c.BaseURL)
	if base == "" {
		return "", errors.New("client: BaseURL is empty; use e.g. http://127.0.0.1:7070")
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("client: BaseURL %q: %w", c.BaseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("client: BaseURL %q: scheme must be http or https", c.BaseURL)
	}
	if u.Host == "" {
		return "", fmt.Errorf("client: BaseURL %q has no host", c.BaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("client: BaseURL %q must not have a query or fragment", c.BaseURL)
	}
	if c.Timeout < 0 {
		return "", fmt.Errorf("client: Timeout %v is negative", c.Timeout)
	}
	if strings.ContainsFunc(c.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", errors.New("client: Token contains spaces or control characters; pass the token alone, without \"Bearer\"")
	}
	if c.BatchEncoding != EncodingJSON && c.BatchEncoding != EncodingMsgpack {
		return "", fmt.Errorf("client: unknown BatchEncoding %d", c.BatchEncoding)
	}
	return strings.TrimRight(base, "/"), nil
}

// Client talks to one countd node. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string // normalised BaseURL without trailing slash
	hc   *http.Client
}

// New returns a Client for cfg. A nil cfg.HTTPClient gets a tuned default.
func New(cfg Config) (*Client, error) {
	base, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = NewHTTPClient(1024)
	}
	if cfg.TLSConfig != nil {
		if hc, err = withTLS(hc, cfg.TLSConfig); err != nil {
			return nil, err
		}
	}
	return &Client{cfg: cfg, base: base, hc: hc}, nil
}

// withTLS returns a copy of hc whose transport (cloned) uses tc.
func withTLS(hc *http.Client, tc *tls.Config) (*http.Client, error) {
	var t *http.Transport
	switch rt := hc.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = rt.Clone()
	default:
		return nil, fmt.Errorf("client: TLSConfig needs HTTPClient.Transport to be an *http.Transport, not %T; set the TLS config on your transport instead", rt)
	}
	own := tc.Clone()
	if len(own.NextProtos) == 0 && t.TLSClientConfig != nil {
		own.NextProtos = t.TLSClientConfig.NextProtos // keep HTTP/2 negotiation
	}
	t.TLSClientConfig = own
	cp := *hc
	cp.Transport = t
	return &cp, nil
}

// TLSConfigForCA returns a tls.Config that trusts only the CA certificates in
// the PEM file caFile, for Config.TLSConfig when the node's HTTPS
// certificate comes from a private CA (countctl certs create-ca).
func TLSConfigForCA(caFile string) (*tls.Config, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("client: reading the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("client: %s holds no PEM certificate: %w", caFile, ErrBadCA)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// BaseURL returns the normalised base URL the client sends to.
func (c *Client) BaseURL() string { return c.base }

// HTTPClient returns the http.Client the client sends with.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// request is one call to the API.
type request struct {
	method      string
	path        string // already escaped, starting with '/'
	query       url.Values
	body        []byte
	contentType string
	accept      string
}

// response is a successful (2xx) answer, fully read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// maxAnswer bounds how much of an answer is read into memory.
const maxAnswer = 64 << 20

// newHTTPRequest builds the *http.Request for r.
func (c *Client) newHTTPRequest(ctx context.Context, r request) (*http.Request, error) {
	u := c.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", r.method, r.path, err)
	}
	if r.body != nil {
		ct := r.contentType
		if ct == "" {
			ct = ContentTypeJSON
		}
		req.Header.Set("Content-Type", ct)
	}
	accept := r.accept
	if accept == "" {
		accept = ContentTypeJSON
	}
	req.Header.Set("Accept", accept)
	if c.cfg.UserAgent != "" {
		req.Header.Set("User-Agent", c.cfg.UserAgent)
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	return req, nil
}

// withTimeout applies Config.Timeout to ctx.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.cfg.Timeout > 0 {
		return context.WithTimeout(ctx, c.cfg.Timeout)
	}
	return ctx, func() {}
}

// do sends r and returns the answer, or a *Error for a non-2xx status.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req, err := c.newHTTPRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(r.method, r.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, decodeError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: reading answer: %w", r.method, r.path, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// call sends r, JSON-encoding in (when not nil) as the body, and decodes a
// JSON answer into out (when not nil). It returns the raw answer.
func (c *Client) call(ctx context.Context, r request, in, out any) (json.RawMessage, error) {
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("client: %s %s: encoding body: %w", r.method, r.path, err)
		}
		r.body = b
		r.contentType = ContentTypeJSON
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if out != nil && len(bytes.TrimSpace(resp.body)) > 0 {
		if err := json.Unmarshal(resp.body, out); err != nil {
			return nil, fmt.Errorf("client: %s %s: decoding answer: %w", r.method, r.path, err)
		}
	}
	return json.RawMessage(resp.body), nil
}

// Send issues one request with a pre-encoded body (nil for none) and
// discards a successful answer without decoding it. It returns nil for a 2xx
// status and a *Error otherwise. It is meant for load generators, which
// build body once and reuse it across calls; path must start with '/' and
// be escaped (see CounterPath).
func (c *Client) Send(ctx context.Context, method, path string, body []byte, contentType string) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req, err := c.newHTTPRequest(ctx, request{method: method, path: path, body: body, contentType: contentType})
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	// Drain so the connection goes back to the keep-alive pool.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer)); err != nil {
		return fmt.Errorf("client: %s %s: reading answer: %w", method, path, err)
	}
	return nil
}

// CounterPath returns the escaped path of a counter, /v1/counters/{ns}/{key}.
func CounterPath(ns, key string) string {
	return "/v1/counters/" + url.PathEscape(ns) + "/" + url.PathEscape(key)
}

// namespacePath returns /v1/namespaces/{ns}.
func namespacePath(ns string) string {
	return "/v1/namespaces/" + url.PathEscape(ns)
}

// checkName refuses empty namespace and key arguments before they turn into
// a confusing path.
func checkName(what, v string) error {
	if v == "" {
		return fmt.Errorf("client: %s is empty: %w", what, ErrInvalidArgument)
	}
	return nil
}

// transportError wraps a failure to get an answer. The *url.Error layer
// is dropped (its message repeats the URL); what it wrapped is kept for
// errors.Is.
func (c *Client) transportError(method, path string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("client: %s %s%s: %w", method, c.base, path, err)
}
