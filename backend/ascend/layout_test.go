package ascend

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/ascend/acltest"
)

// The libraries are loaded once per process, so each layout is tried in a
// child process: the test binary itself, running TestChildProcess with
// ACLTEST_CHILD naming the check and SORA_ASCEND_PATH the folder.

func TestLayouts(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	if testing.Short() {
		t.Skip("builds the double three more times")
	}
	cases := []struct {
		name  string
		opts  acltest.BuildOptions
		build bool
		want  []string // lines the child must print
	}{
		{"split", acltest.BuildOptions{Layout: acltest.Split}, true, []string{"loaded: libopapi_math.so,libopapi_nn.so,libopapi_transformer.so", "fused attention: true"}},
		{"both", acltest.BuildOptions{Layout: acltest.Both}, true, []string{"loaded: libopapi.so", "fused attention: true"}},
		{"partial", acltest.BuildOptions{Layout: acltest.Partial}, true, []string{"unavailable:", "incomplete split operator libraries, missing libopapi_transformer.so"}},
		{"missing", acltest.BuildOptions{}, false, []string{"unavailable:", "not found: libascendcl.so, libnnopbase.so, libopapi.so", "($SORA_ASCEND_PATH): nothing", "lib64 ($SORA_ASCEND_PATH): no such folder"}},
		// A CANN release without the fused attention operators: the
		// backend opens, and says it lacks the optional ops.
		{"no-flash-attention", acltest.BuildOptions{Layout: acltest.Split, NoFlashAttention: true}, true, []string{"fused attention: false",
			"missing operators: aclnnFlashAttentionScore, aclnnFlashAttentionScoreGrad, aclnnFlashAttentionUnpaddingScoreGrad, aclnnFlashAttentionVarLenScore"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.build {
				if _, err := acltest.BuildWith(dir, tc.opts); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "ACLTEST_CHILD="+tc.name, "SORA_ASCEND_PATH="+dir,
				"ASCEND_HOME_PATH=", "ASCEND_TOOLKIT_HOME=", "LD_LIBRARY_PATH=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			for _, w := range append(tc.want, "--- PASS: TestChildProcess") {
				if !strings.Contains(string(out), w) {
					t.Errorf("child output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestChildProcess is the child side of TestLayouts; it skips unless
// started by it.
func TestChildProcess(t *testing.T) {
	mode := os.Getenv("ACLTEST_CHILD")
	if mode == "" {
		t.Skip("run by TestLayouts in a child process")
	}
	dir := os.Getenv("SORA_ASCEND_PATH")
	switch mode {
	case "partial", "missing":
		_, err := backend.Open("ascend")
		if err == nil || !backend.IsUnavailable(err) {
			t.Fatalf("Open: %v, want an unavailable error", err)
		}
		t.Logf("unavailable: %v", err)
		found := false
		for _, info := range backend.List() {
			if info.Name != "ascend" {
				continue
			}
			found = true
			if info.Available || !backend.IsUnavailable(info.Err) || info.Err.Error() != err.Error() {
				t.Errorf("List reports %+v, want unavailable with %v", info, err)
			}
		}
		if !found {
			t.Error("ascend is not registered")
		}
		return
	}
	b, err := backend.Open("ascend")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	t.Logf("device: %s", b.Device())
	d, err := acltest.Attach(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded: %s", strings.Join(d.LoadedLibs(), ","))
	// One operator from each split library: aclnnMm (math),
	// aclnnSoftmax (nn), aclnnRmsNorm (transformer).
	x := upload(t, b, []float32{1, 2, 3, 4}, 2, 2)
	y, _ := b.Alloc(backend.Float32, 2, 2)
	w := upload(t, b, []float32{1, 1}, 2)
	b.MatMul(y, x, x, backend.MatMulParams{Alpha: 1})
	got := download(t, b, y)
	checkClose(t, "matmul", got, []float64{7, 10, 15, 22}, tight)
	b.Softmax(y, x, backend.SoftmaxParams{})
	e := 1 / (1 + 2.718281828459045)
	checkClose(t, "softmax", download(t, b, y), []float64{e, 1 - e, e, 1 - e}, 1e-12)
	b.RMSNorm(y, x, w, 0)
	r1, r2 := 1/2.23606797749979*1.4142135623730951, 1/5.0*1.4142135623730951
	checkClose(t, "rmsnorm", download(t, b, y), []float64{r1, 2 * r1, 3 * r2, 4 * r2}, 1e-12)
	want := map[string]string{"split": "operators from split (", "both": "operators from libopapi.so",
		"no-flash-attention": "operators from split ("}[mode]
	if !strings.Contains(b.Device(), want) {
		t.Errorf("device %q does not say %q", b.Device(), want)
	}
	// The fused attention, from libopapi_transformer.so in the split
	// layout; without its operators Supports says no and a call is
	// refused, so that package graph composes attention instead.
	fused := b.Supports(backend.OpAttention) && b.Supports(backend.OpAttentionGrad)
	t.Logf("fused attention: %v", fused)
	q := upload(t, b, []float32{1, 0, 0, 1}, 1, 2, 1, 2)
	kv := upload(t, b, []float32{1, 2, 3, 4}, 1, 2, 1, 2)
	o, _ := b.Alloc(backend.Float32, 1, 2, 1, 2)
	b.Attention(o, backend.Tensor{}, q, q, kv, backend.AttentionParams{Scale: 1, Causal: true})
	if !fused {
		if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "does not implement this optional op") {
			t.Errorf("Attention without the operators: %v, want the unsupported-op error", err)
		}
		return
	}
	// Query 0 sees key 0 alone; query 1 weighs keys 0 and 1 by e^0 and e^1.
	w0 := 1 / (1 + 2.718281828459045)
	checkClose(t, "attention", download(t, b, o), []float64{1, 2, w0*1 + (1-w0)*3, w0*2 + (1-w0)*4}, 1e-12)
}
