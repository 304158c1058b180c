package llama_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
)

// TestNonFiniteWeightsRefused checks that a NaN or an infinity anywhere
// in the weights (the embedding, a layer's matrix, a norm) is refused by
// New and NewFromSource alike, whatever the slab, with an error naming
// the tensor and the element, and that the same weights load once the
// value is finite again.
func TestNonFiniteWeightsRefused(t *testing.T) {
	b := openCPU(t)
	defer llama.SetLoadSlabBytes(llama.SetLoadSlabBytes(llama.LoadSlabBytes))
	cfg := tinyConfig(false, llama.RopeInterleaved)
	w := randomWeights(t, cfg, 7)
	params := map[string]llama.Param{}
	for _, p := range w.Params() {
		params[p.Name] = p
	}
	cases := []struct {
		name  string
		index int
		value float32
	}{
		{llama.EmbedName, 0, float32(math.NaN())},
		{llama.EmbedName, 3*cfg.Dim + 5, float32(math.Inf(1))},
		{llama.LayerParamName(1, "mlp.down_proj"), 2*cfg.HiddenDim + 1, float32(math.Inf(-1))},
		{llama.LayerParamName(0, "self_attn.q_proj"), cfg.Dim*cfg.Dim - 1, float32(math.NaN())},
	}
	for _, p := range w.Params() {
		if len(p.Shape) == 1 {
			cases = append(cases, struct {
				name  string
				index int
				value float32
			}{p.Name, len(p.Data) - 1, float32(math.NaN())})
			break
		}
	}
	for _, c := range cases {
		p, ok := params[c.name]
		if !ok {
			t.Fatalf("no tensor %s in the weights", c.name)
		}
		cols := p.Shape[len(p.Shape)-1]
		where := fmt.Sprintf("row %d, column %d", c.index/cols, c.index%cols)
		if len(p.Shape) == 1 {
			where = fmt.Sprintf("element %d", c.index)
		}
		old := p.Data[c.index]
		p.Data[c.index] = c.value
		check := func(label string, m *llama.Model, err error) {
			t.Helper()
			if err == nil {
				m.Free()
				t.Errorf("%s with %v in %s: loaded", label, c.value, c.name)
				return
			}
			if msg := err.Error(); !strings.Contains(msg, c.name) || !strings.Contains(msg, where) || !strings.Contains(msg, "must be finite") {
				t.Errorf("%s with %v in %s: error %q, want one naming the tensor and %q", label, c.value, c.name, msg, where)
			}
		}
		m, err := llama.NewWithOptions(b, w, llama.Options{BaseDType: backend.Float32})
		check("New", m, err)
		for _, slab := range []int{llama.LoadSlabBytes / 4, 3*cfg.Dim + 1} {
			llama.SetLoadSlabBytes(4 * slab)
			m, err := llama.NewFromSource(b, newWeightsSource(w), llama.Options{})
			check(fmt.Sprintf("NewFromSource (slab %d)", slab), m, err)
		}
		p.Data[c.index] = old
	}
	m, err := llama.NewFromSource(b, newWeightsSource(w), llama.Options{})
	if err != nil {
		t.Fatalf("the restored weights: %v", err)
	}
	m.Free()
}
