//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

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

// TestLockOutputNoFlock makes flock fail as file systems without advisory
// locks do (ENOSYS: Lustre mounted noflock; ENOLCK: NFSv3 without lockd;
// EOPNOTSUPP: some SMB and FUSE mounts). There the folder must still be
// held, by the lock file alone as on systems without flock, with a note
// saying so for the caller to show; a lock file already there refuses the
// run, saying to remove it if no run uses the folder. Any other failure of
// flock fails the run naming the folder and leaves nothing behind: not the
// lock file, nor the folder the call made.
func TestLockOutputNoFlock(t *testing.T) {
	const holder = "pid 999999999 on elsewhere, since 2026-01-02 03:04:05"
	defer func(f func(*os.File) error) { flock = f }(flock)
	for _, errno := range []syscall.Errno{syscall.ENOSYS, syscall.ENOLCK, syscall.EOPNOTSUPP, syscall.EIO} {
		t.Run(errno.Error(), func(t *testing.T) {
			flock = func(*os.File) error { return errno }
			out := filepath.Join(t.TempDir(), "runs", "x")
			path := filepath.Join(out, LockFile)
			l, err := LockOutput(out)
			if errno == syscall.EIO {
				if err == nil || !strings.Contains(err.Error(), "locking "+out) || !errors.Is(err, errno) {
					t.Fatalf("lock where flock fails with %v: %v; want that error, naming %s", errno, err, out)
				}
				if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the failed lock left %s (%v)", out, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("lock where flock fails with %v: %v; want the lock file to hold the folder", errno, err)
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
				t.Fatalf("lock over a lock file where flock fails with %v: %v; want a refusal naming its holder, the error and saying to remove %s", errno, err, path)
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != holder+"\n" {
				t.Errorf("the refused lock changed the lock file: %q, %v", b, err)
			}
		})
	}
}
