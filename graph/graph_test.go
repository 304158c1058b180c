package graph_test

import (
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testbackend"
)

func openCPU(t testing.TB) backend.Backend { return testbackend.Open(t, "cpu") }

func param(t testing.TB, b backend.Backend, name string, train graph.Trainability, data []float32, shape ...int) *graph.Value {
	t.Helper()
	p, err := graph.UploadParam(b, name, data, train, shape...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Free)
	return p
}

func host(t testing.TB, v *graph.Value) []float32 {
	t.Helper()
	h, err := v.Download()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func grad(t testing.TB, v *graph.Value) []float32 {
	t.Helper()
	h, err := v.DownloadGrad()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func near(a []float32, b ...float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i])-b[i]) > 1e-5*(1+math.Abs(b[i])) {
			return false
		}
	}
	return true
}

func TestFrozenParamsHoldNoGradient(t *testing.T) {
	b := openCPU(t)
	before := b.BytesInUse()
	w := param(t, b, "w", graph.Frozen, []float32{1, 2, 3, 4}, 2, 2)
	if got := b.BytesInUse() - before; got != 16 {
		t.Errorf("a frozen 2×2 parameter holds %d bytes, want 16 (no gradient buffer)", got)
	}
	if w.Trainable() || w.RequiresGrad() || !w.Grad().IsZero() {
		t.Error("a frozen parameter reports a gradient")
	}
	x := param(t, b, "x", graph.Trainable, []float32{1, -1}, 1, 2)
	g := graph.New(b)
	defer g.Close()
	if err := g.Backward(g.Sum(g.Linear(x, w, nil))); err != nil {
		t.Fatal(err)
	}
	// d/dx Σ x·wᵀ = column sums of w; w gets nothing.
	if gx := grad(t, x); !near(gx, 4, 6) {
		t.Errorf("dx = %v, want [4 6]", gx)
	}
	if !w.Grad().IsZero() {
		t.Error("the frozen weight got a gradient")
	}
	g.Reset()
	// Unfreezing allocates the buffer; freezing frees it.
	mid := b.BytesInUse()
	if err := w.SetTrainable(true); err != nil {
		t.Fatal(err)
	}
	if got := b.BytesInUse() - mid; got != 16 {
		t.Errorf("SetTrainable(true) allocated %d bytes, want 16", got)
	}
	if err := g.Backward(g.Sum(g.Linear(x, w, nil))); err != nil {
		t.Fatal(err)
	}
	if gw := grad(t, w); !near(gw, 1, -1, 1, -1) {
		t.Errorf("dw = %v, want [1 -1 1 -1]", gw)
	}
	g.Reset()
	mid = b.BytesInUse()
	if err := w.SetTrainable(false); err != nil {
		t.Fatal(err)
	}
	if got := mid - b.BytesInUse(); got != 16 {
		t.Errorf("SetTrainable(false) freed %d bytes, want 16", got)
	}
}

func TestGradientAccumulation(t *testing.T) {
	b := openCPU(t)
	w := param(t, b, "w", graph.Trainable, []float32{0.5, -1}, 2)
	g := graph.New(b)
	defer g.Close()
	step := func(x0, x1 float32) {
		x := g.Input([]float32{x0, x1}, 2)
		if err := g.Backward(g.Sum(g.Mul(w, x))); err != nil {
			t.Fatal(err)
		}
		g.Reset()
	}
	step(1, 2)
	step(3, 4) // accumulates: dw = x + x'
	if gw := grad(t, w); !near(gw, 4, 6) {
		t.Errorf("accumulated dw = %v, want [4 6]", gw)
	}
	w.ZeroGrad()
	if !w.Grad().IsZero() {
		t.Error("ZeroGrad left a gradient visible")
	}
	step(-1, 5) // overwrites
	if gw := grad(t, w); !near(gw, -1, 5) {
		t.Errorf("dw after ZeroGrad = %v, want [-1 5]", gw)
	}
}

// A loss that is a trainable parameter itself gets the gradient 1 at each
// step, accumulated like any parameter's until ZeroGrad.
func TestParameterLossAccumulates(t *testing.T) {
	b := openCPU(t)
	p := param(t, b, "p", graph.Trainable, []float32{3}, 1)
	g := graph.New(b)
	defer g.Close()
	step := func() {
		if err := g.Backward(p); err != nil {
			t.Fatal(err)
		}
		g.Reset()
	}
	step()
	step()
	if gp := grad(t, p); !near(gp, 2) {
		t.Errorf("dp after two steps = %v, want [2]", gp)
	}
	p.ZeroGrad()
	step()
	if gp := grad(t, p); !near(gp, 1) {
		t.Errorf("dp after ZeroGrad and a step = %v, want [1]", gp)
	}
}

func TestNoGradRecordsNothing(t *testing.T) {
	b := openCPU(t)
	w := param(t, b, "w", graph.Trainable, []float32{1, 2, 3, 4}, 2, 2)
	g := graph.New(b)
	defer g.Close()
	if prev := g.SetNoGrad(true); prev {
		t.Error("a new tape starts with recording off")
	}
	y := g.Softmax(g.MatMul(w, w), backend.SoftmaxParams{})
	if y.RequiresGrad() || g.Stats().Ops != 0 {
		t.Errorf("with recording off: requires grad %v, %d ops recorded", y.RequiresGrad(), g.Stats().Ops)
	}
	if err := g.Backward(g.Sum(y)); err == nil || !strings.Contains(err.Error(), "recording off") {
		t.Errorf("Backward with recording off: %v", err)
	}
	g.Reset()
	g.SetNoGrad(false)
	y = g.MatMul(w, w)
	if !y.RequiresGrad() || g.Stats().Ops != 1 {
		t.Errorf("with recording on: requires grad %v, %d ops recorded", y.RequiresGrad(), g.Stats().Ops)
	}
	// Evaluation reads values but must not disturb gradients.
	if gw := w.Grad(); !gw.IsZero() {
		t.Error("evaluation produced a gradient")
	}
}

func TestDetachStopsGradient(t *testing.T) {
	b := openCPU(t)
	x := param(t, b, "x", graph.Trainable, []float32{3, -2}, 2)
	g := graph.New(b)
	defer g.Close()
	// d/dx Σ x ⊙ stop(x) = stop(x) = x, not 2x.
	if err := g.Backward(g.Sum(g.Mul(x, g.Detach(x)))); err != nil {
		t.Fatal(err)
	}
	if gx := grad(t, x); !near(gx, 3, -2) {
		t.Errorf("dx = %v, want [3 -2]", gx)
	}
}

func TestValueUsedTwiceAndDeadBranches(t *testing.T) {
	b := openCPU(t)
	x := param(t, b, "x", graph.Trainable, []float32{1, 2, 3}, 3)
	g := graph.New(b)
	defer g.Close()
	sq := g.Mul(x, x)         // 2x
	_ = g.Exp(g.Scale(sq, 3)) // unused by the loss: no gradient flows
	loss := g.Add(g.Sum(sq), g.Sum(g.Scale(x, 4)))
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	if gx := grad(t, x); !near(gx, 6, 8, 10) {
		t.Errorf("dx = %v, want 2x + 4 = [6 8 10]", gx)
	}
	if st := g.Stats(); st.Ops != 0 {
		t.Errorf("%d ops left after Backward", st.Ops)
	}
}

func TestErrorsAreStickyAndClear(t *testing.T) {
	b := openCPU(t)
	w := param(t, b, "w", graph.Trainable, make([]float32, 6), 2, 3)
	g := graph.New(b)
	defer g.Close()
	x := g.Input(make([]float32, 8), 2, 4)
	y := g.MatMul(x, w) // [2,4]·[2,3]: inner dimensions disagree
	if !y.Tensor().IsZero() {
		t.Error("a failed op returned data")
	}
	if got := y.Shape(); !got.Equal(backend.Shape{2, 3}) {
		t.Errorf("placeholder shape %v, want [2 3]", got)
	}
	z := g.Softmax(g.Add(y, g.Full(1, 2, 3)), backend.SoftmaxParams{}) // runs nothing
	if z.Dim(5) != 0 || z.Dim(0) != 2 {
		t.Error("Dim of a placeholder")
	}
	err := g.Backward(g.Sum(z))
	if err == nil || !strings.Contains(err.Error(), "MatMul") || !strings.Contains(err.Error(), "[2, 4]") {
		t.Errorf("Backward after a shape error: %v, want the MatMul error", err)
	}
	if _, err := z.Download(); err == nil {
		t.Error("Download after an error succeeded")
	}
	g.Reset()
	if err := g.Err(); err != nil {
		t.Errorf("error survived Reset: %v", err)
	}
	// A value from before the Reset is refused, naming the problem.
	g.Exp(y)
	if err := g.Err(); err == nil || !strings.Contains(err.Error(), "Reset") {
		t.Errorf("using a value from before Reset: %v", err)
	}
	g.Reset()
	// A backend error (an id outside the table) surfaces at the step
	// boundary.
	e := g.Gather(w, []int32{0, 7})
	if err := g.Backward(g.Sum(e)); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("backend error at Backward: %v", err)
	}
	g.Reset()
	other := graph.New(b)
	defer other.Close()
	g.Exp(other.Input([]float32{1}, 1))
	if err := g.Err(); err == nil || !strings.Contains(err.Error(), "another tape") {
		t.Errorf("value of another tape: %v", err)
	}
	g.Reset()
	l := g.Sum(w)
	if err := g.Backward(l); err != nil {
		t.Fatal(err)
	}
	if err := g.Backward(l); err == nil || !strings.Contains(err.Error(), "already ran") {
		t.Errorf("second Backward: %v", err)
	}
	g.Reset()
	if err := g.Backward(g.Exp(w)); err == nil || !strings.Contains(err.Error(), "one element") {
		t.Errorf("Backward of a non-scalar: %v", err)
	}
	g.Reset()
	g.Input([]float32{1, 2, 3}, 2, 2)
	if err := g.Err(); err == nil || !strings.Contains(err.Error(), "3 values") {
		t.Errorf("Input of the wrong length: %v", err)
	}
	g.Reset()
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestBroadcastShapes(t *testing.T) {
	b := openCPU(t)
	g := graph.New(b)
	defer g.Close()
	a := g.Input([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	tests := []struct {
		name string
		b    *graph.Value
		want []float64
	}{
		{"scalar", g.Input([]float32{10}, 1), []float64{11, 12, 13, 14, 15, 16}},
		{"row", g.Input([]float32{10, 20, 30}, 3), []float64{11, 22, 33, 14, 25, 36}},
		{"row_2d", g.Input([]float32{10, 20, 30}, 1, 3), []float64{11, 22, 33, 14, 25, 36}},
		{"column", g.Input([]float32{10, 20}, 2, 1), []float64{11, 12, 13, 24, 25, 26}},
	}
	for _, tc := range tests {
		if got := host(t, g.Add(a, tc.b)); !near(got, tc.want...) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	g.Add(a, g.Input([]float32{1, 2}, 2)) // [2] is neither a row of 3 nor a column
	if err := g.Err(); err == nil || !strings.Contains(err.Error(), "cannot apply") {
		t.Errorf("bad broadcast: %v", err)
	}
}

func TestConstAndCopyOfKeepCallerTensors(t *testing.T) {
	b := openCPU(t)
	cache, err := b.Alloc(backend.Float32, 2, 4, 3) // [batch, maxSeq, dim]
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(cache)
	data := make([]float32, 24)
	for i := range data {
		data[i] = float32(i)
	}
	b.Upload(cache, data)
	g := graph.New(b)
	defer g.Close()
	// The window [:, 1:3, :] is a strided view.
	win, err := cache.Strided(3, backend.Shape{2, 2, 3}, []int{12, 3, 1})
	if err != nil {
		t.Fatal(err)
	}
	c := g.CopyOf(win)
	if got := host(t, c); !near(got, 3, 4, 5, 6, 7, 8, 15, 16, 17, 18, 19, 20) {
		t.Errorf("CopyOf window = %v", got)
	}
	k := g.Const(cache)
	if got := host(t, g.Sum(k)); !near(got, 276) {
		t.Errorf("Σ Const = %v, want 276", got)
	}
	g.Reset()
	// The tape must not have freed or reused the caller's tensor.
	h := make([]float32, 24)
	if err := b.Download(h, cache); err != nil {
		t.Fatalf("caller's tensor after Reset: %v", err)
	}
	if !near(h[:3], 0, 1, 2) {
		t.Errorf("caller's tensor changed: %v", h[:3])
	}
}

func TestCrossEntropyAllIgnored(t *testing.T) {
	b := openCPU(t)
	logits := param(t, b, "logits", graph.Trainable, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	g := graph.New(b)
	defer g.Close()
	loss := g.CrossEntropy(logits, []int32{graph.IgnoreIndex, graph.IgnoreIndex}, graph.CrossEntropyOptions{})
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	if l := host(t, loss); !near(l, 0) {
		t.Errorf("loss %v, want 0", l)
	}
	if gl := grad(t, logits); !near(gl, 0, 0, 0, 0, 0, 0) {
		t.Errorf("gradient %v, want zeros", gl)
	}
}

// TestCrossEntropyBadDivisor: a NaN or infinite divisor is an error on the
// tape, not a zero loss and gradient.
func TestCrossEntropyBadDivisor(t *testing.T) {
	b := openCPU(t)
	logits := param(t, b, "logits", graph.Trainable, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	for _, div := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		g := graph.New(b)
		loss := g.CrossEntropy(logits, []int32{0, 2}, graph.CrossEntropyOptions{Divisor: div})
		err := g.Backward(loss)
		if err == nil || !strings.Contains(err.Error(), "CrossEntropy: divisor") {
			t.Errorf("divisor %g: %v, want an error naming it", div, err)
		}
		g.Close()
	}
}

func TestPoolIsTrimmed(t *testing.T) {
	b := openCPU(t)
	w := param(t, b, "w", graph.Trainable, make([]float32, 16), 4, 4)
	g := graph.New(b)
	defer g.Close()
	step := func(rows int) {
		x := g.Input(make([]float32, rows*4), rows, 4)
		if err := g.Backward(g.Sum(g.Tanh(g.Linear(x, w, nil)))); err != nil {
			t.Fatal(err)
		}
		g.Reset()
	}
	for range 3 {
		step(50) // a long sequence
	}
	big := g.Stats().PooledBytes
	for range 3 {
		step(2) // then short ones: the buffers of the long one go
	}
	small := g.Stats().PooledBytes
	if small*5 > big {
		t.Errorf("pool holds %d bytes after short steps, %d after long ones: not trimmed", small, big)
	}
}

func TestAPIHelpers(t *testing.T) {
	b := openCPU(t)
	w := param(t, b, "w", graph.Trainable, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	if w.Name() != "w" || !w.IsParam() || w.Rank() != 2 || w.Len() != 6 || w.Dim(-1) != 3 {
		t.Errorf("accessors: %q %v %d %d %d", w.Name(), w.IsParam(), w.Rank(), w.Len(), w.Dim(-1))
	}
	if s := w.String(); !strings.Contains(s, "trainable w") {
		t.Errorf("String() = %q", s)
	}
	g := graph.New(b)
	defer g.Close()
	if r := g.Reshape(w, 2, 3); r != w {
		t.Error("an identity Reshape made a new value")
	}
	if _, err := w.Item(); err == nil {
		t.Error("Item of a 6-element value succeeded")
	}
	if _, err := graph.UploadParam(b, "bad", []float32{1, 2}, graph.Frozen, 3); err == nil || !strings.Contains(err.Error(), "bad") {
		t.Errorf("UploadParam with the wrong length: %v", err)
	}
	if _, err := graph.NewParam(b, "none", backend.Tensor{}, graph.Frozen); err == nil {
		t.Error("NewParam of the zero Tensor succeeded")
	}
}

// Gradient accumulation over micro-batches with CrossEntropyOptions.Divisor
// set to the step's number of counted rows gives the gradient of the whole
// batch at once.
func TestMicroBatchesEqualOneBatch(t *testing.T) {
	b := openCPU(t)
	w := param(t, b, "w", graph.Trainable, []float32{0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.7, -0.6}, 4, 2)
	x := []float32{1, 2, -1, 0.5, 0.3, -2, 1.5, 1, -0.7, 0.2, 2, -1}
	targets := []int32{0, 3, graph.IgnoreIndex, 1, 2, graph.IgnoreIndex}
	g := graph.New(b)
	defer g.Close()
	loss := func(xs []float32, ts []int32, opts graph.CrossEntropyOptions) {
		logits := g.Linear(g.Input(xs, len(ts), 2), w, nil)
		if err := g.Backward(g.CrossEntropy(logits, ts, opts)); err != nil {
			t.Fatal(err)
		}
		g.Reset()
	}
	loss(x, targets, graph.CrossEntropyOptions{})
	whole := grad(t, w)
	w.ZeroGrad()
	opts := graph.CrossEntropyOptions{Divisor: 4} // counted rows in the step
	loss(x[:6], targets[:3], opts)
	loss(x[6:], targets[3:], opts)
	parts := grad(t, w)
	for i := range whole {
		if math.Abs(float64(whole[i]-parts[i])) > 1e-6 {
			t.Fatalf("element %d: %g accumulated over micro-batches, %g in one batch", i, parts[i], whole[i])
		}
	}
	if whole[0] == 0 {
		t.Fatal("zero gradient: the comparison proves nothing")
	}
}

// Each named element-wise method is its backend op.
func TestUnaryWrappers(t *testing.T) {
	b := openCPU(t)
	g := graph.New(b)
	defer g.Close()
	x := g.Input([]float32{0.5, 1.5, 2.5}, 3)
	named := map[backend.UnaryOp]func(*graph.Value) *graph.Value{
		backend.Exp: g.Exp, backend.Log: g.Log, backend.Sqrt: g.Sqrt, backend.Rsqrt: g.Rsqrt,
		backend.Tanh: g.Tanh, backend.SiLU: g.SiLU, backend.GELU: g.GELU, backend.ReLU: g.ReLU,
		backend.Neg: g.Neg, backend.Square: g.Square, backend.Sigmoid: g.Sigmoid,
		backend.GELUTanh: g.GELUTanh,
	}
	if len(named) != len(backend.UnaryOps) {
		t.Fatalf("%d named methods for %d unary ops", len(named), len(backend.UnaryOps))
	}
	for op, f := range named {
		got, want := host(t, f(x)), host(t, g.Unary(op, x))
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: method gives %v, Unary gives %v", op, got, want)
				break
			}
		}
	}
}
