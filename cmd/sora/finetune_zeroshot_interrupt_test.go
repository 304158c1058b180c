//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package main

import (
	"errors"
	"os"
	"strings"
	"testing"
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
	_, after := interruptAt(t, cmd, stdout, errOut, "method:")
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
