package backend

import (
	"errors"
	"strings"
	"testing"
)

func mustTensor(t *testing.T, shape ...int) Tensor {
	t.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	x, err := NewTensor(testBuf(n), 0, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestCheckNormAllocatesNothing guards the hot path: norms run in every
// block of every step, so a call that passes must not allocate.
func TestCheckNormAllocatesNothing(t *testing.T) {
	x, dst, dy, dx := mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4)
	w, b, dw, db := mustTensor(t, 4), mustTensor(t, 4), mustTensor(t, 4), mustTensor(t, 4)
	var err error
	cases := map[string]func(){
		"rmsnorm":        func() { _, _, err = CheckNorm(OpRMSNorm, dst, x, w) },
		"layernorm":      func() { _, _, err = CheckNorm(OpLayerNorm, dst, x, w, b) },
		"rmsnorm grad":   func() { _, _, err = CheckNormGrad(OpRMSNormGrad, dx, x, dy, w, dw, Tensor{}) },
		"layernorm grad": func() { _, _, err = CheckNormGrad(OpLayerNormGrad, dx, x, dy, w, dw, db) },
	}
	for name, f := range cases {
		if n := testing.AllocsPerRun(10, f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestCheckNormErrors checks that each rejected call names its cause and
// carries every argument's shape.
func TestCheckNormErrors(t *testing.T) {
	x, w := mustTensor(t, 3, 4), mustTensor(t, 4)
	tests := []struct {
		name   string
		call   func() error
		want   string
		shapes int
	}{
		{"missing dst", func() error { _, _, err := CheckNorm(OpRMSNorm, Tensor{}, x, w); return err }, "tensor argument 0 is missing", 3},
		{"shape", func() error { _, _, err := CheckNorm(OpRMSNorm, mustTensor(t, 4, 3), x, w); return err }, "shapes differ", 3},
		{"param length", func() error { _, _, err := CheckNorm(OpLayerNorm, x, x, w, mustTensor(t, 3)); return err }, "row length 4", 4},
		{"no norm weight", func() error { _, _, err := CheckNorm(OpLayerNorm, x, x, Tensor{}, w); return err }, "weight is missing", 4},
		{"no weight", func() error { _, _, err := CheckNormGrad(OpRMSNormGrad, x, x, x, Tensor{}, w); return err }, "weight is missing", 5},
		{"dy shape", func() error {
			_, _, err := CheckNormGrad(OpRMSNormGrad, x, x, mustTensor(t, 2, 4), w, w)
			return err
		}, "dy's shape", 5},
		{"grad length", func() error {
			_, _, err := CheckNormGrad(OpLayerNormGrad, x, x, x, w, w, mustTensor(t, 5))
			return err
		}, "row length 4", 6},
	}
	for _, tt := range tests {
		err := tt.call()
		var oe *OpError
		if !errors.As(err, &oe) {
			t.Errorf("%s: got %v, want an *OpError", tt.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %q does not say %q", tt.name, err, tt.want)
		}
		if len(oe.Shapes) != tt.shapes {
			t.Errorf("%s: %d shapes in the error, want %d", tt.name, len(oe.Shapes), tt.shapes)
		}
	}
}

// TestChecksAllocateNothing extends the guard to every other check a
// kernel runs per call: a valid call builds no error argument list.
func TestChecksAllocateNothing(t *testing.T) {
	x, y, z, w := mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4)
	c, r, col := mustTensor(t, 3, 3), mustTensor(t, 3, 1), mustTensor(t, 4)
	q, q2 := mustTensor(t, 1, 2, 2, 4), mustTensor(t, 1, 2, 2, 4)
	ids := []int32{0, 1, 2}
	freqs := []float64{1, 0.01}
	cases := map[string]func() error{
		"elementwise": func() error { _, err := CheckElementwise(OpScale, x, y); return err },
		"binary":      func() error { _, _, _, err := CheckBinary(Add, x, y, z); return err },
		"unary":       func() error { _, err := CheckUnary(OpUnaryGrad, GELU, x, y, z); return err },
		"matmul":      func() error { _, err := CheckMatMul(c, x, y, MatMulParams{TransB: true}); return err },
		"reduce rows": func() error { _, _, err := CheckReduceRows(Sum, r, x); return err },
		"sum columns": func() error { _, _, err := CheckSumColumns(col, x); return err },
		"softmax":     func() error { _, _, _, err := CheckSoftmax(OpSoftmax, x, y, Tensor{}, SoftmaxParams{}); return err },
		"softmax window": func() error {
			_, _, _, err := CheckSoftmax(OpSoftmax, x, y, Tensor{}, SoftmaxParams{Causal: true, Window: 2})
			return err
		},
		"rope": func() error {
			_, _, _, _, err := CheckRoPE(q, q2, RoPEParams{Theta: 10000, Layout: Interleaved})
			return err
		},
		"rope freqs": func() error {
			_, _, _, _, err := CheckRoPE(q, q2, RoPEParams{Freqs: freqs, Layout: HalfSplit})
			return err
		},
		"gather": func() error { _, _, err := CheckGather(OpGather, x, y, ids); return err },
		"copy":   func() error { return CheckCopy(x, y) },
		"fill":   func() error { return CheckFill(x) },
		"adamw": func() error {
			_, err := CheckAdamW(x, y, z, w, AdamWParams{Step: 1, LR: 1e-3, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8})
			return err
		},
	}
	for name, f := range cases {
		var err error
		if n := testing.AllocsPerRun(10, func() { err = f() }); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestCheckCopyErrors checks that Copy's own rules (strided views allowed,
// but every argument present and dst not broadcast) name their cause.
func TestCheckCopyErrors(t *testing.T) {
	x := mustTensor(t, 3, 4)
	bcast, err := mustTensor(t, 4).Strided(0, Shape{3, 4}, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dst, src Tensor
		want     string
	}{
		{"missing src", x, Tensor{}, "tensor argument 1 is missing"},
		{"missing dst", Tensor{}, x, "tensor argument 0 is missing"},
		{"shapes", x, mustTensor(t, 4, 3), "shapes differ"},
		{"broadcast dst", bcast, x, "dst broadcasts along axis 0"},
	}
	for _, tt := range tests {
		err := CheckCopy(tt.dst, tt.src)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
	if err := CheckCopy(x, bcast); err != nil {
		t.Errorf("broadcast src: %v, want nil", err)
	}
}

// TestCheckOpCodes checks that the shared checks refuse op codes outside
// BinaryOps, UnaryOps and ReduceOps, so no backend has to.
func TestCheckOpCodes(t *testing.T) {
	x, y, z, r := mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 1)
	for _, op := range BinaryOps {
		if _, _, _, err := CheckBinary(op, x, y, z); err != nil {
			t.Errorf("CheckBinary(%v): %v", op, err)
		}
	}
	for _, op := range UnaryOps {
		if _, err := CheckUnary(OpUnary, op, x, y); err != nil {
			t.Errorf("CheckUnary(%v): %v", op, err)
		}
	}
	for _, op := range ReduceOps {
		if _, _, err := CheckReduceRows(op, r, x); err != nil {
			t.Errorf("CheckReduceRows(%v): %v", op, err)
		}
	}
	bad := map[string]error{}
	_, _, _, bad["binary"] = CheckBinary(BinaryOp(0), x, y, z)
	_, bad["unary"] = CheckUnary(OpUnary, UnaryOp(99), x, y)
	_, bad["unary grad"] = CheckUnary(OpUnaryGrad, UnaryOp(0), x, y, z)
	_, _, bad["reduce"] = CheckReduceRows(ReduceOp(7), r, x)
	for name, err := range bad {
		var oe *OpError
		if !errors.As(err, &oe) || !strings.Contains(err.Error(), "unknown") {
			t.Errorf("%s with an unknown op code: %v, want an *OpError saying unknown", name, err)
		}
	}
	if got := UnaryOp(99).String(); got != "UnaryOp(99)" {
		t.Errorf("UnaryOp(99).String() = %q", got)
	}
}

// TestCheckSoftmaxWindow checks the rules of SoftmaxParams.Window: a
// window needs Causal and a non-negative width, and must leave the last
// query some key; the limits themselves are accepted.
func TestCheckSoftmaxWindow(t *testing.T) {
	sq, cached, wide := mustTensor(t, 2, 4, 4), mustTensor(t, 2, 3, 9), mustTensor(t, 6, 4)
	tests := []struct {
		name string
		x    Tensor
		p    SoftmaxParams
		want string // "" for accepted
	}{
		{"window 1", sq, SoftmaxParams{Causal: true, Window: 1}, ""},
		{"window beyond keys", sq, SoftmaxParams{Causal: true, Window: 100}, ""},
		{"cached", cached, SoftmaxParams{Causal: true, QueryOffset: 6, Window: 2}, ""},
		{"no window, not causal", sq, SoftmaxParams{}, ""},
		{"without causal", sq, SoftmaxParams{Window: 2}, "without Causal"},
		{"negative", sq, SoftmaxParams{Causal: true, Window: -1}, "negative sliding window -1"},
		{"negative without causal", sq, SoftmaxParams{Window: -3}, "negative sliding window -3"},
		// Queries 0..5 over 4 keys: the query at position 5 with window 2
		// sees positions 4 and 5, neither a key; window 3 reaches key 3.
		{"last query sees no key", wide, SoftmaxParams{Causal: true, Window: 2}, "position 5 (query offset 0) none of the 4 keys: its window starts at key 4"},
		{"last query sees the last key", wide, SoftmaxParams{Causal: true, Window: 3}, ""},
		{"offset past the keys", cached, SoftmaxParams{Causal: true, QueryOffset: 9, Window: 3}, "position 11"},
		{"offset to the last key", cached, SoftmaxParams{Causal: true, QueryOffset: 9, Window: 4}, ""},
	}
	for _, tt := range tests {
		for _, op := range []Op{OpSoftmax, OpSoftmaxGrad} {
			y := Tensor{}
			if op == OpSoftmaxGrad {
				y = tt.x
			}
			_, _, _, err := CheckSoftmax(op, tt.x, tt.x, y, tt.p)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("%s, %s: %v", tt.name, op, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("%s, %s: got %v, want an error saying %q", tt.name, op, err, tt.want)
			}
		}
	}
}

// testBF16Buf is a Buffer of n bfloat16 elements with no storage.
type testBF16Buf int

func (b testBF16Buf) Len() int     { return int(b) }
func (b testBF16Buf) DType() DType { return BFloat16 }

func bf16Tensor(t *testing.T, shape ...int) Tensor {
	t.Helper()
	x, err := NewTensor(testBF16Buf(Shape(shape).NumElements()), 0, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestCheckAllocDType checks that BFloat16 is allocated only by a backend
// that says it supports OpMatMulBF16, and that the refusal says why.
func TestCheckAllocDType(t *testing.T) {
	tests := []struct {
		dt   DType
		bf16 bool
		want string // "" for accepted
	}{
		{Float32, false, ""},
		{Float32, true, ""},
		{BFloat16, true, ""},
		{BFloat16, false, "lacks the optional op matmul_bf16"},
		{DType(0), true, "dtype DType(0) not supported"},
		{DType(9), false, "dtype DType(9) not supported"},
	}
	for _, tt := range tests {
		n, err := CheckAllocDType(tt.dt, tt.bf16, 3, 5)
		switch {
		case tt.want == "" && (err != nil || n != 15):
			t.Errorf("CheckAllocDType(%v, %v): %d, %v; want 15 elements", tt.dt, tt.bf16, n, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckAllocDType(%v, %v): %v, want an error saying %q", tt.dt, tt.bf16, err, tt.want)
		}
	}
	if _, err := CheckAlloc(BFloat16, 2); err == nil || !strings.Contains(err.Error(), "matmul_bf16") {
		t.Errorf("CheckAlloc(BFloat16): %v, want the refusal of a backend without matmul_bf16", err)
	}
	if _, err := CheckAllocDType(BFloat16, true, 3, -1); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("CheckAllocDType(BFloat16, [3 -1]): %v, want the negative extent refused", err)
	}
}

// TestCheckBF16Operands checks the calls that take a BFloat16 tensor on a
// backend with OpMatMulBF16 (Upload, Download, Copy's src, MatMul's B)
// and refuse it, naming the optional op, on one without.
func TestCheckBF16Operands(t *testing.T) {
	x, c := mustTensor(t, 3, 4), mustTensor(t, 3, 5)
	h, hT := bf16Tensor(t, 4, 5), bf16Tensor(t, 5, 4)
	hx := bf16Tensor(t, 3, 4)
	strided, err := bf16Tensor(t, 4, 8).Strided(0, Shape{4, 5}, []int{8, 1})
	if err != nil {
		t.Fatal(err)
	}
	wide, err := mustTensor(t, 3, 8).Strided(0, Shape{3, 4}, []int{8, 1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func(bf16 bool) error
		// want is the error with bf16 set ("" for accepted); without it,
		// every call with a BFloat16 tensor must be refused.
		want string
	}{
		{"upload", func(b bool) error { return CheckTransferDType("upload", h, 20, b) }, ""},
		{"download", func(b bool) error { return CheckTransferDType("download", h, 20, b) }, ""},
		{"transfer length", func(b bool) error { return CheckTransferDType("upload", h, 19, b) }, "host slice has 19 elements, tensor 20"},
		{"transfer strided", func(b bool) error { return CheckTransferDType("download", strided, 20, b) }, "strided"},
		{"copy widens", func(b bool) error { return CheckCopyDType(x, hx, b) }, ""},
		{"copy into bf16", func(b bool) error { return CheckCopyDType(hx, x, b) }, "argument 0 has dtype bfloat16, want float32"},
		{"copy bf16 to bf16", func(b bool) error { return CheckCopyDType(hx, hx, b) }, "argument 0 has dtype bfloat16, want float32"},
		{"copy strided src", func(b bool) error { return CheckCopyDType(mustTensor(t, 4, 5), strided, b) }, "strided bfloat16 view"},
		{"copy strided dst", func(b bool) error { return CheckCopyDType(wide, hx, b) }, "argument 0 is a strided view"},
		{"copy shapes", func(b bool) error { return CheckCopyDType(x, h, b) }, "shapes differ"},
		{"matmul B", func(b bool) error { _, err := CheckMatMulDType(c, x, h, MatMulParams{}, b); return err }, ""},
		{"matmul Bᵀ", func(b bool) error {
			_, err := CheckMatMulDType(c, x, hT, MatMulParams{TransB: true}, b)
			return err
		}, ""},
		{"matmul dims", func(b bool) error { _, err := CheckMatMulDType(c, x, hT, MatMulParams{}, b); return err }, "inner or outer dimensions disagree"},
		{"matmul A", func(b bool) error {
			_, err := CheckMatMulDType(mustTensor(t, 4, 4), hT, mustTensor(t, 4, 4), MatMulParams{}, b)
			return err
		}, "argument 1 has dtype bfloat16, want float32"},
		{"matmul C", func(b bool) error {
			_, err := CheckMatMulDType(bf16Tensor(t, 3, 5), x, mustTensor(t, 4, 5), MatMulParams{}, b)
			return err
		}, "argument 0 has dtype bfloat16, want float32"},
		{"matmul strided B", func(b bool) error { _, err := CheckMatMulDType(c, x, strided, MatMulParams{}, b); return err }, "strided"},
	}
	for _, tt := range tests {
		err := tt.call(true)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s with bf16: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s with bf16: %v, want an error saying %q", tt.name, err, tt.want)
		}
		var oe *OpError
		if err != nil && !errors.As(err, &oe) {
			t.Errorf("%s with bf16: %v is not an *OpError", tt.name, err)
		}
		if err := tt.call(false); err == nil || !strings.Contains(err.Error(), "bfloat16") {
			t.Errorf("%s without bf16: %v, want a refusal of bfloat16", tt.name, err)
		}
	}
	// The plain checks are those of a backend without bf16.
	if err := CheckTransfer("upload", h, 20); err == nil || !strings.Contains(err.Error(), "lacks the optional op matmul_bf16") {
		t.Errorf("CheckTransfer of bfloat16: %v", err)
	}
	if err := CheckCopy(x, hx); err == nil || !strings.Contains(err.Error(), "lacks the optional op matmul_bf16") {
		t.Errorf("CheckCopy of bfloat16: %v", err)
	}
	if _, err := CheckMatMul(c, x, h, MatMulParams{}); err == nil || !strings.Contains(err.Error(), "lacks the optional op matmul_bf16") {
		t.Errorf("CheckMatMul of bfloat16: %v", err)
	}
	// The bf16 MatMul's dimensions are those of the float32 one.
	d16, err16 := CheckMatMulDType(c, x, h, MatMulParams{}, true)
	d32, err32 := CheckMatMul(c, x, mustTensor(t, 4, 5), MatMulParams{})
	if err16 != nil || err32 != nil || d16 != d32 {
		t.Errorf("bf16 dims %+v (%v), float32 dims %+v (%v)", d16, err16, d32, err32)
	}
	var n float64
	if n = testing.AllocsPerRun(10, func() { _, err = CheckMatMulDType(c, x, hT, MatMulParams{TransB: true}, true) }); n != 0 || err != nil {
		t.Errorf("CheckMatMulDType with a bf16 B: %v allocations, error %v; want none", n, err)
	}
	if n = testing.AllocsPerRun(10, func() { err = CheckCopyDType(x, hx, true) }); n != 0 || err != nil {
		t.Errorf("CheckCopyDType of a bf16 src: %v allocations, error %v; want none", n, err)
	}
}

// TestChecksRefuseBF16 checks that every op that computes refuses a
// BFloat16 tensor in any argument position, with an *OpError that says it
// is a storage type.
func TestChecksRefuseBF16(t *testing.T) {
	calls := map[string]struct {
		args []Tensor
		call func(ts []Tensor) error
	}{
		"elementwise": {[]Tensor{mustTensor(t, 3, 4), mustTensor(t, 3, 4)},
			func(ts []Tensor) error { _, err := CheckElementwise(OpScale, ts...); return err }},
		"unary grad": {[]Tensor{mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4)},
			func(ts []Tensor) error { _, err := CheckUnary(OpUnaryGrad, SiLU, ts...); return err }},
		"binary": {[]Tensor{mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 4)},
			func(ts []Tensor) error { _, _, _, err := CheckBinary(Add, ts[0], ts[1], ts[2]); return err }},
		"reduce rows": {[]Tensor{mustTensor(t, 3, 1), mustTensor(t, 3, 4)},
			func(ts []Tensor) error { _, _, err := CheckReduceRows(Sum, ts[0], ts[1]); return err }},
		"sum columns": {[]Tensor{mustTensor(t, 4), mustTensor(t, 3, 4)},
			func(ts []Tensor) error { _, _, err := CheckSumColumns(ts[0], ts[1]); return err }},
		"softmax grad": {[]Tensor{mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4)},
			func(ts []Tensor) error {
				_, _, _, err := CheckSoftmax(OpSoftmaxGrad, ts[0], ts[1], ts[2], SoftmaxParams{})
				return err
			}},
		"layernorm": {[]Tensor{mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 4), mustTensor(t, 4)},
			func(ts []Tensor) error { _, _, err := CheckNorm(OpLayerNorm, ts[0], ts[1], ts[2], ts[3]); return err }},
		"layernorm grad": {[]Tensor{mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 4), mustTensor(t, 4), mustTensor(t, 4)},
			func(ts []Tensor) error {
				_, _, err := CheckNormGrad(OpLayerNormGrad, ts[0], ts[1], ts[2], ts[3], ts[4], ts[5])
				return err
			}},
		"rope": {[]Tensor{mustTensor(t, 1, 2, 2, 4), mustTensor(t, 1, 2, 2, 4)},
			func(ts []Tensor) error {
				_, _, _, _, err := CheckRoPE(ts[0], ts[1], RoPEParams{Theta: 10000, Layout: HalfSplit})
				return err
			}},
		"gather": {[]Tensor{mustTensor(t, 2, 4), mustTensor(t, 3, 4)},
			func(ts []Tensor) error { _, _, err := CheckGather(OpGather, ts[0], ts[1], []int32{0, 2}); return err }},
		"cross entropy": {[]Tensor{mustTensor(t, 3), mustTensor(t, 3, 4)},
			func(ts []Tensor) error {
				_, _, err := CheckCrossEntropy(OpCrossEntropy, ts[0], ts[1], []int32{0, 1, 2}, CrossEntropyParams{IgnoreIndex: -100})
				return err
			}},
		"fill": {[]Tensor{mustTensor(t, 3, 4)}, func(ts []Tensor) error { return CheckFill(ts[0]) }},
		"adamw": {[]Tensor{mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4), mustTensor(t, 3, 4)},
			func(ts []Tensor) error {
				_, err := CheckAdamW(ts[0], ts[1], ts[2], ts[3], AdamWParams{Step: 1, LR: 1e-3, Beta1: 0.9, Beta2: 0.99})
				return err
			}},
		"matmul": {[]Tensor{mustTensor(t, 3, 5), mustTensor(t, 3, 4), mustTensor(t, 4, 5)},
			func(ts []Tensor) error { _, err := CheckMatMul(ts[0], ts[1], ts[2], MatMulParams{}); return err }},
		"copy": {[]Tensor{mustTensor(t, 3, 4), mustTensor(t, 3, 4)},
			func(ts []Tensor) error { return CheckCopy(ts[0], ts[1]) }},
		"transfer": {[]Tensor{mustTensor(t, 3, 4)},
			func(ts []Tensor) error { return CheckTransfer("upload", ts[0], 12) }},
	}
	for name, c := range calls {
		if err := c.call(c.args); err != nil {
			t.Errorf("%s with float32 tensors: %v", name, err)
			continue
		}
		for i := range c.args {
			ts := append([]Tensor(nil), c.args...)
			ts[i] = bf16Tensor(t, ts[i].Shape()...)
			err := c.call(ts)
			var oe *OpError
			if !errors.As(err, &oe) || !strings.Contains(err.Error(), "bfloat16") {
				t.Errorf("%s with a bfloat16 argument %d: %v, want an *OpError refusing bfloat16", name, i, err)
			}
		}
	}
}
