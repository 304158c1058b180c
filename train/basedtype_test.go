package train

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// TestBaseDTypeResume checks that the storage type of the base weights is
// part of what a resume must keep: a run on a bfloat16 base records it in
// its checkpoints, a float32 run records nothing (so that checkpoints made
// before the setting existed still match), and neither resumes the
// other's checkpoint, while each resumes its own.
func TestBaseDTypeResume(t *testing.T) {
	b := openCPU(t)
	seqs := randomSeqs(16, tinyConfig().VocabSize, 7)
	cfg := &peft.Config{Method: peft.SORA, R: 4, Alpha: 8, RotationRank: 2, TargetModules: []string{peft.AllLinear}, Seed: 3}
	var out string
	run := func(dt backend.DType, resume bool, stopAt int) error {
		m, pm := tinyAdaptedAs(t, b, 3, cfg, llama.Options{BaseDType: dt})
		o := Options{Steps: 4, Batch: 4, LR: 1e-3, Seed: 5, Out: out, Resume: resume, SaveEvery: 2}
		_, err := runStoppingAt(&Trainer{Model: m, Adapter: pm, Train: seqs, Options: o}, stopAt)
		return err
	}
	recorded := func() (string, bool) {
		paths, err := filepath.Glob(filepath.Join(out, "checkpoints", "*", stateFile))
		if err != nil || len(paths) == 0 {
			t.Fatalf("no checkpoint in %s (%v)", out, err)
		}
		data, err := os.ReadFile(paths[0])
		if err != nil {
			t.Fatal(err)
		}
		var st trainerState
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatal(err)
		}
		v, ok := st.Settings["base-dtype"]
		return v, ok
	}
	for _, tc := range []struct {
		made, other     backend.DType
		record          string // "" for none
		otherWas, isNow string
	}{
		{backend.BFloat16, backend.Float32, "bf16", "bf16", "f32"},
		{backend.Float32, backend.BFloat16, "", "f32", "bf16"},
	} {
		out = t.TempDir()
		if err := run(tc.made, false, 2); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		if v, ok := recorded(); v != tc.record || ok != (tc.record != "") {
			t.Errorf("a run on a %v base records base-dtype %q (recorded %v), want %q", tc.made, v, ok, tc.record)
		}
		want := "base-dtype " + tc.otherWas + " (now " + tc.isNow + ")"
		if err := run(tc.other, true, 0); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resuming a %v run on a %v base: error %v; want one naming %q", tc.made, tc.other, err, want)
		}
		if err := run(tc.made, true, 0); err != nil {
			t.Errorf("resuming a %v run on its own base: %v", tc.made, err)
		}
	}
}

func TestParseBaseDType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want backend.DType
	}{
		{"f32", backend.Float32}, {"FP32", backend.Float32}, {"float32", backend.Float32},
		{"bf16", backend.BFloat16}, {" BFloat16 ", backend.BFloat16},
		{"f16", 0}, {"", 0}, {"bf-16", 0},
	} {
		got, err := ParseBaseDType(tc.in)
		if got != tc.want || (err != nil) != (tc.want == 0) {
			t.Errorf("ParseBaseDType(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if err == nil {
			if back, _ := ParseBaseDType(BaseDTypeName(got)); back != got {
				t.Errorf("BaseDTypeName(%v) = %q does not parse back", got, BaseDTypeName(got))
			}
		}
	}
}
