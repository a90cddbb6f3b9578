//go:build !unix

package store

import (
	"os"
	"time"
)

// lockDir relies on the engine's own lock where flock is missing: a second Open fails at once.
func lockDir(dir string, wait time.Duration) (*os.File, error) { return nil, nil }
