package cpu

import (
	"testing"
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
