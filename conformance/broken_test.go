package conformance_test

import (
	"bytes"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/conformance"
)

// The suite must be able to fail. Each backend here wraps the CPU backend
// and plants one fault in one op; Run must fail every case written for
// that op and name the op, must not fail cases that do not call it, and the
// CPU backend itself must pass. Cases that call the broken op on the way
// (those whose Needs list it, such as the gradient cases of
// graph_gradcheck.go) may fail too.

// offMatMul computes C 0.1% too large: alpha and beta scaled by 1.001.
type offMatMul struct{ backend.Backend }

func (b offMatMul) MatMul(c, a, x backend.Tensor, p backend.MatMulParams) {
	p.Alpha *= 1.001
	p.Beta *= 1.001
	b.Backend.MatMul(c, a, x, p)
}

// offExp computes exp 0.1% too large and every other unary op right.
type offExp struct{ backend.Backend }

func (b offExp) Unary(op backend.UnaryOp, dst, src backend.Tensor) {
	b.Backend.Unary(op, dst, src)
	if op == backend.Exp {
		b.Backend.Scale(dst, dst, 1.001)
	}
}

// pastSoftmax writes one element just past the end of Softmax's output.
type pastSoftmax struct{ backend.Backend }

func (b pastSoftmax) Softmax(dst, src backend.Tensor, p backend.SoftmaxParams) {
	b.Backend.Softmax(dst, src, p)
	past, err := backend.NewTensor(dst.Buffer(), dst.Offset()+dst.Len(), 1)
	if err != nil {
		return // no room in this buffer: nothing to overrun
	}
	first := dst.MustReshape(dst.Len()).MustSlice(0, 1)
	b.Backend.Copy(past, first, false)
}

// unwrittenLayerNorm leaves the last element of LayerNorm's output alone.
type unwrittenLayerNorm struct{ backend.Backend }

func (b unwrittenLayerNorm) LayerNorm(dst, x, gamma, beta backend.Tensor, eps float32) {
	tmp, err := b.Backend.Alloc(backend.Float32, dst.Shape()...)
	if err != nil {
		panic(err)
	}
	defer b.Backend.Free(tmp)
	b.Backend.LayerNorm(tmp, x, gamma, beta, eps)
	n := dst.Len()
	b.Backend.Copy(dst.MustReshape(n).MustSlice(0, n-1), tmp.MustReshape(n).MustSlice(0, n-1), false)
}

// clobberRMSNorm and clobberLayerNorm zero their output before
// normalising: right when dst is a buffer of its own, wrong when dst is x
// (the row is overwritten before its statistics are read).
type clobberRMSNorm struct{ backend.Backend }

func (b clobberRMSNorm) RMSNorm(dst, x, w backend.Tensor, eps float32) {
	b.Backend.Fill(dst, 0)
	b.Backend.RMSNorm(dst, x, w, eps)
}

type clobberLayerNorm struct{ backend.Backend }

func (b clobberLayerNorm) LayerNorm(dst, x, gamma, beta backend.Tensor, eps float32) {
	b.Backend.Fill(dst, 0)
	b.Backend.LayerNorm(dst, x, gamma, beta, eps)
}

// signSoftmaxGrad computes scale·y⊙(dy + Σdy⊙y): the sign of the
// correction term is wrong. It adds 2·scale·y⊙(Σ_row dy⊙y) to the right
// answer, built from the backend's own ops.
type signSoftmaxGrad struct{ backend.Backend }

func (b signSoftmaxGrad) SoftmaxGrad(dx, y, dy backend.Tensor, p backend.SoftmaxParams) {
	rows, cols := y.Rows()
	alloc := func(shape ...int) backend.Tensor {
		t, err := b.Backend.Alloc(backend.Float32, shape...)
		if err != nil {
			panic(err)
		}
		return t
	}
	prod, dot, extra := alloc(rows, cols), alloc(rows, 1), alloc(rows, cols)
	defer b.Backend.Free(prod)
	defer b.Backend.Free(dot)
	defer b.Backend.Free(extra)
	y2, dy2 := y.MustReshape(rows, cols), dy.MustReshape(rows, cols)
	// Computed before the real op, which may overwrite dy (dx may alias it).
	b.Backend.Binary(backend.Mul, prod, dy2, y2)
	b.Backend.ReduceRows(backend.Sum, dot, prod)
	b.Backend.Binary(backend.Mul, extra, y2, dot)
	b.Backend.SoftmaxGrad(dx, y, dy, p)
	b.Backend.Axpy(dx.MustReshape(rows, cols), 2*p.EffectiveScale(), extra)
}

// silentErrors loses recorded errors: Sync and Download report nil.
type silentErrors struct{ backend.Backend }

func (b silentErrors) Sync() error {
	b.Backend.Sync()
	return nil
}

func (b silentErrors) Download(dst []float32, src backend.Tensor) error {
	b.Backend.Download(dst, src)
	return nil
}

// truncBF16 truncates what it uploads into a bfloat16 tensor instead of
// rounding it to nearest even.
type truncBF16 struct{ backend.Backend }

func (b truncBF16) Upload(dst backend.Tensor, src []float32) {
	if dst.DType() == backend.BFloat16 {
		t := make([]float32, len(src))
		for i, v := range src {
			if u := math.Float32bits(v); u&0x7f800000 != 0x7f800000 { // NaN and Inf as they are
				t[i] = math.Float32frombits(u &^ 0xffff)
			} else {
				t[i] = v
			}
		}
		src = t
	}
	b.Backend.Upload(dst, src)
}

// offMatMulBF16 computes C 0.1% too large when B is bfloat16.
type offMatMulBF16 struct{ backend.Backend }

func (b offMatMulBF16) MatMul(c, a, x backend.Tensor, p backend.MatMulParams) {
	if x.DType() == backend.BFloat16 {
		p.Alpha *= 1.001
		p.Beta *= 1.001
	}
	b.Backend.MatMul(c, a, x, p)
}

// overwriteBF16 ignores accumulate when Copy widens bfloat16.
type overwriteBF16 struct{ backend.Backend }

func (b overwriteBF16) Copy(dst, src backend.Tensor, accumulate bool) {
	b.Backend.Copy(dst, src, accumulate && src.DType() != backend.BFloat16)
}

// noBF16 lacks matmul_bf16, truthfully: it refuses to allocate bfloat16.
type noBF16 struct{ backend.Backend }

func (b noBF16) Supports(op backend.Op) bool {
	return op != backend.OpMatMulBF16 && b.Backend.Supports(op)
}

func (b noBF16) Alloc(dt backend.DType, shape ...int) (backend.Tensor, error) {
	if _, err := backend.CheckAlloc(dt, shape...); err != nil {
		return backend.Tensor{}, err
	}
	return b.Backend.Alloc(dt, shape...)
}

// lyingNoBF16 says it lacks matmul_bf16 but allocates bfloat16 anyway.
type lyingNoBF16 struct{ backend.Backend }

func (b lyingNoBF16) Supports(op backend.Op) bool {
	return op != backend.OpMatMulBF16 && b.Backend.Supports(op)
}

// noRoPE claims not to support RoPE.
type noRoPE struct{ backend.Backend }

func (b noRoPE) Supports(op backend.Op) bool { return op != backend.OpRoPE && b.Backend.Supports(op) }

func TestBrokenBackendsAreCaught(t *testing.T) {
	cpu := openBackend(t, "cpu")
	prefix := func(p string) func(string) bool {
		return func(name string) bool { return strings.HasPrefix(name, p) }
	}
	inPlace := func(p string) func(string) bool {
		return func(name string) bool { return strings.HasPrefix(name, p) && strings.Contains(name, "/inplace") }
	}
	tests := []struct {
		name string
		b    backend.Backend
		// broken says which cases must fail.
		broken func(name string) bool
		// op is the broken op: cases that call it may fail as well, and
		// Run's tally of failing ops must name it. Empty when the fault
		// is not in an op.
		op backend.Op
	}{
		{"matmul off by a relative 1e-3", offMatMul{cpu}, prefix("matmul/"), backend.OpMatMul},
		{"exp off by a relative 1e-3", offExp{cpu}, prefix("unary/exp/"), backend.OpUnary},
		{"softmax writes one element past its output", pastSoftmax{cpu}, prefix("softmax/"), backend.OpSoftmax},
		{"layernorm leaves its last element unwritten", unwrittenLayerNorm{cpu}, prefix("layernorm/"), backend.OpLayerNorm},
		{"rmsnorm wrong in place", clobberRMSNorm{cpu}, inPlace("rmsnorm/"), backend.OpRMSNorm},
		{"layernorm wrong in place", clobberLayerNorm{cpu}, inPlace("layernorm/"), backend.OpLayerNorm},
		{"softmax backward with a wrong sign", signSoftmaxGrad{cpu}, prefix("softmax_grad/"), backend.OpSoftmaxGrad},
		{"errors never reported", silentErrors{cpu}, func(name string) bool {
			// The cases of invalid calls: sticky/ and the refusals of
			// bfloat16.
			return strings.HasPrefix(name, "sticky/") || strings.HasPrefix(name, "matmul_bf16/refused/") ||
				name == "memory/bf16_refused_where_not_owned"
		}, ""},
		{"bfloat16 upload truncates", truncBF16{cpu}, prefix("matmul_bf16/upload_rounding/"), backend.OpMatMulBF16},
		{"matmul with a bfloat16 B off by a relative 1e-3", offMatMulBF16{cpu}, func(name string) bool {
			return strings.HasPrefix(name, "matmul_bf16/m=") || strings.HasPrefix(name, "matmul_bf16/batch=")
		}, backend.OpMatMulBF16},
		{"copy from bfloat16 ignores accumulate", overwriteBF16{cpu}, prefix("matmul_bf16/copy/accumulate/"), backend.OpMatMulBF16},
	}
	// Cases of optional ops the CPU backend lacks are skipped by every
	// wrapper of it; the counts below allow for them.
	optSkipped := skippedOptional(cpu)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			sum, err := conformance.Run(tc.b, &out, conformance.Options{})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			byName := map[string]conformance.Case{}
			want := 0
			for _, c := range conformance.Cases() {
				byName[c.Name] = c
				if tc.broken(c.Name) && !optSkipped[c.Name] {
					want++
				}
			}
			if want == 0 {
				t.Fatal("no case matches the broken op: the test is wrong")
			}
			if sum.Failed < want || sum.Skipped != len(optSkipped) {
				t.Errorf("summary %q, want at least %d failed and %d skipped", sum, want, len(optSkipped))
			}
			failedNames := map[string]bool{}
			for _, line := range strings.Split(out.String(), "\n") {
				if name, ok := strings.CutPrefix(line, "FAIL "); ok {
					name, _, _ = strings.Cut(name, ":")
					failedNames[name] = true
					if !tc.broken(name) && !calls(byName[name], tc.op) {
						t.Errorf("case %s failed, but it does not call the broken op:\n%s", name, line)
					}
				}
			}
			if len(failedNames) != sum.Failed {
				t.Errorf("report lists %d failed cases, summary says %d", len(failedNames), sum.Failed)
			}
			for _, c := range conformance.Cases() {
				if tc.broken(c.Name) && !failedNames[c.Name] && !optSkipped[c.Name] {
					t.Errorf("case %s passed with a broken backend", c.Name)
				}
			}
			if tc.op != "" {
				tally := regexp.MustCompile(`(?m)^failing ops: .*\b` + regexp.QuoteMeta(string(tc.op)) + ` \((\d+)\)`)
				m := tally.FindStringSubmatch(out.String())
				if m == nil {
					t.Errorf("the report's tally of failing ops does not name %s", tc.op)
				} else if n, _ := strconv.Atoi(m[1]); n < want {
					t.Errorf("the tally counts %d failures of %s, want at least %d", n, tc.op, want)
				}
			}
			if t.Failed() {
				t.Logf("report:\n%s", out.String())
			}
		})
	}

	t.Run("unsupported op is skipped", func(t *testing.T) {
		var out bytes.Buffer
		sum, err := conformance.Run(noRoPE{cpu}, &out, conformance.Options{})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		want := 0
		for _, c := range conformance.Cases() {
			if calls(c, backend.OpRoPE) {
				want++
			}
		}
		if want < len(conformance.Select("rope/")) {
			t.Fatalf("%d cases call rope, fewer than the rope/ cases: the test is wrong", want)
		}
		for name := range optSkipped {
			if !calls(byCaseName(name), backend.OpRoPE) {
				want++
			}
		}
		if sum.Skipped != want || sum.Failed != 0 {
			t.Errorf("summary %q, want %d skipped and 0 failed", sum, want)
		}
		for _, c := range conformance.Cases() {
			if conformance.SkippedOptional(noRoPE{cpu}, c) && !optSkipped[c.Name] {
				t.Errorf("SkippedOptional(%s) is true for a backend lacking rope, which is not optional", c.Name)
			}
		}
		if !strings.Contains(out.String(), "does not support op rope") {
			t.Errorf("report does not give the reason for skipping:\n%s", out.String())
		}
	})

	// Without matmul_bf16 its cases are skipped, and only the refusal
	// case checks the backend: it passes when the backend refuses
	// bfloat16, and fails when the backend allocates it all the same.
	bf16Cases := 0
	for _, c := range conformance.Cases() {
		if calls(c, backend.OpMatMulBF16) {
			bf16Cases++
		}
	}
	if bf16Cases < 50 {
		t.Fatalf("%d cases call matmul_bf16: the test is wrong", bf16Cases)
	}
	for _, tc := range []struct {
		name   string
		b      backend.Backend
		failed []string
	}{
		{"without bfloat16, truthfully", noBF16{cpu}, nil},
		{"without bfloat16, yet allocating it", lyingNoBF16{cpu}, []string{"memory/bf16_refused_where_not_owned"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			sum, err := conformance.Run(tc.b, &out, conformance.Options{})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			want := bf16Cases
			for name := range optSkipped {
				if !calls(byCaseName(name), backend.OpMatMulBF16) {
					want++
				}
			}
			if sum.Skipped != want || sum.Failed != len(tc.failed) {
				t.Errorf("summary %q, want %d skipped and %d failed:\n%s", sum, want, len(tc.failed), out.String())
			}
			for _, name := range tc.failed {
				if !strings.Contains(out.String(), "FAIL "+name+":") {
					t.Errorf("case %s did not fail:\n%s", name, out.String())
				}
			}
			for _, c := range conformance.Cases() {
				if got, want := conformance.SkippedOptional(tc.b, c), calls(c, backend.OpMatMulBF16) || optSkipped[c.Name]; got != want {
					t.Errorf("SkippedOptional(%s) = %v, want %v", c.Name, got, want)
				}
			}
		})
	}

	t.Run("unbroken cpu passes", func(t *testing.T) {
		var out bytes.Buffer
		sum, err := conformance.Run(cpu, &out, conformance.Options{})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if n := len(conformance.Cases()); sum.Failed != 0 || sum.Skipped != len(optSkipped) || sum.Passed != n-len(optSkipped) {
			t.Errorf("summary %q, want %d passed and %d skipped (optional ops it lacks):\n%s", sum, n-len(optSkipped), len(optSkipped), out.String())
		}
		if len(optSkipped) > 0 {
			t.Logf("the cpu backend skips %d cases of optional ops it lacks", len(optSkipped))
		}
	})
}

// skippedOptional returns the names of the cases b skips for lacking an
// optional op.
func skippedOptional(b backend.Backend) map[string]bool {
	skipped := map[string]bool{}
	for _, c := range conformance.Cases() {
		if conformance.SkippedOptional(b, c) {
			skipped[c.Name] = true
		}
	}
	return skipped
}

// byCaseName returns the registered case of that name.
func byCaseName(name string) conformance.Case {
	for _, c := range conformance.Cases() {
		if c.Name == name {
			return c
		}
	}
	panic("no case " + name)
}
