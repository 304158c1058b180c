//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || windows

package train

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// lockFile takes the lock with an advisory lock on the lock file, which
// the system releases when the process ends (see LockOutput).
func lockFile(l *OutputLock) error { return lockAdvisory(l) }

// lockAdvisory locks the lock file at l.path with tryLock (flock, or
// LockFileEx on Windows), creating the file if need be. The holder removes
// the file as it lets go (Unlock), so a run that opened the old file and
// locks it once it is released may hold a file no longer at the path: it
// checks and starts again.
//
// Where the file system refuses advisory locks (lockUnsupported), the
// lock falls back to the file alone, as lockExclusive takes it: the call
// that created the file holds the folder, and a file already there
// refuses the run.
func lockAdvisory(l *OutputLock) error {
	for try := 0; ; try++ {
		if try == 100 {
			return fmt.Errorf("train: locking %s: %s keeps being replaced", l.dir, l.path)
		}
		f, created, readOnly, err := openLockFile(l.path)
		if errors.Is(err, fs.ErrNotExist) {
			// The holder removed the folder it had made, and left:
			// what this call makes again is this run's to remove. Both
			// lists run from l.dir up, so the longer holds the other.
			var made []string
			if made, err = mkdirAllCreated(l.dir); err == nil {
				if len(made) > len(l.created) {
					l.created = made
				}
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("train: locking %s: %w", l.dir, err)
		}
		if err := tryLock(f); err != nil {
			switch {
			case lockBusy(err):
				// Read through f, not through another descriptor (see held).
				holder := holderIn(f)
				f.Close()
				return &OutputInUseError{Dir: l.dir, Holder: holder}
			case lockUnsupported(err):
				return lockCreated(l, f, created, err)
			case readOnly && lockNeedsWrite(err):
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
// only (readOnly): the lock needs no more, though the file then goes on
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
	if !created {
		f.Close()
		return &OutputInUseError{Dir: l.dir, Holder: readHolder(l.path),
			Stale: fmt.Sprintf("if no sora run is using it (a run that was killed leaves the lock behind where, as here, the file system refuses advisory locks: %v), remove %s", why, l.path)}
	}
	_, err := f.WriteString(l.holder + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(l.path)
		return fmt.Errorf("train: locking %s: %w", l.dir, err)
	}
	l.note = fmt.Sprintf("the file system of %s refuses advisory locks (%s: %v), so the lock file %s alone holds the folder: a run killed before it can remove it leaves the folder held until the file is removed", l.dir, lockCall, why, l.path)
	return nil
}
