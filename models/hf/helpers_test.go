package hf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/safetensors"
)

// parsed is a config.json that ParseConfig must read as want.
type parsed struct {
	json string
	want llama.Config
}

// checkParsed parses each case's JSON (as c.json) and checks the config.
func checkParsed(t *testing.T, cases []parsed) {
	t.Helper()
	for _, c := range cases {
		got, err := ParseConfig([]byte(c.json), "c.json")
		if err != nil {
			t.Errorf("%s: %v", c.json, err)
		} else if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.json, got, c.want)
		}
	}
}

// refused is a config.json that ParseConfig must refuse with an error
// containing want.
type refused struct{ json, want string }

// checkRefused parses each case's JSON as c.json and checks that the
// error names the file and says what the case wants.
func checkRefused(t *testing.T, cases []refused) {
	t.Helper()
	for _, c := range cases {
		_, err := ParseConfig([]byte(c.json), "c.json")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "c.json") {
			t.Errorf("%.120s…: error %v, want one naming c.json and containing %q", c.json, err, c.want)
		}
	}
}

// checkFields checks the config.json raw (label names it in messages):
// each of fields is present with the value given (compared as JSON), and
// none of absent is. It returns the decoded object.
func checkFields(t *testing.T, raw []byte, fields map[string]any, absent []string, label string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range fields {
		got, ok := m[k]
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if !ok || string(gj) != string(wj) {
			t.Errorf("%s: config.json %s = %s (present %v), want %s", label, k, gj, ok, wj)
		}
	}
	for _, k := range absent {
		if _, ok := m[k]; ok {
			t.Errorf("%s: config.json sets %s, which it should not", label, k)
		}
	}
	return m
}

// checkEncoded checks the config.json EncodeConfig gives cfg
// (checkFields) and that it parses back to cfg, in the half-split layout
// Hugging Face stores.
func checkEncoded(t *testing.T, cfg llama.Config, fields map[string]any, absent []string) {
	t.Helper()
	raw, err := EncodeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, raw, fields, absent, fmt.Sprintf("%+v", cfg))
	back, err := ParseConfig(raw, "again.json")
	if err != nil {
		t.Fatal(err)
	}
	want := cfg
	want.RopeLayout = llama.RopeHalfSplit
	if back != want {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, want)
	}
}

// fileCase is a way of writing a model: tied or not, with attention
// biases of a kind, whole or in shards of at most shard bytes, from
// either rotary layout.
type fileCase struct {
	name   string
	tied   bool
	bias   llama.AttentionBias
	shard  int64
	layout llama.RopeLayout
}

// fileCases are the ways TestWriteLoadQwen3 and TestWriteLoadGemma3
// write their models: tied and whole, untied and sharded from the
// interleaved layout, and with attention_bias.
var fileCases = []fileCase{
	{"tied", true, llama.NoBias, 0, llama.RopeHalfSplit},
	{"untied sharded interleaved", false, llama.NoBias, 3000, llama.RopeInterleaved},
	{"attention_bias interleaved", true, llama.BiasQKVO, 0, llama.RopeInterleaved},
}

// config returns the config of base (tied as fc says) with fc's biases
// and layout.
func (fc fileCase) config(base func(tied bool) llama.Config) llama.Config {
	c := base(fc.tied)
	c.AttentionBias, c.RopeLayout = fc.bias, fc.layout
	return c
}

// roundTrip writes src as a folder (in shards of at most shard bytes
// where shard > 0), loads it back bit for bit (writeLoad), checks that its
// config.json names modelType and arch, and that the model built from the
// folder on b computes src's logits over tokens. It returns the folder's
// single weights file, open until the test ends, or nil where it is
// sharded, and the loaded weights.
func roundTrip(t *testing.T, b backend.Backend, src *llama.Weights, shard int64, tokens []int32, modelType, arch string) (*safetensors.File, *llama.Weights) {
	t.Helper()
	dir, got := writeLoad(t, src, &WriteOptions{MaxShardSize: shard})
	sameLogits(t, forwardLogits(t, b, got, tokens), forwardLogits(t, b, src, tokens))
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"model_type": "`+modelType+`"`) || !strings.Contains(string(data), `"`+arch+`"`) {
		t.Errorf("config.json does not name %s / %s:\n%s", modelType, arch, data)
	}
	if shard > 0 {
		return nil, got
	}
	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, got
}

// checkHalfSplitRows checks that the file's tensor name holds src's rows
// (heads of width hd one after another) in the half-split order: row
// 2i+j of a head of an interleaved source is row j·hd/2+i in the file; a
// half-split source's rows stay where they are.
func checkHalfSplitRows(t *testing.T, f *safetensors.File, name string, src []float32, hd int, interleaved bool) {
	t.Helper()
	data, err := f.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	for g := range len(src) / hd {
		for i := range hd / 2 {
			for j := range 2 {
				srcRow, dstRow := g*hd+2*i+j, g*hd+j*hd/2+i
				if !interleaved {
					srcRow = dstRow
				}
				if data[dstRow] != src[srcRow] {
					t.Fatalf("%s row %d is not source row %d", name, dstRow, srcRow)
				}
			}
		}
	}
}

// edited returns a copy of tensors with f applied to each, keeping those
// for which f returns true.
func edited(tensors []safetensors.Tensor, f func(*safetensors.Tensor) bool) []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, x := range tensors {
		if f(&x) {
			out = append(out, x)
		}
	}
	return out
}

// without returns tensors less the one called name.
func without(tensors []safetensors.Tensor, name string) []safetensors.Tensor {
	return edited(tensors, func(x *safetensors.Tensor) bool { return x.Name != name })
}

// reshaped returns tensors with the one called name given shape, its
// data cut to fit where the shape holds fewer values.
func reshaped(tensors []safetensors.Tensor, name string, shape ...int) []safetensors.Tensor {
	return edited(tensors, func(x *safetensors.Tensor) bool {
		if x.Name == name {
			n := 1
			for _, d := range shape {
				n *= d
			}
			x.Shape = shape
			if n < len(x.Data) {
				x.Data = x.Data[:n]
			}
		}
		return true
	})
}

// badFolder is a folder of cfg's config.json over tensors that Load must
// refuse with an error containing want.
type badFolder struct {
	name    string
	cfg     llama.Config
	tensors []safetensors.Tensor
	want    string
}

// checkBadFolders writes each case's folder (writeRaw, past Write's
// checks) and checks Load's error.
func checkBadFolders(t *testing.T, cases []badFolder) {
	t.Helper()
	for _, c := range cases {
		_, err := Load(writeRaw(t, c.cfg, c.tensors))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// loadPublished writes tensors (of a model of cfg) with a published
// config.json in place of EncodeConfig's, its sizes made the model's by
// the replacements oldnew (old, new pairs, as strings.NewReplacer takes
// them), and loads the folder.
func loadPublished(t *testing.T, cfg llama.Config, tensors []safetensors.Tensor, published string, oldnew ...string) *llama.Weights {
	t.Helper()
	dir := writeRaw(t, cfg, tensors)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(strings.NewReplacer(oldnew...).Replace(published)), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return w
}
