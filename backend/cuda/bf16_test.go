package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/bf16"
	"github.com/sora-go/sora/backend/internal/devpool"
	"github.com/sora-go/sora/conformance"
)

// TestBF16Emulated covers what the conformance cases do not see from the
// outside: bfloat16 blocks take 2 bytes an element from the pool; views
// at an offset address 2-byte elements (Upload, Download, Copy and MatMul
// through a Slice); MatMul with a bfloat16 B gives bit for bit what the
// float32 product of the widened values gives, with one extra launch and
// its scratch back in the pool afterwards; Free, use after free and Close
// treat bfloat16 buffers like float32 ones.
func TestBF16Emulated(t *testing.T) {
	b := openFake(t, Options{})
	if !b.Supports(backend.OpMatMulBF16) {
		t.Fatal("Supports(matmul_bf16) is false")
	}
	driverStats := fakeCounters(t, b.api.drv, "sora_fake_stats")

	// 64×32 elements: 4096 bytes as bfloat16, 8192 as float32, both
	// exact size classes.
	const rows, cols = 64, 32
	n := rows * cols
	in0 := b.MemoryStats().InUse
	h, err := b.Alloc(backend.BFloat16, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.MemoryStats().InUse-in0, devpool.SizeClass(int64(2*n)); got != want || want != int64(2*n) {
		t.Errorf("bfloat16 %d×%d took %d pool bytes, want %d", rows, cols, got, 2*n)
	}
	f := mustAlloc(t, b, rows, cols)
	if got := b.MemoryStats().InUse - in0 - int64(2*n); got != int64(4*n) {
		t.Errorf("float32 %d×%d took %d pool bytes, want %d", rows, cols, got, 4*n)
	}
	if h.DType() != backend.BFloat16 || f.DType() != backend.Float32 {
		t.Fatalf("dtypes %v, %v", h.DType(), f.DType())
	}

	r := rand.New(rand.NewPCG(3, 4))
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(r.NormFloat64())
	}
	b.Upload(h, vals)
	// Overwrite rows 16..47 through a view at an offset.
	view := h.MustSlice(16, 48)
	part := make([]float32, view.Len())
	for i := range part {
		part[i] = float32(r.NormFloat64()) * 100
	}
	b.Upload(view, part)
	want := slices.Clone(vals)
	copy(want[16*cols:], part)
	for i := range want {
		want[i] = bf16.Widen(bf16.Round(want[i]))
	}
	got := make([]float32, n)
	if err := b.Download(got, h); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatal("Download after Upload into a whole tensor and a view: not the rounded values")
	}
	gotView := make([]float32, view.Len())
	if err := b.Download(gotView, view); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotView, want[16*cols:48*cols]) {
		t.Error("Download of a view at an offset: wrong elements")
	}

	// Copy from the view, then accumulate it again: 2× exactly (the
	// values are bfloat16, so doubling is exact).
	dst := mustAlloc(t, b, 32, cols)
	b.Copy(dst, view, false)
	b.Copy(dst, view, true)
	gotCopy := make([]float32, dst.Len())
	if err := b.Download(gotCopy, dst); err != nil {
		t.Fatal(err)
	}
	for i, v := range gotCopy {
		if w := 2 * want[16*cols+i]; v != w {
			t.Fatalf("Copy+accumulate from a view: element %d = %v, want %v", i, v, w)
		}
	}

	// MatMul: C = A·Bᵀ and A·B with B the bfloat16 view, against the same
	// product with B's widened values in float32.
	bf := mustAlloc(t, b, 32, cols)
	b.Upload(bf, want[16*cols:48*cols])
	for _, transB := range []bool{false, true} {
		m, k := 5, 32
		nn := cols
		if transB {
			k, nn = cols, 32
		}
		a := mustAlloc(t, b, m, k)
		av := make([]float32, m*k)
		for i := range av {
			av[i] = float32(r.NormFloat64())
		}
		b.Upload(a, av)
		c1, c2 := mustAlloc(t, b, m, nn), mustAlloc(t, b, m, nn)
		p := backend.MatMulParams{TransB: transB, Alpha: 1}
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
		launches, inUse, allocs := driverStats[2], b.MemoryStats().InUse, b.MemoryStats().DeviceAllocs
		b.MatMul(c1, a, view, p)
		if err := b.Sync(); err != nil {
			t.Fatalf("transB=%v: MatMul with a bfloat16 B: %v", transB, err)
		}
		if d := driverStats[2] - launches; d != 1 {
			t.Errorf("transB=%v: %d kernel launches, want 1 (the widening)", transB, d)
		}
		if got := b.MemoryStats().InUse; got != inUse {
			t.Errorf("transB=%v: pool bytes in use %d after MatMul, %d before: the scratch was not given back", transB, got, inUse)
		}
		if transB && b.MemoryStats().DeviceAllocs != allocs {
			t.Errorf("the second MatMul allocated device memory; the first one's scratch should have been reused")
		}
		b.MatMul(c2, a, bf, p)
		g1, g2 := make([]float32, c1.Len()), make([]float32, c2.Len())
		if err := b.Download(g1, c1); err != nil {
			t.Fatal(err)
		}
		if err := b.Download(g2, c2); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(g1, g2) {
			t.Errorf("transB=%v: MatMul with bfloat16 B differs from float32 B holding the same values", transB)
		}
		if slices.Equal(g1, make([]float32, len(g1))) {
			t.Errorf("transB=%v: product is all zeros", transB)
		}
	}

	// Free, use after free, double free; Close with a live one.
	b.Free(h)
	b.Copy(dst, view, false)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("Copy from a freed bfloat16 tensor: %v", err)
	}
	b.Free(h)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "tensor's buffer was freed") {
		t.Errorf("double free of a bfloat16 tensor: %v", err)
	}
	live, err := b.Alloc(backend.BFloat16, 1000)
	if err != nil {
		t.Fatal(err)
	}
	bytesBefore := driverStats[3]
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if freed := bytesBefore - driverStats[3]; freed < 2000 {
		t.Errorf("Close returned %d bytes to the device, want at least the live bfloat16 tensor's 2000", freed)
	}
	b.Free(live) // after Close: nothing, no error
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Sync after Close: %v", err)
	}
}

// TestGatherBF16Emulated checks Gather from a bfloat16 table on the
// emulated device: from a view at a row offset (2-byte element
// addressing), each gathered row is the table's stored values widened,
// bit for bit (Download widens on the host, the kernel on the device);
// the call is one kernel launch that takes no scratch beyond the ids' (no
// float32 copy of the table, as MatMul's B gets); and ScatterAdd into a
// bfloat16 table is refused.
func TestGatherBF16Emulated(t *testing.T) {
	b := openFake(t, Options{})
	driverStats := fakeCounters(t, b.api.drv, "sora_fake_stats")
	const rows, vocab, dim = 310, 300, 37
	whole, err := b.Alloc(backend.BFloat16, rows, dim)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	vals := make([]float32, rows*dim)
	for i := range vals {
		vals[i] = math.Float32frombits(uint32(r.IntN(1<<16)) << 16)
		if math.IsNaN(float64(vals[i])) {
			vals[i] = float32(i) // NaN bits are not what this checks
		}
	}
	b.Upload(whole, vals)
	table := whole.MustSlice(5, 5+vocab)
	stored := make([]float32, table.Len())
	if err := b.Download(stored, table); err != nil {
		t.Fatal(err)
	}
	ids := []int32{0, 299, 17, 17, 150, 3, 298, 0, 64}
	f32 := mustAlloc(t, b, vocab, dim)
	b.Upload(f32, stored)
	want, got := mustAlloc(t, b, len(ids), dim), mustAlloc(t, b, len(ids), dim)
	b.Fill(got, float32(math.NaN()))
	b.Gather(want, f32, ids) // the float32 path, which also warms the ids' scratch
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	launches, inUse, allocs := driverStats[2], b.MemoryStats().InUse, b.MemoryStats().DeviceAllocs
	b.Gather(got, table, ids)
	if err := b.Sync(); err != nil {
		t.Fatalf("Gather from a bfloat16 table: %v", err)
	}
	if d := driverStats[2] - launches; d != 1 {
		t.Errorf("%d kernel launches, want 1 (gather_bf16)", d)
	}
	if b.MemoryStats().InUse != inUse || b.MemoryStats().DeviceAllocs != allocs {
		t.Errorf("pool bytes in use %d → %d, device blocks %d → %d: Gather from bfloat16 should take no scratch beyond the ids'",
			inUse, b.MemoryStats().InUse, allocs, b.MemoryStats().DeviceAllocs)
	}
	g, w := make([]float32, got.Len()), make([]float32, want.Len())
	if err := b.Download(g, got); err != nil {
		t.Fatal(err)
	}
	if err := b.Download(w, want); err != nil {
		t.Fatal(err)
	}
	for i := range g {
		row, col := i/dim, i%dim
		ref := stored[int(ids[row])*dim+col]
		if math.Float32bits(g[i]) != math.Float32bits(ref) || math.Float32bits(w[i]) != math.Float32bits(ref) {
			t.Fatalf("row %d (id %d) column %d: bfloat16 table gives %g, float32 table %g; the stored value is %g", row, ids[row], col, g[i], w[i], ref)
		}
	}
	b.ScatterAdd(table, got, ids)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "bfloat16") {
		t.Errorf("ScatterAdd into a bfloat16 table: %v, want a refusal naming bfloat16", err)
	}
}

// TestMatMulBF16SlabsEmulated checks MatMul with a bfloat16 B larger than
// the scratch cap (made small here, so that B's rows come in slabs that
// do not divide them evenly): every matmul_bf16 product case of the
// conformance suite passes on the emulated device (not with -short: 3 s),
// and on shapes of either transpose (batched A sharing B, alpha and beta included) the
// product is the float32-B product of the same values — bit for bit when
// B is transposed (each slab writes whole columns of C, each element one
// dot product as unslabbed), to a few roundings otherwise (the slabs'
// products are added in float32) — while the scratch the pool hands out
// stays the size of one slab.
func TestMatMulBF16SlabsEmulated(t *testing.T) {
	b := openFake(t, Options{})
	defer func(n int64) { bf16ScratchElems = n }(bf16ScratchElems)
	bf16ScratchElems = 300
	ran := 0
	for _, c := range conformance.Cases() {
		if testing.Short() {
			break
		}
		if !strings.HasPrefix(c.Name, "matmul_bf16/m=") && !strings.HasPrefix(c.Name, "matmul_bf16/batch=") {
			continue
		}
		if out := conformance.RunCase(b, c, conformance.DefaultSeed); out.Status != conformance.Passed {
			t.Errorf("%v", out)
		}
		ran++
	}
	if ran < 50 && !testing.Short() {
		t.Fatalf("only %d matmul_bf16 product cases found", ran)
	}

	bf16ScratchElems = 50 // 3 or 4 rows a slab below

	r := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []struct {
		batch, m, n, k int
		transA, transB bool
		alpha, beta    float32
	}{
		{1, 5, 37, 13, false, true, 1, 0},
		{1, 5, 37, 13, true, true, 0.5, -1},
		{1, 6, 13, 37, false, false, 1, 0},
		{1, 6, 13, 37, true, false, -2, 0.5},
		{3, 4, 29, 11, false, true, 1, 1},
		{3, 4, 11, 29, true, false, 1, 0},
	} {
		name := fmt.Sprintf("batch=%d m=%d n=%d k=%d transA=%v transB=%v", tc.batch, tc.m, tc.n, tc.k, tc.transA, tc.transB)
		bShape := []int{tc.k, tc.n}
		if tc.transB {
			bShape = []int{tc.n, tc.k}
		}
		aShape := []int{tc.m, tc.k}
		if tc.transA {
			aShape = []int{tc.k, tc.m}
		}
		if tc.batch > 1 {
			aShape = append([]int{tc.batch}, aShape...)
		}
		cShape := []int{tc.m, tc.n}
		if tc.batch > 1 {
			cShape = append([]int{tc.batch}, cShape...)
		}
		bv := uniform(r, tc.k*tc.n, -1, 1)
		for i, v := range bv {
			bv[i] = bf16.Widen(bf16.Round(v))
		}
		bh, err := b.Alloc(backend.BFloat16, bShape...)
		if err != nil {
			t.Fatal(err)
		}
		bf := mustAlloc(t, b, bShape...)
		b.Upload(bh, bv)
		b.Upload(bf, bv)
		a := mustAlloc(t, b, aShape...)
		b.Upload(a, uniform(r, a.Len(), -1, 1))
		c0 := uniform(r, tc.batch*tc.m*tc.n, -1, 1)
		c16, c32 := mustAlloc(t, b, cShape...), mustAlloc(t, b, cShape...)
		b.Upload(c16, c0)
		b.Upload(c32, c0)
		p := backend.MatMulParams{TransA: tc.transA, TransB: tc.transB, Alpha: tc.alpha, Beta: tc.beta}
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
		st := b.MemoryStats()
		b.MatMul(c16, a, bh, p)
		if err := b.Sync(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := b.MemoryStats(); got.InUse != st.InUse || got.Cached-st.Cached > devpool.SizeClass(4*bf16ScratchElems) {
			t.Errorf("%s: pool in use %d → %d, cached %d → %d: the scratch should be one slab, at most %d bytes", name,
				st.InUse, got.InUse, st.Cached, got.Cached, devpool.SizeClass(4*bf16ScratchElems))
		}
		b.MatMul(c32, a, bf, p)
		g16, g32 := make([]float32, c16.Len()), make([]float32, c32.Len())
		if err := b.Download(g16, c16); err != nil {
			t.Fatal(err)
		}
		if err := b.Download(g32, c32); err != nil {
			t.Fatal(err)
		}
		// The largest difference relative to the largest element.
		worst, scale := 0.0, 0.0
		for i := range g16 {
			worst = max(worst, math.Abs(float64(g16[i]-g32[i])))
			scale = max(scale, math.Abs(float64(g32[i])))
		}
		worst /= scale
		switch {
		case tc.transB && worst != 0:
			t.Errorf("%s: slabbed product differs from the float32-B product (worst relative %.3g), want the same bits", name, worst)
		case worst > 1e-5:
			t.Errorf("%s: slabbed product differs from the float32-B product by a relative %.3g", name, worst)
		}
		for _, x := range []backend.Tensor{bh, bf, a, c16, c32} {
			b.Free(x)
		}
	}
}
