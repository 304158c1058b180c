//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package train

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// lockFile takes the lock with an advisory lock on the lock file, which
// the system releases when the process ends (see LockOutput).
func lockFile(l *OutputLock) error { return lockFlock(l) }

// lockFlock locks the lock file at l.path, creating it if need be. The
// holder removes the file before it lets go (Unlock), so a run that
// opened the old file and locks it once it is released holds a file no
// longer at the path: it checks and starts again.
func lockFlock(l *OutputLock) error {
	for try := 0; ; try++ {
		if try == 100 {
			return fmt.Errorf("train: locking %s: %s keeps being replaced", l.dir, l.path)
		}
		f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			// The holder removed the folder it had made, and left.
			if err = os.MkdirAll(l.dir, 0o755); err == nil {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("train: locking %s: %w", l.dir, err)
		}
		if err := flock(f); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return &OutputInUseError{Dir: l.dir, Holder: readHolder(l.path)}
			}
			return fmt.Errorf("train: locking %s (%s): %w", l.dir, l.path, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("train: locking %s: %w", l.dir, err)
		}
		pi, err := os.Stat(l.path)
		if err == nil && os.SameFile(fi, pi) {
			l.file = f
			break
		}
		f.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("train: locking %s: %w", l.dir, err)
		}
	}
	// Who holds the folder, for the message of a run refused. A file
	// that a killed holder left may say someone else: it is rewritten.
	if err := l.file.Truncate(0); err == nil {
		l.file.WriteAt([]byte(holderLine()+"\n"), 0)
	}
	return nil
}

// flock takes an exclusive advisory lock on f without waiting for it.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
