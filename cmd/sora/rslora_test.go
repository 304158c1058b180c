package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/peft/adapter"
)

// TestFinetuneRSLoRA trains with --rslora on stories260K and checks that
// the adapter says so (use_rslora, which Hugging Face PEFT reads), that
// the tools that load adapters take it, and that a resume without the
// flag is refused (it changes every step's update).
func TestFinetuneRSLoRA(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath := filepath.Join(dir, "train.json")
	writeBoolQ(t, trainPath, 8)
	out := filepath.Join(dir, "run")
	args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
		"--method", "lora", "--rank", "4", "--steps", "2", "--batch", "4", "--save-every", "1", "--no-spectrum", "--out", out}
	if code, stdout, errOut := runCLI(t, append(args, "--rslora")...); code != exitOK {
		t.Fatalf("finetune --rslora: status %d\n%s\n%s", code, stdout, errOut)
	}
	adapterDir := filepath.Join(out, "adapter")
	raw, err := os.ReadFile(filepath.Join(adapterDir, adapter.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := adapter.ParseConfig(raw, adapter.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.RSLoRA || !strings.Contains(string(raw), `"use_rslora": true`) {
		t.Errorf("adapter config: RSLoRA %v in\n%s", cfg.RSLoRA, raw)
	}
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if sum.Config["rslora"] != true {
		t.Errorf("run.json config rslora = %v, want true", sum.Config["rslora"])
	}
	if code, stdout, errOut := runCLI(t, "spectrum", "--backend", "cpu", "--adapter", adapterDir, "--plot", filepath.Join(dir, "spectrum.png")); code != exitOK {
		t.Errorf("spectrum of an rsLoRA adapter: status %d\n%s\n%s", code, stdout, errOut)
	}
	// The same run resumed without --rslora would scale the update by
	// alpha/r from then on.
	code, stdout, errOut := runCLI(t, append(args, "--resume")...)
	if code == exitOK || !strings.Contains(errOut, "rslora") {
		t.Errorf("resume without --rslora: status %d\n%s\n%s\nwant a refusal naming rslora", code, stdout, errOut)
	}
	// Nor may a run without it resume with it (the setting is recorded
	// only when on, so its absence must read as off, not as unrecorded).
	plain := append(args[:len(args)-1:len(args)-1], filepath.Join(dir, "plain"))
	if code, stdout, errOut := runCLI(t, plain...); code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	code, stdout, errOut = runCLI(t, append(plain, "--resume", "--rslora")...)
	if code == exitOK || !strings.Contains(errOut, "rslora") || strings.Contains(stdout, "predates") {
		t.Errorf("resume with --rslora added: status %d\n%s\n%s\nwant a refusal naming rslora", code, stdout, errOut)
	}
}
