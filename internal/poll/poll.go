// Package poll waits for conditions with deadlines, for tests: the one
// wait helper of every package's tests (nats-server's checkFor). A test
// never sleeps for a fixed time to let something happen; it polls the
// condition until it holds or the deadline passes.
package poll

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Until calls f every interval until it returns nil, ctx ends or total
// passes, and returns nil or the last error of f (wrapped with how long it
// waited). It is for goroutines that cannot fail a test themselves.
func Until(ctx context.Context, total, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("condition not met within %v: %w", total, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w while waiting: %w", ctx.Err(), err)
		case <-time.After(min(interval, time.Until(deadline))):
		}
	}
}

// CheckFor calls f every interval until it returns nil, and fails the test
// with f's last error if total passes first.
func CheckFor(tb testing.TB, total, interval time.Duration, f func() error) {
	tb.Helper()
	if err := Until(context.Background(), total, interval, f); err != nil {
		tb.Fatal(err)
	}
}
