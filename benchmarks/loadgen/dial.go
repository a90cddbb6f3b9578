package main

import (
	"context"
	"sync"
	"sync/atomic"
)

// dialAll runs open(i) for i in [0, n) on -dialers workers. With failFast the
// first error stops the remaining work and is returned; otherwise errors are
// counted and the first one returned alongside the count.
func dialAll(ctx context.Context, dialers, n int, failFast bool, open func(ctx context.Context, i int) error) (failed int, first error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		nFailed atomic.Int64
		once    sync.Once
		wg      sync.WaitGroup
	)
	if dialers > n {
		dialers = n
	}
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := open(ctx, i); err != nil {
					nFailed.Add(1)
					once.Do(func() { first = err })
					if failFast {
						cancel()
					}
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil && next.Load() < int64(n) {
		first = ctx.Err()
	}
	return int(nFailed.Load()), first
}
