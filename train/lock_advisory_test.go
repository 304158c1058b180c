//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || windows

package train

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLockHelperProcess is not a test: TestLockOutputOtherProcess runs the
// test binary with it in a process of its own, which takes the folder in
// $SORA_TEST_LOCK_DIR, says "locked" and holds it until its input ends.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv("SORA_TEST_LOCK_DIR")
	if dir == "" {
		t.Skip("the other process of TestLockOutputOtherProcess")
	}
	l, err := LockOutput(dir)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	l.Unlock()
	os.Exit(0)
}

// TestLockOutputOtherProcess holds an output folder in another process:
// this one is refused, naming the folder and the other process's pid, as
// long as the other holds it, and takes it as soon as the other has ended,
// whether it released the folder or was killed (SIGKILL, which leaves
// the lock file behind).
func TestLockOutputOtherProcess(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(fmt.Sprintf("killed=%v", kill), func(t *testing.T) {
			out := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
			cmd.Env = append(os.Environ(), "SORA_TEST_LOCK_DIR="+out)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			if line != "locked\n" {
				t.Fatalf("the other process said %q, not that it holds %s", line, out)
			}
			_, err = LockOutput(out)
			var inUse *OutputInUseError
			holder := fmt.Sprintf("pid %d ", cmd.Process.Pid)
			if !errors.As(err, &inUse) || !strings.HasPrefix(inUse.Holder, holder) ||
				!strings.Contains(err.Error(), "the output folder "+out+" is in use by another sora process ("+holder) {
				t.Fatalf("lock while another process holds the folder: %v; want a refusal naming the folder and %s", err, holder)
			}
			if kill {
				cmd.Process.Kill()
			} else {
				stdin.Close()
			}
			err = cmd.Wait()
			if _, statErr := os.Stat(out + "/" + LockFile); kill != (statErr == nil) {
				t.Fatalf("other process ended (%v): its lock file there: %v, want %v", err, statErr == nil, kill)
			}
			l, err := LockOutput(out)
			if err != nil {
				t.Fatalf("lock once the other process has ended: %v", err)
			}
			l.Unlock()
		})
	}
}

// TestLockOutputNoAdvisoryLock makes the advisory lock fail as file
// systems without advisory locks do (lockRefusals: on Linux ENOSYS, Lustre
// mounted noflock; ENOLCK, NFSv3 without lockd; EOPNOTSUPP, some SMB and
// FUSE mounts). There the folder must still be held, by the lock file
// alone as on systems without advisory locks, with a note saying so for
// the caller to show; a lock file already there refuses the run, saying to
// remove it if no run uses the folder. Any other failure (lockFailure)
// fails the run naming the folder and leaves nothing behind: not the lock
// file, nor the folder the call made.
func TestLockOutputNoAdvisoryLock(t *testing.T) {
	const holder = "pid 999999999 on elsewhere, since 2026-01-02 03:04:05"
	defer func(f func(*os.File) error) { tryLock = f }(tryLock)
	for _, errno := range append(lockRefusals, lockFailure) {
		t.Run(errno.Error(), func(t *testing.T) {
			tryLock = func(*os.File) error { return errno }
			out := filepath.Join(t.TempDir(), "runs", "x")
			path := filepath.Join(out, LockFile)
			l, err := LockOutput(out)
			if errno == lockFailure {
				if err == nil || !strings.Contains(err.Error(), "locking "+out) || !errors.Is(err, errno) {
					t.Fatalf("lock where the lock fails with %v: %v; want that error, naming %s", errno, err, out)
				}
				if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the failed lock left %s (%v)", out, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("lock where the lock fails with %v: %v; want the lock file to hold the folder", errno, err)
			}
			if note := l.Note(); !strings.Contains(note, errno.Error()) || !strings.Contains(note, path) {
				t.Errorf("note %q; want one naming %v and %s", note, errno, path)
			}
			if b, err := os.ReadFile(path); err != nil || !strings.HasPrefix(string(b), fmt.Sprintf("pid %d on ", os.Getpid())) {
				t.Errorf("lock file: %q, %v; want this process's pid", b, err)
			}
			if err := l.Unlock(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Unlock left %s (%v)", out, err)
			}
			// As the exclusive lock file: one there, left or held, refuses.
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(holder+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = LockOutput(out)
			var inUse *OutputInUseError
			if !errors.As(err, &inUse) || inUse.Holder != holder || !strings.Contains(err.Error(), errno.Error()) ||
				!strings.Contains(err.Error(), "remove "+path) {
				t.Fatalf("lock over a lock file where the lock fails with %v: %v; want a refusal naming its holder, the error and saying to remove %s", errno, err, path)
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != holder+"\n" {
				t.Errorf("the refused lock changed the lock file: %q, %v", b, err)
			}
		})
	}
}

// TestLockOutputOthersLockFile takes a folder in which another user's run
// left its lock file (0644: this user may read it, not write it), as
// happens in a folder shared with the group: the lock needs no write access,
// so the folder must be taken all the same, and released. Run as root, the
// refusal to open the file for writing is made by the test. Where the
// file system locks only files open for writing (flock emulated with fcntl
// locks, as on NFS: EBADF), the run fails saying to remove the file.
func TestLockOutputOthersLockFile(t *testing.T) {
	const holder = "pid 999999999 on elsewhere, since 2026-01-02 03:04:05"
	defer func(f func(string, int, fs.FileMode) (*os.File, error)) { openFile = f }(openFile)
	defer func(f func(*os.File) error) { tryLock = f }(tryLock)
	system := tryLock
	for _, how := range []string{"permissions", "injected", "write-only locks"} {
		t.Run(how, func(t *testing.T) {
			out := t.TempDir()
			path := filepath.Join(out, LockFile)
			if err := os.WriteFile(path, []byte(holder+"\n"), 0o444); err != nil {
				t.Fatal(err)
			}
			openFile, tryLock = os.OpenFile, system
			if how == "write-only locks" {
				if writeOnlyLock == nil {
					t.Skip("no such locks here")
				}
				tryLock = writeOnlyLock
			}
			switch {
			case how != "permissions":
				openFile = func(name string, flag int, perm fs.FileMode) (*os.File, error) {
					if name == path && flag&(os.O_WRONLY|os.O_RDWR) != 0 && flag&os.O_EXCL == 0 {
						return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
					}
					return os.OpenFile(name, flag, perm)
				}
			case os.Geteuid() == 0: // -1 on Windows
				t.Skip("root may write any file")
			}
			l, err := LockOutput(out)
			if how == "write-only locks" {
				if err == nil || !strings.Contains(err.Error(), "remove it") || !errors.Is(err, syscall.EBADF) {
					t.Errorf("lock over another user's lock file where only files open for writing lock: %v; want EBADF, saying to remove it", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("lock over another user's lock file: %v", err)
			}
			// The file cannot say who holds the folder now; it is still
			// held.
			if _, err := lockOutput(out, lockFile); err == nil {
				t.Error("the folder was taken twice")
			}
			if err := l.Unlock(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Unlock left the lock file (%v)", err)
			}
		})
	}
}
