package wait

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	n := 0
	took, err := Poll(context.Background(), time.Second, time.Millisecond, func() (bool, string) {
		n++
		return n == 3, fmt.Sprint(n)
	})
	if err != nil || n != 3 || took >= time.Second {
		t.Fatalf("Poll = %v, %v after %d calls; want success at the third", took, err, n)
	}

	_, err = Poll(context.Background(), 20*time.Millisecond, time.Millisecond, func() (bool, string) { return false, "still 7" })
	if !errors.Is(err, ErrTimeout) || err.Error() != "wait: condition not met in time (20ms): last seen: still 7" {
		t.Fatalf("Poll past its deadline: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Poll(ctx, time.Hour, time.Hour, func() (bool, string) { return false, "x" })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Poll with a cancelled context: %v", err)
	}
}
