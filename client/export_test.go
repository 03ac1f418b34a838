package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestExportChecksTheEndRecord(t *testing.T) {
	header := `{"type":"header","format":1,"node":"a"}` + "\n"
	for _, tc := range []struct {
		name, stream string
		want         error
	}{
		{"whole", header + `{"type":"end","namespaces":2,"counters":7}` + "\n", nil},
		{"cut short", header + `{"type":"counter","ns":"pv","key":"a"}` + "\n", ErrCutShort},
		{"cut mid-line", header + `{"type":"end","namesp`, ErrCutShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/export" || r.URL.Query().Get("ns") != "pv" {
					http.Error(w, "wrong request "+r.URL.String(), http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", ContentTypeNDJSON)
				io.WriteString(w, tc.stream)
			}))
			defer srv.Close()
			cfg := DefaultConfig()
			cfg.BaseURL = srv.URL
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			sum, err := c.Export(context.Background(), "pv", &got)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("export: %v, want %v", err, tc.want)
			}
			if got.String() != tc.stream || sum.Bytes != int64(len(tc.stream)) {
				t.Fatalf("export wrote %q (%d bytes), want the stream as sent", got.String(), sum.Bytes)
			}
			if tc.want == nil && (sum.Namespaces != 2 || sum.Counters != 7) {
				t.Fatalf("summary %+v, want the end record's counts", sum)
			}
		})
	}
}
