package cpu

import (
	"math"
	"testing"

	"github.com/sora-go/sora/backend"
)

// unaryRef holds each op's definition in float64, written independently
// of the kernels, the input range it is tested on and, where set, the
// absolute error allowed beside the relative 2.5e-7: the GELU family's
// contract is absolute where the result is small, to a few ulps of |x|/2
// (vec's package doc), under 1e-6 up to |x| = 6.
var unaryRef = map[backend.UnaryOp]struct {
	f      func(float64) float64
	lo, hi float64
	atol   float64
}{
	backend.Exp:     {math.Exp, -3, 3, 0},
	backend.Log:     {math.Log, 0.05, 4, 0},
	backend.Sqrt:    {math.Sqrt, 0.05, 4, 0},
	backend.Rsqrt:   {func(x float64) float64 { return math.Pow(x, -0.5) }, 0.05, 4, 0},
	backend.Tanh:    {math.Tanh, -3, 3, 0},
	backend.SiLU:    {func(x float64) float64 { return x / (1 + math.Exp(-x)) }, -6, 6, 0},
	backend.GELU:    {func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }, -5, 5, 1e-6},
	backend.ReLU:    {func(x float64) float64 { return math.Max(x, 0) }, -2, 2, 0},
	backend.Neg:     {func(x float64) float64 { return -x }, -2, 2, 0},
	backend.Square:  {func(x float64) float64 { return x * x }, -2, 2, 0},
	backend.Sigmoid: {func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }, -8, 8, 0},
	// PyTorch's gelu(approximate="tanh") as written, over a range where
	// float64 evaluates it without cancelling.
	backend.GELUTanh: {func(x float64) float64 {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}, -4, 6, 1e-6},
}

func TestUnary(t *testing.T) {
	for _, op := range backend.UnaryOps {
		ref, ok := unaryRef[op]
		if !ok {
			t.Fatalf("no reference for %v", op)
		}
		t.Run(op.String(), func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				for _, n := range []int{1, 13, 2000} {
					rng := newRNG(uint64(op)*100 + uint64(n))
					xData := uniform(rng, n, ref.lo, ref.hi)
					x := upload(t, be, xData, n)
					y := poisoned(t, be, n)
					be.Unary(op, y, x)
					want := make([]float64, n)
					for i, v := range xData {
						want[i] = ref.f(float64(v))
					}
					assertClose(t, "y", download(t, be, y), want, 2.5e-7, max(ref.atol, 1e-30))

					// Backward against central differences of the reference,
					// with dx aliasing dy.
					dyData := uniform(rng, n, -1, 1)
					dy := upload(t, be, dyData, n)
					be.UnaryGrad(op, dy, x, dy)
					for i, v := range xData {
						xv := float64(v)
						h := 1e-6 * max(1, math.Abs(xv))
						want[i] = float64(dyData[i]) * (ref.f(xv+h) - ref.f(xv-h)) / (2 * h)
					}
					assertClose(t, "dx", download(t, be, dy), want, 1e-6, 1e-7)
				}
			})
		})
	}
}

// TestUnaryExtremes checks that the saturating functions stay finite and
// exact at large |x|, where naive formulas give NaN or Inf.
func TestUnaryExtremes(t *testing.T) {
	xs := []float32{-math.MaxFloat32, -1e30, -1000, -100, -40, 40, 100, 1000, 1e30, math.MaxFloat32}
	tests := []struct {
		op   backend.UnaryOp
		want func(x float64) float64 // the limit value
		grad func(x float64) float64
	}{
		{backend.Sigmoid, func(x float64) float64 { return math.Max(math.Copysign(1, x), 0) }, func(float64) float64 { return 0 }},
		{backend.SiLU, func(x float64) float64 { return math.Max(x, 0) }, func(x float64) float64 { return math.Max(math.Copysign(1, x), 0) }},
		{backend.GELU, func(x float64) float64 { return math.Max(x, 0) }, func(x float64) float64 { return math.Max(math.Copysign(1, x), 0) }},
		{backend.GELUTanh, func(x float64) float64 { return math.Max(x, 0) }, func(x float64) float64 { return math.Max(math.Copysign(1, x), 0) }},
		{backend.Tanh, func(x float64) float64 { return math.Copysign(1, x) }, func(float64) float64 { return 0 }},
	}
	be := New(Options{})
	for _, tt := range tests {
		x := upload(t, be, xs, len(xs))
		y := poisoned(t, be, len(xs))
		be.Unary(tt.op, y, x)
		want := make([]float64, len(xs))
		for i, v := range xs {
			want[i] = tt.want(float64(v))
		}
		assertClose(t, tt.op.String(), download(t, be, y), want, 1e-7, 1e-15) // sigmoid(-40) ≈ 4e-18

		ones := make([]float32, len(xs))
		for i := range ones {
			ones[i] = 1
		}
		dy := upload(t, be, ones, len(xs))
		be.UnaryGrad(tt.op, y, x, dy)
		for i, v := range xs {
			want[i] = tt.grad(float64(v))
		}
		assertClose(t, tt.op.String()+" grad", download(t, be, y), want, 1e-7, 1e-15)
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}
