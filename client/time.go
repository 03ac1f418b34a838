package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Time is a timestamp in an answer. The server may send RFC 3339 text or a
// Unix time number (seconds, milliseconds, microseconds or nanoseconds,
// told apart by magnitude); both decode to the same instant. null and "" are
// the zero time.
type Time struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		t.Time = time.Time{}
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("client: time %s: %w", b, err)
		}
		if s == "" {
			t.Time = time.Time{}
			return nil
		}
		if p, err := time.Parse(time.RFC3339Nano, s); err == nil {
			t.Time = p
			return nil
		}
		// A number inside a string.
		b = []byte(s)
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("client: time %s is neither RFC 3339 nor a Unix time: %w", b, err)
	}
	t.Time = unixAny(f)
	return nil
}

// MarshalJSON writes RFC 3339 with nanoseconds, or null for the zero time.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.Time.Format(time.RFC3339Nano))
}

// unixAny reads a Unix time whose unit is guessed from its magnitude.
func unixAny(f float64) time.Time {
	a := math.Abs(f)
	switch {
	case a >= 1e17:
		return time.Unix(0, int64(f))
	case a >= 1e14:
		return time.UnixMicro(int64(f))
	case a >= 1e11:
		return time.UnixMilli(int64(f))
	default:
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9))
	}
}

// formatTime is how times are sent: RFC 3339 with nanoseconds, in UTC.
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}
