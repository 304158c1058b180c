// Package adapter saves and loads PEFT adapters in Hugging Face PEFT's
// folder layout, so that adapters move between this project and PEFT:
//
//	adapter_config.json         peft_type, r, lora_alpha, target_modules, use_dora, …
//	adapter_model.safetensors   base_model.model.<module path>.<tensor>
//
// The tensors are PEFT's lora_A.weight [r, in], lora_B.weight [out, r],
// DoRA's lora_magnitude_vector [out] and OFT's oft_R.weight
// [blocks, bs(bs−1)/2], and the SORA reference's lora_Diag.weight [out, 1],
// lora_C.weight and lora_D.weight [out, r_p]. Layers trained whole beside
// the adapter (a classifier's head) are listed in the config's
// modules_to_save and stored as PEFT stores them, under their own names:
// base_model.model.score.weight. Rows follow Hugging Face's checkpoints of
// the base model whatever format the base was loaded from: a module that
// keeps some layers' output rows in another order (a LLaMA read from a
// llama2.c file holds q_proj and k_proj in the interleaved rotary order)
// says so through [RowOrderer], and every tensor indexed by those rows
// (lora_B, lora_magnitude_vector, lora_Diag, lora_C, lora_D, a saved
// layer's weight and bias) is permuted into Hugging Face's order on [Save]
// and back on [Load]; lora_A and oft_R, indexed by the inputs, are not. An
// adapter therefore means the same on every format of its base model and
// in Hugging Face PEFT. The config carries, besides
// PEFT's fields, sora_method, rotation_rank, exact_rotation and
// loraplus_lr_ratio for the methods PEFT lacks, under peft_type LORA, as
// the SORA reference's PEFT writes them. Stock PEFT ignores those keys
// and reads a LoRA or DoRA adapter exactly; a Pre-Diag, SORA or
// Pre-Ortho adapter it reads as the LoRA inside it, warning only of the
// unexpected tensors (lora_Diag, lora_C, lora_D), which computes another
// function: load those with the reference's PEFT, or merge them first
// (older PEFT releases may refuse the extra config keys outright).
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
	"github.com/sora-go/sora/internal/rowperm"
	"github.com/sora-go/sora/peft"
	"github.com/sora-go/sora/safetensors"
)

// KeyPrefix starts every tensor name, as PEFT's PeftModel wraps the base
// model: base_model (the tuner) . model (the base model) . <module path>.
const KeyPrefix = "base_model.model."

// RowOrderer is implemented by a module (such as a LLaMA model read from a
// llama2.c file) whose layers keep their output rows in another order than
// Hugging Face checkpoints of the same model do. [Save] and [Load] look
// for it on the module, so that adapter files always hold Hugging Face's
// row order.
type RowOrderer interface {
	// HFRowOrder returns, for the layer named layer, perm with row i of
	// the Hugging Face order being row perm[i] of the module's, or nil
	// when the two agree. perm must be a permutation of the layer's
	// output rows.
	HFRowOrder(layer string) []int
}

// Tensor keys by the axis their first dimension indexes. A layer with a
// row order must have only tensors of these two kinds, so that a new
// tensor kind cannot be saved in the wrong order unnoticed.
var (
	outputRowKeys = map[string]bool{
		"lora_B.weight": true, "lora_Diag.weight": true, "lora_magnitude_vector": true,
		"lora_C.weight": true, "lora_D.weight": true, "weight": true, "bias": true,
	}
	inputKeys = map[string]bool{"lora_A.weight": true, "oft_R.weight": true}
)

// rowOrder returns module's Hugging Face row order for the layer name with
// out output rows (one without an order when module is not a
// [RowOrderer] or has none for the layer); an order that is not a
// permutation of out rows is an error.
func rowOrder(module graph.Module, name string, out int) (layerRows, error) {
	lr := layerRows{layer: name}
	ro, ok := module.(RowOrderer)
	if !ok {
		return lr, nil
	}
	perm := ro.HFRowOrder(name)
	if perm == nil {
		return lr, nil
	}
	if len(perm) != out {
		return lr, fmt.Errorf("the module's Hugging Face row order for layer %q has %d rows, the layer %d", name, len(perm), out)
	}
	seen := make([]bool, out)
	for i, p := range perm {
		if p < 0 || p >= out || seen[p] {
			return lr, fmt.Errorf("the module's Hugging Face row order for layer %q is not a permutation of its %d rows (entry %d is %d)", name, out, i, p)
		}
		seen[p] = true
	}
	lr.perm = perm
	return lr, nil
}

// layerRows is a layer's Hugging Face row order, as [rowOrder] found it:
// row i of the Hugging Face order is row perm[i] of the module's, and a
// nil perm means the two agree. Saving and loading, of adapted layers
// and of modules_to_save layers alike, reorder every tensor through it.
type layerRows struct {
	layer string
	perm  []int
}

// reorder returns data, the layer's tensor key, with its rows put into
// Hugging Face's order (toHF: row i of the result is row perm[i] of data)
// or back from it (row perm[i] of the result is row i of data). Tensors
// indexed by the inputs, and every tensor of a layer without an order,
// are returned as they are; a tensor whose axes this package does not
// know, or whose length is not a whole number of rows, is an error.
func (lr layerRows) reorder(key string, data []float32, toHF bool) ([]float32, error) {
	switch {
	case lr.perm == nil || inputKeys[key]:
		return data, nil
	case !outputRowKeys[key]:
		return nil, fmt.Errorf("layer %q has a row order but its tensor %q is of a kind whose rows this package does not know", lr.layer, key)
	case len(data)%len(lr.perm) != 0:
		return nil, fmt.Errorf("layer %q: tensor %q of %d values is not rows of its %d outputs", lr.layer, key, len(data), len(lr.perm))
	}
	return rowperm.Permute(data, lr.perm, !toHF), nil
}

// Key returns the file name of a layer's tensor.
func Key(layer, tensor string) string { return KeyPrefix + layer + "." + tensor }

// Save writes m's adapter into the folder dir (created if needed) as
// adapter_model.safetensors and adapter_config.json, with the layers that
// meta.ModulesToSave names (each a plain dense layer of m's module, not an
// adapted one) stored whole. Each file is written to a temporary file in
// dir and renamed into place, weights first, so a reader never sees a
// partial file; other files in dir are left alone. When m's module is a
// [RowOrderer], the tensors indexed by a reordered layer's output rows are
// written in Hugging Face's row order. Full fine-tuning has no adapter
// form and is refused.
func Save(dir string, m *peft.Model, meta Meta) error {
	cfg := m.Config()
	meta.ModuleRowOrder = false // Save writes Hugging Face's order
	conf, err := encodeConfig(cfg, meta)
	if err != nil {
		return fmt.Errorf("adapter: saving to %s: %w", dir, err)
	}
	saved, missing, err := savedLayers(m.Module(), meta.ModulesToSave)
	if err != nil {
		return fmt.Errorf("adapter: saving to %s: %w", dir, err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("adapter: saving to %s: modules_to_save %s name no layer of the model", dir, strings.Join(quote(missing), ", "))
	}
	var tensors []safetensors.Tensor
	add := func(rows layerRows, key, name string, v *graph.Value, shape []int) error {
		data, err := v.Download()
		if err != nil {
			return fmt.Errorf("adapter: saving %s: %w", name, err)
		}
		if data, err = rows.reorder(key, data, true); err != nil {
			return fmt.Errorf("adapter: saving to %s: %w", dir, err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: name, Shape: shape, Data: data})
		return nil
	}
	for _, l := range m.Layers() {
		_, out := l.Dims()
		rows, err := rowOrder(m.Module(), l.Name(), out)
		if err != nil {
			return fmt.Errorf("adapter: saving to %s: %w", dir, err)
		}
		for _, nt := range l.Tensors() {
			if err := add(rows, nt.Key, Key(l.Name(), nt.Key), nt.Value, nt.Shape); err != nil {
				return err
			}
		}
	}
	for _, sl := range saved {
		rows, err := rowOrder(m.Module(), sl.name, sl.dense.W.Shape()[0])
		if err != nil {
			return fmt.Errorf("adapter: saving to %s: %w", dir, err)
		}
		for _, t := range sl.tensors() {
			if err := add(rows, t.suffix, t.key, t.v, t.v.Shape()); err != nil {
				return err
			}
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

// savedLayer is a layer of modules_to_save.
type savedLayer struct {
	name  string // its path in the model, e.g. "score"
	dense *graph.Dense
}

type namedValue struct {
	key    string // the file name
	suffix string // "weight" or "bias"
	v      *graph.Value
}

// tensors returns the layer's weight (and bias) with their file names.
func (sl savedLayer) tensors() []namedValue {
	ts := []namedValue{{Key(sl.name, "weight"), "weight", sl.dense.W}}
	if sl.dense.B != nil {
		ts = append(ts, namedValue{Key(sl.name, "bias"), "bias", sl.dense.B})
	}
	return ts
}

// savedLayers returns the layers of module that the modules_to_save
// entries select: a layer whose name is an entry or ends in '.' followed
// by it. Each must hold a plain dense layer. Entries that select no layer
// are returned in missing.
func savedLayers(module graph.Module, names []string) (saved []savedLayer, missing []string, err error) {
	if len(names) == 0 {
		return nil, nil, nil
	}
	refs := module.Layers()
	seen := map[string]bool{}
	for _, n := range names {
		found := false
		for _, ref := range refs {
			if ref.Name != n && !strings.HasSuffix(ref.Name, "."+n) {
				continue
			}
			found = true
			if seen[ref.Name] {
				continue
			}
			seen[ref.Name] = true
			d, ok := (*ref.Slot).(*graph.Dense)
			if !ok || d == nil || d.W == nil {
				return nil, nil, fmt.Errorf("layer %q of modules_to_save is a %T; only a dense layer that the adapter does not target can be saved whole", ref.Name, *ref.Slot)
			}
			saved = append(saved, savedLayer{name: ref.Name, dense: d})
		}
		if !found {
			missing = append(missing, n)
		}
	}
	return saved, missing, nil
}

// ModuleShape returns the shape of the weight that the adapter in dir
// stores for the layer module (a modules_to_save layer such as "score"),
// so that a caller can give its model that layer (a classification head
// with as many classes as the weight has rows) before [Load] fills it in.
// ok is false when the file holds no such weight.
func ModuleShape(dir, module string) (shape []int, ok bool, err error) {
	path := filepath.Join(dir, WeightsFile)
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("adapter: %w", err)
	}
	defer f.Close()
	info, ok := f.Info(Key(module, "weight"))
	if !ok {
		return nil, false, nil
	}
	return append([]int(nil), info.Shape...), true, nil
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
// and sets its tensors from the file, and the weights of the layers its
// modules_to_save names from theirs. The module's selected layers must
// have the shapes the adapter was trained on, and a layer of
// modules_to_save must exist already, as a dense layer of the saved shape
// (give a classifier its head first: [ModuleShape] says its size); an
// entry that names no layer of the module is skipped, as PEFT skips it,
// unless the file holds tensors for it. The file's rows are in Hugging
// Face's order (except in files this package wrote before it marked them,
// see [Meta].ModuleRowOrder); when module is a [RowOrderer] they are put
// into the module's order. On any error the module is left as it was.
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
	saved, _, err := savedLayers(module, meta.ModulesToSave)
	if err != nil {
		m.Unload()
		return nil, Meta{}, fmt.Errorf("adapter: %s: %w", filepath.Join(dir, ConfigFile), err)
	}
	var order graph.Module = module
	if meta.ModuleRowOrder {
		order = nil // an older file of this package: rows as the module has them
	}
	if err := setTensors(f, path, m, order, saved); err != nil {
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

// setTensors reads the adapter's tensors (and those of saved layers) from
// f into m, putting rows into order's row order when order is a
// [RowOrderer] (nil: as they are in the file).
func setTensors(f *safetensors.File, path string, m *peft.Model, order graph.Module, saved []savedLayer) error {
	used := map[string]bool{}
	// read returns the n values of the file's tensor name, the layer's
	// tensor key, checked finite and in the module's row order.
	read := func(rows layerRows, key, name string, n int) ([]float32, error) {
		data := make([]float32, n)
		if err := f.ReadFloat32(name, data); err != nil {
			return nil, fmt.Errorf("adapter: %w", err)
		}
		for i, v := range data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("adapter: %s: tensor %q element %d is %v", path, name, i, v)
			}
		}
		data, err := rows.reorder(key, data, false)
		if err != nil {
			return nil, fmt.Errorf("adapter: loading %s: %w", path, err)
		}
		return data, nil
	}
	for _, l := range m.Layers() {
		in, out := l.Dims()
		rows, err := rowOrder(order, l.Name(), out)
		if err != nil {
			return fmt.Errorf("adapter: loading %s: %w", path, err)
		}
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
			data, err := read(rows, nt.Key, info.Name, nt.Value.Len())
			if err != nil {
				return err
			}
			b := nt.Value.Backend()
			b.Upload(nt.Value.Tensor(), data)
			if err := b.Sync(); err != nil {
				return fmt.Errorf("adapter: uploading %q: %w", info.Name, err)
			}
		}
	}
	// The module's own layers are written only once everything is read and
	// checked, so that a bad file leaves them as they were.
	type upload struct {
		v    *graph.Value
		data []float32
	}
	var uploads []upload
	for _, sl := range saved {
		rows, err := rowOrder(order, sl.name, sl.dense.W.Shape()[0])
		if err != nil {
			return fmt.Errorf("adapter: loading %s: %w", path, err)
		}
		for _, t := range sl.tensors() {
			info, ok := f.Info(t.key)
			if !ok {
				return fmt.Errorf("adapter: %s: missing tensor %q, expected shape %v for layer %q of modules_to_save", path, t.key, []int(t.v.Shape()), sl.name)
			}
			if !backend.Shape(info.Shape).Equal(t.v.Shape()) {
				return fmt.Errorf("adapter: %s: tensor %q has shape %v, expected %v for layer %q of modules_to_save (the model's layer has another size)", path, t.key, info.Shape, []int(t.v.Shape()), sl.name)
			}
			used[t.key] = true
			data, err := read(rows, t.suffix, t.key, t.v.Len())
			if err != nil {
				return err
			}
			uploads = append(uploads, upload{t.v, data})
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
		return fmt.Errorf("adapter: %s: tensors %s%s belong to no adapted layer of the model (different module names or target_modules?) nor to a layer of modules_to_save", path, strings.Join(quote(extra), ", "), more)
	}
	for _, u := range uploads {
		b := u.v.Backend()
		b.Upload(u.v.Tensor(), u.data)
		if err := b.Sync(); err != nil {
			return fmt.Errorf("adapter: uploading %q: %w", u.v.Name(), err)
		}
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
