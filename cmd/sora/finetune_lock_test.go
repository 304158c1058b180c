//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFinetuneLockHelper is not a test: TestFinetuneLockedOut runs the
// test binary with it as a second "sora finetune" process, with the
// command line in $SORA_TEST_FINETUNE_ARGS (JSON).
func TestFinetuneLockHelper(t *testing.T) {
	env := os.Getenv("SORA_TEST_FINETUNE_ARGS")
	if env == "" {
		t.Skip("the other process of TestFinetuneLockedOut")
	}
	var args []string
	if err := json.Unmarshal([]byte(env), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitUsage)
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

// TestFinetuneLockedOut runs two "sora finetune" processes into one
// --out. The other process reads its --data from a named pipe, so it
// stops there, past its own checks of the folder, until this test writes
// the rows. Meanwhile a fresh run and a --resume into the folder here must
// fail at once (exitFailure), naming the folder and saying another sora
// process (its pid) uses it, and write nothing; the other run then
// finishes as if alone, and releases the folder: a --resume here runs.
// Then the other process, resuming, is killed (SIGKILL) while it holds
// the folder: the lock must not outlive it.
func TestFinetuneLockedOut(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows, pipe, out := filepath.Join(dir, "train.json"), filepath.Join(dir, "pipe.json"), filepath.Join(dir, "run")
	writeBoolQ(t, rows, 8)
	content, err := os.ReadFile(rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Skipf("no named pipe for the other process's data: %v", err)
	}
	args := func(data string, extra ...string) []string {
		return append([]string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", data,
			"--method", "lora", "--steps", "2", "--batch", "4", "--out", out}, extra...)
	}
	// other starts the other process and returns once it is waiting for
	// its data, holding the folder.
	other := func(extra ...string) (*exec.Cmd, *bytes.Buffer, *os.File) {
		t.Helper()
		return startWaitingFinetune(t, pipe, args(pipe, extra...))
	}
	lockedOut := func(cmd *exec.Cmd, extra ...string) {
		t.Helper()
		code, stdout, errOut := runCLI(t, args(rows, extra...)...)
		want := fmt.Sprintf("the output folder %s is in use by another sora process (pid %d ", out, cmd.Process.Pid)
		if code != exitFailure || !strings.Contains(errOut, want) {
			t.Errorf("finetune %v while another process runs into %s: status %d, stderr %q; want status %d and %q",
				extra, out, code, errOut, exitFailure, want)
		}
		if strings.Contains(stdout, "training:") {
			t.Errorf("finetune %v started training in a folder in use:\n%s", extra, stdout)
		}
	}

	cmd, output, w := other()
	lockedOut(cmd)
	lockedOut(cmd, "--resume")
	if ents, _ := os.ReadDir(out); len(ents) != 1 {
		t.Errorf("the refused runs and the waiting one have %v in %s; want only the lock", ents, out)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the other process: %v\n%s", err, output.String())
	}
	if !strings.Contains(output.String(), "trained 2 steps") {
		t.Errorf("the other process did not train its 2 steps:\n%s", output.String())
	}
	if code, stdout, errOut := runCLI(t, args(rows, "--resume")...); code != exitOK || !strings.Contains(stdout, "nothing left to train") {
		t.Fatalf("--resume once the other run had ended: status %d\n%s\n%s", code, stdout, errOut)
	}

	cmd, _, w = other("--resume")
	lockedOut(cmd, "--resume")
	cmd.Process.Kill()
	cmd.Wait()
	w.Close()
	if code, stdout, errOut := runCLI(t, args(rows, "--resume")...); code != exitOK {
		t.Fatalf("--resume after the run holding the folder was killed: status %d\n%s\n%s", code, stdout, errOut)
	}
}

// startWaitingFinetune starts "sora finetune args" in a process of its own
// (TestFinetuneLockHelper) whose --data is the named pipe pipe, and
// returns once that process is waiting for its rows, which it reads after
// taking its output folder: the pipe's writing end is returned.
func startWaitingFinetune(t *testing.T, pipe string, args []string) (*exec.Cmd, *bytes.Buffer, *os.File) {
	t.Helper()
	a, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFinetuneLockHelper$")
	cmd.Env = append(os.Environ(), "SORA_TEST_FINETUNE_ARGS="+string(a))
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	// Opening the pipe for writing succeeds once the reader has it
	// open (ENXIO before).
	for deadline := time.Now().Add(2 * time.Minute); ; {
		w, err := os.OpenFile(pipe, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			return cmd, &output, w
		}
		if !errors.Is(err, syscall.ENXIO) || time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the other process never read its data (%v):\n%s", err, output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFinetuneInterruptedBeforeTraining interrupts (Ctrl-C, SIGTERM) a
// "sora finetune" process that holds its output folder but has not
// started training (it waits for its --data): it must stop at once with
// status 130, saying so, and release the folder, removing the lock file
// and the folder it made, so that nothing bars the next run. Where the
// lock is the file alone (train.LockOutput) a run killed holding it would
// keep every later run out.
func TestFinetuneInterruptedBeforeTraining(t *testing.T) {
	model, tok := stories260K(t)
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			pipe, out := filepath.Join(dir, "pipe.json"), filepath.Join(dir, "run")
			if err := syscall.Mkfifo(pipe, 0o600); err != nil {
				t.Skipf("no named pipe for the other process's data: %v", err)
			}
			cmd, output, w := startWaitingFinetune(t, pipe, []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok,
				"--data", pipe, "--method", "lora", "--steps", "2", "--batch", "4", "--out", out})
			defer w.Close()
			if _, err := os.Stat(filepath.Join(out, ".sora.lock")); err != nil {
				t.Fatalf("the waiting run holds no lock in %s: %v", out, err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				<-done
				t.Fatalf("the run went on after %v:\n%s", sig, output)
			}
			if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || !strings.Contains(output.String(), "interrupted before training") {
				t.Errorf("run interrupted (%v) before training: status %d (%v); want %d, saying it was interrupted before training:\n%s",
					sig, code, cmd.ProcessState, exitInterrupted, output)
			}
			if ents, err := os.ReadDir(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the interrupted run left %s with %v (%v); want it gone, as the run made it", out, ents, err)
			}
		})
	}
}

// TestFinetuneInterruptedInTraining interrupts a "sora finetune" process
// once it trains: the first Ctrl-C must stop it at the end of a step with
// a checkpoint and status 130, saying how to resume, and the folder must
// be released (no lock file left).
func TestFinetuneInterruptedInTraining(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows, out := filepath.Join(dir, "train.json"), filepath.Join(dir, "run")
	writeBoolQ(t, rows, 8)
	cmd, stdout, errOut := startFinetune(t, []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
		"--method", "lora", "--steps", "100000", "--batch", "2", "--out", out})
	interruptAt(t, cmd, stdout, errOut, "training:")
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || !strings.Contains(errOut.String(), "interrupted: finishing the current step") ||
		!strings.Contains(errOut.String(), "resume with the same flags and --resume") {
		t.Fatalf("run interrupted in training: status %d (%v); want %d, saying how to resume:\n%s", code, cmd.ProcessState, exitInterrupted, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(out, ".sora.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted run left its lock file (%v)", err)
	}
	if ents, err := os.ReadDir(filepath.Join(out, "checkpoints")); err != nil || len(ents) == 0 {
		t.Errorf("the interrupted run saved no checkpoint: %v %v", ents, err)
	}
}

// TestFinetuneInterruptedScoringAnswers interrupts a "sora finetune"
// process after its last step, while it generates the answers of its
// evaluation data: it must stop the generation, still write run.json (the
// run is complete) with a note that the answers were not scored, and end
// with status 130, releasing the folder.
func TestFinetuneInterruptedScoringAnswers(t *testing.T) {
	// Enough rows that generating their answers outlasts the signal.
	cmd, stdout, errOut, out := startEvalFinetune(t, 400)
	interruptAt(t, cmd, stdout, errOut, "generating up to")
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || !strings.Contains(errOut.String(), "interrupted: skipping the rest of the answer evaluation") ||
		!strings.Contains(errOut.String(), "the answers are not scored") {
		t.Fatalf("run interrupted scoring answers: status %d (%v); want %d, saying the answers are not scored:\n%s", code, cmd.ProcessState, exitInterrupted, errOut.String())
	}
	var summary struct {
		AnswerNote     string   `json:"answer_note"`
		AnswerAccuracy *float64 `json:"answer_accuracy"`
		Steps          int      `json:"steps"`
	}
	b, err := os.ReadFile(filepath.Join(out, "run.json"))
	if err != nil {
		t.Fatalf("the interrupted run wrote no run.json: %v", err)
	}
	if err := json.Unmarshal(b, &summary); err != nil {
		t.Fatal(err)
	}
	if summary.AnswerNote != "interrupted before the answers were scored" || summary.AnswerAccuracy != nil || summary.Steps != 1 {
		t.Errorf("run.json after an interrupted answer evaluation: %s", b)
	}
	if _, err := os.Stat(filepath.Join(out, ".sora.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted run left its lock file (%v)", err)
	}
}

// startEvalFinetune starts a one-step LoRA "sora finetune" of
// stories260K on 8 BoolQ rows with evalRows rows of evaluation data, into
// out, a folder of t's (see startFinetune).
func startEvalFinetune(t *testing.T, evalRows int) (cmd *exec.Cmd, stdout io.ReadCloser, errOut *bytes.Buffer, out string) {
	t.Helper()
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows, evalData := filepath.Join(dir, "train.json"), filepath.Join(dir, "test.json")
	out = filepath.Join(dir, "run")
	writeBoolQ(t, rows, 8)
	writeBoolQ(t, evalData, evalRows)
	cmd, stdout, errOut = startFinetune(t, []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", rows,
		"--eval-data", evalData, "--method", "lora", "--steps", "1", "--batch", "2", "--out", out})
	return cmd, stdout, errOut, out
}

// startFinetune starts "sora finetune args" in a process of its own
// (TestFinetuneLockHelper) and returns it with its standard output, to
// read, and its standard error as it fills.
func startFinetune(t *testing.T, args []string) (*exec.Cmd, io.ReadCloser, *bytes.Buffer) {
	t.Helper()
	a, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFinetuneLockHelper$")
	cmd.Env = append(os.Environ(), "SORA_TEST_FINETUNE_ARGS="+string(a))
	errOut := new(bytes.Buffer)
	cmd.Stderr = errOut
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, stdout, errOut
}

// interruptAt sends Ctrl-C to a "sora finetune" process once it prints a
// line starting with prefix, and waits for it to end, failing the test if
// it runs on for two minutes. It returns the standard output before that
// line and after it (read to the end before the process is waited for,
// so none of it is lost).
func interruptAt(t *testing.T, cmd *exec.Cmd, stdout io.Reader, errOut *bytes.Buffer, prefix string) (before, after string) {
	t.Helper()
	lines := bufio.NewScanner(stdout)
	var seen strings.Builder
	for lines.Scan() && !strings.HasPrefix(lines.Text(), prefix) {
		seen.WriteString(lines.Text() + "\n")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rest := make(chan string, 1)
	go func() {
		var b strings.Builder
		for lines.Scan() {
			b.WriteString(lines.Text() + "\n")
		}
		rest <- b.String()
	}()
	select {
	case after = <-rest:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-rest
		cmd.Wait()
		t.Fatalf("the run went on after Ctrl-C:\n%s%s", seen.String(), errOut.String())
	}
	cmd.Wait() // its status is in cmd.ProcessState
	return seen.String(), after
}

// TestEvalInterrupted interrupts a "sora eval" process while it generates
// answers: it must stop, write no report and end with status 130.
func TestEvalInterrupted(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	rows, report := filepath.Join(dir, "test.json"), filepath.Join(dir, "eval.json")
	// Enough rows that generating their answers outlasts the signal.
	writeBoolQ(t, rows, 400)
	cmd, stdout, errOut := startFinetune(t, []string{"eval", "--backend", "cpu", "--model", model, "--tokenizer", tok,
		"--data", rows, "--json", report})
	interruptAt(t, cmd, stdout, errOut, "generating up to")
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || !strings.Contains(errOut.String(), "sora eval: interrupted: nothing written") {
		t.Fatalf("eval interrupted while generating: status %d (%v); want %d, saying nothing was written:\n%s", code, cmd.ProcessState, exitInterrupted, errOut.String())
	}
	if _, err := os.Stat(report); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted eval wrote %s (%v)", report, err)
	}
}
