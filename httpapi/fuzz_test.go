package httpapi

import (
	"strings"
	"testing"

	"github.com/countmesh/countmesh/node"
	"github.com/countmesh/countmesh/ratelimit"
)

// checkRefusal fails unless err, a refused body, maps to 400, 413 or 415:
// a body the client got wrong is never the server's 500.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	switch status, code := classify(err); status {
	case 400, 413, 415:
	default:
		t.Fatalf("a refused body maps to %d %s: %v", status, code, err)
	}
}

// Content types the decoders see.
var fuzzContentTypes = []string{"", "application/json", "application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8", "bad/;;"}

func FuzzDecodeIncr(f *testing.F) {
	for _, body := range []string{
		``, `{}`, `{"by":5}`, `{"by":-3,"id":"req-1","consistency":"quorum"}`,
		`{"labels":{"country":"de","plan":"pro"},"at":"2026-01-02T15:04:05Z"}`,
		`{"by":9007199254740992}`, `{"by":1.5}`, `{"by":"2"}`, `{"bye":1}`, `{"by":1} {"by":1}`,
		`{"labels":{"country":"de\u0000\u001fplan"}}`, `{"labels":null}`, `{"at":"yesterday"}`,
		`[1,2]`, `null`, `{"by":`, "\xff\xfe",
	} {
		for i, ct := range fuzzContentTypes {
			if i < 2 || body == `{"by":5}` {
				f.Add(ct, []byte(body))
			}
		}
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req, err := decodeIncr(ct, body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if err := node.ValidateBy(req.by); err != nil {
			t.Fatalf("accepted by %d: %v", req.by, err)
		}
		if err := validateLabels(req.opts.Labels); err != nil {
			t.Fatalf("accepted labels %q: %v", req.opts.Labels, err)
		}
	})
}

func FuzzDecodeBatchJSON(f *testing.F) {
	for _, body := range []string{
		``, `{"ops":[]}`, `{"ops":[{"ns":"v","key":"a"},{"ns":"v","key":"b","by":5,"id":"x"}],"consistency":"local"}`,
		`{"ops":[{"ns":"v","key":"a","by":1.5}]}`, `{"ops":[{"ns":"v","key":"a","extra":1}]}`, `{"ops":{}}`,
		`{"ops":[` + strings.Repeat(`{"ns":"c","key":"a"},`, 20) + `{}]}`, `{"ops":null}`, `[]`, `{`, `{"ops":[]} x`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, _, err := decodeBatch("application/json", body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if len(ops) > node.MaxBatchOps {
			t.Fatalf("accepted %d ops", len(ops))
		}
	})
}

func FuzzDecodeBatchMsgpack(f *testing.F) {
	for _, body := range []string{
		"\x81\xa3ops\x92\x82\xa2ns\xa1v\xa3key\xa1a\x83\xa2ns\xa1w\xa3key\xa1z\xa2by\x0a", // two ops
		"\x82\xa3ops\x90\xabconsistency\xa6quorum",                                        // no ops, quorum
		"\x81\xa6states\xdd\x7f\xff\xff\xff",                                              // a peer body: unknown field
		"\x81\xa3ops\xdd\x7f\xff\xff\xff",                                                 // 2^31-1 ops announced
		"\x81\xa3ops\xdd\xff\xff\xff\xff",                                                 // 2^32-1 ops announced
		"\x81\xa3ops\xdc\xff\xff",                                                         // 65535 ops announced
		"\x81\xa3ops\x91\x81\xa2ns\xdb\x7f\xff\xff\xff",                                   // a 2 GiB string announced
		"\x81\xa3ops\x91\x81\xa2ns\xc6\x7f\xff\xff\xff",                                   // a 2 GiB bin announced
		"\x81\xa3ops\x91\x81\xa2ns",                                                       // truncated
		"\x81\xa3ops\xc0",                                                                 // nil ops
		"\xdf\xff\xff\xff\xff",                                                            // a map of 2^32-1 fields
		"\x81\xa3ops\x91\x81\xa2by\xcf\xff\xff\xff\xff\xff\xff\xff\xff",                   // by over int64
		"\x81\xa3ops\x90\x00",                                                             // trailing data
		"",
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, _, err := decodeBatch("application/msgpack", body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if len(ops) > node.MaxBatchOps {
			t.Fatalf("accepted %d ops", len(ops))
		}
	})
}

func FuzzDecodeNamespaceConfig(f *testing.F) {
	for _, body := range []string{
		``, `{}`,
		`{"type":"exact","durability":"sync","windows":["1m","1h","1d"],"retention":{"1m":"48h","1h":"90d","1d":"0"},"ttl":"0","min":0,"max":null,"idempotency_window":"24h"}`,
		`{"type":"approximate","epsilon":0.001,"confidence":0.99}`, `{"min":null}`, `{"min":1.5}`, `{"min":"0"}`,
		`{"windows":"1m"}`, `{"retention":{"1m":5}}`, `{"replicas":1}`, `{"type":"exact"}{}`, `{"min":99999999999999999999}`,
	} {
		f.Add(body == "" || body == "{}", []byte(body))
	}
	f.Fuzz(func(t *testing.T, form bool, body []byte) {
		ct := "application/json"
		if form {
			ct = "application/x-www-form-urlencoded" // what curl -d sends
		}
		if _, err := decodeNamespacePatch(ct, body); err != nil {
			checkRefusal(t, err)
		}
	})
}

func FuzzDecodeRateLimit(f *testing.F) {
	for _, body := range []string{
		`{"limit":100,"window":"1m"}`, `{"limit":100,"window":"1m","cost":3}`, `{"limit":1,"window":"1ms"}`,
		`{"limit":0,"window":"1m"}`, `{"limit":100}`, `{"window":"1m"}`, `{"limit":100,"window":"1m","cost":101}`,
		`{"limit":9007199254740992,"window":"1m"}`, `{"limit":100,"window":"367d"}`, `{"limit":100,"window":"-1s"}`,
		`{"limit":100,"window":"1m","burst":5}`, ``, `{"limit":1e3,"window":"1m"}`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRateLimit("rl", "k", "application/json", body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if req.Limit < 1 || req.Limit > ratelimit.MaxLimit || req.Cost < 1 || req.Cost > req.Limit ||
			req.Window < ratelimit.MinWindow || req.Window > ratelimit.MaxWindow {
			t.Fatalf("accepted %+v", req)
		}
	})
}

func FuzzDecodeBatchGet(f *testing.F) {
	for _, c := range []struct{ ct, body string }{
		{"application/json", `{"keys":[{"ns":"v","key":"a"},{"ns":"v","key":"b"}],"consistency":"local"}`},
		{"application/json", `{"keys":[]}`},
		{"application/json", `{"keys":[{"ns":"v","key":"a","by":1}]}`},
		{"application/json", `{"keys":null}`},
		{"application/json", `{`},
		{"application/msgpack", "\x81\xa4keys\x91\x82\xa2ns\xa1v\xa3key\xa1a"},
		{"application/msgpack", "\x81\xa4keys\xdd\x7f\xff\xff\xff"}, // 2^31-1 keys announced
		{"application/msgpack", "\x81\xa4keys\x91\x81\xa2ns\xdb\x7f\xff\xff\xff"},
		{"application/msgpack", ""},
	} {
		f.Add(c.ct, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		keys, _, err := decodeBatchGet(ct, body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if len(keys) > node.MaxGetMany {
			t.Fatalf("accepted %d keys", len(keys))
		}
	})
}
