package backend

import (
	"errors"
	"math"
	"slices"
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
	kv, lse := mustTensor(t, 1, 3, 1, 4), mustTensor(t, 1, 2, 2)
	ids := []int32{0, 1, 2}
	table16 := bf16Tensor(t, 3, 4)
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
		"attention with lse": func() error {
			_, err := CheckAttention(q, lse, q2, kv, kv, AttentionParams{Scale: 0.3, Causal: true})
			return err
		},
		"attention without lse": func() error {
			_, err := CheckAttention(q, Tensor{}, q2, kv, kv, AttentionParams{Scale: 0.3, Causal: true})
			return err
		},
		"attention grad": func() error {
			_, err := CheckAttentionGrad(q, kv, kv, q2, kv, kv, q2, lse, q, AttentionParams{Scale: 0.3, Softcap: 5})
			return err
		},
		"gather": func() error { _, _, err := CheckGather(OpGather, x, y, ids); return err },
		"gather bfloat16": func() error {
			_, _, err := CheckGatherDType(OpGather, x, table16, ids, true)
			return err
		},
		"copy": func() error { return CheckCopy(x, y) },
		"fill": func() error { return CheckFill(x) },
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

// TestCheckAttention checks every rule of CheckAttention and
// CheckAttentionGrad: each rejected call is an *OpError of the op, with
// every argument's shape, whose message names the argument or parameter
// at fault; the limits themselves are accepted.
func TestCheckAttention(t *testing.T) {
	// Batch 2, 3 queries over 5 keys, 4 query heads sharing 2 key/value
	// heads, head size 8.
	q, k, v := mustTensor(t, 2, 3, 4, 8), mustTensor(t, 2, 5, 2, 8), mustTensor(t, 2, 5, 2, 8)
	out, lse := mustTensor(t, 2, 3, 4, 8), mustTensor(t, 2, 4, 3)
	strided := func(shape ...int) Tensor {
		// Every other element of a buffer twice as long.
		s := Shape(shape)
		st := s.ContiguousStrides()
		for i := range st {
			st[i] *= 2
		}
		x, err := mustTensor(t, 2*s.NumElements()).Strided(0, s, st)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	p := AttentionParams{Scale: 0.35}
	causal := AttentionParams{Scale: 0.35, Causal: true, QueryOffset: 2}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))

	type args struct {
		out, lse, q, k, v Tensor
		p                 AttentionParams
	}
	base := args{out, lse, q, k, v, p}
	with := func(f func(a *args)) args {
		a := base
		f(&a)
		return a
	}
	forward := []struct {
		name string
		a    args
		want string // "" for accepted
	}{
		{"valid", base, ""},
		{"no lse", with(func(a *args) { a.lse = Tensor{} }), ""},
		{"multi-query", with(func(a *args) { a.k, a.v = mustTensor(t, 2, 5, 1, 8), mustTensor(t, 2, 5, 1, 8) }), ""},
		{"as many kv heads", with(func(a *args) { a.k, a.v = mustTensor(t, 2, 5, 4, 8), mustTensor(t, 2, 5, 4, 8) }), ""},
		{"one query", with(func(a *args) {
			a.q, a.out, a.lse = mustTensor(t, 2, 1, 4, 8), mustTensor(t, 2, 1, 4, 8), mustTensor(t, 2, 4, 1)
			a.p = AttentionParams{Scale: 1, Causal: true, QueryOffset: 4, Window: 1}
		}), ""},
		{"softcap", with(func(a *args) { a.p.Softcap = 50 }), ""},
		{"causal with offset", with(func(a *args) { a.p = causal }), ""},
		// Queries at 2, 3, 4 over keys 0..4: window 1 leaves the last one
		// key 4; an offset of 3 puts it at 5, past the keys.
		{"window to the last key", with(func(a *args) { a.p = AttentionParams{Scale: 1, Causal: true, QueryOffset: 2, Window: 1} }), ""},

		{"q missing", with(func(a *args) { a.q = Tensor{} }), "q is missing"},
		{"k missing", with(func(a *args) { a.k = Tensor{} }), "k is missing"},
		{"v missing", with(func(a *args) { a.v = Tensor{} }), "v is missing"},
		{"out missing", with(func(a *args) { a.out = Tensor{} }), "out is missing"},
		{"q bfloat16", with(func(a *args) { a.q = bf16Tensor(t, 2, 3, 4, 8) }), "q has dtype bfloat16"},
		{"k bfloat16", with(func(a *args) { a.k = bf16Tensor(t, 2, 5, 2, 8) }), "k has dtype bfloat16"},
		{"v bfloat16", with(func(a *args) { a.v = bf16Tensor(t, 2, 5, 2, 8) }), "v has dtype bfloat16"},
		{"out bfloat16", with(func(a *args) { a.out = bf16Tensor(t, 2, 3, 4, 8) }), "out has dtype bfloat16"},
		{"lse bfloat16", with(func(a *args) { a.lse = bf16Tensor(t, 2, 4, 3) }), "lse has dtype bfloat16"},
		{"q strided", with(func(a *args) { a.q = strided(2, 3, 4, 8) }), "q is a strided view"},
		{"k strided", with(func(a *args) { a.k = strided(2, 5, 2, 8) }), "k is a strided view"},
		{"v strided", with(func(a *args) { a.v = strided(2, 5, 2, 8) }), "v is a strided view"},
		{"out strided", with(func(a *args) { a.out = strided(2, 3, 4, 8) }), "out is a strided view"},
		{"lse strided", with(func(a *args) { a.lse = strided(2, 4, 3) }), "lse is a strided view"},
		{"q rank 3", with(func(a *args) { a.q = mustTensor(t, 6, 4, 8) }), "must have rank 4"},
		{"k rank 5", with(func(a *args) { a.k = mustTensor(t, 2, 5, 2, 2, 4) }), "must have rank 4"},
		{"v shape", with(func(a *args) { a.v = mustTensor(t, 2, 4, 2, 8) }), "v must have k's shape"},
		{"batch", with(func(a *args) { a.k, a.v = mustTensor(t, 1, 5, 2, 8), mustTensor(t, 1, 5, 2, 8) }), "q has batch 2, k 1"},
		{"head size", with(func(a *args) { a.k, a.v = mustTensor(t, 2, 5, 2, 6), mustTensor(t, 2, 5, 2, 6) }), "q has head size 8, k 6"},
		{"no keys", with(func(a *args) { a.k, a.v = mustTensor(t, 2, 0, 2, 8), mustTensor(t, 2, 0, 2, 8) }), "k and v hold no keys"},
		{"empty heads", with(func(a *args) {
			a.q, a.out = mustTensor(t, 2, 3, 4, 0), mustTensor(t, 2, 3, 4, 0)
			a.k, a.v = mustTensor(t, 2, 5, 2, 0), mustTensor(t, 2, 5, 2, 0)
		}), "head size 0"},
		{"heads not a multiple", with(func(a *args) { a.k, a.v = mustTensor(t, 2, 5, 3, 8), mustTensor(t, 2, 5, 3, 8) }), "4 query heads are not a multiple of 3 key/value heads"},
		{"more kv heads than heads", with(func(a *args) { a.k, a.v = mustTensor(t, 2, 5, 8, 8), mustTensor(t, 2, 5, 8, 8) }), "4 query heads are not a multiple of 8"},
		{"no kv heads", with(func(a *args) { a.k, a.v = mustTensor(t, 2, 5, 0, 8), mustTensor(t, 2, 5, 0, 8) }), "not a multiple of 0 key/value heads"},
		{"scale 0", with(func(a *args) { a.p.Scale = 0 }), "scale 0, want a positive finite number"},
		{"scale negative", with(func(a *args) { a.p.Scale = -0.5 }), "scale -0.5, want a positive"},
		{"scale NaN", with(func(a *args) { a.p.Scale = nan }), "scale NaN, want a positive"},
		{"scale Inf", with(func(a *args) { a.p.Scale = inf }), "scale +Inf, want a positive"},
		{"softcap negative", with(func(a *args) { a.p.Softcap = -1 }), "softcap -1, want 0 (none) or a positive finite number"},
		{"softcap NaN", with(func(a *args) { a.p.Softcap = nan }), "softcap NaN"},
		{"softcap Inf", with(func(a *args) { a.p.Softcap = inf }), "softcap +Inf"},
		{"negative offset", with(func(a *args) { a.p = AttentionParams{Scale: 1, Causal: true, QueryOffset: -1} }), "negative query offset -1"},
		{"negative window", with(func(a *args) { a.p = AttentionParams{Scale: 1, Causal: true, Window: -2} }), "negative sliding window -2"},
		{"window without causal", with(func(a *args) { a.p = AttentionParams{Scale: 1, Window: 2} }), "sliding window 2 without Causal"},
		{"window past the keys", with(func(a *args) { a.p = AttentionParams{Scale: 1, Causal: true, QueryOffset: 3, Window: 1} }), "position 5 (query offset 3) none of the 5 keys: its window starts at key 5"},
		{"out shape", with(func(a *args) { a.out = mustTensor(t, 2, 3, 2, 16) }), "out must have q's shape"},
		{"lse shape", with(func(a *args) { a.lse = mustTensor(t, 2, 3, 4) }), "lse must be [batch, heads, queries] = [2, 4, 3]"},
		{"lse rank", with(func(a *args) { a.lse = mustTensor(t, 8, 3) }), "lse must be [batch, heads, queries]"},
		// Batch 2 of 5 keys; the 3 queries sit at keys 2, 3, 4.
		{"segments", with(func(a *args) { a.p = causal; a.p.Segments = []int32{0, 0, 1, 1, 1, 7, 8, 8, 8, 9} }), ""},
		{"segments without causal", with(func(a *args) { a.p.Segments = []int32{0, 0, 0, 0, 0, 0, 1, 2, 3, 4} }), ""},
		{"segments short", with(func(a *args) { a.p = causal; a.p.Segments = []int32{0, 0, 1, 1, 1} }), "5 segment numbers, want one per key of each sequence: batch·keys = 10"},
		{"segments decrease", with(func(a *args) { a.p = causal; a.p.Segments = []int32{0, 0, 1, 1, 1, 2, 3, 2, 3, 3} }), "segment numbers decrease in sequence 1 at key 2 (2 after 3)"},
		{"segments and queries past the keys", with(func(a *args) {
			a.p = AttentionParams{Scale: 1, Causal: true, QueryOffset: 3, Segments: make([]int32, 10)}
		}), "with segments every query must sit at a key: queries 3 + query offset 3 > keys 5"},
	}
	check := func(name string, op Op, err error, want string, nargs int) {
		t.Helper()
		if want == "" {
			if err != nil {
				t.Errorf("%s, %s: %v", name, op, err)
			}
			return
		}
		var oe *OpError
		switch {
		case !errors.As(err, &oe):
			t.Errorf("%s, %s: got %v, want an *OpError saying %q", name, op, err, want)
		case oe.Op != string(op):
			t.Errorf("%s, %s: the error names op %q", name, op, oe.Op)
		case !strings.Contains(err.Error(), want):
			t.Errorf("%s, %s: %q does not say %q", name, op, err, want)
		case len(oe.Shapes) != nargs:
			t.Errorf("%s, %s: %d shapes in the error, want %d", name, op, len(oe.Shapes), nargs)
		}
	}
	for _, tt := range forward {
		a := tt.a
		d, err := CheckAttention(a.out, a.lse, a.q, a.k, a.v, a.p)
		check(tt.name, OpAttention, err, tt.want, 5)
		if err == nil {
			want := AttentionDims{Batch: 2, Queries: a.q.Dim(1), Keys: 5, Heads: 4, KVHeads: a.k.Dim(2), HeadDim: 8}
			if d != want {
				t.Errorf("%s: dims %+v, want %+v", tt.name, d, want)
			}
			if d.Group()*d.KVHeads != d.Heads {
				t.Errorf("%s: Group() = %d for %d heads over %d", tt.name, d.Group(), d.Heads, d.KVHeads)
			}
		}
		// The backward shares the rules of q, k, v and the parameters;
		// its outputs and inputs are those of the forward's call.
		if tt.a.lse.IsZero() || strings.HasPrefix(tt.want, "out") || strings.HasPrefix(tt.want, "lse") {
			continue
		}
		dq, dk, dv := mustTensor(t, a.q.Shape()...), mustTensor(t, a.k.Shape()...), mustTensor(t, a.k.Shape()...)
		if len(a.k.Shape()) != 4 {
			dk, dv = mustTensor(t, 2, 5, 2, 8), mustTensor(t, 2, 5, 2, 8)
		}
		lseG := a.lse
		if a.q.Rank() == 4 && (a.lse.Rank() != 3 || a.lse.Dim(2) != a.q.Dim(1)) {
			lseG = mustTensor(t, 2, 4, a.q.Dim(1))
		}
		_, err = CheckAttentionGrad(dq, dk, dv, a.q, a.k, a.v, a.out, lseG, a.q, a.p)
		check(tt.name, OpAttentionGrad, err, tt.want, 9)
	}

	// The backward's own arguments.
	type gargs struct{ dq, dk, dv, q, k, v, out, lse, dout Tensor }
	gbase := gargs{mustTensor(t, 2, 3, 4, 8), mustTensor(t, 2, 5, 2, 8), mustTensor(t, 2, 5, 2, 8), q, k, v, out, lse, mustTensor(t, 2, 3, 4, 8)}
	gwith := func(f func(a *gargs)) gargs {
		a := gbase
		f(&a)
		return a
	}
	backward := []struct {
		name string
		a    gargs
		want string
	}{
		{"valid", gbase, ""},
		{"dq missing", gwith(func(a *gargs) { a.dq = Tensor{} }), "dq is missing"},
		{"dk missing", gwith(func(a *gargs) { a.dk = Tensor{} }), "dk is missing"},
		{"dv missing", gwith(func(a *gargs) { a.dv = Tensor{} }), "dv is missing"},
		{"out missing", gwith(func(a *gargs) { a.out = Tensor{} }), "out is missing"},
		{"lse missing", gwith(func(a *gargs) { a.lse = Tensor{} }), "lse is missing"},
		{"dout missing", gwith(func(a *gargs) { a.dout = Tensor{} }), "dout is missing"},
		{"dq bfloat16", gwith(func(a *gargs) { a.dq = bf16Tensor(t, 2, 3, 4, 8) }), "dq has dtype bfloat16"},
		{"dk bfloat16", gwith(func(a *gargs) { a.dk = bf16Tensor(t, 2, 5, 2, 8) }), "dk has dtype bfloat16"},
		{"dout bfloat16", gwith(func(a *gargs) { a.dout = bf16Tensor(t, 2, 3, 4, 8) }), "dout has dtype bfloat16"},
		{"lse bfloat16", gwith(func(a *gargs) { a.lse = bf16Tensor(t, 2, 4, 3) }), "lse has dtype bfloat16"},
		{"dv strided", gwith(func(a *gargs) { a.dv = strided(2, 5, 2, 8) }), "dv is a strided view"},
		{"out strided", gwith(func(a *gargs) { a.out = strided(2, 3, 4, 8) }), "out is a strided view"},
		{"dq shape", gwith(func(a *gargs) { a.dq = mustTensor(t, 2, 3, 2, 16) }), "dq must have q's shape"},
		{"out shape", gwith(func(a *gargs) { a.out = mustTensor(t, 2, 3, 4, 7) }), "out must have q's shape"},
		{"dout shape", gwith(func(a *gargs) { a.dout = mustTensor(t, 1, 3, 4, 8) }), "dout must have q's shape"},
		{"dk shape", gwith(func(a *gargs) { a.dk = mustTensor(t, 2, 5, 4, 8) }), "dk must have k's shape"},
		{"dv shape", gwith(func(a *gargs) { a.dv = mustTensor(t, 2, 3, 2, 8) }), "dv must have k's shape"},
		{"lse shape", gwith(func(a *gargs) { a.lse = mustTensor(t, 2, 2, 3) }), "lse must be [batch, heads, queries] = [2, 4, 3]"},
		{"q first", gwith(func(a *gargs) { a.q, a.dq = Tensor{}, Tensor{} }), "q is missing"},
	}
	for _, tt := range backward {
		a := tt.a
		_, err := CheckAttentionGrad(a.dq, a.dk, a.dv, a.q, a.k, a.v, a.out, a.lse, a.dout, causal)
		check(tt.name, OpAttentionGrad, err, tt.want, 9)
	}

	// A backend without the ops records Unsupported: an *OpError of the
	// op that names the backend and says why.
	err := Unsupported(OpAttentionGrad, "ascend", gbase.dq, gbase.dk, gbase.dv, q, k, v, out, lse, gbase.dout)
	check("unsupported", OpAttentionGrad, err, "the ascend backend does not implement this optional op", 9)

	// Mask gives Softmax the same mask and scale.
	m := AttentionParams{Scale: 0.25, Softcap: 30, Causal: true, QueryOffset: 4, Window: 3}.Mask()
	if want := (SoftmaxParams{Scale: 0.25, Causal: true, QueryOffset: 4, Window: 3}); m != want {
		t.Errorf("Mask() = %+v, want %+v", m, want)
	}
}

func TestSegmentBounds(t *testing.T) {
	// Two sequences of five keys: documents {0,1}, {2}, {3,4}; and one
	// document of all five.
	segs := []int32{4, 4, 5, 9, 9, -1, -1, -1, -1, -1}
	starts, ends := make([]int32, len(segs)), make([]int32, len(segs))
	SegmentBounds(segs, 5, starts, ends)
	wantStarts := []int32{0, 0, 2, 3, 3, 0, 0, 0, 0, 0}
	wantEnds := []int32{2, 2, 3, 5, 5, 5, 5, 5, 5, 5}
	if !slices.Equal(starts, wantStarts) || !slices.Equal(ends, wantEnds) {
		t.Errorf("starts %v, ends %v; want %v, %v", starts, ends, wantStarts, wantEnds)
	}
	// No keys: nothing to write, and it returns (it looped forever).
	SegmentBounds(nil, 0, nil, nil)
	SegmentBounds(segs, 0, starts, ends)
	if !slices.Equal(starts, wantStarts) || !slices.Equal(ends, wantEnds) {
		t.Errorf("keys 0 wrote starts %v, ends %v", starts, ends)
	}
}

// TestCheckGatherDType checks which dtypes Gather's table and ScatterAdd's
// take: a bfloat16 table only for Gather on a backend with bfloat16 (bf16
// set), float32 rows tensors everywhere.
func TestCheckGatherDType(t *testing.T) {
	rows, table := mustTensor(t, 2, 4), mustTensor(t, 3, 4)
	rows16, table16 := bf16Tensor(t, 2, 4), bf16Tensor(t, 3, 4)
	ids := []int32{2, 0}
	for _, c := range []struct {
		name        string
		op          Op
		rows, table Tensor
		bf16        bool
		want        string // "" for accepted
	}{
		{"float32", OpGather, rows, table, false, ""},
		{"bfloat16 table", OpGather, rows, table16, true, ""},
		{"bfloat16 table, backend without it", OpGather, rows, table16, false, "tensor argument 1 has dtype bfloat16, which this backend does not support"},
		{"bfloat16 rows", OpGather, rows16, table16, true, "tensor argument 0 has dtype bfloat16, want float32"},
		{"scatter-add into bfloat16", OpScatterAdd, rows, table16, true, "tensor argument 1 has dtype bfloat16, want float32"},
		{"id outside", OpGather, rows, table16, true, "id 3 at index 1 outside [0, 3)"},
	} {
		ids := ids
		if c.name == "id outside" {
			ids = []int32{0, 3}
		}
		vocab, dim, err := CheckGatherDType(c.op, c.rows, c.table, ids, c.bf16)
		switch {
		case c.want == "" && (err != nil || vocab != 3 || dim != 4):
			t.Errorf("%s: vocab %d, dim %d, error %v; want 3, 4, nil", c.name, vocab, dim, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}
