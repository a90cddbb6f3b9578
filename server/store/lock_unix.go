//go:build unix

package store

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockName is the store's own lock file in Dir. The engine locks the directory too, but fails
// at once when it is taken; ours waits a while, so that a restart overlapping the old
// process's exit opens once the old one is gone, and says clearly what is wrong otherwise.
const lockName = "mles.lock"

// lockPoll is how often Open tries a taken lock again.
const lockPoll = 20 * time.Millisecond

// lockDir takes the exclusive lock of dir, waiting up to wait for another holder to let go.
// flock conflicts between two opens of the same file within one process too.
func lockDir(dir string, wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(lockPoll)
	}
	f.Close()
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, &LockedError{Dir: dir, Wait: wait}
	}
	return nil, &os.PathError{Op: "flock", Path: f.Name(), Err: err}
}
