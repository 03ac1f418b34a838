// Command bare is the yardstick of the HTTP benchmarks: a net/http
// server that answers every POST and GET with a fixed small JSON body after
// bumping an atomic counter, and does nothing else. countd's HTTP API is
// measured against it with the same load generator in the same minute, so
// that the ratio shows what the API adds over net/http itself.
//
//	go build -o /tmp/NAME/bare ./bench/bare
//	/tmp/NAME/bare --addr 127.0.0.1:18470
//
// With --countd-timeouts it sets the timeouts countd's http.Server sets (a
// read and a write deadline per request), so that a comparison can tell the
// cost of that configuration from the cost of the API.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// answer is about the size of countd's answer to an increment.
var answer = []byte(`{"ns":"bench","key":"k123","value":1}` + "\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:18470", "listen address")
	timeouts := flag.Bool("countd-timeouts", false, "set the timeouts of countd's HTTP server (cmd/countd)")
	flag.Parse()
	var n atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	})
	srv := &http.Server{Addr: *addr, Handler: h}
	if *timeouts {
		srv.ReadHeaderTimeout = 10 * time.Second
		srv.ReadTimeout = 30 * time.Second
		srv.WriteTimeout = 30 * time.Second
		srv.IdleTimeout = 2 * time.Minute
		srv.MaxHeaderBytes = 64 << 10
	}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
}
