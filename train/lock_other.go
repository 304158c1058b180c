//go:build !(darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || windows)

package train

import "os"

// lockFile takes the lock by creating the lock file (see LockOutput):
// these systems (Plan 9, Solaris, AIX, WebAssembly) have no advisory lock
// in Go's syscall package that conflicts within a process and that the
// process's end releases.
func lockFile(l *OutputLock) error { return lockExclusive(l) }

// releaseFile removes the lock file and closes l.file. No lock here keeps
// its file open, so Unlock does not call it.
func releaseFile(l *OutputLock) error {
	err := os.Remove(l.path)
	if cerr := l.file.Close(); err == nil {
		err = cerr
	}
	return err
}
