//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package train

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// lockFile takes the lock with an advisory lock on the lock file, which
// the system releases when the process ends (see LockOutput).
func lockFile(l *OutputLock) error { return lockFlock(l) }

// noFlock are flock's errors on file systems that have no advisory locks
// (Lustre mounted noflock: ENOSYS; NFSv3 without lockd: ENOLCK; some SMB
// and FUSE mounts: EOPNOTSUPP, which is ENOTSUP on Linux but not on every
// BSD).
var noFlock = []syscall.Errno{syscall.ENOSYS, syscall.ENOLCK, syscall.EOPNOTSUPP, syscall.ENOTSUP}

// lockFlock locks the lock file at l.path, creating it if need be. The
// holder removes the file before it lets go (Unlock), so a run that
// opened the old file and locks it once it is released holds a file no
// longer at the path: it checks and starts again.
//
// Where the file system refuses flock (noFlock), the lock falls back to
// the file alone, as lockExclusive takes it: the call that created the
// file holds the folder, and a file already there refuses the run.
func lockFlock(l *OutputLock) error {
	for try := 0; ; try++ {
		if try == 100 {
			return fmt.Errorf("train: locking %s: %s keeps being replaced", l.dir, l.path)
		}
		f, created, readOnly, err := openLockFile(l.path)
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
			var errno syscall.Errno
			switch {
			case errors.Is(err, syscall.EWOULDBLOCK):
				// Read through f, not through another descriptor (see held).
				holder := holderIn(f)
				f.Close()
				return &OutputInUseError{Dir: l.dir, Holder: holder}
			case errors.As(err, &errno) && slices.Contains(noFlock, errno):
				return lockCreated(l, f, created, err)
			case readOnly && errors.Is(err, syscall.EBADF):
				// File systems that emulate flock with fcntl locks (NFS)
				// lock only files open for writing.
				f.Close()
				return fmt.Errorf("train: locking %s: %s is not this user's to write, and this file system locks only files open for writing: if no sora run is using the folder, remove it (%w)", l.dir, l.path, err)
			}
			f.Close()
			// A file this call made is not left behind, nor therefore the
			// folder that lockOutput made for it.
			if created {
				os.Remove(l.path)
			}
			return fmt.Errorf("train: locking %s (%s): %w", l.dir, l.path, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			if created {
				os.Remove(l.path)
			}
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
		l.file.WriteAt([]byte(l.holder+"\n"), 0)
	}
	return nil
}

// openLockFile opens the lock file at path for reading and writing,
// creating it if it is absent; created reports whether this call did.
// A file this user may not write (another user's, left by a run of theirs
// that was killed, in a folder the group shares) is opened for reading
// only (readOnly): flock needs no more, though the file then goes on
// naming its old holder while this run holds the folder.
func openLockFile(path string) (f *os.File, created, readOnly bool, err error) {
	f, err = openFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		return f, true, false, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, false, false, err
	}
	f, err = openFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrPermission) {
		f, err = openFile(path, os.O_RDONLY, 0)
		return f, false, true, err
	}
	return f, false, false, err
}

// openFile is os.OpenFile (a variable so that tests can refuse opens as
// the system would).
var openFile = os.OpenFile

// lockCreated holds the folder through the lock file f alone, where the
// file system refused an advisory lock on it (why): if this call created
// f, it holds the folder, as lockExclusive would have, and l gets a note
// saying so; a file that was already there refuses the run. f is closed.
func lockCreated(l *OutputLock, f *os.File, created bool, why error) error {
	stale := fmt.Sprintf("if no sora run is using it (a run that was killed leaves the lock behind where, as here, the file system refuses advisory locks: %v), remove %s", why, l.path)
	if !created {
		f.Close()
		return &OutputInUseError{Dir: l.dir, Holder: readHolder(l.path), Stale: stale}
	}
	_, err := f.WriteString(l.holder + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(l.path)
		return fmt.Errorf("train: locking %s: %w", l.dir, err)
	}
	l.note = fmt.Sprintf("the file system of %s refuses advisory locks (flock: %v), so the lock file %s alone holds the folder: a run killed before it can remove it leaves the folder held until the file is removed", l.dir, why, l.path)
	return nil
}

// flock is systemFlock (a variable so that tests can make it fail as some
// file systems do).
var flock = systemFlock

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
