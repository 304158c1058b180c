//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestFinetuneInterruptedZeroShot interrupts a "sora finetune" process in
// its zero-shot evaluation (Ctrl-C once it prints the line before it; the
// 2,000 evaluation rows take seconds): as before training, the signal
// must end the process at once, with status 130, saying it stopped before
// training, without the zero-shot result, and removing the output folder
// it made.
func TestFinetuneInterruptedZeroShot(t *testing.T) {
	cmd, stdout, errOut, out := startEvalFinetune(t, 2000)
	// The method's line is the last before the zero-shot evaluation.
	lines := bufio.NewScanner(stdout)
	var seen strings.Builder
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "method:") {
		seen.WriteString(lines.Text() + "\n")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(stdout)
		rest <- string(b)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the run went on after Ctrl-C in its zero-shot evaluation:\n%s%s", seen.String(), errOut)
	}
	after := <-rest
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || !strings.Contains(errOut.String(), "interrupted before training: stopped, writing nothing into "+out) {
		t.Errorf("run interrupted in its zero-shot evaluation: status %d (%v); want %d, saying it stopped before training:\n%s", code, cmd.ProcessState, exitInterrupted, errOut)
	}
	if strings.Contains(after, "zero-shot") || strings.Contains(after, "training:") {
		t.Errorf("the run went on after Ctrl-C in its zero-shot evaluation; it printed:\n%s", after)
	}
	if ents, err := os.ReadDir(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted run left %s with %v (%v); want it gone, as the run made it", out, ents, err)
	}
}
