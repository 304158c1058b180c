// Package adapter saves and loads PEFT adapters in Hugging Face PEFT's
// folder layout, so that adapters move between this project and PEFT:
//
//	adapter_config.json         peft_type, r, lora_alpha, target_modules, use_dora, …
//	adapter_model.safetensors   base_model.model.<module path>.<tensor>
//
// The tensors are PEFT's lora_A.weight [r, in], lora_B.weight [out, r],
// DoRA's lora_magnitude_vector [out] and OFT's oft_R.weight
// [blocks, bs(bs−1)/2], and the SORA reference's lora_Diag.weight [out, 1],
// lora_C.weight and lora_D.weight [out, r_p]. The config carries, besides
// PEFT's fields, sora_method, rotation_rank, exact_rotation and
// loraplus_lr_ratio for the methods PEFT lacks; PEFT itself ignores them
// and reads a LoRA/DoRA adapter as such.
//
// Loading validates everything against the model before it is used: every
// expected tensor present with its exact shape, no tensor left over, all
// values finite; errors name the file, the tensor and the expected shape.
// A safetensors header that claims more data than the file holds is
// rejected before anything is allocated (package safetensors).
package adapter

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/internal/atomicfile"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/safetensors"
)

// KeyPrefix starts every tensor name, as PEFT's PeftModel wraps the base
// model: base_model (the tuner) . model (the base model) . <module path>.
const KeyPrefix = "base_model.model."

// Key returns the file name of a layer's tensor.
func Key(layer, tensor string) string { return KeyPrefix + layer + "." + tensor }

// Save writes m's adapter into the folder dir (created if needed) as
// adapter_model.safetensors and adapter_config.json. Each file is written
// to a temporary file in dir and renamed into place, weights first, so a
// reader never sees a partial file; other files in dir are left alone.
// Full fine-tuning has no adapter form and is refused.
func Save(dir string, m *peft.Model, meta Meta) error {
	cfg := m.Config()
	conf, err := encodeConfig(cfg, meta)
	if err != nil {
		return fmt.Errorf("adapter: saving to %s: %w", dir, err)
	}
	var tensors []safetensors.Tensor
	for _, l := range m.Layers() {
		for _, nt := range l.Tensors() {
			data, err := nt.Value.Download()
			if err != nil {
				return fmt.Errorf("adapter: saving %s: %w", Key(l.Name(), nt.Key), err)
			}
			tensors = append(tensors, safetensors.Tensor{Name: Key(l.Name(), nt.Key), Shape: nt.Shape, Data: data})
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	if err := safetensors.Write(filepath.Join(dir, WeightsFile), tensors, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, ConfigFile), append(conf, '\n')); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	return nil
}

// ReadConfig reads dir/adapter_config.json (see [ParseConfig]).
func ReadConfig(dir string) (peft.Config, Meta, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return peft.Config{}, Meta{}, fmt.Errorf("adapter: %w", err)
	}
	return ParseConfig(data, path)
}

// Load reads the adapter in dir, injects it into module (see [peft.Inject])
// and sets its tensors from the file. The module's selected layers must
// have the shapes the adapter was trained on. On any error the module is
// left as it was.
func Load(dir string, module graph.Module) (*peft.Model, Meta, error) {
	cfg, meta, err := ReadConfig(dir)
	if err != nil {
		return nil, Meta{}, err
	}
	path := filepath.Join(dir, WeightsFile)
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, Meta{}, fmt.Errorf("adapter: %w", err)
	}
	defer f.Close()
	m, err := peft.Inject(module, cfg)
	if err != nil {
		return nil, Meta{}, fmt.Errorf("adapter: %s: %w", filepath.Join(dir, ConfigFile), err)
	}
	if err := setTensors(f, path, m); err != nil {
		m.Unload()
		return nil, Meta{}, err
	}
	return m, meta, nil
}

// alternatives lists other names a tensor has in files of other PEFT
// versions and other shapes it may be stored with.
var alternatives = map[string]string{
	"lora_magnitude_vector": "lora_magnitude_vector.weight", // PEFT before 0.12
}

func setTensors(f *safetensors.File, path string, m *peft.Model) error {
	used := map[string]bool{}
	for _, l := range m.Layers() {
		in, out := l.Dims()
		for _, nt := range l.Tensors() {
			key := Key(l.Name(), nt.Key)
			info, ok := f.Info(key)
			if !ok {
				if alt, has := alternatives[nt.Key]; has {
					info, ok = f.Info(Key(l.Name(), alt))
				}
			}
			if !ok {
				return fmt.Errorf("adapter: %s: missing tensor %q, expected shape %v for layer %q (in %d, out %d, method %s)", path, key, nt.Shape, l.Name(), in, out, l.Method())
			}
			if !shapeOK(info.Shape, nt.Shape) {
				return fmt.Errorf("adapter: %s: tensor %q has shape %v, expected %v for layer %q (in %d, out %d, %s)", path, info.Name, info.Shape, nt.Shape, l.Name(), in, out, describe(l.Config()))
			}
			used[info.Name] = true
			data := make([]float32, nt.Value.Len())
			if err := f.ReadFloat32(info.Name, data); err != nil {
				return fmt.Errorf("adapter: %w", err)
			}
			for i, v := range data {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return fmt.Errorf("adapter: %s: tensor %q element %d is %v", path, info.Name, i, v)
				}
			}
			b := nt.Value.Backend()
			b.Upload(nt.Value.Tensor(), data)
			if err := b.Sync(); err != nil {
				return fmt.Errorf("adapter: uploading %q: %w", info.Name, err)
			}
		}
	}
	var extra []string
	for _, info := range f.Tensors() {
		if !used[info.Name] {
			extra = append(extra, info.Name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		more := ""
		if len(extra) > 3 {
			more = fmt.Sprintf(" and %d more", len(extra)-3)
			extra = extra[:3]
		}
		return fmt.Errorf("adapter: %s: tensors %s%s belong to no adapted layer of the model (different module names or target_modules?)", path, strings.Join(quote(extra), ", "), more)
	}
	return nil
}

// shapeOK accepts the expected shape, and a vector stored as [n, 1] or
// [n] for the other (lora_Diag is [out, 1] in the reference's files).
func shapeOK(got, want []int) bool {
	if backend.Shape(got).Equal(want) {
		return true
	}
	vec := func(s []int) (int, bool) {
		switch {
		case len(s) == 1:
			return s[0], true
		case len(s) == 2 && s[1] == 1:
			return s[0], true
		}
		return 0, false
	}
	g, ok1 := vec(got)
	w, ok2 := vec(want)
	return ok1 && ok2 && g == w
}

func describe(c peft.Config) string {
	switch c.Method {
	case peft.OFT:
		return fmt.Sprintf("oft r %d, block size %d", c.R, c.OFTBlockSize)
	}
	s := fmt.Sprintf("%s r %d", c.Method, c.R)
	if spec := c.Method.Spec(); spec.Pre == peft.Rotation || spec.Post == peft.Rotation {
		s += fmt.Sprintf(", rotation rank %d", c.RotationRank)
	}
	return s
}

func quote(s []string) []string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return q
}
