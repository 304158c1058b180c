package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sora-go/sora/internal/atomicfile"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/safetensors"
)

// maxJSONSize bounds config.json and the index; real ones are kilobytes
// (an index lists one line per tensor).
const maxJSONSize = 64 << 20

func readJSONFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hf: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("hf: %w", err)
	}
	if st.Size() > maxJSONSize {
		return nil, fmt.Errorf("hf: %s is %d bytes; expected a JSON file of at most %d", path, st.Size(), maxJSONSize)
	}
	b := make([]byte, st.Size())
	if n, err := f.ReadAt(b, 0); n < len(b) {
		return nil, fmt.Errorf("hf: reading %s: %w", path, err)
	}
	return b, nil
}

// Load reads the Hugging Face LLaMA, Qwen2, Qwen3, Mistral, Gemma 2 or Gemma 3 checkpoint in folder dir: config.json
// and either model.safetensors or the shards that model.safetensors.index.json
// lists (the index wins when both exist). The weights come back in the
// half-split rotary layout. It holds every tensor in float32 on the host:
// to put the model on a backend without that copy, [Open] the folder and
// build the model from the [Source] (llama.NewFromSource).
func Load(dir string) (*llama.Weights, error) {
	s, err := Open(dir)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Weights()
}

// Assemble builds weights for cfg from tensors in already opened
// safetensors files. weightMap, if not nil, is an index's weight_map: every
// tensor must then be in the file (by base name) that it names. Every
// tensor the model needs must be present with its exact shape and a float
// dtype before anything is allocated; unknown tensors are an error, except
// rotary inv_freq buffers that old checkpoints carry and an lm_head.weight
// beside tied embeddings, which are ignored. The files stay open (the
// caller closes them).
func Assemble(cfg llama.Config, files []*safetensors.File, weightMap map[string]string) (*llama.Weights, error) {
	s, err := newSource(cfg, files, weightMap)
	if err != nil {
		return nil, err
	}
	return s.Weights()
}

// filesName names the weight files of a checkpoint for an error message:
// the file's path, or the shards' folder.
func filesName(files []*safetensors.File) string {
	switch len(files) {
	case 0:
		return "checkpoint without weight files"
	case 1:
		return files[0].Name()
	}
	return fmt.Sprintf("%s (%d shards)", filepath.Dir(files[0].Name()), len(files))
}

// WriteOptions adjusts Write.
type WriteOptions struct {
	// MaxShardSize, if positive, splits the weights into shards
	// model-00001-of-0000N.safetensors of at most this many bytes each (a
	// tensor larger than that gets a shard of its own) listed by
	// model.safetensors.index.json. Zero writes a single model.safetensors.
	MaxShardSize int64
	// Files are other files to write into the folder with the weights,
	// by base name: a tokenizer's tokenizer.json and tokenizer_config.json,
	// say. They are written before config.json, like the weights; a name
	// with a path separator, or one of the files Write makes itself
	// (config.json, the weights, the index), is an error.
	Files map[string][]byte
	// Stale names files that dir may hold from an earlier write and
	// that this one replaces as a set: those of them not in Files are
	// removed once everything new is in place. A folder's tokenizer files,
	// say, which the commands read from it, must not outlive the model
	// they belonged to. Names are checked as Files' are.
	Stale []string
}

// checkFiles refuses WriteOptions.Files names that are not plain file
// names or that Write writes itself.
func (o *WriteOptions) checkFiles(dir string) error {
	names := slices.Collect(maps.Keys(o.Files))
	for _, name := range append(names, o.Stale...) {
		switch {
		case name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || filepath.Base(name) != name:
			return fmt.Errorf("hf: writing %s: extra file %q: want a plain file name", dir, name)
		case name == ConfigFile || name == WeightsFile || name == IndexFile || isShardName(name):
			return fmt.Errorf("hf: writing %s: extra file %q: Write makes that file itself", dir, name)
		}
	}
	return nil
}

// Write writes w as a Hugging Face checkpoint into folder dir: config.json
// (LLaMA's, Qwen2's for weights with its q/k/v biases, Qwen3's for
// weights with QK-norm, Mistral's for Family llama.FamilyMistral, Gemma
// 2's and Gemma 3's for theirs: see
// [EncodeConfig]) and F32 safetensors weights, biases and QK-norm weights
// included. Weights in llama2.c's interleaved rotary layout have q_proj
// and k_proj (and their biases, and q_norm and k_norm within the head)
// permuted to the half-split layout on the way out (w itself is not
// modified). If dir does not exist it is
// created complete or not at all; if it exists, each file is replaced
// atomically, config.json last; a stale index or single weights file that
// would shadow the new weights is removed, and, once everything new is in
// place, so are shard files (model-*-of-*.safetensors) this write did not
// produce and the files named in WriteOptions.Stale that
// WriteOptions.Files does not hold. Other files in dir are left alone.
func Write(dir string, w *llama.Weights, opts *WriteOptions) error {
	if err := w.Validate(); err != nil {
		return fmt.Errorf("hf: writing %s: %w", dir, err)
	}
	var o WriteOptions
	if opts != nil {
		o = *opts
	}
	if err := o.checkFiles(dir); err != nil {
		return err
	}
	cfg := w.Config
	cfg.RopeLayout = llama.RopeHalfSplit
	cfgData, err := EncodeConfig(cfg)
	if err != nil {
		return fmt.Errorf("hf: writing %s: %w", dir, err)
	}
	var tensors []safetensors.Tensor
	for _, p := range w.Params() {
		data := p.Data
		if w.Config.RopeLayout == llama.RopeInterleaved {
			if heads := permutedHeads(w.Config, p.Name); heads > 0 {
				// A weight's rows have dim columns, a bias's one; a QK-norm
				// weight is one head of one-column rows.
				rows := heads * w.Config.HeadDim()
				data = llama.InterleavedToHalfSplit(p.Data, heads, w.Config.HeadDim(), len(p.Data)/rows)
			}
		}
		tensors = append(tensors, safetensors.Tensor{Name: p.Name, Shape: p.Shape, Data: data})
	}
	shards := [][]safetensors.Tensor{tensors}
	if o.MaxShardSize > 0 {
		shards = splitShards(tensors, o.MaxShardSize)
	}
	meta := map[string]string{"format": "pt"}
	return atomicfile.WriteDir(dir, func(d string) error {
		written := map[string]bool{}
		if len(shards) == 1 && o.MaxShardSize <= 0 {
			if err := safetensors.Write(filepath.Join(d, WeightsFile), tensors, meta); err != nil {
				return fmt.Errorf("hf: %w", err)
			}
			if err := removeIfExists(filepath.Join(d, IndexFile)); err != nil {
				return err
			}
		} else {
			weightMap := map[string]string{}
			var total int64
			for i, sh := range shards {
				name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
				if err := safetensors.Write(filepath.Join(d, name), sh, meta); err != nil {
					return fmt.Errorf("hf: %w", err)
				}
				written[name] = true
				for _, t := range sh {
					weightMap[t.Name] = name
					total += 4 * int64(len(t.Data))
				}
			}
			idx, err := encodeIndex(weightMap, total)
			if err != nil {
				return err
			}
			if err := writeFile(filepath.Join(d, IndexFile), idx); err != nil {
				return err
			}
			if err := removeIfExists(filepath.Join(d, WeightsFile)); err != nil {
				return err
			}
		}
		for _, name := range slices.Sorted(maps.Keys(o.Files)) {
			if err := writeFile(filepath.Join(d, name), o.Files[name]); err != nil {
				return err
			}
		}
		if err := writeFile(filepath.Join(d, ConfigFile), cfgData); err != nil {
			return err
		}
		// Only now that the new weights, index and config are all in place
		// can shards of an earlier write go: until then they may be what the
		// old index points at.
		for _, name := range o.Stale {
			if _, ok := o.Files[name]; !ok {
				if err := removeIfExists(filepath.Join(d, name)); err != nil {
					return err
				}
			}
		}
		return removeStaleShards(d, written)
	})
}

// shardPattern matches the shard names Write gives, and transformers too.
const shardPattern = "model-*-of-*.safetensors"

// isShardName reports whether name matches shardPattern.
func isShardName(name string) bool {
	ok, _ := filepath.Match(shardPattern, name)
	return ok
}

// removeStaleShards removes the regular files in dir named like shards
// (shardPattern) that keep does not list: left by an earlier write with a
// different shard count, they would otherwise sit beside the new
// checkpoint, taking space and looking like part of it.
func removeStaleShards(dir string, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("hf: listing %s for stale shards: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if keep[name] || !e.Type().IsRegular() {
			continue
		}
		if !isShardName(name) {
			continue
		}
		if err := removeIfExists(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// permutedHeads returns the head count of the q_proj/k_proj weights and
// biases, whose rows depend on the rotary layout, 1 for the q_norm/k_norm
// weights (one head's worth of values, in the same order), and 0 for every
// other tensor.
func permutedHeads(c llama.Config, name string) int {
	if strings.HasSuffix(name, "."+llama.ModQNorm+".weight") || strings.HasSuffix(name, "."+llama.ModKNorm+".weight") {
		return 1
	}
	for _, suffix := range []string{".weight", ".bias"} {
		switch {
		case strings.HasSuffix(name, "."+llama.ModQ+suffix):
			return c.NumHeads
		case strings.HasSuffix(name, "."+llama.ModK+suffix):
			return c.NumKVHeads
		}
	}
	return 0
}

func splitShards(tensors []safetensors.Tensor, max int64) [][]safetensors.Tensor {
	var shards [][]safetensors.Tensor
	var cur []safetensors.Tensor
	var size int64
	for _, t := range tensors {
		b := 4 * int64(len(t.Data))
		if len(cur) > 0 && size+b > max {
			shards = append(shards, cur)
			cur, size = nil, 0
		}
		cur = append(cur, t)
		size += b
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}
	return shards
}

func encodeIndex(weightMap map[string]string, total int64) ([]byte, error) {
	idx := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": total}, weightMap}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("hf: encoding index: %w", err)
	}
	return append(b, '\n'), nil
}

func writeFile(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data); err != nil {
		return fmt.Errorf("hf: %w", err)
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hf: removing stale %s: %w", path, err)
	}
	return nil
}
