package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A member's lease request is checked against what it could have admitted:
// the owner's counts stay what they were when the request is refused.
func TestLeaseRequestsOutsideWhatTheSenderCouldAdmitAreRefused(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	m := newMesh(t, start, nil, "a", "b")
	ctx := context.Background()
	const limit = 10
	// Find a key that b owns, so that a's requests go to b.
	var key string
	for i := 0; ; i++ {
		key = "user-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		v := m.nodes["b"].currentView()
		if v.owner(keyHash("api", key, time.Minute)).Name == "b" {
			break
		}
	}
	owner := m.nodes["b"]
	id, _ := windowAt(m.clock.Now(), time.Minute)
	base := LeaseRequest{From: "a", NS: "api", Key: key, Window: time.Minute, Limit: limit, Want: 1}
	cases := []struct {
		name string
		edit func(r *LeaseRequest)
	}{
		{"a negative want", func(r *LeaseRequest) { r.Want = -5 }},
		{"a want over the limit", func(r *LeaseRequest) { r.Want = limit + 1 }},
		{"a negative return (would take units)", func(r *LeaseRequest) { r.Return = &LeaseReturn{ID: 1, Units: -1 << 40} }},
		{"a negative synced count (a refused key would admit again)", func(r *LeaseRequest) { r.Sync = []WindowCount{{Window: id, Count: -1000}} }},
		{"a huge synced count (locks the key out)", func(r *LeaseRequest) { r.Sync = []WindowCount{{Window: id, Count: 1 << 50}} }},
		{"a count for a window far away", func(r *LeaseRequest) { r.Sync = []WindowCount{{Window: id + 1000, Count: 1}} }},
		{"too many window counts", func(r *LeaseRequest) { r.Sync = make([]WindowCount, maxSyncWindows+1) }},
		{"no sender", func(r *LeaseRequest) { r.From = "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := base
			tc.edit(&req)
			_, err := owner.HandleLease(ctx, req)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("got %v, want ErrInvalidArgument", err)
			}
		})
	}
	// Nothing counted: the whole limit is still there, for a and for b.
	resp, err := owner.HandleLease(ctx, LeaseRequest{From: "a", NS: "api", Key: key, Window: time.Minute, Limit: limit, Want: 0})
	if err != nil || resp.NotOwner || resp.Remaining != limit {
		t.Fatalf("after the refused requests: %+v, %v; want the whole limit of %d remaining", resp, err, limit)
	}
	// A well-formed report within the limit still counts.
	resp, err = owner.HandleLease(ctx, LeaseRequest{From: "a", NS: "api", Key: key, Window: time.Minute, Limit: limit, Sync: []WindowCount{{Window: id, Count: 4}}})
	if err != nil || resp.Remaining != limit-4 {
		t.Fatalf("a valid report of 4: %+v, %v; want %d remaining", resp, err, limit-4)
	}
}
