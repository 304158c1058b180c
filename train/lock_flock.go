//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package train

import (
	"errors"
	"os"
	"slices"
	"syscall"
)

// lockCall names the system's advisory lock, for messages.
const lockCall = "flock"

// tryLock is systemFlock (a variable so that tests can make it fail as
// some file systems do).
var tryLock = systemFlock

// systemFlock takes an exclusive advisory lock on f without waiting for
// it.
func systemFlock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// lockBusy reports whether tryLock failed because another process holds
// the lock.
func lockBusy(err error) bool { return errors.Is(err, syscall.EWOULDBLOCK) }

// noFlock are flock's errors on file systems that have no advisory locks
// (Lustre mounted noflock: ENOSYS; NFSv3 without lockd: ENOLCK; some SMB
// and FUSE mounts: EOPNOTSUPP, which is ENOTSUP on Linux but not on every
// BSD).
var noFlock = []syscall.Errno{syscall.ENOSYS, syscall.ENOLCK, syscall.EOPNOTSUPP, syscall.ENOTSUP}

// lockUnsupported reports whether tryLock failed because the file system
// has no advisory locks.
func lockUnsupported(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && slices.Contains(noFlock, errno)
}

// lockNeedsWrite reports whether tryLock failed on a file open for reading
// only because the file system locks only files open for writing (flock
// emulated with fcntl locks, as Linux's NFS client does).
func lockNeedsWrite(err error) bool { return errors.Is(err, syscall.EBADF) }

// releaseFile lets go of the locked file l.file and removes it. The file
// goes while it is still locked: a run that opened it in the meantime and
// then locks it sees that it is no longer the file at the path, and starts
// again (see lockAdvisory).
func releaseFile(l *OutputLock) error {
	err := os.Remove(l.path)
	if cerr := l.file.Close(); err == nil {
		err = cerr
	}
	return err
}
