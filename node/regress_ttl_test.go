package node

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TTL expiry deletes (observed reset) counters of a bounded exact namespace,
// which resets and deletes are refused for: the rights stay, so the counter
// goes below its min.
func TestRegressTTLExpiryBreaksBounds(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	n := clock.open(t, "a")
	ctx := context.Background()
	zero := int64(0)
	_, err := n.PutNamespace(ctx, "stock", NamespacePatch{Type: ptr(TypeExact), Min: NullableInt{Set: true, Value: &zero}, TTL: ptr("1m")})
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("an exact namespace with bounds and a ttl: %v, want ErrInvalidArgument", err)
	}
}

// An idle counter reads 0, but a write before the next expiry pass adds to
// the old value, which comes back.
func TestRegressTTLIdleCounterComesBackOnWrite(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	n := clock.open(t, "a")
	ctx := context.Background()
	if _, err := n.PutNamespace(ctx, "views", NamespacePatch{TTL: ptr("1m")}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Incr(ctx, "views", "p", 10, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	clock.Set(clock.Now().Add(2 * time.Minute))
	before := mustGet(t, n, "views", "p")
	r, err := n.Incr(ctx, "views", "p", 1, WriteOptions{})
	after := mustGet(t, n, "views", "p")
	t.Logf("idle read %d, incr +1 answered %+v %v, read after %d", before, r, err, after)
	if before == 0 && after != 1 {
		t.Errorf("an expired (idle) counter read 0, then +1 made it %d", after)
	}
}
