package main

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/safetensors"
	"github.com/sora-go/sora/train"
)

// checkpointTensors reads the trained values a checkpoint of out holds
// (train writes them, by parameter name, to trainable.safetensors).
func checkpointTensors(t *testing.T, out, step string) map[string][]float32 {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(out, train.CheckpointsDir, step, "trainable.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts := map[string][]float32{}
	for _, info := range f.Tensors() {
		if ts[info.Name], err = f.Float32(info.Name); err != nil {
			t.Fatal(err)
		}
	}
	return ts
}

func sameFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// savedModel loads the model a full fine-tune saved in out.
func savedModel(t *testing.T, out string, hf bool) *llama.Weights {
	t.Helper()
	p := filepath.Join(out, train.AdapterDir, "model.bin")
	if hf {
		p = filepath.Join(out, train.AdapterDir, "model")
	}
	bm, err := loadBase(p)
	if err != nil {
		t.Fatal(err)
	}
	return bm.w
}

// TestFinetuneFullEveryParameter runs "sora finetune --method full" on
// stories260K as a llama2.c checkpoint and as a Hugging Face folder: it
// trains every parameter (the table says 100%, run.json too), the held-out
// loss falls, the saved model holds exactly the trained values of every
// tensor (those of the last checkpoint, which holds every parameter), and
// every tensor, the embedding and each norm included, differs from the
// base's. A run resumed from its checkpoint after step 2 saves the same
// model, bit for bit, as the uninterrupted run.
func TestFinetuneFullEveryParameter(t *testing.T) {
	model, tok := stories260K(t)
	for _, hf := range []bool{false, true} {
		name := "llama2c"
		if hf {
			name = "hf"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			trainPath, evalPath := writeBoolQPair(t, dir, 12, 4)
			out := filepath.Join(dir, "run")
			args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath, "--eval-data", evalPath,
				"--method", "full", "--steps", "4", "--batch", "4", "--lr", "2e-3", "--save-every", "2", "--out", out}
			basePath := model
			if hf {
				basePath = storiesHF(t)
				args = []string{"finetune", "--backend", "cpu", "--model", basePath, "--data", trainPath, "--eval-data", evalPath,
					"--method", "full", "--steps", "4", "--batch", "4", "--lr", "2e-3", "--save-every", "2", "--out", out}
			}
			code, stdout, errOut := runCLI(t, args...)
			if code != exitOK {
				t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
			}
			if !strings.Contains(stdout, "method: full of every parameter") || !strings.Contains(stdout, "(100.0000%; 100.0000% of the base model's") {
				t.Errorf("the method line does not say every parameter trains, 100%%:\n%s", stdout)
			}
			var sum runSummary
			readJSON(t, filepath.Join(out, "run.json"), &sum)
			base, err := loadBase(basePath)
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, p := range base.w.Params() {
				n += int64(len(p.Data))
			}
			if sum.Trainable != n || sum.Total != n || sum.Base != n || sum.Config["target"] != "all" {
				t.Errorf("run.json: trainable %d of %d (base %d), target %v; want all %d, target all", sum.Trainable, sum.Total, sum.Base, sum.Config["target"], n)
			}
			if sum.ZeroShot == nil || sum.Final == nil || !(sum.Final.Loss < sum.ZeroShot.Loss) {
				t.Errorf("held-out loss: zero-shot %+v, final %+v; want it to fall", sum.ZeroShot, sum.Final)
			} else {
				t.Logf("held-out loss %.4f → %.4f", sum.ZeroShot.Loss, sum.Final.Loss)
			}

			saved := savedModel(t, out, hf)
			ck := checkpointTensors(t, out, "step-000004")
			if len(ck) != len(base.w.Params()) {
				t.Errorf("the checkpoint holds %d tensors; the model has %d", len(ck), len(base.w.Params()))
			}
			for _, p := range base.w.Params() {
				q, ok := saved.Param(p.Name)
				if !ok {
					t.Fatalf("the saved model lacks %s", p.Name)
				}
				if !sameFloats(q.Data, ck[p.Name]) {
					t.Errorf("the saved %s is not the trained one the checkpoint holds", p.Name)
				}
				if sameFloats(q.Data, p.Data) {
					t.Errorf("the saved %s equals the base's: it was not trained", p.Name)
				}
			}

			// Back to the checkpoint after step 2, as a run killed after it
			// leaves the folder, and on to the end.
			ckDir := filepath.Join(out, train.CheckpointsDir)
			if err := os.RemoveAll(filepath.Join(ckDir, "step-000004")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ckDir, "latest"), []byte("step-000002\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, errOut = runCLI(t, append(args, "--resume")...)
			if code != exitOK || !strings.Contains(stdout, "resumed after step 2") {
				t.Fatalf("resume: status %d\n%s\n%s", code, stdout, errOut)
			}
			resumed := savedModel(t, out, hf)
			for _, p := range saved.Params() {
				q, _ := resumed.Param(p.Name)
				if !sameFloats(q.Data, p.Data) {
					t.Errorf("the resumed run saved another %s than the uninterrupted run", p.Name)
				}
			}
		})
	}
}

// TestFinetuneFullTarget: --target with --method full trains those linear
// layers alone (the count is theirs; the embedding, the norms and the
// other layers are saved as they were), and --target all is refused with
// an adapter method.
func TestFinetuneFullTarget(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath := filepath.Join(dir, "train.json")
	writeBoolQ(t, trainPath, 8)
	out := filepath.Join(dir, "run")
	code, stdout, errOut := runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
		"--method", "full", "--target", "q_proj,v_proj", "--steps", "2", "--batch", "4", "--lr", "2e-3", "--no-spectrum", "--out", out)
	if code != exitOK {
		t.Fatalf("finetune: status %d\n%s\n%s", code, stdout, errOut)
	}
	base, err := loadBase(model)
	if err != nil {
		t.Fatal(err)
	}
	c := base.w.Config
	want := int64(c.NumLayers) * int64(c.QDim()*c.Dim+c.KVDim()*c.Dim)
	var sum runSummary
	readJSON(t, filepath.Join(out, "run.json"), &sum)
	if sum.Trainable != want || sum.Config["target"] != "q_proj,v_proj" {
		t.Errorf("run.json: %d trainable, target %v; want the q and v projections' %d", sum.Trainable, sum.Config["target"], want)
	}
	if line := "method: full on " + strconv.Itoa(2*c.NumLayers) + " layers (q_proj,v_proj); trainable params: " + commas(want) + " of "; !strings.Contains(stdout, line) {
		t.Errorf("stdout lacks %q:\n%s", line, stdout)
	}
	saved := savedModel(t, out, false)
	for _, p := range base.w.Params() {
		q, _ := saved.Param(p.Name)
		trained := strings.HasSuffix(p.Name, ".q_proj.weight") || strings.HasSuffix(p.Name, ".v_proj.weight")
		if same := sameFloats(q.Data, p.Data); same == trained {
			t.Errorf("%s: saved equal to the base's %v; want %v", p.Name, same, !trained)
		}
	}
	code, _, errOut = runCLI(t, "finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
		"--method", "lora", "--target", "all", "--out", filepath.Join(dir, "lora"))
	if code != exitUsage || !strings.Contains(errOut, "--target all (every parameter) is --method full's") {
		t.Errorf("--method lora --target all: status %d, stderr %q; want a usage error", code, errOut)
	}
}

// TestFinetuneGradientCheckpointing checks that --gradient-checkpointing
// changes nothing but memory and time: LoRA with dropout on stories260K
// trains the same adapter, bit for bit, with and without it (its 512-token
// vocabulary keeps the head in one chunk, so only the layers are
// recomputed, which graph.Tape.Checkpoint does exactly).
func TestFinetuneGradientCheckpointing(t *testing.T) {
	model, tok := stories260K(t)
	dir := t.TempDir()
	trainPath := filepath.Join(dir, "train.json")
	writeBoolQ(t, trainPath, 8)
	var got []map[string][]float32
	for _, flag := range []string{"", "--gradient-checkpointing"} {
		out := filepath.Join(dir, "run"+flag)
		args := []string{"finetune", "--backend", "cpu", "--model", model, "--tokenizer", tok, "--data", trainPath,
			"--method", "lora", "--dropout", "0.1", "--steps", "3", "--batch", "4", "--micro-batch", "2", "--lr", "2e-3",
			"--no-spectrum", "--out", out}
		if flag != "" {
			args = append(args, flag)
		}
		code, stdout, errOut := runCLI(t, args...)
		if code != exitOK {
			t.Fatalf("finetune %s: status %d\n%s\n%s", flag, code, stdout, errOut)
		}
		if said := strings.Contains(stdout, "gradient checkpointing: "); said != (flag != "") {
			t.Errorf("finetune %q: the output says gradient checkpointing is on: %v\n%s", flag, said, stdout)
		}
		got = append(got, checkpointTensors(t, out, "step-000003"))
	}
	if len(got[0]) == 0 || len(got[0]) != len(got[1]) {
		t.Fatalf("%d and %d trained tensors", len(got[0]), len(got[1]))
	}
	for name, want := range got[0] {
		if !sameFloats(got[1][name], want) {
			t.Errorf("%s differs with --gradient-checkpointing", name)
		}
	}
}
