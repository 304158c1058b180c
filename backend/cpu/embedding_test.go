package cpu

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/internal/bf16"
)

func TestGatherScatterAdd(t *testing.T) {
	tests := []struct {
		vocab, dim int
		ids        []int32
	}{
		{1, 1, []int32{0}},
		{5, 3, []int32{4, 0, 2}},
		{7, 4, []int32{1, 1, 6, 1, 0}}, // repeated ids accumulate
		{3, 2, nil},                    // no ids
		{50, 300, []int32{3, 49, 3, 3, 0, 17, 17, 42, 3, 8, 1, 1}},
	}
	for i, tt := range tests {
		t.Run(shapeName(tt.vocab, tt.dim, len(tt.ids)), func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				rng := newRNG(uint64(i))
				tableData := uniform(rng, tt.vocab*tt.dim, -1, 1)
				table := upload(t, be, tableData, tt.vocab, tt.dim)
				n := len(tt.ids)
				dst := poisoned(t, be, n, tt.dim)
				be.Gather(dst, table, tt.ids)
				want := make([]float64, n*tt.dim)
				for r, id := range tt.ids {
					for j := range tt.dim {
						want[r*tt.dim+j] = float64(tableData[int(id)*tt.dim+j])
					}
				}
				assertClose(t, "gathered", download(t, be, dst), want, 0, 0)

				dyData := uniform(rng, n*tt.dim, -1, 1)
				dy := upload(t, be, dyData, n, tt.dim)
				be.ScatterAdd(table, dy, tt.ids)
				wantT := f64(tableData)
				for r, id := range tt.ids {
					for j := range tt.dim {
						wantT[int(id)*tt.dim+j] += float64(dyData[r*tt.dim+j])
					}
				}
				assertClose(t, "table", download(t, be, table), wantT, 1e-6, 1e-7)
			})
		})
	}
}

// TestGatherBF16 checks Gather from a bfloat16 table on every
// configuration (the Go and SIMD widenings, one thread and several): each
// row is the stored bfloat16 values widened, bit for bit, special values
// (signed zeros, subnormals, infinities, NaN) included, for rows whose
// length is and is not a multiple of the SIMD width, and from a view of
// the table at a row offset.
func TestGatherBF16(t *testing.T) {
	specials := []uint32{0x80000000, 0x00000000, 0x00010000, 0x807f0000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f7f0000, 0x3f818000}
	tests := []struct {
		vocab, dim int
		ids        []int32
	}{
		{1, 1, []int32{0}},
		{5, 3, []int32{4, 0, 2}},
		{7, 16, []int32{1, 1, 6, 1, 0}},
		{3, 2, nil},
		{50, 301, []int32{3, 49, 3, 3, 0, 17, 17, 42, 3, 8, 1, 1}},
	}
	for i, tt := range tests {
		t.Run(shapeName(tt.vocab, tt.dim, len(tt.ids)), func(t *testing.T) {
			eachConfig(t, func(t *testing.T, be *Backend) {
				vals := uniform(newRNG(uint64(30+i)), tt.vocab*tt.dim, -3, 3)
				for k, s := range specials {
					if k < len(vals) {
						vals[len(vals)-1-k] = math.Float32frombits(s)
					}
				}
				table := uploadDType(t, be, backend.BFloat16, vals, tt.vocab, tt.dim)
				stored := download(t, be, table) // widened exactly, by Download
				for k, v := range vals {
					if w := bf16.Widen(bf16.Round(v)); math.Float32bits(stored[k]) != math.Float32bits(w) {
						t.Fatalf("element %d stored as %g, want %g", k, stored[k], w)
					}
				}
				dst := poisoned(t, be, len(tt.ids), tt.dim)
				be.Gather(dst, table, tt.ids)
				got := download(t, be, dst)
				for r, id := range tt.ids {
					for j := range tt.dim {
						g, w := got[r*tt.dim+j], stored[int(id)*tt.dim+j]
						if math.Float32bits(g) != math.Float32bits(w) {
							t.Fatalf("row %d (id %d) column %d: %g (%#08x), want %g (%#08x)", r, id, j, g, math.Float32bits(g), w, math.Float32bits(w))
						}
					}
				}
				if tt.vocab < 2 {
					return
				}
				// Rows 1.. of the table as a table of their own.
				view := table.MustSlice(1, tt.vocab)
				one := poisoned(t, be, 1, tt.dim)
				be.Gather(one, view, []int32{int32(tt.vocab - 2)})
				g := download(t, be, one)
				for j, v := range g {
					if w := stored[(tt.vocab-1)*tt.dim+j]; math.Float32bits(v) != math.Float32bits(w) {
						t.Fatalf("from a view at row 1: column %d is %g, want %g", j, v, w)
					}
				}
			})
		})
	}
}

// TestGatherBF16Errors checks the refusals particular to a bfloat16 table:
// ids out of range, and a backend told not to widen (the shared check
// without bf16), each an *OpError, the output untouched.
func TestGatherBF16Errors(t *testing.T) {
	be := New(Options{})
	table := uploadDType(t, be, backend.BFloat16, uniform(newRNG(3), 12, -1, 1), 4, 3)
	dst := poisoned(t, be, 2, 3)
	for _, ids := range [][]int32{{0, 4}, {-1, 0}} {
		be.Gather(dst, table, ids)
		err := be.Sync()
		var oe *backend.OpError
		if !errors.As(err, &oe) || oe.Op != string(backend.OpGather) || !strings.Contains(err.Error(), "outside [0, 4)") {
			t.Errorf("ids %v: Sync = %v, want an *OpError of gather naming the range", ids, err)
		}
	}
	for _, v := range download(t, be, dst) {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("a refused Gather wrote %g into its output", v)
		}
	}
	if _, _, err := backend.CheckGather(backend.OpGather, dst, table, []int32{0}); err == nil || !strings.Contains(err.Error(), string(backend.OpMatMulBF16)) {
		t.Errorf("CheckGather (no bfloat16) with a bfloat16 table: %v, want a refusal naming %s", err, backend.OpMatMulBF16)
	}
	if _, _, err := backend.CheckGatherDType(backend.OpScatterAdd, dst, table, []int32{0}, true); err == nil || !strings.Contains(err.Error(), "bfloat16") {
		t.Errorf("ScatterAdd into a bfloat16 table: %v, want a refusal naming bfloat16", err)
	}
}
