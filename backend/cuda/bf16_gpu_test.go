package cuda

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/bf16"
)

// checkBF16ScratchReuse checks that MatMul's float32 scratch for a
// bfloat16 B is safe to hand out again as soon as MatMul returns, as the
// pool assumes (stream order): after each product a new float32 tensor of
// B's size in float32 takes the same pool block and is filled with NaN at
// once, while on a GPU the GEMM may still be reading it. The product must
// equal, bit for bit, the same cuBLAS call on a float32 B holding the
// widened values (the same call on the same values), and hold no NaN.
func checkBF16ScratchReuse(t *testing.T, b *Backend, m, n, k, rounds int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	alloc := func(dt backend.DType, shape ...int) backend.Tensor {
		t.Helper()
		x, err := b.Alloc(dt, shape...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Free(x) })
		return x
	}
	bv := uniform(rng, k*n, -1, 1)
	for i, v := range bv {
		bv[i] = bf16.Widen(bf16.Round(v))
	}
	bh, bf := alloc(backend.BFloat16, k, n), alloc(backend.Float32, k, n)
	b.Upload(bh, bv)
	b.Upload(bf, bv)
	a := alloc(backend.Float32, m, k)
	b.Upload(a, uniform(rng, m*k, -1, 1))
	want := alloc(backend.Float32, m, n)
	b.MatMul(want, a, bf, backend.MatMulParams{Alpha: 1})
	ref := make([]float32, m*n)
	if err := b.Download(ref, want); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, m*n)
	for r := range rounds {
		c := alloc(backend.Float32, m, n)
		b.MatMul(c, a, bh, backend.MatMulParams{Alpha: 1})
		allocs := b.MemoryStats().DeviceAllocs
		x := alloc(backend.Float32, k, n) // the scratch's size class: its block
		if d := b.MemoryStats().DeviceAllocs - allocs; d != 0 {
			t.Fatalf("round %d: the tensor after MatMul took %d new device blocks; it should reuse the scratch block", r, d)
		}
		b.Fill(x, float32(math.NaN()))
		if err := b.Download(got, c); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		if !slices.Equal(got, ref) {
			bad := 0
			for i := range got {
				if got[i] != ref[i] {
					bad++
				}
			}
			t.Fatalf("round %d: %d of %d elements of the bfloat16-B product differ from the float32-B product of the same values", r, bad, len(got))
		}
	}
}

// TestGPUBF16ScratchReuse runs the check on the device with a B of 64 MiB
// in float32, large enough that the GEMM outlasts the host's next calls.
func TestGPUBF16ScratchReuse(t *testing.T) {
	checkBF16ScratchReuse(t, openGPU(t, Options{}), 512, 4096, 4096, 4)
}

// TestEmulatedBF16ScratchReuse runs it small on the emulated device,
// which tests the check (the emulator runs everything in order).
func TestEmulatedBF16ScratchReuse(t *testing.T) {
	checkBF16ScratchReuse(t, openFake(t, Options{}), 9, 33, 17, 3)
}
