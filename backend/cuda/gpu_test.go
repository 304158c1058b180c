package cuda

// Tests on a real GPU. Without one (or without the libraries) they skip
// with the reason; the conformance suite on a GPU runs through
// "go test ./conformance -backend=cuda" or "sora conformance --backend cuda".

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// openGPU opens the real device with opts or skips, saying why.
func openGPU(t *testing.T, opts Options) *Backend {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		if backend.IsUnavailable(err) {
			t.Skipf("no usable CUDA device: %v", err)
		}
		t.Fatalf("a device was found but the backend did not start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Logf("device: %s", b.Device())
	return b
}

func TestGPUPoolSteadyState(t *testing.T) {
	b := openGPU(t, Options{})
	trainingStep(t, b, 0)
	allocs := b.MemoryStats().DeviceAllocs
	for step := 1; step <= 5; step++ {
		trainingStep(t, b, step)
	}
	if got := b.MemoryStats().DeviceAllocs; got != allocs {
		t.Errorf("%d cuMemAlloc calls after the first step, want none", got-allocs)
	}
}

// TestGPUTF32Bound measures TF32 mode's error on the device against
// float64 and checks the documented bound, and that default mode is full
// float32 (far below it).
func TestGPUTF32Bound(t *testing.T) {
	const m, n, k = 128, 96, 1024
	rng := rand.New(rand.NewPCG(9, 9))
	a, w := make([]float32, m*k), make([]float32, k*n)
	for i := range a {
		a[i] = rng.Float32()*2 - 1
	}
	for i := range w {
		w[i] = rng.Float32()*2 - 1
	}
	ref := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			for l := 0; l < k; l++ {
				ref[i*n+j] += float64(a[i*k+l]) * float64(w[l*n+j])
			}
		}
	}
	for _, tf32 := range []bool{false, true} {
		b := openGPU(t, Options{TF32: tf32})
		ta, tw, tc := mustAlloc(t, b, m, k), mustAlloc(t, b, k, n), mustAlloc(t, b, m, n)
		b.Upload(ta, a)
		b.Upload(tw, w)
		b.MatMul(tc, ta, tw, backend.MatMulParams{Alpha: 1})
		got := make([]float32, m*n)
		if err := b.Download(got, tc); err != nil {
			t.Fatal(err)
		}
		var num, den float64
		for i, r := range ref {
			d := float64(got[i]) - r
			num += d * d
			den += r * r
		}
		nmse := num / den
		t.Logf("TF32=%v: NMSE %.3g", tf32, nmse)
		if limit := map[bool]float64{false: 1e-10, true: TF32MatMulNMSE}[tf32]; !(nmse <= limit) {
			t.Errorf("TF32=%v: NMSE %.3g above %g", tf32, nmse, limit)
		}
	}
}

// TestGPURowKernelResources checks that the row kernels' register rows
// (ROW_CACHE floats a thread, indexed by unrolled constants) stay in
// registers: local memory there would mean the compiler spilled them or
// indexed them at run time. It logs each kernel's registers and how many
// blocks of rowBlock threads a multiprocessor holds, which with the
// kernels' memory-level parallelism sets their bandwidth.
func TestGPURowKernelResources(t *testing.T) {
	b := openGPU(t, Options{})
	var report []string
	for _, k := range []*kernelSpec{kReduceRows, kSoftmax, kSoftmaxGrad, kRMSNorm, kRMSNormGrad,
		kLayerNorm, kLayerNormGrad, kCrossEntropy, kCrossEntGrad, kUnary, kUnaryGrad, kBinary, kAdamW} {
		r, err := b.resources(k)
		if err != nil {
			t.Fatal(err)
		}
		resident, err := b.residentBlocks(k)
		if err != nil {
			t.Fatal(err)
		}
		if r.localBytes > 0 {
			t.Errorf("%s: %d bytes of local memory a thread (%d registers)", k.name, r.localBytes, r.registers)
		}
		report = append(report, fmt.Sprintf("%s %d regs %d B local %d blocks", k.name, r.registers, r.localBytes, resident))
	}
	t.Logf("row kernels: %s", strings.Join(report, "; "))
}
