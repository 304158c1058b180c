package hf

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/safetensors"
)

// Source is a Hugging Face checkpoint folder opened for reading one
// tensor, or a run of a tensor's rows, at a time: its configuration,
// checked, and its weight files, whose every tensor the model needs has
// been found with the right shape and a float dtype, read from the files
// by offset only when asked for. It is a llama.Source, so
// llama.NewFromSource builds a model from it while holding a slab of one
// tensor's rows in float32 on the host (at most llama.LoadSlabBytes),
// where [Load] holds every tensor. Close it when done. A Source is used
// from one goroutine at a time.
type Source struct {
	cfg   llama.Config
	files []*safetensors.File
	// where is the file of each tensor the model uses, by name.
	where map[string]*safetensors.File
	// owned says that Close closes files (Open opened them).
	owned, closed bool
}

// Open opens the checkpoint in folder dir as [Load] reads it (config.json,
// and either model.safetensors or the shards that
// model.safetensors.index.json lists, the index winning), with the same
// checks and the same errors, but reads no tensor data: that is left to
// [Source.ReadRows] and [Source.ReadTensor]. The tensors are in the
// half-split rotary layout, which the config records.
func Open(dir string) (*Source, error) {
	cfgData, err := readJSONFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(cfgData, filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	var files []*safetensors.File
	ok := false
	defer func() {
		if !ok {
			for _, f := range files {
				f.Close()
			}
		}
	}()
	var weightMap map[string]string
	idxPath := filepath.Join(dir, IndexFile)
	idxData, err := readJSONFile(idxPath)
	switch {
	case err == nil:
		if weightMap, err = ParseIndex(idxData, idxPath); err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		var shards []string
		for _, s := range weightMap {
			if !seen[s] {
				seen[s] = true
				shards = append(shards, s)
			}
		}
		sort.Strings(shards)
		for _, s := range shards {
			f, err := safetensors.Open(filepath.Join(dir, s))
			if err != nil {
				return nil, fmt.Errorf("hf: shard listed in %s: %w", idxPath, err)
			}
			files = append(files, f)
		}
	case errors.Is(err, fs.ErrNotExist):
		f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
		if err != nil {
			return nil, fmt.Errorf("hf: %s has neither %s nor a readable %s: %w", dir, IndexFile, WeightsFile, err)
		}
		files = append(files, f)
	default:
		return nil, err
	}
	s, err := newSource(cfg, files, weightMap)
	if err != nil {
		return nil, err
	}
	s.owned, ok = true, true
	return s, nil
}

// newSource checks that files (listed by weightMap, where not nil, as
// [Assemble] says) hold every tensor a model of cfg needs, with its shape
// and a float dtype, and nothing it does not use but what Assemble
// tolerates, and returns a Source reading them. It reads no tensor data
// and does not take the files over.
func newSource(cfg llama.Config, files []*safetensors.File, weightMap map[string]string) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hf: %w", err)
	}
	where := map[string]*safetensors.File{}
	for _, f := range files {
		for _, info := range f.Tensors() {
			if other, dup := where[info.Name]; dup {
				return nil, fmt.Errorf("hf: tensor %q is in both %s and %s", info.Name, other.Name(), f.Name())
			}
			if weightMap != nil {
				listed, ok := weightMap[info.Name]
				if !ok {
					return nil, fmt.Errorf("hf: %s holds tensor %q, which the index does not list", f.Name(), info.Name)
				}
				if listed != filepath.Base(f.Name()) {
					return nil, fmt.Errorf("hf: tensor %q is in %s but the index says %s", info.Name, f.Name(), listed)
				}
			}
			where[info.Name] = f
		}
	}
	for name, file := range weightMap {
		if _, ok := where[name]; !ok {
			return nil, fmt.Errorf("hf: the index lists tensor %q in %s, which does not hold it", name, file)
		}
	}

	// Check presence, shape and dtype of everything the model needs, in
	// Params order, without allocating the model.
	used := map[string]*safetensors.File{}
	check := func(name string, shape []int) error {
		f, ok := where[name]
		if !ok {
			hint := ""
			if name == llama.OutputName {
				hint = " (config.json says tie_word_embeddings is false)"
			}
			return fmt.Errorf("hf: %s: no tensor %q%s", filesName(files), name, hint)
		}
		info, _ := f.Info(name)
		if !slices.Equal(info.Shape, shape) {
			return fmt.Errorf("hf: %s: tensor %q has shape %v; the config implies %v", f.Name(), name, info.Shape, shape)
		}
		switch info.DType {
		case safetensors.F32, safetensors.F16, safetensors.BF16:
		default:
			return fmt.Errorf("hf: %s: tensor %q has dtype %s; expected F32, F16 or BF16", f.Name(), name, info.DType)
		}
		used[name] = f
		return nil
	}
	if err := check(llama.EmbedName, []int{cfg.VocabSize, cfg.Dim}); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.NumLayers; i++ {
		for _, m := range cfg.Modules() {
			if err := check(llama.LayerParamName(i, m), llama.ModuleShape(cfg, m)); err != nil {
				return nil, err
			}
		}
		for _, m := range llama.BiasModules(cfg) {
			if err := check(llama.LayerBiasName(i, m), llama.ModuleShape(cfg, m)[:1]); err != nil {
				return nil, err
			}
		}
	}
	if err := check(llama.NormName, []int{cfg.Dim}); err != nil {
		return nil, err
	}
	if !cfg.TiedEmbeddings {
		if err := check(llama.OutputName, []int{cfg.VocabSize, cfg.Dim}); err != nil {
			return nil, err
		}
	}
	var unknown []string
	for name := range where {
		ignorable := strings.HasSuffix(name, ".rotary_emb.inv_freq") || (cfg.TiedEmbeddings && name == llama.OutputName)
		if used[name] == nil && !ignorable {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		hint := ""
		for _, name := range unknown {
			if strings.HasSuffix(name, "_proj.bias") && strings.Contains(name, ".self_attn.") {
				hint = fmt.Sprintf(" (attention biases, where the config's attention bias is %s: a Qwen2 checkpoint needs model_type \"qwen2\" in config.json, a LLaMA or Qwen3 one with them attention_bias true)", cfg.AttentionBias)
				break
			}
			if strings.HasSuffix(name, "."+llama.ModPreFFNNorm+".weight") || strings.HasSuffix(name, "."+llama.ModPostFFNNorm+".weight") {
				hint = " (Gemma's feed-forward norms: a Gemma 2 checkpoint needs model_type \"gemma2\" in config.json, a Gemma 3 one \"gemma3_text\")"
				break
			}
			if strings.HasSuffix(name, "."+llama.ModQNorm+".weight") || strings.HasSuffix(name, "."+llama.ModKNorm+".weight") {
				hint = " (QK-norm weights: a Qwen3 checkpoint needs model_type \"qwen3\" in config.json)"
				break
			}
		}
		if len(unknown) > 5 {
			unknown = append(unknown[:5], "…")
		}
		return nil, fmt.Errorf("hf: checkpoint has tensors a model of this config does not use: %s%s", strings.Join(unknown, ", "), hint)
	}
	return &Source{cfg: cfg, files: files, where: used}, nil
}

// Config returns the model's configuration, in the half-split rotary
// layout of the files.
func (s *Source) Config() llama.Config { return s.cfg }

// ReadTensor reads the tensor called name, one of those the model uses
// (llama.Weights.Params names them; not an lm_head.weight beside tied
// embeddings), from its file into dst, converting F16 and BF16 values to
// float32 exactly. dst must have exactly the tensor's element count. The
// tensor's bytes are read at its offset into dst itself and widened there:
// nothing else of the file is read or held. Errors name the file and the
// tensor.
func (s *Source) ReadTensor(name string, dst []float32) error {
	f, err := s.file(name)
	if err != nil {
		return err
	}
	if err := f.ReadFloat32(name, dst); err != nil {
		return fmt.Errorf("hf: %w", err)
	}
	return nil
}

// ReadRows reads rows [row0, row0+len(dst)/cols) of the tensor called
// name, one of those the model uses, from its file into dst, converted
// as [Source.ReadTensor] converts them: a row is the tensor's elements
// for one index of its first axis, cols of them (1 for a vector), and dst
// must hold a whole number of rows, all within the tensor. Only those
// rows' bytes are read, into dst itself, so [llama.NewFromSource] loads
// a tensor of any size through one buffer of a bounded number of rows.
// Errors name the file, the tensor and the rows.
func (s *Source) ReadRows(name string, row0 int, dst []float32) error {
	f, err := s.file(name)
	if err != nil {
		return err
	}
	if err := f.ReadFloat32Rows(name, row0, dst); err != nil {
		return fmt.Errorf("hf: %w", err)
	}
	return nil
}

// file returns the open file that holds the tensor called name, or an
// error naming it if the model does not use it or s is closed.
func (s *Source) file(name string) (*safetensors.File, error) {
	f, ok := s.where[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("hf: %s: %q is not a tensor that a model of this config uses", filesName(s.files), name)
	case s.closed:
		return nil, fmt.Errorf("hf: %s: reading tensor %q from a closed checkpoint", f.Name(), name)
	}
	return f, nil
}

// Weights reads every tensor into new host weights, as [Load] returns
// them: the model's parameters, all in float32 at once.
func (s *Source) Weights() (*llama.Weights, error) {
	w, err := llama.NewWeights(s.cfg)
	if err != nil {
		return nil, fmt.Errorf("hf: %w", err)
	}
	for _, p := range w.Params() {
		if err := s.ReadTensor(p.Name, p.Data); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Close closes the weight files that [Open] opened (those of a source made
// by [Assemble] belong to its caller). Closing twice does nothing.
func (s *Source) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.owned {
		return nil
	}
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
