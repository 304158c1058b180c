package adapter

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/safetensors"
)

// orderedToy is the toy model with a Hugging Face row order for some of
// its layers, as a LLaMA read from a llama2.c file has for q/k_proj.
type orderedToy struct {
	*toy
	perms map[string][]int
}

func (m orderedToy) HFRowOrder(layer string) []int { return m.perms[layer] }

// toyPerms gives both q_proj layers a different random permutation of
// their 8 rows and lm_head (saved whole below) one of its 6.
func toyPerms() map[string][]int {
	rng := rand.New(rand.NewPCG(11, 12))
	return map[string][]int{
		"model.layers.0.self_attn.q_proj": rng.Perm(8),
		"model.layers.1.self_attn.q_proj": rng.Perm(8),
		"lm_head":                         rng.Perm(6),
	}
}

// TestRowOrderRoundTrip: with a row order, every output-indexed tensor is
// in the file with row i holding memory row perm[i], input-indexed ones
// (lora_A, oft_R) and unordered layers are as in memory, and loading puts
// every value back where it was, bit for bit, for every method.
func TestRowOrderRoundTrip(t *testing.T) {
	b := openCPU(t)
	perms := toyPerms()
	for i, cfg := range roundTrips {
		t.Run(roundTripName(i, cfg), func(t *testing.T) {
			cfg.TargetModules = []string{"q_proj", "v_proj"}
			src := orderedToy{newToy(t, b), perms}
			m := inject(t, src, cfg)
			defer m.Unload()
			perturb(t, m, uint64(i))
			head := src.denses[len(src.denses)-1] // lm_head, saved whole
			hw := make([]float32, head.W.Len())
			for j := range hw {
				hw[j] = float32(j)
			}
			b.Upload(head.W.Tensor(), hw)
			dir := save(t, m, Meta{ModulesToSave: []string{"lm_head"}})

			f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
			if err != nil {
				t.Fatal(err)
			}
			permuted := 0
			check := func(layer, key string, mem []float32, rowsOut bool) {
				t.Helper()
				file, err := f.Float32(Key(layer, key))
				if err != nil {
					t.Fatal(err)
				}
				perm := perms[layer]
				if perm == nil || !rowsOut {
					for j := range mem {
						if math.Float32bits(file[j]) != math.Float32bits(mem[j]) {
							t.Fatalf("%s.%s element %d: file %v, memory %v (should be unpermuted)", layer, key, j, file[j], mem[j])
						}
					}
					return
				}
				permuted++
				cols := len(mem) / len(perm)
				for r := range perm {
					for c := 0; c < cols; c++ {
						if got, want := file[r*cols+c], mem[perm[r]*cols+c]; math.Float32bits(got) != math.Float32bits(want) {
							t.Fatalf("%s.%s file row %d column %d: %v, want memory row %d's %v", layer, key, r, c, got, perm[r], want)
						}
					}
				}
			}
			for _, l := range m.Layers() {
				for _, nt := range l.Tensors() {
					mem, err := nt.Value.Download()
					if err != nil {
						t.Fatal(err)
					}
					check(l.Name(), nt.Key, mem, nt.Key != "lora_A.weight" && nt.Key != "oft_R.weight")
				}
			}
			check("lm_head", "weight", hw, true)
			f.Close()
			// lm_head's weight, and at least lora_B of both q_proj.
			if min := 3; cfg.Method == peft.OFT && permuted != 1 || cfg.Method != peft.OFT && permuted < min {
				t.Errorf("%d tensors were checked permuted", permuted)
			}

			dst := orderedToy{newToy(t, b), perms}
			loaded, _ := load(t, dir, dst)
			defer loaded.Unload()
			sameTrainables(t, m, loaded)
			if got, _ := dst.denses[len(dst.denses)-1].W.Download(); !equalBits(got, hw) {
				t.Errorf("lm_head saved whole is not restored in memory order")
			}
		})
	}
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestRowOrderMeaning checks what the order is for: an adapter saved from
// a model whose q_proj rows are in another order loads onto the same model
// stored in Hugging Face's order (no RowOrderer: rows already as the file
// has them), and there computes the same outputs, permuted.
func TestRowOrderMeaning(t *testing.T) {
	b := openCPU(t)
	perms := toyPerms()
	delete(perms, "lm_head")
	for _, cfg := range []peft.Config{
		{Method: peft.DoRA, R: 2, Alpha: 4},
		{Method: peft.SORA, R: 2, Alpha: 4, RotationRank: 2},
		{Method: peft.OFT, OFTBlockSize: 4},
	} {
		t.Run(string(cfg.Method), func(t *testing.T) {
			cfg.TargetModules = []string{"q_proj"}
			src := orderedToy{newToy(t, b), perms}
			m := inject(t, src, cfg)
			defer m.Unload()
			perturb(t, m, 5)
			dir := save(t, m, Meta{})
			// hf is the same base with q_proj's rows in the file's order.
			hf := newToy(t, b)
			for i, name := range hf.names {
				w, _ := src.denses[i].W.Download()
				if p := perms[name]; p != nil {
					w = rowsBy(w, p)
				}
				b.Upload(hf.denses[i].W.Tensor(), w)
			}
			loaded, _ := load(t, dir, hf)
			defer loaded.Unload()
			x := make([]float32, 3*8)
			rng := rand.New(rand.NewPCG(3, 3))
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			for i, name := range src.names {
				p := perms[name]
				if p == nil {
					continue
				}
				want := forward(t, b, src.slots[i], x)
				got := forward(t, b, hf.slots[i], x)
				// Column j of hf's output is column p[j] of src's.
				for r := 0; r < 3; r++ {
					for j := range p {
						w, g := want[r*8+p[j]], got[r*8+j]
						if math.Abs(float64(w-g)) > 1e-5*(1+math.Abs(float64(w))) {
							t.Fatalf("%s row %d output %d: %v in Hugging Face order, %v in the model's output %d", name, r, j, g, w, p[j])
						}
					}
				}
			}
		})
	}
}

// rowsBy returns w ([len(p), cols]) with row i taken from row p[i].
func rowsBy(w []float32, p []int) []float32 {
	cols := len(w) / len(p)
	out := make([]float32, len(w))
	for i, src := range p {
		copy(out[i*cols:(i+1)*cols], w[src*cols:(src+1)*cols])
	}
	return out
}

func forward(t *testing.T, b backend.Backend, l graph.Layer, x []float32) []float32 {
	t.Helper()
	g := graph.New(b)
	defer g.Close()
	g.SetNoGrad(true)
	y, err := l.Forward(g, g.Input(x, len(x)/8, 8)).Download()
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// TestRowOrderErrors: an order that is not a permutation of the layer's
// rows is refused on saving and on loading, naming the layer.
func TestRowOrderErrors(t *testing.T) {
	b := openCPU(t)
	const q0 = "model.layers.0.self_attn.q_proj"
	dir := saveSORA(t, b)
	for _, c := range []struct {
		name string
		perm []int
		want string
	}{
		{"short", []int{0, 1, 2}, "has 3 rows, the layer 8"},
		{"repeated", []int{0, 1, 2, 3, 4, 5, 6, 6}, "not a permutation"},
		{"out of range", []int{0, 1, 2, 3, 4, 5, 6, 8}, "not a permutation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := orderedToy{newToy(t, b), map[string][]int{q0: c.perm}}
			m := inject(t, bad, peft.Config{Method: peft.LoRA, R: 2, Alpha: 4, TargetModules: []string{"q_proj"}})
			err := Save(t.TempDir(), m, Meta{})
			m.Unload()
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), q0) {
				t.Errorf("saving: %v, want an error naming %s and containing %q", err, q0, c.want)
			}
			if _, _, err := Load(dir, bad); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), q0) {
				t.Errorf("loading: %v, want an error naming %s and containing %q", err, q0, c.want)
			}
		})
	}
}

// TestRowOrderMark: Save marks its files as holding Hugging Face's order
// (sora_row_order); a file of this package without the mark, as earlier
// builds wrote, is loaded with its rows as they are, and an unknown mark
// is refused.
func TestRowOrderMark(t *testing.T) {
	b := openCPU(t)
	perms := toyPerms()
	src := orderedToy{newToy(t, b), perms}
	m := inject(t, src, peft.Config{Method: peft.LoRA, R: 2, Alpha: 4, TargetModules: []string{"q_proj"}})
	perturb(t, m, 3)
	dir := save(t, m, Meta{})
	m.Unload()
	confPath := filepath.Join(dir, ConfigFile)
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), `"sora_row_order": "huggingface"`) {
		t.Fatalf("saved config lacks the row-order mark:\n%s", conf)
	}
	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	const layer = "model.layers.0.self_attn.q_proj"
	file, err := f.Float32(Key(layer, "lora_B.weight"))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	loadB := func() []float32 {
		t.Helper()
		m, _ := load(t, dir, orderedToy{newToy(t, b), perms})
		defer m.Unload()
		for _, l := range m.Layers() {
			if l.Name() == layer {
				for _, nt := range l.Tensors() {
					if nt.Key == "lora_B.weight" {
						v, err := nt.Value.Download()
						if err != nil {
							t.Fatal(err)
						}
						return v
					}
				}
			}
		}
		t.Fatalf("no lora_B for %s", layer)
		return nil
	}
	// rowsEqual says whether got holds the file's rows in memory order:
	// file row i at memory row perm[i], or at row i for a nil perm.
	const r = 2
	rowsEqual := func(got []float32, perm []int) bool {
		for i := range len(file) / r {
			dst := i
			if perm != nil {
				dst = perm[i]
			}
			for k := range r {
				if got[dst*r+k] != file[i*r+k] {
					return false
				}
			}
		}
		return true
	}
	if !rowsEqual(loadB(), perms[layer]) {
		t.Error("a marked file was not put into the module's row order")
	}
	// The same file without the mark, as builds before the mark wrote it.
	legacy := strings.Replace(string(conf), `"sora_row_order": "huggingface",`, "", 1)
	if legacy == string(conf) {
		t.Fatal("could not remove the mark")
	}
	if err := os.WriteFile(confPath, []byte(legacy), 0o644); err != nil {
		t.Fatal(err)
	}
	if !rowsEqual(loadB(), nil) {
		t.Error("an unmarked file of this package was permuted")
	}
	bad := strings.Replace(string(conf), `"huggingface"`, `"llama2c"`, 1)
	if err := os.WriteFile(confPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(dir, orderedToy{newToy(t, b), perms}); err == nil || !strings.Contains(err.Error(), "sora_row_order") {
		t.Errorf("unknown mark: %v, want an error naming sora_row_order", err)
	}
}

// TestRowOrderKnownRows pins the four places where rows are reordered (an
// adapted layer's tensors on Save and on Load, a modules_to_save layer's
// weight and bias on Save and on Load) against a fixed permutation and
// values that name their own position: memory row r, column c holds
// 100·r + c, so file row i of a reordered tensor must hold
// 100·perm[i] + c, and every other tensor its memory rows unchanged.
func TestRowOrderKnownRows(t *testing.T) {
	b := openCPU(t)
	const (
		q0 = "model.layers.0.self_attn.q_proj" // adapted, reordered
		q1 = "model.layers.1.self_attn.q_proj" // adapted, no order
		v0 = "model.layers.0.self_attn.v_proj" // saved whole with its bias, reordered
	)
	perm := []int{3, 0, 7, 1, 6, 2, 5, 4}
	perms := map[string][]int{q0: perm, v0: perm}
	// values returns n values in rows rows: 100·row + column.
	values := func(n, rows int) []float32 {
		cols := n / rows
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i/cols*100 + i%cols)
		}
		return v
	}
	// tensors returns the values of module m (and its injected adapter
	// pm) that the table names, by file key.
	tensors := func(m orderedToy, pm *peft.Model) map[string]*graph.Value {
		vs := map[string]*graph.Value{}
		for _, l := range pm.Layers() {
			for _, nt := range l.Tensors() {
				vs[Key(l.Name(), nt.Key)] = nt.Value
			}
		}
		for i, name := range m.names {
			if name == v0 {
				vs[Key(v0, "weight")], vs[Key(v0, "bias")] = m.denses[i].W, m.denses[i].B
			}
		}
		return vs
	}
	cases := []struct {
		layer, key string
		reordered  bool
	}{
		{q0, "lora_B.weight", true},
		{q0, "lora_magnitude_vector", true},
		{q0, "lora_A.weight", false}, // indexed by the inputs
		{q1, "lora_B.weight", false}, // a layer without an order
		{v0, "weight", true},
		{v0, "bias", true},
	}
	cfg := peft.Config{Method: peft.DoRA, R: 2, Alpha: 4, TargetModules: []string{"q_proj"}}

	src := orderedToy{newToy(t, b), perms}
	m := inject(t, src, cfg)
	defer m.Unload()
	mem := tensors(src, m)
	for _, c := range cases {
		v := mem[Key(c.layer, c.key)]
		if v == nil {
			t.Fatalf("the model has no %s", Key(c.layer, c.key))
		}
		b.Upload(v.Tensor(), values(v.Len(), v.Shape()[0]))
	}
	dir := save(t, m, Meta{ModulesToSave: []string{v0}})

	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range cases {
		key := Key(c.layer, c.key)
		file, err := f.Float32(key)
		if err != nil {
			t.Fatal(err)
		}
		rows := mem[key].Shape()[0]
		cols := len(file) / rows
		for i := range rows {
			src := i
			if c.reordered {
				src = perm[i]
			}
			for col := range cols {
				if got, want := file[i*cols+col], float32(100*src+col); got != want {
					t.Errorf("%s: file row %d column %d holds %v, want %v (memory row %d)", key, i, col, got, want, src)
				}
			}
		}
	}

	dst := orderedToy{newToy(t, b), perms}
	loaded, _ := load(t, dir, dst)
	defer loaded.Unload()
	back := tensors(dst, loaded)
	for _, c := range cases {
		key := Key(c.layer, c.key)
		got, err := back[key].Download()
		if err != nil {
			t.Fatal(err)
		}
		if want := values(len(got), back[key].Shape()[0]); !equalBits(got, want) {
			t.Errorf("%s loaded as %v, want the memory rows %v", key, got, want)
		}
	}
}
