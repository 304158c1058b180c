package adapter

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/testbackend"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/safetensors"
)

func openCPU(t testing.TB) backend.Backend { return testbackend.Open(t, "cpu") }

// toy is a two-block model with LLaMA-like layer names.
type toy struct {
	slots  []graph.Layer
	denses []*graph.Dense
	names  []string
}

func newToy(t testing.TB, b backend.Backend) *toy {
	t.Helper()
	rng := rand.New(rand.NewPCG(42, 1))
	m := &toy{}
	add := func(name string, out, in int, bias bool) {
		w := make([]float32, out*in)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.3)
		}
		d := &graph.Dense{}
		var err error
		if d.W, err = graph.UploadParam(b, name+".weight", w, graph.Trainable, out, in); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.W.Free)
		if bias {
			bv := make([]float32, out)
			for i := range bv {
				bv[i] = float32(rng.NormFloat64() * 0.1)
			}
			if d.B, err = graph.UploadParam(b, name+".bias", bv, graph.Trainable, out); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(d.B.Free)
		}
		m.slots = append(m.slots, d)
		m.denses = append(m.denses, d)
		m.names = append(m.names, name)
	}
	for i := range 2 {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"self_attn.q_proj", 8, 8, false)
		add(p+"self_attn.v_proj", 8, 8, true)
		add(p+"mlp.up_proj", 12, 8, false)
	}
	add("lm_head", 6, 8, false)
	return m
}

func (m *toy) Params() []*graph.Value {
	var ps []*graph.Value
	for _, d := range m.denses {
		ps = append(ps, d.W)
		if d.B != nil {
			ps = append(ps, d.B)
		}
	}
	return ps
}

func (m *toy) Layers() []graph.LayerRef {
	refs := make([]graph.LayerRef, len(m.slots))
	for i := range m.slots {
		refs[i] = graph.LayerRef{Name: m.names[i], Slot: &m.slots[i]}
	}
	return refs
}

// run applies every layer whose input size is 8 to x and concatenates the
// outputs (enough to see each adapter's effect).
func (m *toy) run(t testing.TB, b backend.Backend, x []float32) []float32 {
	t.Helper()
	g := graph.New(b)
	defer g.Close()
	g.SetNoGrad(true)
	xv := g.Input(x, len(x)/8, 8)
	var out []float32
	for _, s := range m.slots {
		y, err := s.Forward(g, xv).Download()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, y...)
	}
	return out
}

func perturb(t testing.TB, m *peft.Model, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	for _, p := range m.Trainable() {
		h, err := p.Download()
		if err != nil {
			t.Fatal(err)
		}
		for i := range h {
			h[i] += float32(rng.NormFloat64() * 0.1)
		}
		p.Backend().Upload(p.Tensor(), h)
	}
}

// inject injects cfg into module (see [peft.Inject]), failing the test
// on an error; the caller unloads it.
func inject(t testing.TB, module graph.Module, cfg peft.Config) *peft.Model {
	t.Helper()
	m, err := peft.Inject(module, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// save saves m with meta into a new folder, which Save creates inside a
// temporary one, and returns its path; an error fails the test.
func save(t testing.TB, m *peft.Model, meta Meta) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := Save(dir, m, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}

// load loads the adapter in dir into module, failing the test on an
// error; the caller unloads it.
func load(t testing.TB, dir string, module graph.Module) (*peft.Model, Meta) {
	t.Helper()
	m, meta, err := Load(dir, module)
	if err != nil {
		t.Fatal(err)
	}
	return m, meta
}

// sameTrainables fails the test unless loaded has the trainable tensors
// of saved, bit for bit.
func sameTrainables(t testing.TB, saved, loaded *peft.Model) {
	t.Helper()
	a, c := saved.Trainable(), loaded.Trainable()
	if len(a) != len(c) {
		t.Fatalf("%d tensors loaded, %d saved", len(c), len(a))
	}
	for k := range a {
		ha, _ := a[k].Download()
		hc, _ := c[k].Download()
		for j := range ha {
			if math.Float32bits(ha[j]) != math.Float32bits(hc[j]) {
				t.Fatalf("%s element %d: saved %v, loaded %v", a[k].Name(), j, ha[j], hc[j])
			}
		}
	}
}

// roundTripName names the subtest of roundTrips[i].
func roundTripName(i int, cfg peft.Config) string {
	name := string(cfg.Method)
	if cfg.ExactRotation {
		name += "/exact"
	}
	if cfg.RSLoRA {
		name += "/rslora"
	}
	return fmt.Sprintf("%d/%s", i, name)
}

var roundTrips = []peft.Config{
	{Method: peft.LoRA, R: 2, Alpha: 4, Dropout: 0.05},
	{Method: peft.LoRA, R: 3, Alpha: 5, RSLoRA: true},
	{Method: peft.SORA, R: 2, Alpha: 4, RotationRank: 2, RSLoRA: true},
	{Method: peft.LoRAPlus, R: 2, Alpha: 3.5},
	{Method: peft.DoRA, R: 3, Alpha: 6},
	{Method: peft.DoRAPEFT, R: 3, Alpha: 6},
	{Method: peft.PreDiag, R: 2, Alpha: 4},
	{Method: peft.SORA, R: 2, Alpha: 4, RotationRank: 3},
	{Method: peft.SORA, R: 2, Alpha: 4, RotationRank: 2, ExactRotation: true},
	{Method: peft.PreOrtho, R: 2, Alpha: 4, RotationRank: 2},
	{Method: peft.PostOrtho, R: 2, Alpha: 4, RotationRank: 2},
	{Method: peft.OFT, OFTBlockSize: 4},
	{Method: peft.OFT, R: 2, OFTNeumannTerms: 6},
}

func TestRoundTrip(t *testing.T) {
	b := openCPU(t)
	rng := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, 5*8)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for i, cfg := range roundTrips {
		t.Run(roundTripName(i, cfg), func(t *testing.T) {
			cfg.TargetModules = []string{"q_proj", "v_proj"}
			src := newToy(t, b)
			m := inject(t, src, cfg)
			defer m.Unload()
			perturb(t, m, uint64(i))
			dir := save(t, m, Meta{BaseModel: "stories260K", TaskType: "CAUSAL_LM"})
			dst := newToy(t, b)
			loaded, meta := load(t, dir, dst)
			defer loaded.Unload()
			if meta.BaseModel != "stories260K" || meta.TaskType != "CAUSAL_LM" {
				t.Errorf("meta %+v", meta)
			}
			if !reflect.DeepEqual(loaded.Config(), m.Config()) {
				t.Errorf("config\n got %+v\nwant %+v", loaded.Config(), m.Config())
			}
			sameTrainables(t, m, loaded)
			want, got := src.run(t, b, x), dst.run(t, b, x)
			for j := range want {
				if math.Float32bits(want[j]) != math.Float32bits(got[j]) {
					t.Fatalf("output %d: %v before saving, %v after loading", j, want[j], got[j])
				}
			}
		})
	}
}

// TestFileLayout checks the names, shapes and config fields that Hugging
// Face PEFT and the SORA reference read.
func TestFileLayout(t *testing.T) {
	b := openCPU(t)
	cases := []struct {
		cfg     peft.Config
		tensors map[string][]int // for layer 0's q_proj [8, 8]
		fields  map[string]any
	}{
		{peft.Config{Method: peft.LoRA, R: 2, Alpha: 16},
			map[string][]int{"lora_A.weight": {2, 8}, "lora_B.weight": {8, 2}},
			map[string]any{"peft_type": "LORA", "r": 2.0, "lora_alpha": 16.0, "use_dora": false, "bias": "none", "lora_dropout": 0.0}},
		{peft.Config{Method: peft.DoRA, R: 2, Alpha: 4},
			map[string][]int{"lora_A.weight": {2, 8}, "lora_B.weight": {8, 2}, "lora_magnitude_vector": {8}},
			map[string]any{"peft_type": "LORA", "use_dora": true, "sora_method": "dora"}},
		{peft.Config{Method: peft.SORA, R: 2, Alpha: 4, RotationRank: 3},
			map[string][]int{"lora_A.weight": {2, 8}, "lora_B.weight": {8, 2}, "lora_Diag.weight": {8, 1}, "lora_C.weight": {8, 3}, "lora_D.weight": {8, 3}},
			map[string]any{"peft_type": "LORA", "use_dora": false, "sora_method": "sora", "rotation_rank": 3.0, "exact_rotation": false}},
		{peft.Config{Method: peft.OFT, OFTBlockSize: 4},
			map[string][]int{"oft_R.weight": {2, 6}},
			map[string]any{"peft_type": "OFT", "r": 0.0, "oft_block_size": 4.0, "use_cayley_neumann": true, "num_cayley_neumann_terms": 5.0}},
	}
	for _, c := range cases {
		t.Run(string(c.cfg.Method), func(t *testing.T) {
			c.cfg.TargetModules = []string{"q_proj"}
			m := inject(t, newToy(t, b), c.cfg)
			defer m.Unload()
			dir := save(t, m, Meta{})
			f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := len(f.Tensors()); got != 2*len(c.tensors) {
				t.Errorf("%d tensors, want %d (2 layers)", got, 2*len(c.tensors))
			}
			if f.Metadata()["format"] != "pt" {
				t.Errorf("metadata %v, want format pt", f.Metadata())
			}
			for key, shape := range c.tensors {
				name := "base_model.model.model.layers.0.self_attn.q_proj." + key
				info, ok := f.Info(name)
				if !ok {
					t.Errorf("no tensor %q", name)
					continue
				}
				if !reflect.DeepEqual(info.Shape, shape) || info.DType != safetensors.F32 {
					t.Errorf("%s: %s%v, want F32%v", name, info.DType, info.Shape, shape)
				}
			}
			var conf map[string]any
			data, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
			if err := json.Unmarshal(data, &conf); err != nil {
				t.Fatal(err)
			}
			for k, v := range c.fields {
				if !reflect.DeepEqual(conf[k], v) {
					t.Errorf("config %s = %v, want %v", k, conf[k], v)
				}
			}
			if tm, _ := conf["target_modules"].([]any); len(tm) != 1 || tm[0] != "q_proj" {
				t.Errorf("target_modules %v", conf["target_modules"])
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 2 {
				t.Errorf("folder holds %d entries, want the two files (temporary files left?)", len(entries))
			}
		})
	}
	m := inject(t, newToy(t, b), peft.Config{Method: peft.Full, TargetModules: []string{"q_proj"}})
	defer m.Unload()
	if err := Save(t.TempDir(), m, Meta{}); err == nil || !strings.Contains(err.Error(), "full fine-tuning has no adapter") {
		t.Errorf("saving full fine-tuning: %v", err)
	}
}

// hfLoRAConfig is an adapter_config.json as Hugging Face PEFT 0.14 writes
// it for DoRA (fields it has that change nothing here included).
const hfLoRAConfig = `{
  "alpha_pattern": {},
  "auto_mapping": null,
  "base_model_name_or_path": "meta-llama/Llama-2-7b-hf",
  "bias": "none",
  "eva_config": null,
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 16,
  "lora_bias": false,
  "lora_dropout": 0.05,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 8,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "v_proj",
    "q_proj"
  ],
  "task_type": "CAUSAL_LM",
  "use_dora": true,
  "use_rslora": false
}`

func TestParseHFConfig(t *testing.T) {
	cfg, meta, err := ParseConfig([]byte(hfLoRAConfig), "hf.json")
	if err != nil {
		t.Fatal(err)
	}
	want := peft.Config{Method: peft.DoRA, R: 8, Alpha: 16, Dropout: 0.05, RotationRank: peft.DefaultRotationRank, TargetModules: []string{"v_proj", "q_proj"}}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config\n got %+v\nwant %+v", cfg, want)
	}
	if meta.BaseModel != "meta-llama/Llama-2-7b-hf" || meta.TaskType != "CAUSAL_LM" {
		t.Errorf("meta %+v", meta)
	}
	// Initialisations that leave the base weights as they are mean nothing
	// once A and B are trained, and are accepted (those that rewrite the
	// base are refused: TestParseConfigErrors).
	for _, init := range []string{`false`, `"gaussian"`, `"eva"`, `"orthogonal"`} {
		data := strings.Replace(hfLoRAConfig, `"init_lora_weights": true`, `"init_lora_weights": `+init, 1)
		if got, _, err := ParseConfig([]byte(data), "hf.json"); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("init_lora_weights %s: config %+v, error %v", init, got, err)
		}
	}
	// PEFT's rank-stabilized scaling, alpha/√r.
	rs := strings.Replace(hfLoRAConfig, `"use_rslora": false`, `"use_rslora": true`, 1)
	cfg, _, err = ParseConfig([]byte(rs), "hf.json")
	if err != nil {
		t.Fatal(err)
	}
	if want.RSLoRA = true; !reflect.DeepEqual(cfg, want) {
		t.Errorf("use_rslora true: config\n got %+v\nwant %+v", cfg, want)
	}
	oft := `{"peft_type": "OFT", "r": 0, "oft_block_size": 32, "module_dropout": 0.0, "coft": false, "eps": 6e-05,
	  "block_share": false, "use_cayley_neumann": true, "num_cayley_neumann_terms": 5, "init_weights": true,
	  "target_modules": "model\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj", "bias": "none", "task_type": null}`
	cfg, _, err = ParseConfig([]byte(oft), "oft.json")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Method != peft.OFT || cfg.OFTBlockSize != 32 || cfg.OFTNeumannTerms != 5 || cfg.R != 0 {
		t.Errorf("OFT config %+v", cfg)
	}
	for name, want := range map[string]bool{"model.layers.3.self_attn.v_proj": true, "model.layers.3.self_attn.k_proj": false, "x.model.layers.3.self_attn.q_proj": false} {
		if got, _ := peft.Match(cfg.TargetModules, name); got != want {
			t.Errorf("regular-expression target_modules: %s selected %v, want %v", name, got, want)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	base := map[string]any{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": []string{"q_proj"}}
	with := func(k string, v any) string {
		m := map[string]any{}
		for a, b := range base {
			m[a] = b
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		data, _ := json.Marshal(m)
		return string(data)
	}
	cases := []struct {
		json, want string
	}{
		{`{`, "not a valid adapter config"},
		{`[]`, "not a valid adapter config"},
		{`{"peft_type": "LORA"} {}`, "trailing data"},
		{with("peft_type", "IA3"), `peft_type "IA3"`},
		{with("peft_type", nil), "peft_type is missing"},
		{with("r", nil), "r is missing"},
		{with("r", "eight"), "not a valid adapter config"},
		{with("r", 0), "r 0: want a rank ≥ 1"},
		{with("lora_alpha", 0), "lora_alpha 0"},
		{`{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "sora_method": "sora", "rotation_rank": 0}`, "rotation_rank 0"},
		{`{"peft_type": "OFT", "r": 0, "oft_block_size": 0, "target_modules": ["q_proj"]}`, "neither r nor oft_block_size"},
		{with("lora_alpha", nil), "lora_alpha is missing"},
		{with("lora_dropout", 1.5), "Config.Dropout"},
		{with("target_modules", nil), "target_modules: missing"},
		{with("target_modules", []string{}), "target_modules: empty list"},
		{with("target_modules", 7), "target_modules: want a list"},
		{with("target_modules", []string{"q.*"}), "list entries are module names"},
		{with("target_modules", "(unclosed"), "bad regular expression"},
		{with("bias", "all"), `bias: "all"`},
		{with("lora_bias", true), "lora_bias"},
		{with("init_lora_weights", "pissa"), `init_lora_weights "pissa"`},
		{with("init_lora_weights", "pissa_niter_4"), `init_lora_weights "pissa_niter_4"`},
		{with("init_lora_weights", "corda"), `init_lora_weights "corda"`},
		{with("init_lora_weights", "olora"), `init_lora_weights "olora"`},
		{with("init_lora_weights", "loftq"), `init_lora_weights "loftq"`},
		{with("alora_invocation_tokens", []int{5, 9}), "alora_invocation_tokens"},
		{with("fan_in_fan_out", true), "fan_in_fan_out"},
		{with("modules_to_save", []string{"score", ""}), "modules_to_save: entry 1"},
		{with("modules_to_save", map[string]int{"score": 1}), "modules_to_save: want a list"},
		{with("rank_pattern", map[string]int{"q_proj": 2}), "rank_pattern"},
		{with("layers_to_transform", []int{0}), "layers_to_transform"},
		{with("sora_method", "magic"), "sora_method"},
		{with("sora_method", "oft"), "does not go with"},
		{with("sora_method", "sora"), "rotation_rank is missing"},
		{`{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "use_dora": false, "sora_method": "dora"}`, "contradicts"},
		{`{"peft_type": "OFT", "target_modules": ["q_proj"]}`, "neither r nor oft_block_size"},
		{`{"peft_type": "OFT", "oft_block_size": 4, "target_modules": ["q_proj"], "coft": true}`, "coft"},
		{`{"peft_type": "OFT", "oft_block_size": 4, "target_modules": ["q_proj"], "use_cayley_neumann": false}`, "use_cayley_neumann"},
		{`{"peft_type": "OFT", "r": 2, "oft_block_size": 4, "target_modules": ["q_proj"]}`, "set exactly one"},
		{`{"peft_type": "OFT", "oft_block_size": 4, "target_modules": ["q_proj"], "module_dropout": 0.1}`, "module_dropout"},
	}
	for _, c := range cases {
		_, _, err := ParseConfig([]byte(c.json), "adapter_config.json")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "adapter_config.json") {
			t.Errorf("%s:\n  error %v\n  want one naming the file and containing %q", c.json, err, c.want)
		}
	}
}

// saveSORA writes a SORA adapter of the toy to a new folder.
func saveSORA(t *testing.T, b backend.Backend) string {
	t.Helper()
	m := inject(t, newToy(t, b), peft.Config{Method: peft.SORA, R: 2, Alpha: 4, RotationRank: 2, TargetModules: []string{"q_proj"}})
	defer m.Unload()
	perturb(t, m, 9)
	dir := save(t, m, Meta{})
	return dir
}

// rewrite replaces the weights file with the given tensors.
func rewrite(t *testing.T, dir string, edit func(ts []safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	path := filepath.Join(dir, WeightsFile)
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, info := range f.Tensors() {
		d, err := f.Float32(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: info.Name, Shape: info.Shape, Data: d})
	}
	f.Close()
	if err := safetensors.Write(path, edit(ts), nil); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	b := openCPU(t)
	const cKey = "base_model.model.model.layers.1.self_attn.q_proj.lora_C.weight"
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{
		{"no config", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ConfigFile)) }, "adapter_config.json: no such file"},
		{"no weights", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, WeightsFile)) }, "adapter_model.safetensors: no such file"},
		{"truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, WeightsFile)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-10)
		}, "file truncated"},
		{"header claims more than the file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, WeightsFile)
			data, _ := os.ReadFile(p)
			binary.LittleEndian.PutUint64(data, 1<<40)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "exceeds the"},
		{"wrong shape", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == cKey {
						ts[i].Shape = []int{4, 4}
					}
				}
				return ts
			})
		}, `tensor "` + cKey + `" has shape [4 4], expected [8 2]`},
		{"missing tensor", func(t *testing.T, dir string) {
			rewrite(t, dir, dropTensor(cKey))
		}, `missing tensor "` + cKey + `", expected shape [8 2]`},
		{"extra tensor", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				return append(ts, safetensors.Tensor{Name: "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", Shape: []int{2, 8}, Data: make([]float32, 16)})
			})
		}, `"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight" belong to no adapted layer`},
		{"NaN", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == cKey {
						ts[i].Data[3] = float32(math.NaN())
					}
				}
				return ts
			})
		}, `tensor "` + cKey + `" element 3 is NaN`},
		{"targets absent from the model", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ConfigFile)
			data, _ := os.ReadFile(p)
			if err := os.WriteFile(p, []byte(strings.Replace(string(data), `"q_proj"`, `"wq"`, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "select none of the model's 7 layers"},
		{"rank differs from the file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ConfigFile)
			data, _ := os.ReadFile(p)
			if err := os.WriteFile(p, []byte(strings.Replace(string(data), `"r": 2`, `"r": 3`, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "lora_A.weight\" has shape [2 8], expected [3 8]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := saveSORA(t, b)
			c.break_(t, dir)
			m := newToy(t, b)
			_, _, err := Load(dir, m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v\nwant one containing %q", err, c.want)
			}
			for i, s := range m.slots {
				if _, ok := s.(*graph.Dense); !ok {
					t.Errorf("slot %d holds %T after a failed Load", i, s)
				}
			}
			for _, p := range m.Params() {
				if !p.Trainable() {
					t.Errorf("%s frozen after a failed Load", p.Name())
				}
			}
		})
	}
}

// TestLoadHalfPrecisionAndOldDoRAKey loads an adapter the way older PEFT
// versions save DoRA (…lora_magnitude_vector.weight) with BF16 tensors.
func TestLoadHalfPrecisionAndOldDoRAKey(t *testing.T) {
	b := openCPU(t)
	m := inject(t, newToy(t, b), peft.Config{Method: peft.DoRA, R: 2, Alpha: 4, TargetModules: []string{"up_proj"}})
	perturb(t, m, 4)
	dir := save(t, m, Meta{})
	// Re-encode every tensor as BF16 (rounding toward zero) under the old
	// magnitude key, by hand.
	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	header := map[string]any{}
	var data []byte
	want := map[string][]float32{}
	for _, info := range f.Tensors() {
		v, _ := f.Float32(info.Name)
		name := strings.Replace(info.Name, ".lora_magnitude_vector", ".lora_magnitude_vector.weight", 1)
		begin := len(data)
		rounded := make([]float32, len(v))
		for i, x := range v {
			bits := math.Float32bits(x) >> 16
			data = binary.LittleEndian.AppendUint16(data, uint16(bits))
			rounded[i] = math.Float32frombits(bits << 16)
		}
		want[info.Name] = rounded
		header[name] = map[string]any{"dtype": "BF16", "shape": info.Shape, "data_offsets": []int{begin, len(data)}}
	}
	f.Close()
	hj, _ := json.Marshal(header)
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(hj)))
	file = append(append(file, hj...), data...)
	if err := os.WriteFile(filepath.Join(dir, WeightsFile), file, 0o644); err != nil {
		t.Fatal(err)
	}
	m.Unload()

	loaded, _ := load(t, dir, newToy(t, b))
	defer loaded.Unload()
	for _, l := range loaded.Layers() {
		for _, nt := range l.Tensors() {
			got, _ := nt.Value.Download()
			if !reflect.DeepEqual(got, want[Key(l.Name(), nt.Key)]) {
				t.Errorf("%s: loaded %v, want %v", Key(l.Name(), nt.Key), got, want[Key(l.Name(), nt.Key)])
			}
		}
	}
}

// TestModulesToSave saves an adapter with layers trained whole beside it
// (modules_to_save, as a classifier's head is), checks the file layout
// Hugging Face PEFT uses (base_model.model.<layer>.weight/.bias and the
// config list) and that Load restores them bit for bit.
func TestModulesToSave(t *testing.T) {
	b := openCPU(t)
	src := newToy(t, b)
	pm := inject(t, src, peft.Config{Method: peft.LoRA, R: 2, Alpha: 4, TargetModules: []string{"q_proj"}})
	defer pm.Unload()
	perturb(t, pm, 4)
	// Train the saved layers too: new values, unlike a fresh toy's.
	rng := rand.New(rand.NewPCG(8, 8))
	want := map[string][]float32{}
	wantShape := map[string][]int{}
	for i, name := range src.names {
		if !strings.HasSuffix(name, "v_proj") && name != "lm_head" {
			continue
		}
		d := src.denses[i]
		for suffix, v := range map[string]*graph.Value{"weight": d.W, "bias": d.B} {
			if v == nil {
				continue
			}
			h := make([]float32, v.Len())
			for j := range h {
				h[j] = float32(rng.NormFloat64())
			}
			b.Upload(v.Tensor(), h)
			want[Key(name, suffix)] = h
			wantShape[Key(name, suffix)] = v.Shape()
		}
	}
	if len(want) != 5 { // two v_proj with biases, lm_head
		t.Fatalf("%d saved tensors expected, want 5", len(want))
	}
	dir := t.TempDir()
	meta := Meta{BaseModel: "toy", TaskType: "SEQ_CLS", ModulesToSave: []string{"v_proj", "lm_head", "classifier"}}
	if err := Save(dir, pm, meta); err == nil || !strings.Contains(err.Error(), `"classifier"`) {
		t.Errorf("saving a module the model lacks: %v", err)
	}
	meta.ModulesToSave = meta.ModulesToSave[:2]
	if err := Save(dir, pm, Meta{ModulesToSave: []string{"model.layers.0.self_attn.q_proj"}}); err == nil || !strings.Contains(err.Error(), "does not target") {
		t.Errorf("saving an adapted layer whole: %v", err)
	}
	if err := Save(dir, pm, meta); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	for key, shape := range wantShape {
		info, ok := f.Info(key)
		if !ok || !reflect.DeepEqual(info.Shape, shape) {
			t.Errorf("%s: in file %v with shape %v, want shape %v", key, ok, info.Shape, shape)
		}
	}
	if got := len(f.Tensors()); got != 2*2+5 {
		t.Errorf("%d tensors in the file, want 4 LoRA tensors and 5 saved ones", got)
	}
	f.Close()
	var conf map[string]any
	raw, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err := json.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(conf["modules_to_save"]); got != "[v_proj lm_head]" {
		t.Errorf("modules_to_save in the config: %s", got)
	}

	dst := newToy(t, b)
	loaded, lmeta := load(t, dir, dst)
	defer loaded.Unload()
	if !reflect.DeepEqual(lmeta, meta) {
		t.Errorf("metadata %+v, want %+v", lmeta, meta)
	}
	for i, name := range dst.names {
		d := dst.denses[i]
		for suffix, v := range map[string]*graph.Value{"weight": d.W, "bias": d.B} {
			w, ok := want[Key(name, suffix)]
			if v == nil || !ok {
				continue
			}
			got, _ := v.Download()
			if !reflect.DeepEqual(got, w) {
				t.Errorf("%s.%s not restored", name, suffix)
			}
		}
	}
	x := make([]float32, 3*8)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	if a, c := src.run(t, b, x), dst.run(t, b, x); !reflect.DeepEqual(a, c) {
		t.Errorf("the loaded model computes another function")
	}
}

// TestModulesToSaveErrors: a saved layer that is missing from the file,
// of another size than the model's, or absent from the model while the
// file holds it is an error that leaves the model as it was; an entry
// naming no layer with no tensors (PEFT's "classifier" for a model whose
// head is "score") is skipped.
func TestModulesToSaveErrors(t *testing.T) {
	b := openCPU(t)
	src := newToy(t, b)
	pm := inject(t, src, peft.Config{Method: peft.LoRA, R: 2, Alpha: 4, TargetModules: []string{"q_proj"}})
	dir := save(t, pm, Meta{ModulesToSave: []string{"lm_head"}})
	pm.Unload()
	setModules := func(t *testing.T, dir string, v any) {
		t.Helper()
		var conf map[string]any
		raw, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
		json.Unmarshal(raw, &conf)
		conf["modules_to_save"] = v
		raw, _ = json.Marshal(conf)
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyDir := func(t *testing.T) string {
		t.Helper()
		d := t.TempDir()
		for _, f := range []string{ConfigFile, WeightsFile} {
			raw, _ := os.ReadFile(filepath.Join(dir, f))
			if err := os.WriteFile(filepath.Join(d, f), raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	const headKey = "base_model.model.lm_head.weight"
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		model  func(m *toy)
		want   string
	}{
		{"missing", func(t *testing.T, dir string) {
			rewrite(t, dir, dropTensor(headKey))
		}, nil, `missing tensor "` + headKey + `", expected shape [6 8] for layer "lm_head" of modules_to_save`},
		{"other size", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == headKey {
						ts[i].Shape, ts[i].Data = []int{5, 8}, ts[i].Data[:40]
					}
				}
				return ts
			})
		}, nil, `tensor "` + headKey + `" has shape [5 8], expected [6 8]`},
		{"not listed", func(t *testing.T, dir string) { setModules(t, dir, nil) }, nil, headKey},
		{"not in the model", func(t *testing.T, dir string) { setModules(t, dir, []string{"score"}) }, nil, headKey},
		{"bad entry", func(t *testing.T, dir string) { setModules(t, dir, []string{"lm.*"}) }, nil, `modules_to_save: entry 0 "lm.*"`},
		{"not a list", func(t *testing.T, dir string) { setModules(t, dir, "lm_head") }, nil, "modules_to_save: want a list"},
		{"targeted", func(t *testing.T, dir string) { setModules(t, dir, []string{"lm_head", "q_proj"}) }, nil, "only a dense layer"},
		{"non-finite", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == headKey {
						ts[i].Data[3] = float32(math.Inf(1))
					}
				}
				return ts
			})
		}, nil, "element 3 is +Inf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := copyDir(t)
			c.break_(t, d)
			m := newToy(t, b)
			head := m.denses[len(m.denses)-1].W
			before, _ := head.Download()
			_, _, err := Load(d, m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if after, _ := head.Download(); !reflect.DeepEqual(after, before) {
				t.Errorf("a failed Load changed lm_head")
			}
			for _, s := range m.slots {
				if _, ok := s.(*graph.Dense); !ok {
					t.Errorf("a failed Load left %T in a slot", s)
				}
			}
		})
	}
	// PEFT's sequence classifiers list both head names; the one the model
	// lacks is skipped.
	d := copyDir(t)
	setModules(t, d, []string{"classifier", "lm_head"})
	m := newToy(t, b)
	loaded, meta, err := Load(d, m)
	if err != nil {
		t.Fatalf("modules_to_save [classifier lm_head]: %v", err)
	}
	loaded.Unload()
	if !reflect.DeepEqual(meta.ModulesToSave, []string{"classifier", "lm_head"}) {
		t.Errorf("modules_to_save read as %v", meta.ModulesToSave)
	}
	if shape, ok, err := ModuleShape(d, "lm_head"); err != nil || !ok || !reflect.DeepEqual(shape, []int{6, 8}) {
		t.Errorf("ModuleShape(lm_head) = %v, %v, %v; want [6 8]", shape, ok, err)
	}
	if _, ok, err := ModuleShape(d, "score"); err != nil || ok {
		t.Errorf("ModuleShape(score) = %v, %v; want not found", ok, err)
	}
	if _, _, err := ModuleShape(t.TempDir(), "lm_head"); err == nil {
		t.Error("ModuleShape of an empty folder: no error")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(hfLoRAConfig))
	f.Add([]byte(`{"peft_type": "OFT", "oft_block_size": 4, "target_modules": "all-linear"}`))
	f.Add([]byte(`{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "task_type": "SEQ_CLS", "modules_to_save": ["classifier", "score"]}`))
	f.Add([]byte(`{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "sora_method": "sora", "rotation_rank": 2, "exact_rotation": true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, meta, err := ParseConfig(data, "fuzz.json")
		if err != nil {
			return
		}
		// What parses must encode and parse back to the same configuration.
		enc, err := encodeConfig(cfg, meta)
		if err != nil {
			if cfg.Method == peft.Full {
				return
			}
			t.Fatalf("parsed %+v but cannot encode it: %v", cfg, err)
		}
		cfg2, meta2, err := ParseConfig(enc, "re-encoded")
		if err != nil {
			t.Fatalf("re-encoded config does not parse: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(cfg, cfg2) || !reflect.DeepEqual(meta, meta2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", cfg, cfg2)
		}
	})
}

func FuzzLoad(f *testing.F) {
	b := testbackend.Open(f, "cpu")
	seedDir := f.TempDir()
	{
		m := inject(f, newToy(f, b), peft.Config{Method: peft.SORA, R: 2, Alpha: 4, RotationRank: 2, TargetModules: []string{"model.layers.0.self_attn.q_proj"}})
		if err := Save(seedDir, m, Meta{ModulesToSave: []string{"lm_head"}}); err != nil {
			f.Fatal(err)
		}
		m.Unload()
	}
	conf, _ := os.ReadFile(filepath.Join(seedDir, ConfigFile))
	weights, _ := os.ReadFile(filepath.Join(seedDir, WeightsFile))
	f.Add(weights)
	f.Add(weights[:len(weights)/2])
	f.Add(weights[:9])
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), conf, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, WeightsFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		m := newToy(t, b)
		head := m.denses[len(m.denses)-1].W
		before, _ := head.Download()
		loaded, _, err := Load(dir, m)
		if err != nil {
			for _, s := range m.slots {
				if _, ok := s.(*graph.Dense); !ok {
					t.Fatalf("failed Load left %T in a slot", s)
				}
			}
			if after, _ := head.Download(); !reflect.DeepEqual(after, before) {
				t.Fatalf("failed Load changed the saved module lm_head")
			}
			return
		}
		loaded.Unload()
	})
}

// dropTensor returns a rewrite that removes the tensor called name.
func dropTensor(name string) func([]safetensors.Tensor) []safetensors.Tensor {
	return func(ts []safetensors.Tensor) []safetensors.Tensor {
		return slices.DeleteFunc(ts, func(x safetensors.Tensor) bool { return x.Name == name })
	}
}
