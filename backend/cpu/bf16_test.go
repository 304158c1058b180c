package cpu

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/bf16"
)

// TestBF16Memory checks bfloat16 buffers: 2 bytes an element in
// BytesInUse, zeroed, rounded on Upload, exact on Download, and freed once.
func TestBF16Memory(t *testing.T) {
	be := New(Options{})
	base := be.BytesInUse()
	x, err := be.Alloc(backend.BFloat16, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	if x.DType() != backend.BFloat16 || !x.Contiguous() || x.Len() != 21 {
		t.Fatalf("Alloc(BFloat16, 3, 7) = %v", x)
	}
	if got := be.BytesInUse() - base; got != 2*21 {
		t.Errorf("BytesInUse grew by %d for 21 bfloat16 elements, want 42", got)
	}
	if got := download(t, be, x); got[0] != 0 || got[20] != 0 {
		t.Errorf("a new bfloat16 tensor holds %v, want zeros", got)
	}
	src := make([]float32, 21)
	for i := range src {
		src[i] = float32(i) * 1.0001 // most need rounding
	}
	src[0] = math.Float32frombits(0x3f818000) // a tie that rounds up to even
	src[1] = float32(math.NaN())
	src[2] = math.MaxFloat32 // rounds to infinity
	be.Upload(x, src)
	got := download(t, be, x)
	for i, v := range src {
		want := bf16.Widen(bf16.Round(v))
		if math.Float32bits(got[i]) != math.Float32bits(want) && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want))) {
			t.Errorf("element %d: uploaded %g, downloaded %g, want %g", i, v, got[i], want)
		}
	}
	if got[0] != math.Float32frombits(0x3f820000) || !math.IsNaN(float64(got[1])) || !math.IsInf(float64(got[2]), 1) {
		t.Errorf("tie, NaN, overflow came back as %g %g %g", got[0], got[1], got[2])
	}
	// A view of the middle rows.
	mid := x.MustSlice(1, 2)
	be.Upload(mid, []float32{1, 2, 3, 4, 5, 6, 7})
	if got := download(t, be, x)[7:14]; fmt.Sprint(got) != "[1 2 3 4 5 6 7]" {
		t.Errorf("row 1 after uploading it = %v", got)
	}
	f32, err := be.Alloc(backend.Float32, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := be.BytesInUse() - base; got != 42+20 {
		t.Errorf("BytesInUse grew by %d, want 42 + 20", got)
	}
	be.Free(x)
	if got := be.BytesInUse() - base; got != 20 {
		t.Errorf("after freeing the bfloat16 tensor BytesInUse grew by %d, want 20", got)
	}
	be.Free(x)
	if err := be.Sync(); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("double free of a bfloat16 tensor: Sync = %v", err)
	}
	if err := be.Download(make([]float32, 21), x); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("download of a freed bfloat16 tensor: %v", err)
	}
	be.Free(f32)
	if be.BytesInUse() != base {
		t.Errorf("BytesInUse %d after freeing everything, want %d", be.BytesInUse(), base)
	}
	// An empty bfloat16 tensor: allocated, counted as nothing.
	e, err := be.Alloc(backend.BFloat16, 0, 4)
	if err != nil || be.BytesInUse() != base {
		t.Errorf("empty bfloat16 tensor: %v, BytesInUse %d", err, be.BytesInUse())
	}
	be.Upload(e, nil)
	if err := be.Download(nil, e); err != nil {
		t.Errorf("empty transfers: %v", err)
	}
	be.Free(e)
}

// TestBF16Copy checks Copy from bfloat16 into float32, plain and
// accumulating, serial and parallel.
func TestBF16Copy(t *testing.T) {
	eachConfig(t, func(t *testing.T, be *Backend) {
		rng := newRNG(7)
		vals := uniform(rng, 5*301, -3, 3)
		h := uploadDType(t, be, backend.BFloat16, vals, 5, 301)
		dst := poisoned(t, be, 5, 301)
		be.Copy(dst, h, false)
		got := download(t, be, dst)
		init := uniform(rng, len(vals), -1, 1)
		acc := upload(t, be, init, 5, 301)
		be.Copy(acc, h, true)
		gotAcc := download(t, be, acc)
		for i, v := range vals {
			w := bf16.Widen(bf16.Round(v))
			if got[i] != w || gotAcc[i] != init[i]+w {
				t.Fatalf("element %d: copy %g, accumulate %g; want %g and %g", i, got[i], gotAcc[i], w, init[i]+w)
			}
		}
		// A row of a bigger bfloat16 tensor into a float32 row.
		row := poisoned(t, be, 301)
		be.Copy(row, h.MustSlice(3, 4).MustReshape(301), false)
		if got := download(t, be, row); got[0] != bf16.Widen(bf16.Round(vals[3*301])) || got[300] != bf16.Widen(bf16.Round(vals[4*301-1])) {
			t.Errorf("copy of row 3: got %g … %g", got[0], got[300])
		}
	})
}

// TestBF16Refused checks that a bfloat16 tensor where an op wants float32
// records an *OpError naming the op, without a panic, and that the
// backend carries on after Sync.
func TestBF16Refused(t *testing.T) {
	be := New(Options{})
	h, err := be.Alloc(backend.BFloat16, 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	f := upload(t, be, make([]float32, 16), 4, 4)
	calls := map[backend.Op]func(){
		backend.OpFill:    func() { be.Fill(h, 1) },
		backend.OpUnary:   func() { be.Unary(backend.Exp, f, h) },
		backend.OpScale:   func() { be.Scale(h, f, 2) },
		backend.OpBinary:  func() { be.Binary(backend.Add, f, f, h) },
		backend.OpRMSNorm: func() { be.RMSNorm(f, f, h.MustReshape(16).MustSlice(0, 4), 1e-5) },
		// Gather takes a bfloat16 table (TestGatherBF16), not a bfloat16
		// dst; ScatterAdd takes none.
		backend.OpGather:     func() { be.Gather(h, f, []int32{0, 1, 2, 3}) },
		backend.OpScatterAdd: func() { be.ScatterAdd(h, f, []int32{0, 1, 2, 3}) },
		backend.OpMatMul:     func() { be.MatMul(h, f, f, backend.MatMulParams{Alpha: 1}) },
		backend.OpCopy:       func() { be.Copy(h, f, false) },
		backend.OpAdamW: func() {
			be.AdamW(f, h, f, f, backend.AdamWParams{Step: 1, LR: 1, Beta1: 0.9, Beta2: 0.9})
		},
	}
	for op, call := range calls {
		call()
		err := be.Sync()
		var oe *backend.OpError
		if !errors.As(err, &oe) || oe.Op != string(op) || !strings.Contains(err.Error(), "bfloat16") {
			t.Errorf("%s with a bfloat16 tensor: Sync = %v, want an *OpError of %s refusing bfloat16", op, err, op)
		}
	}
	be.MatMul(f, h, f, backend.MatMulParams{Alpha: 1}) // bfloat16 A
	if err := be.Sync(); err == nil || !strings.Contains(err.Error(), "argument 1 has dtype bfloat16") {
		t.Errorf("MatMul with a bfloat16 A: %v", err)
	}
	// A strided bfloat16 source is refused by Copy.
	tr, err := h.Permute(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	be.Copy(f, tr, false)
	if err := be.Sync(); err == nil || !strings.Contains(err.Error(), "strided bfloat16") {
		t.Errorf("Copy of a transposed bfloat16 view: %v", err)
	}
	// Another backend's bfloat16 tensor.
	other := New(Options{})
	oh, err := other.Alloc(backend.BFloat16, 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	be.MatMul(f, f, oh, backend.MatMulParams{Alpha: 1})
	if err := be.Sync(); err == nil || !strings.Contains(err.Error(), "another backend") {
		t.Errorf("MatMul with another backend's bfloat16 B: %v", err)
	}
	be.Copy(f, oh, false)
	if err := be.Sync(); err == nil || !strings.Contains(err.Error(), "another backend") {
		t.Errorf("Copy of another backend's bfloat16 tensor: %v", err)
	}
	be.Gather(f, oh, []int32{0, 1, 2, 3})
	if err := be.Sync(); err == nil || !strings.Contains(err.Error(), "another backend") {
		t.Errorf("Gather from another backend's bfloat16 table: %v", err)
	}
	be.Upload(oh, make([]float32, 16))
	if err := be.Sync(); err == nil || !strings.Contains(err.Error(), "another backend") {
		t.Errorf("Upload into another backend's bfloat16 tensor: %v", err)
	}
	// The backend still works.
	be.Upload(h, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	be.Copy(f, h, false)
	if got := download(t, be, f); got[15] != 16 {
		t.Errorf("after the refusals Copy gave %v", got)
	}
}

// TestMatMulBF16 runs the MatMul tests' shapes with a bfloat16 B, every
// transpose and configuration, against the float64 product of the
// rounded values.
func TestMatMulBF16(t *testing.T) {
	for _, tt := range matmulCases {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				name := fmt.Sprintf("b%d,%d,%d_m%d_n%d_k%d_a%g_b%g_ta%v_tb%v", tt.batchA, tt.batchB, tt.batchC, tt.m, tt.n, tt.k, tt.alpha, tt.beta, ta, tb)
				t.Run(name, func(t *testing.T) {
					eachConfig(t, func(t *testing.T, be *Backend) {
						testMatMulDType(t, be, backend.BFloat16, tt.batchA, tt.batchB, tt.batchC, tt.m, tt.n, tt.k, ta, tb, tt.alpha, tt.beta)
					})
				})
			}
		}
	}
}

// TestMatMulBF16Paths covers the shapes that take the gemm engine's
// special paths with a bfloat16 B: one token times Wᵀ (row dots, with
// fewer than 8 and an odd number of columns), a narrow C (skinny), few
// rows with B not transposed, and products big enough to pack B in
// parallel.
func TestMatMulBF16Paths(t *testing.T) {
	shapes := []struct{ m, n, k int }{
		{1, 37, 300}, {3, 5, 70}, {4, 64, 129}, {1, 200, 1000},
		{100, 8, 300}, {50, 16, 64}, {2, 300, 33}, {13, 300, 40},
		{130, 150, 270},
	}
	for _, s := range shapes {
		for _, tb := range []bool{false, true} {
			for _, ta := range []bool{false, true} {
				t.Run(fmt.Sprintf("m%d_n%d_k%d_ta%v_tb%v", s.m, s.n, s.k, ta, tb), func(t *testing.T) {
					eachConfig(t, func(t *testing.T, be *Backend) {
						testMatMulDType(t, be, backend.BFloat16, 0, 0, 0, s.m, s.n, s.k, ta, tb, 1, 0)
						testMatMulDType(t, be, backend.BFloat16, 0, 0, 0, s.m, s.n, s.k, ta, tb, -0.5, 2)
					})
				})
			}
		}
	}
}

// TestMatMulBF16AllocatesNothing checks that a warmed-up MatMul with a
// bfloat16 B allocates nothing, on the tiled, row-dot and skinny paths.
func TestMatMulBF16AllocatesNothing(t *testing.T) {
	be := New(Options{})
	for _, s := range []struct {
		m, n, k int
		tb      bool
	}{{64, 96, 128, true}, {64, 96, 128, false}, {1, 96, 128, true}, {100, 8, 128, true}} {
		a := upload(t, be, make([]float32, s.m*s.k), s.m, s.k)
		bShape := []int{s.k, s.n}
		if s.tb {
			bShape = []int{s.n, s.k}
		}
		h, err := be.Alloc(backend.BFloat16, bShape...)
		if err != nil {
			t.Fatal(err)
		}
		c := poisoned(t, be, s.m, s.n)
		p := backend.MatMulParams{TransB: s.tb, Alpha: 1}
		be.MatMul(c, a, h, p)
		if n := testing.AllocsPerRun(5, func() { be.MatMul(c, a, h, p) }); n != 0 {
			t.Errorf("%+v: %v allocations per MatMul, want 0", s, n)
		}
		if err := be.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}
