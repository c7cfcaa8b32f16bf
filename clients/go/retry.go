package sluice

import (
	"context"
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryPolicy says how refused requests (429, 503, wire 0x04/0x07) and transport failures are
// retried.
type RetryPolicy struct {
	MaxRetries     int           // retries after the first attempt (0 = never)
	InitialBackoff time.Duration // first wait without Retry-After; doubles, ±25 % jitter
	MaxBackoff     time.Duration // cap of any single wait, Retry-After included
	MaxElapsed     time.Duration // give up once this much was spent waiting (0 = no bound)
}

// DefaultRetryPolicy is the client's default: 5 retries, 50 ms first backoff, 10 s cap.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxRetries: 5, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 10 * time.Second}
}

// NoRetry never retries.
func NoRetry() RetryPolicy { return RetryPolicy{} }

// Wait is the pause before retry number attempt (1-based).
func (p RetryPolicy) Wait(attempt int, retryAfter time.Duration) time.Duration {
	var d time.Duration
	if retryAfter > 0 {
		d = retryAfter
	} else {
		n := attempt - 1
		if n < 0 {
			n = 0
		}
		if n > 16 {
			n = 16
		}
		base := float64(p.InitialBackoff) * float64(int64(1)<<n)
		d = time.Duration(base * (0.75 + rand.Float64()*0.5))
	}
	if p.MaxBackoff > 0 && d > p.MaxBackoff {
		d = p.MaxBackoff
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// parseRetryAfter reads Retry-After: seconds or an HTTP date.
func parseRetryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 {
			return 0
		}
		return time.Duration(f * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
