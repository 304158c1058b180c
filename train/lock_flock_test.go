//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package train

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// lockRefusals are flock's errors where the file system has no advisory
// locks; lockFailure is another.
var lockRefusals, lockFailure = []error{syscall.ENOSYS, syscall.ENOLCK, syscall.EOPNOTSUPP}, error(syscall.EIO)

// writeOnlyLock locks only files open for writing (see fcntlLock).
var writeOnlyLock = fcntlLock

// fcntlLock locks f as Linux's NFS client emulates flock: with an fcntl
// write lock on the whole file, which the system gives only on a file open
// for writing, which never conflicts with the process's own locks, and
// which the process loses when it closes any descriptor of the file.
func fcntlLock(f *os.File) error {
	err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart})
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return syscall.EWOULDBLOCK
	}
	return err
}

// TestLockProbeProcess is not a test: TestLockOutputFcntl runs the test
// binary with it in a process of its own, which says which process holds
// an fcntl lock on the file $SORA_TEST_LOCK_PROBE ("pid N", or "free").
func TestLockProbeProcess(t *testing.T) {
	path := os.Getenv("SORA_TEST_LOCK_PROBE")
	if path == "" {
		t.Skip("the other process of TestLockOutputFcntl")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if lk.Type == syscall.F_UNLCK {
		fmt.Println("free")
	} else {
		fmt.Printf("pid %d\n", lk.Pid)
	}
	os.Exit(0)
}

// TestLockOutputFcntl locks as file systems that emulate flock with fcntl
// locks do (Linux's NFS client): such locks never conflict with the
// process's own, and the process loses them when it closes any descriptor
// of the file. A second LockOutput of the folder in this process must
// still be refused, however the folder is named, and must leave the first
// lock held, as another process sees it; of runs started together in
// goroutines, one must take the folder.
func TestLockOutputFcntl(t *testing.T) {
	defer func(f func(*os.File) error) { tryLock = f }(tryLock)
	tryLock = fcntlLock
	out := t.TempDir()
	path := filepath.Join(out, LockFile)
	probe := func() string {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestLockProbeProcess$")
		cmd.Env = append(os.Environ(), "SORA_TEST_LOCK_PROBE="+path)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("probing the lock on %s: %v (%s)", path, err, b)
		}
		return strings.TrimSpace(string(b))
	}
	l, err := LockOutput(out)
	if err != nil {
		t.Fatal(err)
	}
	me := fmt.Sprintf("pid %d", os.Getpid())
	if got := probe(); got != me {
		t.Fatalf("the lock file is held by %q; want %q", got, me)
	}
	names := []string{out, out + string(filepath.Separator) + "."}
	if link := filepath.Join(t.TempDir(), "link"); os.Symlink(out, link) == nil {
		names = append(names, link)
	}
	for _, name := range names {
		_, err := LockOutput(name)
		var inUse *OutputInUseError
		if !errors.As(err, &inUse) || !strings.HasPrefix(inUse.Holder, me+" ") || !strings.Contains(err.Error(), "in use by another run in this process") {
			t.Errorf("second lock of %s in this process: %v; want a refusal naming this process", name, err)
		}
		if got := probe(); got != me {
			t.Fatalf("after the second lock of %s the lock file is held by %q; want %q", name, got, me)
		}
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	// Runs started together in goroutines: one takes the folder.
	locks := make(chan *OutputLock, 8)
	var wg sync.WaitGroup
	for range cap(locks) {
		wg.Go(func() {
			if l, err := LockOutput(out); err == nil {
				locks <- l
			}
		})
	}
	wg.Wait()
	close(locks)
	if n := len(locks); n != 1 {
		t.Errorf("%d of %d goroutines took the folder; want 1", n, cap(locks))
	}
	for l := range locks {
		l.Unlock()
	}
}
