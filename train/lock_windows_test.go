//go:build windows

package train

import (
	"os"
	"syscall"
)

// lockRefusals are LockFileEx's errors where the file system has no
// byte-range locks; lockFailure is another (ERROR_IO_DEVICE).
var lockRefusals, lockFailure = []error{errorNotSupported, errorInvalidFunction}, error(syscall.Errno(1117))

// writeOnlyLock: LockFileEx locks a file open for reading only.
var writeOnlyLock func(*os.File) error
