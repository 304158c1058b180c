//go:build windows

package train

import (
	"errors"
	"os"
	"syscall"
	"unsafe"
)

// lockCall names the system's advisory lock, for messages.
const lockCall = "LockFileEx"

var (
	kernel32         = syscall.NewLazyDLL("kernel32.dll")
	procLockFileEx   = kernel32.NewProc("LockFileEx")
	procUnlockFileEx = kernel32.NewProc("UnlockFileEx")
)

const (
	lockfileFailImmediately = 0x00000001
	lockfileExclusiveLock   = 0x00000002

	errorInvalidFunction  = syscall.Errno(1)  // ERROR_INVALID_FUNCTION
	errorSharingViolation = syscall.Errno(32) // ERROR_SHARING_VIOLATION
	errorLockViolation    = syscall.Errno(33) // ERROR_LOCK_VIOLATION
	errorNotSupported     = syscall.Errno(50) // ERROR_NOT_SUPPORTED

	// lockOffsetHigh puts the locked byte at 2^62, far past the holder
	// line: Windows' byte-range locks keep other processes from reading
	// the bytes they cover, and a run refused reads that line.
	lockOffsetHigh = 1 << 30
)

// tryLock is systemLockFileEx (a variable so that tests can make it fail
// as some file systems do).
var tryLock = systemLockFileEx

// systemLockFileEx takes an exclusive lock on f without waiting for it,
// which Windows releases when the process ends however it ends.
func systemLockFileEx(f *os.File) error {
	ol := syscall.Overlapped{OffsetHigh: lockOffsetHigh}
	r, _, err := procLockFileEx.Call(f.Fd(), lockfileExclusiveLock|lockfileFailImmediately, 0, 1, 0, uintptr(unsafe.Pointer(&ol)))
	if r == 0 {
		return err
	}
	return nil
}

// lockBusy reports whether tryLock failed because another process holds
// the lock.
func lockBusy(err error) bool { return errors.Is(err, errorLockViolation) }

// lockUnsupported reports whether tryLock failed because the file system
// has no byte-range locks (some network redirectors and user-mode file
// systems).
func lockUnsupported(err error) bool {
	return errors.Is(err, errorNotSupported) || errors.Is(err, errorInvalidFunction)
}

// lockNeedsWrite reports whether tryLock failed on a file open for reading
// only for want of write access, which LockFileEx does not need.
func lockNeedsWrite(error) bool { return false }

// releaseFile unlocks and closes l.file, then removes it. Windows
// removes no file that another process has open (Go opens files without
// FILE_SHARE_DELETE), so the file goes after it is let go; a run that
// opened it in the meantime keeps it there (the removal fails with
// ERROR_SHARING_VIOLATION, which is no failure here) and takes it over.
func releaseFile(l *OutputLock) error {
	ol := syscall.Overlapped{OffsetHigh: lockOffsetHigh}
	// Closing the handle releases the lock too, but Windows documents
	// that it may do so late.
	procUnlockFileEx.Call(l.file.Fd(), 0, 1, 0, uintptr(unsafe.Pointer(&ol)))
	err := l.file.Close()
	if rerr := os.Remove(l.path); err == nil && !errors.Is(rerr, errorSharingViolation) {
		err = rerr
	}
	return err
}
