package graph_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// noBF16 is the CPU backend reporting no bfloat16 support.
type noBF16 struct{ backend.Backend }

func (b noBF16) Supports(op backend.Op) bool {
	return op != backend.OpMatMulBF16 && b.Backend.Supports(op)
}

func randData(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// bf16Param uploads data as a frozen bfloat16 parameter.
func bf16Param(t testing.TB, b backend.Backend, name string, data []float32, shape ...int) *graph.Value {
	t.Helper()
	p, err := graph.UploadParamAs(b, name, data, backend.BFloat16, graph.Frozen, shape...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Free)
	return p
}

// maxRel returns max|a − b| / max(1e-30, max|b|).
func maxRel(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d, s float64
	for i := range b {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		s = max(s, math.Abs(float64(b[i])))
	}
	return d / max(s, 1e-30)
}

// TestBF16MatMul checks the products with a bfloat16 operand, in either
// place and with every transpose, batched or not: the result and the
// gradient of the float32 operand (accumulated over two uses, so that
// both the writing and the adding backward run) equal those of the same
// product with a float32 copy of the stored values, to float32 rounding.
func TestBF16MatMul(t *testing.T) {
	b := openCPU(t)
	type op func(g *graph.Tape, x, w *graph.Value) *graph.Value
	cases := []struct {
		name   string
		xShape []int // the float32 operand, trained
		wShape []int // the bfloat16 one
		f      op
	}{
		{"x·w", []int{3, 5}, []int{5, 4}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMul(x, w) }},
		{"x·wᵀ", []int{3, 5}, []int{4, 5}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMulNT(x, w) }},
		{"xᵀ·w", []int{5, 3}, []int{5, 4}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMulTN(x, w) }},
		{"batch x·w", []int{2, 3, 5}, []int{5, 4}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMul(x, w) }},
		{"batch xᵀ·w", []int{2, 5, 3}, []int{5, 4}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMulTN(x, w) }},
		{"batch x·wᵀ", []int{2, 3, 5}, []int{4, 5}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMulNT(x, w) }},
		{"w·x", []int{5, 3}, []int{4, 5}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMul(w, x) }},
		{"w·xᵀ", []int{3, 5}, []int{4, 5}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMulNT(w, x) }},
		{"wᵀ·x", []int{5, 3}, []int{5, 4}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMulTN(w, x) }},
		{"w·batch x", []int{2, 5, 3}, []int{4, 5}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.MatMul(w, x) }},
		{"wᵀ·batch xᵀ", []int{2, 3, 5}, []int{5, 4}, func(g *graph.Tape, x, w *graph.Value) *graph.Value {
			return g.MatMulTN(w, g.Transpose(x, 1, 2))
		}},
		{"linear", []int{2, 3, 5}, []int{4, 5}, func(g *graph.Tape, x, w *graph.Value) *graph.Value { return g.Linear(x, w, nil) }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			nw := backend.Shape(tc.wShape).NumElements()
			w16 := bf16Param(t, b, "w", randData(rng, nw), tc.wShape...)
			w32 := param(t, b, "w32", graph.Frozen, host(t, w16), tc.wShape...)
			xData := randData(rng, backend.Shape(tc.xShape).NumElements())
			run := func(w *graph.Value) (y, dx []float32) {
				x := param(t, b, "x", graph.Trainable, xData, tc.xShape...)
				g := graph.New(b)
				defer g.Close()
				out := tc.f(g, x, w)
				r := g.Input(randData(rand.New(rand.NewPCG(7, 7)), out.Len()), out.Shape()...)
				loss := g.Add(g.Sum(g.Mul(out, r)), g.Sum(g.Square(tc.f(g, x, w))))
				if err := g.Backward(loss); err != nil {
					t.Fatal(err)
				}
				return host(t, out), grad(t, x)
			}
			y16, dx16 := run(w16)
			y32, dx32 := run(w32)
			if d := maxRel(y16, y32); d > 1e-6 {
				t.Errorf("product differs from float32's by %.3g", d)
			}
			if d := maxRel(dx16, dx32); d > 1e-6 {
				t.Errorf("gradient differs from float32's by %.3g", d)
			}
		})
	}
}

// TestBF16Storage checks what a bfloat16 parameter holds and what it
// refuses: its bytes, exact download, ToFloat32, and the errors of every
// other use.
func TestBF16Storage(t *testing.T) {
	b := openCPU(t)
	// Values around bfloat16's rounding, worked out by hand: 1 + 2⁻⁸ is a
	// tie (to even: 1), 1 + 3·2⁻⁸ a tie up to 1 + 2⁻⁶, 1 + 2⁻⁸ + 2⁻²⁰
	// just above a tie (up to 1 + 2⁻⁷), 3.3962e38 past the largest finite
	// bfloat16 by more than half a step (to +Inf); then a subnormal.
	data := []float32{1 + 1.0/256, 1 + 3.0/256, 1 + 1.0/256 + 1.0/(1<<20), -2.5, 0, 3.3962e38, 1e-40}
	want := []float32{1, 1 + 4.0/256, 1 + 2.0/256, -2.5, 0, float32(math.Inf(1)), math.Float32frombits(0x00010000)}
	before := b.BytesInUse()
	w := bf16Param(t, b, "w", data, 7, 1)
	if got := b.BytesInUse() - before; got != 14 {
		t.Errorf("7 bfloat16 elements hold %d bytes, want 14", got)
	}
	if w.DType() != backend.BFloat16 || w.Trainable() || !strings.Contains(w.String(), "bfloat16") {
		t.Errorf("dtype %v, trainable %v, %q", w.DType(), w.Trainable(), w)
	}
	if got := host(t, w); !slices.Equal(got, want) {
		t.Errorf("downloaded %v, want %v", got, want)
	}

	g := graph.New(b)
	defer g.Close()
	g.SetNoGrad(false)
	f := g.ToFloat32(w)
	if f.DType() != backend.Float32 || f.RequiresGrad() || !slices.Equal(host(t, f), want) {
		t.Errorf("ToFloat32: %v, requires grad %v, values %v", f.DType(), f.RequiresGrad(), host(t, f))
	}
	x := param(t, b, "x", graph.Trainable, data, 7, 1)
	if g.ToFloat32(x) != x {
		t.Error("ToFloat32 of a float32 value is not the value itself")
	}
	if d := g.Detach(w); d.DType() != backend.BFloat16 || d.RequiresGrad() {
		t.Errorf("Detach of a bfloat16 weight: %v, requires grad %v", d.DType(), d.RequiresGrad())
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}

	w3 := bf16Param(t, b, "w3", make([]float32, 8), 2, 2, 2)
	for _, tc := range []struct {
		name string
		f    func(g *graph.Tape) *graph.Value
		want []string
	}{
		{"add", func(g *graph.Tape) *graph.Value { return g.Add(w, x) }, []string{"Add", "frozen w bfloat16[7, 1]", "ToFloat32"}},
		{"reshape", func(g *graph.Tape) *graph.Value { return g.Reshape(w, 7) }, []string{"Reshape", "bfloat16"}},
		{"rows", func(g *graph.Tape) *graph.Value { return g.SumSqRows(w) }, []string{"bfloat16"}},
		{"two bfloat16 operands", func(g *graph.Tape) *graph.Value { return g.MatMulNT(w, w) }, []string{"MatMulNT", "one bfloat16 operand at most"}},
		{"batched bfloat16 first", func(g *graph.Tape) *graph.Value { return g.MatMul(w3, g.Full(1, 2, 2)) }, []string{"single matrix"}},
	} {
		g := graph.New(b)
		tc.f(g)
		err := g.Err()
		g.Close()
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, s)
			}
		}
	}

	if err := w.SetTrainable(true); err == nil || !strings.Contains(err.Error(), "bfloat16") || w.Trainable() {
		t.Errorf("SetTrainable(true) on a bfloat16 weight: %v, trainable %v", err, w.Trainable())
	}
	if _, err := graph.UploadParamAs(b, "t", data, backend.BFloat16, graph.Trainable, 7); err == nil || !strings.Contains(err.Error(), "cannot be trained") {
		t.Errorf("a trainable bfloat16 upload: %v", err)
	}
	if _, err := graph.NewParam(b, "t", w.Tensor(), graph.Trainable); err == nil || !strings.Contains(err.Error(), "cannot be trained") {
		t.Errorf("a trainable bfloat16 NewParam: %v", err)
	}
	before = b.BytesInUse()
	_, err := graph.UploadParamAs(noBF16{b}, "u", data, backend.BFloat16, graph.Frozen, 7)
	if err == nil || !strings.Contains(err.Error(), "backend cpu") || !strings.Contains(err.Error(), string(backend.OpMatMulBF16)) {
		t.Errorf("bfloat16 on a backend without it: %v", err)
	}
	if _, err := graph.UploadParamAs(b, "u", data, backend.DType(9), graph.Frozen, 7); err == nil || !strings.Contains(err.Error(), "DType(9)") {
		t.Errorf("an unknown dtype: %v", err)
	}
	if b.BytesInUse() != before {
		t.Errorf("the refused uploads left %d bytes allocated", b.BytesInUse()-before)
	}
}

// TestReplace checks that a frozen parameter takes new data of its shape,
// of another dtype too, in place (every holder sees it), with its old
// buffer freed, and that the misuses are refused with nothing changed.
func TestReplace(t *testing.T) {
	b := openCPU(t)
	w, err := graph.UploadParamAs(b, "w", []float32{1, 2, 3, 4, 5, 6}, backend.BFloat16, graph.Frozen, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free()
	before := b.BytesInUse()
	t32, err := b.Alloc(backend.Float32, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	b.Upload(t32, []float32{0.5, 1.5, 2.5, 3.5, 4.5, 5.5})
	if err := w.Replace(t32); err != nil {
		t.Fatal(err)
	}
	got, err := w.Download()
	if err != nil {
		t.Fatal(err)
	}
	if w.DType() != backend.Float32 || !slices.Equal(got, []float32{0.5, 1.5, 2.5, 3.5, 4.5, 5.5}) {
		t.Errorf("after Replace: %v %v", w.DType(), got)
	}
	// The float32 buffer (24 bytes) replaced the bfloat16 one (12).
	if d := b.BytesInUse() - before; d != 12 {
		t.Errorf("bytes in use changed by %d, want 12 (the bfloat16 buffer freed)", d)
	}

	wrong, err := b.Alloc(backend.Float32, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(wrong)
	strided, err := wrong.Permute(1, 0) // [2, 3], not contiguous
	if err != nil {
		t.Fatal(err)
	}
	tr, err := graph.UploadParam(b, "tr", make([]float32, 6), graph.Trainable, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Free()
	g := graph.New(b)
	defer g.Close()
	for _, c := range []struct {
		name string
		v    *graph.Value
		t    backend.Tensor
		want string
	}{
		{"another shape", w, wrong, "new data [3, 2] for a parameter of shape [2, 3]"},
		{"no data", w, backend.Tensor{}, "no new data"},
		{"strided", w, strided, "want a contiguous float32"},
		{"its own buffer", w, w.Tensor(), "a view of the parameter's own buffer"},
		{"trainable", tr, t32, "the parameter is trainable"},
		{"not a parameter", g.Full(0, 2, 3), t32, "not a parameter"},
	} {
		if err := c.v.Replace(c.t); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
	if got, _ := w.Download(); !slices.Equal(got, []float32{0.5, 1.5, 2.5, 3.5, 4.5, 5.5}) {
		t.Errorf("a refused Replace changed the data: %v", got)
	}
}

// TestGatherBF16 checks that Gather reads a bfloat16 table as stored,
// its rows widened exactly, and that a step through it trains what comes
// after while the frozen table gets no gradient.
func TestGatherBF16(t *testing.T) {
	b := openCPU(t)
	data := []float32{1, 2.5, -3, 0.1, 7, 8, 9, 10, 11} // 0.1 rounds
	table, err := graph.UploadParamAs(b, "embed", data, backend.BFloat16, graph.Frozen, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer table.Free()
	w, err := graph.UploadParam(b, "w", []float32{1, 0, 0, 0, 1, 0}, graph.Trainable, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free()
	g := graph.New(b)
	defer g.Close()
	rows := g.Gather(table, []int32{1, 0})
	loss := g.Sum(g.Linear(rows, w, nil))
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	got, err := rows.Download()
	if err != nil {
		t.Fatal(err)
	}
	stored, err := table.Download() // widened exactly
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(stored[3:6]), stored[0:3]...)
	if !slices.Equal(got, want) || stored[3] == 0.1 {
		t.Errorf("rows %v, want the stored rows %v (row 1 holding 0.1 rounded to bfloat16)", got, want)
	}
	dw, err := w.DownloadGrad()
	if err != nil {
		t.Fatal(err)
	}
	// d(Σ rows·wᵀ)/dw = Σ over the rows, for each output.
	sum := []float32{want[0] + want[3], want[1] + want[4], want[2] + want[5]}
	if !slices.Equal(dw, append(slices.Clone(sum), sum...)) {
		t.Errorf("dw %v, want each row %v", dw, sum)
	}
	if !table.Grad().IsZero() {
		t.Errorf("the frozen bfloat16 table has a gradient buffer")
	}
}
