package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// seen is one request as the fake server received it.
type seen struct {
	method      string
	path        string // escaped
	query       url.Values
	contentType string
	body        []byte
	header      http.Header
}

// fakeServer answers every request with status and answer, and records the
// requests.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server
	mu  sync.Mutex // guards reqs, status, answer, header
	// reqs are the requests received, in order.
	reqs   []seen
	status int
	answer string
	header http.Header
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t, status: http.StatusOK, answer: "{}"}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading body: %v", err)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, seen{
			method: r.Method, path: r.URL.EscapedPath(), query: r.URL.Query(),
			contentType: r.Header.Get("Content-Type"), body: body, header: r.Header.Clone(),
		})
		status, answer, header := f.status, f.answer, f.header
		f.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) respond(status int, answer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.answer = status, answer
}

func (f *fakeServer) setHeader(h http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.header = h
}

func (f *fakeServer) last() seen {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		f.t.Fatal("the server received no request")
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeServer) client(t *testing.T) *Client {
	t.Helper()
	cfg := DefaultConfig()
	cfg.BaseURL = f.srv.URL
	cfg.Timeout = 5 * time.Second
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// jsonEq reports whether two JSON texts hold the same value.
func jsonEq(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q is not JSON: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestRequests(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name      string
		answer    string
		call      func(ctx context.Context, c *Client) (any, error)
		method    string
		path      string
		query     url.Values
		body      string // JSON; "" means no body
		wantValue any
	}{
		{
			name:   "incr with every option",
			answer: `{"ns":"likes","key":"a/b c","value":5,"duplicate":true}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				v, err := c.Incr(ctx, "likes", "a/b c", 3, IncrOptions{
					ID: "r1", Consistency: ConsistencyQuorum, Labels: map[string]string{"country": "fr"}, At: at,
				})
				return CounterValue{NS: v.NS, Key: v.Key, Value: v.Value, Duplicate: v.Duplicate}, err
			},
			method:    "POST",
			path:      "/v1/counters/likes/a%2Fb%20c/incr",
			body:      `{"by":3,"id":"r1","consistency":"quorum","labels":{"country":"fr"},"at":"2024-05-06T07:08:09Z"}`,
			wantValue: CounterValue{NS: "likes", Key: "a/b c", Value: 5, Duplicate: true},
		},
		{
			name:   "decr",
			answer: `{"ns":"n","key":"k","value":-2}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				v, err := c.Decr(ctx, "n", "k", 2, IncrOptions{})
				return v.Value, err
			},
			method: "POST", path: "/v1/counters/n/k/decr", body: `{"by":2}`, wantValue: int64(-2),
		},
		{
			name:   "get with consistency and at",
			answer: `{"ns":"n","key":"k","value":7,"updated_at":"2024-05-06T07:08:09Z"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				v, err := c.Get(ctx, "n", "k", GetOptions{Consistency: ConsistencyAll, At: at})
				return []any{v.Value, v.UpdatedAt.Equal(at)}, err
			},
			method: "GET", path: "/v1/counters/n/k",
			query:     url.Values{"consistency": {"all"}, "at": {"2024-05-06T07:08:09Z"}},
			wantValue: []any{int64(7), true},
		},
		{
			name:   "get as of a time",
			answer: `{"ns":"n","key":"k","value":4,"updated_at":null,"resolution":"1m","at":"2024-05-06T07:08:00Z"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				v, err := c.Get(ctx, "n", "k", GetOptions{At: at})
				return []any{v.Value, v.Resolution, v.At.Equal(at.Truncate(time.Minute))}, err
			},
			method: "GET", path: "/v1/counters/n/k",
			query:     url.Values{"at": {"2024-05-06T07:08:09Z"}},
			wantValue: []any{int64(4), "1m", true},
		},
		{
			name:   "get a window's bucket",
			answer: `{"ns":"n","key":"k","value":2,"updated_at":null,"window":"1h","bucket_start":"2024-05-06T07:00:00Z"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				v, err := c.Get(ctx, "n", "k", GetOptions{At: at, Window: "1h"})
				return []any{v.Value, v.Window, v.BucketStart.Equal(at.Truncate(time.Hour))}, err
			},
			method: "GET", path: "/v1/counters/n/k",
			query:     url.Values{"at": {"2024-05-06T07:08:09Z"}, "window": {"1h"}},
			wantValue: []any{int64(2), "1h", true},
		},
		{
			name:   "reset",
			answer: `{"ns":"n","key":"k","value":10}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				v, err := c.Reset(ctx, "n", "k", 10)
				return v.Value, err
			},
			method: "PUT", path: "/v1/counters/n/k", body: `{"value":10}`, wantValue: int64(10),
		},
		{
			name:   "delete",
			answer: ``,
			call: func(ctx context.Context, c *Client) (any, error) {
				raw, err := c.Delete(ctx, "n", "k")
				return len(raw), err
			},
			method: "DELETE", path: "/v1/counters/n/k", wantValue: 0,
		},
		{
			name:   "list",
			answer: `{"items":[{"key":"pa","value":1},{"key":"pb","value":2}],"next_cursor":"c2"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				p, err := c.List(ctx, "n", "p", "c1", 2)
				return []any{p.Items, p.NextCursor}, err
			},
			method: "GET", path: "/v1/counters/n",
			query:     url.Values{"prefix": {"p"}, "cursor": {"c1"}, "limit": {"2"}},
			wantValue: []any{[]KeyValue{{"pa", 1}, {"pb", 2}}, "c2"},
		},
		{
			name:   "list without options sends no query",
			answer: `{"items":[],"next_cursor":""}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				p, err := c.List(ctx, "n", "", "", 0)
				return len(p.Items), err
			},
			method: "GET", path: "/v1/counters/n", query: url.Values{}, wantValue: 0,
		},
		{
			name:   "top",
			answer: `{"items":[{"key":"a","value":9}],"exact":false}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				r, err := c.Top(ctx, "n", TopOptions{K: 5, Window: "1h", Prefix: "x"})
				return []any{r.Items, r.Exact}, err
			},
			method: "GET", path: "/v1/namespaces/n/top",
			query:     url.Values{"k": {"5"}, "window": {"1h"}, "prefix": {"x"}},
			wantValue: []any{[]KeyValue{{"a", 9}}, false},
		},
		{
			name:   "series",
			answer: `{"step":"1m","points":[{"t":"2024-05-06T07:08:00Z","delta":3},{"t":1714979340000,"delta":4}],"total":7}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				s, err := c.Series(ctx, "n", "k", SeriesOptions{From: at, To: at.Add(time.Hour), Step: "1m"})
				if err != nil {
					return nil, err
				}
				return []any{s.Step, s.Total, len(s.Points), s.Points[1].Delta,
					s.Points[1].T.Equal(time.UnixMilli(1714979340000))}, nil
			},
			method: "GET", path: "/v1/counters/n/k/series",
			query:     url.Values{"from": {"2024-05-06T07:08:09Z"}, "to": {"2024-05-06T08:08:09Z"}, "step": {"1m"}},
			wantValue: []any{"1m", int64(7), 2, int64(4), true},
		},
		{
			name:   "aggregate",
			answer: `{"count":2,"sum":10,"avg":5,"min":4,"max":6}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				a, err := c.Aggregate(ctx, "n", AggregateOptions{Prefix: "p", Window: "1d"})
				return a.Stats, err
			},
			method: "GET", path: "/v1/namespaces/n/aggregate",
			query:     url.Values{"prefix": {"p"}, "window": {"1d"}},
			wantValue: Stats{Count: 2, Sum: 10, Avg: 5, Min: 4, Max: 6},
		},
		{
			name:   "rate limit",
			answer: `{"allowed":true,"limit":100,"remaining":99,"reset_ms":60000}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				r, err := c.RateLimit(ctx, "api", "user:1", 100, "1m", 1)
				return []any{r.Allowed, r.Limit, r.Remaining, r.ResetMS}, err
			},
			method: "POST", path: "/v1/ratelimit/api/user:1", body: `{"limit":100,"window":"1m","cost":1}`,
			wantValue: []any{true, int64(100), int64(99), int64(60000)},
		},
		{
			name: "cluster",
			answer: `{"node":{"name":"a","region":"eu","http_addr":"h:1","gossip_addr":"g:1"},
				"members":[{"name":"b","region":"us","state":"alive","http_addr":"h:2"}],
				"replication":[{"peer":"b","region":"us","lag_ms":12.5}]}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				ci, err := c.Cluster(ctx)
				return []any{ci.Node, ci.Members, ci.Replication}, err
			},
			method: "GET", path: "/v1/cluster",
			wantValue: []any{NodeInfo{"a", "eu", "h:1", "g:1"}, []Member{{"b", "us", "alive", "h:2"}},
				[]Replication{{"b", "us", 12.5}}},
		},
		{
			name:   "get namespace",
			answer: `{"type":"exact","durability":"sync","windows":["1m"],"min":0,"max":null,"ttl":"0"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				n, err := c.GetNamespace(ctx, "likes")
				return []any{n.Type, n.Windows, *n.Min, n.Max == nil, n.TTL}, err
			},
			method: "GET", path: "/v1/namespaces/likes",
			wantValue: []any{"exact", []string{"1m"}, int64(0), true, "0"},
		},
		{
			name:   "put namespace sends only the patched fields",
			answer: `{"name":"likes","type":"exact","min":0,"max":null}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				n, err := c.PutNamespace(ctx, "likes", NamespacePatch{
					Type: Ptr("exact"), Windows: Ptr([]string{"1m", "1h"}),
					Retention: Ptr(map[string]string{"1m": "48h"}), Min: BoundAt(0), Max: NoBound(),
					IdempotencyWindow: Ptr("24h"),
				})
				return []any{n.Name, n.Type, *n.Min}, err
			},
			method: "PUT", path: "/v1/namespaces/likes",
			body: `{"type":"exact","windows":["1m","1h"],"retention":{"1m":"48h"},
				"min":0,"max":null,"idempotency_window":"24h"}`,
			wantValue: []any{"likes", "exact", int64(0)},
		},
		{
			name:   "empty namespace patch",
			answer: `{"name":"n"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				n, err := c.PutNamespace(ctx, "n", NamespacePatch{Windows: Ptr([]string{})})
				return n.Name, err
			},
			method: "PUT", path: "/v1/namespaces/n", body: `{"windows":[]}`, wantValue: "n",
		},
		{
			name:   "healthz",
			answer: "ok",
			call: func(ctx context.Context, c *Client) (any, error) {
				return nil, c.Healthz(ctx)
			},
			method: "GET", path: "/healthz",
		},
		{
			name:   "readyz",
			answer: "",
			call: func(ctx context.Context, c *Client) (any, error) {
				return nil, c.Readyz(ctx)
			},
			method: "GET", path: "/readyz",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.respond(http.StatusOK, tt.answer)
			got, err := tt.call(context.Background(), f.client(t))
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if !reflect.DeepEqual(got, tt.wantValue) {
				t.Errorf("result = %#v, want %#v", got, tt.wantValue)
			}
			r := f.last()
			if r.method != tt.method || r.path != tt.path {
				t.Errorf("request = %s %s, want %s %s", r.method, r.path, tt.method, tt.path)
			}
			if tt.query != nil && !reflect.DeepEqual(r.query, tt.query) {
				t.Errorf("query = %v, want %v", r.query, tt.query)
			}
			if tt.body == "" {
				if len(r.body) != 0 {
					t.Errorf("body = %q, want none", r.body)
				}
			} else {
				jsonEq(t, r.body, tt.body)
				if r.contentType != ContentTypeJSON {
					t.Errorf("Content-Type = %q, want %q", r.contentType, ContentTypeJSON)
				}
			}
		})
	}
}

func TestRawKeepsTheAnswer(t *testing.T) {
	f := newFakeServer(t)
	answer := `{"ns":"n","key":"k","value":1,"extra":"kept"}`
	f.respond(http.StatusOK, answer)
	v, err := f.client(t).Get(context.Background(), "n", "k", GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Raw) != answer {
		t.Errorf("Raw = %s, want %s", v.Raw, answer)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		answer   string
		header   http.Header
		want     Error
		sentinel error
	}{
		{
			name: "conflict", status: 409,
			answer:   `{"error":{"code":"conflict","message":"min 0 would be crossed"}}`,
			want:     Error{Status: 409, Code: "conflict", Message: "min 0 would be crossed"},
			sentinel: ErrConflict,
		},
		{
			name: "overloaded with retry-after", status: 429,
			answer:   `{"error":{"code":"overloaded","message":"queues full"}}`,
			header:   http.Header{"Retry-After": {"2"}},
			want:     Error{Status: 429, Code: "overloaded", Message: "queues full", RetryAfter: 2 * time.Second},
			sentinel: ErrOverloaded,
		},
		{
			name: "body that is not JSON", status: 502, answer: "Bad Gateway from proxy\n",
			want: Error{Status: 502, Code: "http_502", Message: "Bad Gateway from proxy"},
		},
		{
			name: "empty body keeps the spec code of the status", status: 503, answer: "",
			want:     Error{Status: 503, Code: "unavailable", Message: "Service Unavailable"},
			sentinel: ErrUnavailable,
		},
		{
			name: "unauthenticated", status: 401,
			answer:   `{"error":{"code":"unauthenticated","message":"missing bearer token"}}`,
			want:     Error{Status: 401, Code: "unauthenticated", Message: "missing bearer token"},
			sentinel: ErrUnauthenticated,
		},
		{
			name: "permission denied", status: 403,
			answer:   `{"error":{"code":"permission_denied","message":"token is read-only"}}`,
			want:     Error{Status: 403, Code: "permission_denied", Message: "token is read-only"},
			sentinel: ErrPermissionDenied,
		},
		{
			name: "401 from a proxy without JSON", status: 401, answer: "",
			want:     Error{Status: 401, Code: "unauthenticated", Message: "Unauthorized"},
			sentinel: ErrUnauthenticated,
		},
		{
			name: "code decides over status", status: 400,
			answer:   `{"error":{"code":"not_found","message":"x"}}`,
			want:     Error{Status: 400, Code: "not_found", Message: "x"},
			sentinel: ErrNotFound,
		},
	}
	all := []error{ErrInvalidArgument, ErrUnauthenticated, ErrPermissionDenied, ErrNotFound, ErrMethodNotAllowed, ErrConflict, ErrTooLarge,
		ErrUnsupportedMediaType, ErrOverflow, ErrOverloaded, ErrUnavailable}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.respond(tt.status, tt.answer)
			f.setHeader(tt.header)
			_, err := f.client(t).Incr(context.Background(), "n", "k", 1, IncrOptions{})
			var apiErr *Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %v (%T) is not a *Error", err, err)
			}
			if *apiErr != tt.want {
				t.Errorf("error = %+v, want %+v", *apiErr, tt.want)
			}
			for _, s := range all {
				if got, want := errors.Is(err, s), s == tt.sentinel; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", s, got, want)
				}
			}
			if StatusCode(err) != tt.status {
				t.Errorf("StatusCode = %d, want %d", StatusCode(err), tt.status)
			}
			if !strings.Contains(err.Error(), tt.want.Message) {
				t.Errorf("Error() = %q does not contain the message %q", err.Error(), tt.want.Message)
			}
		})
	}
}

func TestTransportErrorIsWrapped(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Get(ctx, "n", "k", GetOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want one wrapping context.Canceled", err)
	}
	if StatusCode(err) != 0 {
		t.Errorf("StatusCode = %d for a transport error, want 0", StatusCode(err))
	}
}

func TestEmptyNamesAreRefusedLocally(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	if _, err := c.Incr(context.Background(), "", "k", 1, IncrOptions{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty namespace: error = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.Get(context.Background(), "n", "", GetOptions{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty key: error = %v, want ErrInvalidArgument", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 0 {
		t.Errorf("%d requests reached the server, want 0", len(f.reqs))
	}
}

func TestBatchEncodings(t *testing.T) {
	ops := []Op{{NS: "n", Key: "a", By: 1}, {NS: "n", Key: "b", By: -2, ID: "x"}, {NS: "m", Key: "c", By: 0}}
	wantOps := []any{
		map[string]any{"ns": "n", "key": "a", "by": float64(1)},
		map[string]any{"ns": "n", "key": "b", "by": float64(-2), "id": "x"},
		map[string]any{"ns": "m", "key": "c", "by": float64(0)},
	}
	for _, enc := range []Encoding{EncodingJSON, EncodingMsgpack} {
		t.Run(enc.String(), func(t *testing.T) {
			f := newFakeServer(t)
			f.respond(http.StatusOK, `{"applied":3,"duplicates":0,"values":[1,-2,0]}`)
			cfg := DefaultConfig()
			cfg.BaseURL = f.srv.URL
			cfg.BatchEncoding = enc
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Batch(context.Background(), ops, ConsistencyQuorum, true)
			if err != nil {
				t.Fatal(err)
			}
			if res.Applied != 3 || !reflect.DeepEqual(res.Values, []int64{1, -2, 0}) {
				t.Errorf("result = %+v", res)
			}
			r := f.last()
			if r.method != "POST" || r.path != "/v1/batch" || r.query.Get("return") != "values" {
				t.Errorf("request = %s %s?%s", r.method, r.path, r.query.Encode())
			}
			if r.contentType != enc.ContentType() {
				t.Errorf("Content-Type = %q, want %q", r.contentType, enc.ContentType())
			}
			var body map[string]any
			if enc == EncodingJSON {
				err = json.Unmarshal(r.body, &body)
			} else {
				err = msgpack.Unmarshal(r.body, &body)
				body = normaliseNumbers(body).(map[string]any)
			}
			if err != nil {
				t.Fatalf("decoding body: %v", err)
			}
			want := map[string]any{"ops": wantOps, "consistency": "quorum"}
			if !reflect.DeepEqual(body, want) {
				t.Errorf("body = %#v\nwant %#v", body, want)
			}
		})
	}
}

// normaliseNumbers turns msgpack's integer types into float64, as JSON has.
func normaliseNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normaliseNumbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normaliseNumbers(e)
		}
		return x
	case int8:
		return float64(x)
	case int16:
		return float64(x)
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case uint8:
		return float64(x)
	case uint16:
		return float64(x)
	case uint32:
		return float64(x)
	case uint64:
		return float64(x)
	}
	return v
}

func TestBatchRawDecodesMsgpackAnswer(t *testing.T) {
	f := newFakeServer(t)
	ans, err := msgpack.Marshal(map[string]any{"applied": 2, "duplicates": 1})
	if err != nil {
		t.Fatal(err)
	}
	f.respond(http.StatusOK, string(ans))
	f.setHeader(http.Header{"Content-Type": {"application/msgpack"}})
	body, ct, err := EncodeBatch([]Op{{NS: "n", Key: "k", By: 1}}, "", EncodingMsgpack)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.client(t).BatchRaw(context.Background(), body, ct, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 2 || res.Duplicates != 1 {
		t.Errorf("result = %+v, want applied 2 duplicates 1", res)
	}
	if _, ok := f.last().query["return"]; ok {
		t.Error("return=values sent without being asked")
	}
}

func TestBatchOverLimitIsRefusedLocally(t *testing.T) {
	f := newFakeServer(t)
	_, err := f.client(t).Batch(context.Background(), make([]Op, MaxBatchOps+1), "", false)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("error = %v, want ErrTooLarge", err)
	}
}

func TestRateLimitRefused(t *testing.T) {
	t.Run("429 with the rate-limit body is an answer", func(t *testing.T) {
		f := newFakeServer(t)
		f.respond(http.StatusTooManyRequests, `{"allowed":false,"limit":10,"remaining":0,"reset_ms":1500}`)
		f.setHeader(http.Header{"Retry-After": {"2"}})
		r, err := f.client(t).RateLimit(context.Background(), "api", "u", 10, "1s", 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Allowed || r.Remaining != 0 || r.ResetMS != 1500 || r.RetryAfter != 2*time.Second {
			t.Errorf("result = %+v", r)
		}
		jsonEq(t, f.last().body, `{"limit":10,"window":"1s"}`)
	})
	t.Run("429 with an error body is an error", func(t *testing.T) {
		f := newFakeServer(t)
		f.respond(http.StatusTooManyRequests, `{"error":{"code":"overloaded","message":"busy"}}`)
		_, err := f.client(t).RateLimit(context.Background(), "api", "u", 10, "1s", 1)
		if !errors.Is(err, ErrOverloaded) {
			t.Errorf("error = %v, want ErrOverloaded", err)
		}
	})
}

func TestListNamespacesShapes(t *testing.T) {
	tests := []struct {
		name, answer string
		want         []string
		wantType     string // type of the first
	}{
		{"array of names", `["a","b"]`, []string{"a", "b"}, ""},
		{"object with namespaces", `{"namespaces":[{"name":"a","type":"exact"},{"name":"b"}]}`, []string{"a", "b"}, "exact"},
		{"items with nested config", `{"items":[{"ns":"a","config":{"type":"approximate"}}]}`, []string{"a"}, "approximate"},
		{"object keyed by name", `{"b":{"type":"eventual"},"a":{"type":"exact"}}`, []string{"a", "b"}, "exact"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.respond(http.StatusOK, tt.answer)
			l, err := f.client(t).ListNamespaces(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, it := range l.Items {
				names = append(names, it.Name)
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Errorf("names = %v, want %v", names, tt.want)
			}
			if l.Items[0].Config.Type != tt.wantType {
				t.Errorf("first type = %q, want %q", l.Items[0].Config.Type, tt.wantType)
			}
			if f.last().path != "/v1/namespaces" {
				t.Errorf("path = %s", f.last().path)
			}
		})
	}
}

func TestAggregateGroups(t *testing.T) {
	tests := []struct{ name, answer string }{
		{"groups object", `{"count":3,"sum":6,"groups":{"fr":{"count":1,"sum":1},"de":{"count":2,"sum":5}}}`},
		{"groups array", `{"groups":[{"group":"fr","count":1,"sum":1},{"group":"de","count":2,"sum":5}]}`},
		{"groups array keyed by label name", `{"groups":[{"country":"fr","count":1,"sum":1},{"country":"de","count":2,"sum":5}]}`},
		{"top-level object", `{"fr":{"count":1,"sum":1},"de":{"count":2,"sum":5}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.respond(http.StatusOK, tt.answer)
			a, err := f.client(t).Aggregate(context.Background(), "n", AggregateOptions{GroupBy: "country"})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]Stats{"fr": {Count: 1, Sum: 1}, "de": {Count: 2, Sum: 5}}
			if !reflect.DeepEqual(a.Groups, want) {
				t.Errorf("groups = %+v, want %+v", a.Groups, want)
			}
			if f.last().query.Get("group_by") != "country" {
				t.Errorf("query = %v", f.last().query)
			}
		})
	}
}

func TestTimeDecoding(t *testing.T) {
	want := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, in := range []string{`"2024-05-06T07:08:09Z"`, `1714979289`, `1714979289000`,
		`1714979289000000`, `1714979289000000000`, `"1714979289000"`} {
		var tm Time
		if err := json.Unmarshal([]byte(in), &tm); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !tm.Equal(want) {
			t.Errorf("%s = %v, want %v", in, tm.Time, want)
		}
	}
	var tm Time
	if err := json.Unmarshal([]byte(`null`), &tm); err != nil || !tm.IsZero() {
		t.Errorf("null = %v, %v; want the zero time", tm, err)
	}
	if err := json.Unmarshal([]byte(`"yesterday"`), &tm); err == nil {
		t.Error("\"yesterday\" decoded without error")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		base, want string
		ok         bool
	}{
		{"http://127.0.0.1:7070/", "http://127.0.0.1:7070", true},
		{"127.0.0.1:7070", "http://127.0.0.1:7070", true},
		{"https://h/prefix", "https://h/prefix", true},
		{"", "", false},
		{"ftp://h", "", false},
		{"http://h?x=1", "", false},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.BaseURL = tt.base
		c, err := New(cfg)
		if (err == nil) != tt.ok {
			t.Errorf("New(%q) error = %v, want ok=%v", tt.base, err, tt.ok)
			continue
		}
		if tt.ok && c.BaseURL() != tt.want {
			t.Errorf("New(%q).BaseURL() = %q, want %q", tt.base, c.BaseURL(), tt.want)
		}
	}
	tr, ok := DefaultConfig().HTTPClient.Transport.(*http.Transport)
	if !ok || tr.MaxIdleConnsPerHost < 256 {
		t.Errorf("default transport keeps too few idle connections per host: %+v", tr)
	}
}

func TestSend(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(t)
	body := []byte(`{"by":1}`)
	for i := 0; i < 3; i++ {
		if err := c.Send(context.Background(), "POST", CounterPath("n", "k 1")+"/incr", body, ContentTypeJSON); err != nil {
			t.Fatal(err)
		}
	}
	r := f.last()
	if r.path != "/v1/counters/n/k%201/incr" || string(r.body) != `{"by":1}` {
		t.Errorf("request = %s %q", r.path, r.body)
	}
	f.respond(http.StatusTooManyRequests, `{"error":{"code":"overloaded","message":"m"}}`)
	err := c.Send(context.Background(), "POST", "/v1/counters/n/k/incr", body, ContentTypeJSON)
	if StatusCode(err) != 429 {
		t.Errorf("Send error = %v, want status 429", err)
	}
}

func TestGetMany(t *testing.T) {
	f := newFakeServer(t)
	f.respond(http.StatusOK, `{"values":[4,0]}`)
	c := f.client(t)
	got, err := c.GetMany(context.Background(), []Key{{NS: "pages", Key: "a"}, {NS: "pages", Key: "b/c"}}, ConsistencyQuorum)
	if err != nil || !reflect.DeepEqual(got, []int64{4, 0}) {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	req := f.last()
	if req.method != "POST" || req.path != "/v1/batch/get" {
		t.Errorf("request %s %s", req.method, req.path)
	}
	jsonEq(t, req.body, `{"keys":[{"ns":"pages","key":"a"},{"ns":"pages","key":"b/c"}],"consistency":"quorum"}`)
	f.respond(http.StatusOK, `{"values":[4]}`)
	if _, err := c.GetMany(context.Background(), []Key{{NS: "pages", Key: "a"}, {NS: "pages", Key: "b"}}, ""); err == nil {
		t.Error("an answer with fewer values than keys was accepted")
	}
	if _, err := c.GetMany(context.Background(), make([]Key, MaxGetManyKeys+1), ""); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the limit: %v, want ErrTooLarge", err)
	}
}
