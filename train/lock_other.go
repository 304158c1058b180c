//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package train

// lockFile takes the lock by creating the lock file (see LockOutput):
// these systems have no advisory lock in Go's syscall package that the
// process's end releases.
func lockFile(l *OutputLock) error { return lockExclusive(l) }
