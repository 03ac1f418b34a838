package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
)

// Summary is the JSON object countbench prints as its last line.
type Summary struct {
	Mode      string  `json:"mode"`
	DurationS float64 `json:"duration_s"`
	// Ops counts the operations (increments or reads) of successful
	// requests.
	Ops     int64   `json:"ops"`
	OpsPerS float64 `json:"ops_per_s"`
	// Requests counts every request answered or failed; Errors the failed
	// ones, by ErrorCode in ErrorsByCode ("unsent" for requests an open loop
	// scheduled but could not send before the end).
	Requests     int64            `json:"requests"`
	RequestsPerS float64          `json:"requests_per_s"`
	Errors       int64            `json:"errors"`
	ErrorsByCode map[string]int64 `json:"errors_by_code"`
	// LatencyMS is over successful requests; in an open loop it is measured
	// from each request's scheduled send time.
	LatencyMS Latency        `json:"latency_ms"`
	Config    map[string]any `json:"config"`
}

// NewSummary summarises a result.
func NewSummary(mode string, r Result, config map[string]any) Summary {
	secs := r.Duration.Seconds()
	rate := func(n int64) float64 {
		if secs <= 0 {
			return 0
		}
		return math.Round(float64(n)/secs*10) / 10
	}
	errs := r.Errors
	if errs == nil {
		errs = map[string]int64{}
	}
	if config == nil {
		config = map[string]any{}
	}
	return Summary{
		Mode:         mode,
		DurationS:    math.Round(secs*1000) / 1000,
		Ops:          r.Ops,
		OpsPerS:      rate(r.Ops),
		Requests:     r.Requests,
		RequestsPerS: rate(r.Requests),
		Errors:       r.ErrorCount(),
		ErrorsByCode: errs,
		LatencyMS:    r.Latency,
		Config:       config,
	}
}

// WriteLine writes s as one line of JSON.
func (s Summary) WriteLine(w io.Writer) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("bench: encoding the summary: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("bench: writing the summary: %w", err)
	}
	return nil
}
