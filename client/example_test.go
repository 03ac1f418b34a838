package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/countmesh/countmesh/client"
)

// fakeCountd stands in for a countd node holding likes/post:42 = 0 in an
// exact namespace with min=0.
func fakeCountd() *httptest.Server {
	value := int64(0)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/counters/likes/post:42/incr":
			value++
			fmt.Fprintf(w, `{"ns":"likes","key":"post:42","value":%d}`, value)
		case "/v1/counters/likes/post:42/decr":
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":{"code":"conflict","message":"likes/post:42 would go below min 0"}}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no such route"}}`)
		}
	}))
}

func Example() {
	srv := fakeCountd()
	defer srv.Close()

	cfg := client.DefaultConfig()
	cfg.BaseURL = srv.URL // e.g. http://127.0.0.1:7070
	c, err := client.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	v, err := c.Incr(ctx, "likes", "post:42", 1, client.IncrOptions{ID: "like-from-user-7"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("value:", v.Value)

	_, err = c.Decr(ctx, "likes", "post:42", 2, client.IncrOptions{})
	if errors.Is(err, client.ErrConflict) {
		var apiErr *client.Error
		errors.As(err, &apiErr)
		fmt.Println("refused:", apiErr.Status, apiErr.Code, apiErr.Message)
	}
	// Output:
	// value: 1
	// refused: 409 conflict likes/post:42 would go below min 0
}

func ExampleEncodeBatch() {
	ops := make([]client.Op, 0, 3)
	for i := 0; i < 3; i++ {
		ops = append(ops, client.Op{NS: "views", Key: fmt.Sprintf("page-%d", i), By: 1})
	}
	body, contentType, err := client.EncodeBatch(ops, client.ConsistencyLocal, client.EncodingJSON)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(contentType)
	fmt.Println(string(body))
	// Send it, as often as wanted, with c.BatchRaw(ctx, body, contentType, false).

	// Output:
	// application/json
	// {"ops":[{"ns":"views","key":"page-0","by":1},{"ns":"views","key":"page-1","by":1},{"ns":"views","key":"page-2","by":1}],"consistency":"local"}
}
