// Command bare is the yardstick of the HTTP benchmarks (issue 11): a net/http
// server that answers every POST and GET with a fixed small JSON body after
// bumping an atomic counter, and does nothing else. countd's HTTP API is
// measured against it with the same load generator in the same minute, so
// that the ratio shows what the API adds over net/http itself.
//
//	go build -o /tmp/NAME/bare ./bench/bare
//	/tmp/NAME/bare --addr 127.0.0.1:18470
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
)

// answer is about the size of countd's answer to an increment.
var answer = []byte(`{"ns":"bench","key":"k123","value":1}` + "\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:18470", "listen address")
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
	if err := http.ListenAndServe(*addr, h); err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
}
