//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package train

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
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
