package peft

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/optim"
)

// Model is a [graph.Module] with some of its linear layers replaced by
// conditioned layers: the handle through which a PEFT method is trained,
// reported, merged and saved.
type Model struct {
	cfg    Config
	module graph.Module
	layers []*Layer
	slots  []*graph.Layer
	frozen []*graph.Value // module parameters that were trainable before Inject

	// others are, for Full with AllParameters, the module's parameters
	// outside the layers (embeddings, norms, heads, biases of other
	// slots), trained in place, and othersHost their pretrained values,
	// kept on the host for Unload until ForgetPretrained.
	others     []*graph.Value
	othersHost [][]float32
}

// ErrNoTargetMatch is returned, wrapped, by [Inject] when the config's
// TargetModules (sora finetune's --target patterns) select none of the
// model's layers: a mistake in the patterns (a misspelt name), which a
// caller may tell apart from a failure to build the adapters.
var ErrNoTargetMatch = errors.New("peft: the target modules select none of the model's layers")

// noTargetMatch is the error Inject returns for [ErrNoTargetMatch]: its
// message names the patterns and the model's first layers.
type noTargetMatch struct{ msg string }

func (e *noTargetMatch) Error() string { return e.msg }
func (e *noTargetMatch) Unwrap() error { return ErrNoTargetMatch }

// Inject replaces every layer slot of m whose name the config's
// TargetModules select (see [Match]) by a [Layer] of the config's method,
// and freezes every parameter of m, so that only the adapters train. Each
// selected slot must hold a *graph.Dense. At initialisation the model
// computes exactly what it computed before. Where TargetModules select
// no slot, the error wraps [ErrNoTargetMatch].
//
// [Full] trains in place instead: the selected slots keep their dense
// layers, whose weights and biases become trainable (each [Layer] of
// [Model.Layers] then stands for one of them, for its update's spectrum),
// and with the target [AllParameters] so does every other parameter m
// lists, a tied output head being the embedding it shares, one
// parameter. The device then holds the trained weights alone; their
// pretrained values stay on the host (see [Model.ForgetPretrained]). Unload a
// Full model before injecting another method into its module.
func Inject(m graph.Module, cfg Config) (*Model, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	targets, err := compileTargets(cfg.TargetModules)
	if err != nil {
		return nil, err
	}
	whole := cfg.Method == Full && len(targets) == 1 && targets[0].any
	if whole {
		// Every parameter trains; the layers that stand for their
		// updates are those an adapter run with all-linear adapts, so
		// that spectra compare.
		targets = []target{{all: true}}
	}
	refs := m.Layers()
	var picked []graph.LayerRef
	for _, ref := range refs {
		if l, ok := (*ref.Slot).(*Layer); ok && whole {
			return nil, fmt.Errorf("peft: layer %q already holds a %s adapter; Unload it first", ref.Name, l.method)
		}
		for _, t := range targets {
			if t.match(ref.Name) {
				picked = append(picked, ref)
				break
			}
		}
	}
	if len(picked) == 0 && !whole {
		names := make([]string, 0, 6)
		for i, ref := range refs {
			if i == 6 {
				names = append(names, "…")
				break
			}
			names = append(names, ref.Name)
		}
		return nil, &noTargetMatch{fmt.Sprintf("peft: target modules %q select none of the model's %d layers (%s)", cfg.TargetModules, len(refs), strings.Join(names, ", "))}
	}
	for _, ref := range picked {
		switch v := (*ref.Slot).(type) {
		case *graph.Dense:
		case *Layer:
			return nil, fmt.Errorf("peft: layer %q already holds a %s adapter; Unload it first", ref.Name, v.method)
		default:
			return nil, fmt.Errorf("peft: layer %q is a %T; only *graph.Dense layers can be adapted", ref.Name, v)
		}
	}
	pm := &Model{cfg: cfg, module: m}
	toFreeze := m.Params()
	for _, ref := range picked { // in case Params leaves a layer's tensors out
		d := (*ref.Slot).(*graph.Dense)
		toFreeze = append(toFreeze, d.W)
		if d.B != nil {
			toFreeze = append(toFreeze, d.B)
		}
	}
	for _, p := range toFreeze {
		if p.Trainable() {
			if err := p.SetTrainable(false); err != nil {
				pm.restore()
				return nil, err
			}
			pm.frozen = append(pm.frozen, p)
		}
	}
	for _, ref := range picked {
		l, err := NewLayer(ref.Name, (*ref.Slot).(*graph.Dense), cfg)
		if err != nil {
			pm.abort()
			return nil, err
		}
		pm.layers = append(pm.layers, l)
		pm.slots = append(pm.slots, ref.Slot)
	}
	if whole {
		if err := pm.trainOthers(); err != nil {
			pm.abort()
			return nil, err
		}
		if len(pm.Trainable()) == 0 {
			pm.abort()
			return nil, fmt.Errorf("peft: full fine-tuning of every parameter: the module has none")
		}
	}
	if cfg.Method != Full {
		for i, l := range pm.layers {
			*pm.slots[i] = l
		}
	}
	return pm, nil
}

// trainOthers makes trainable, in place, every parameter of the module
// that no layer of m trains (Full with AllParameters), keeping its value
// on the host for Unload.
func (m *Model) trainOthers() error {
	seen := map[*graph.Value]bool{}
	for _, l := range m.layers {
		for _, p := range l.Trainable() {
			seen[p] = true
		}
	}
	for _, p := range m.module.Params() {
		if p == nil || seen[p] {
			continue
		}
		seen[p] = true
		h, err := p.Download()
		if err != nil {
			return fmt.Errorf("peft: keeping the pretrained %s: %w", p.Name(), err)
		}
		// Recorded before it can fail, so that abort freezes it again.
		m.others = append(m.others, p)
		m.othersHost = append(m.othersHost, h)
		if err := p.SetTrainable(true); err != nil {
			return err
		}
	}
	return nil
}

// abort undoes a failed Inject: what Full made trainable is frozen
// again, the layers are freed and what Inject froze is trainable again.
func (m *Model) abort() {
	m.leave(false)
	m.layers, m.slots = nil, nil
	m.restore()
}

// leave ends the layers and, for Full, the training in place: with
// restore, the trained tensors get their pretrained values back (where
// they are still kept), and either way they are frozen again, except
// those the module has freed already. The slots are not touched.
func (m *Model) leave(restore bool) {
	freeze := func(p *graph.Value, pretrained []float32) {
		if p == nil || p.Tensor().IsZero() {
			return
		}
		if restore && pretrained != nil {
			// Upload records an error on the backend, which its next
			// Sync reports, as for any op.
			p.Backend().Upload(p.Tensor(), pretrained)
		}
		p.SetTrainable(false)
	}
	for _, l := range m.layers {
		if l.method == Full {
			freeze(l.base.W, l.w0Host)
			freeze(l.base.B, l.b0Host)
		}
		l.Free()
	}
	for i, p := range m.others {
		var h []float32
		if m.othersHost != nil {
			h = m.othersHost[i]
		}
		freeze(p, h)
	}
	m.others, m.othersHost = nil, nil
}

// ForgetPretrained lets go of the host copies of the pretrained values that
// full fine-tuning keeps (the other methods keep none, and for them it does
// nothing): a copy of every trained tensor. Afterwards the updates of
// Full's layers are unknown, so [Model.Spectra], [Layer.Update64] and
// [Layer.Spectrum] fail, and [Model.Unload] leaves the trained values in
// place (frozen), as [Model.MergeAndUnload] does. A program that needs
// neither (sora finetune --no-spectrum) saves that memory.
func (m *Model) ForgetPretrained() {
	for _, l := range m.layers {
		l.w0Host, l.b0Host = nil, nil
	}
	m.othersHost = nil
}

// ForgetPretrainedOutsideLayers lets go of the host copies that only
// [Model.Unload] uses: the pretrained values of the parameters full
// fine-tuning of every parameter trains outside its layers (embeddings,
// norms, heads), as much as a fifth of a small model. The layers' W0 and
// b stay, so [Model.Spectra] still gives the spectra of W − W0. Afterwards
// Unload restores the layers alone and leaves the other parameters with
// their trained values (frozen). A program that frees the model instead
// of unloading it (sora finetune) calls it at once. For other targets and
// methods it does nothing.
func (m *Model) ForgetPretrainedOutsideLayers() {
	m.othersHost = nil
}

// restore makes trainable again what Inject froze, except parameters the
// module has freed already (see [Model.Unload]): a gradient buffer given
// to a freed parameter would never be freed.
func (m *Model) restore() {
	for _, p := range m.frozen {
		if !p.Tensor().IsZero() {
			p.SetTrainable(true)
		}
	}
	m.frozen = nil
}

// Config returns the configuration, defaults filled in.
func (m *Model) Config() Config { return m.cfg }

// Module returns the adapted module.
func (m *Model) Module() graph.Module { return m.module }

// Layers returns the conditioned layers in the module's layer order.
func (m *Model) Layers() []*Layer { return append([]*Layer(nil), m.layers...) }

// Trainable returns every parameter the method trains, each once: the
// adapters' tensors layer by layer, or for Full the layers' weights and
// biases and then, with [AllParameters], the module's other parameters in
// the module's order.
func (m *Model) Trainable() []*graph.Value {
	var ps []*graph.Value
	seen := map[*graph.Value]bool{}
	for _, l := range m.layers {
		for _, p := range l.Trainable() {
			if !seen[p] {
				seen[p] = true
				ps = append(ps, p)
			}
		}
	}
	for _, p := range m.others {
		if !seen[p] {
			seen[p] = true
			ps = append(ps, p)
		}
	}
	return ps
}

// ParamGroups returns the optimizer groups for the trainable parameters
// with base learning rate lr and weight decay wd: one group, or, when
// [Config.LoRAPlusRatio] is positive (LoRA+, the lora+ method's default
// 16), a group "lora_B" with lr·ratio and a group "adapter" of the rest
// with lr. As PEFT's create_loraplus_optimizer (and LoRA+'s own code)
// groups them, "lora_B" holds the B matrices and every vector the
// adapters train (DoRA's m, Pre-Diag's and SORA's d), whose learning rate
// LoRA+ raises with B's; the other matrices (A, SORA's C and D) keep lr.
//
// Full fine-tuning follows the rule of Hugging Face's Trainer, which
// exempts biases and norm weights from weight decay: a group "decay" of
// the matrices (the linear layers' weights, embeddings, heads) with wd and
// a group "no_decay" of the vectors (biases, norm weights) without. (In
// the LLaMA family every bias and norm weight is a vector and every other
// parameter a matrix, so the rule by rank is the Trainer's rule by name.)
// The adapters' tensors, vectors included (DoRA's m, Pre-Diag's d), all
// take wd, as Hugging Face's Trainer gives it to PEFT's parameters, none
// of which it names as biases or norms.
func (m *Model) ParamGroups(lr, wd float64) []optim.Group {
	if m.cfg.Method == Full {
		return optim.DecayGroups(m.Trainable(), lr, wd)
	}
	ratio := m.cfg.LoRAPlusRatio
	if ratio <= 0 {
		return []optim.Group{{Name: "adapter", Params: m.Trainable(), LR: lr, WeightDecay: wd}}
	}
	var bs, rest []*graph.Value
	for _, l := range m.layers {
		for _, p := range l.Trainable() {
			if p == l.bm || len(p.Shape()) == 1 {
				bs = append(bs, p)
			} else {
				rest = append(rest, p)
			}
		}
	}
	var gs []optim.Group
	if len(rest) > 0 {
		gs = append(gs, optim.Group{Name: "adapter", Params: rest, LR: lr, WeightDecay: wd})
	}
	if len(bs) > 0 {
		gs = append(gs, optim.Group{Name: "lora_B", Params: bs, LR: lr * ratio, WeightDecay: wd})
	}
	return gs
}

// Report counts parameters the way Hugging Face's
// print_trainable_parameters does, and also against the base model alone,
// the other convention papers' "#Params (%)" columns use (the two differ
// by the adapters' share, e.g. 0.826% against 0.833% for LoRA r = 32 on
// LLaMA-7B's q, k, v, up and down projections).
type Report struct {
	Method Method
	// Layers is the number of adapted layers (for Full, of the linear
	// layers it trains).
	Layers int
	// AllParameters is set for Full with the target [AllParameters]:
	// every parameter trains, not just the layers'.
	AllParameters bool
	// Trainable is the number of trainable parameter elements: the
	// adapters' and any module parameter left trainable (a new
	// classification head).
	Trainable int64
	// Total is the number of elements of every parameter the adapted model
	// computes with, each counted once: the base model and the adapters.
	// It is print_trainable_parameters' "all params". Full trains the
	// model's own tensors, so for Full it is the model's size.
	Total int64
	// Base is the number of elements of the model without its adapters:
	// Total less the adapters' own tensors (Full adds none).
	Base int64
}

// Percent returns 100·Trainable/Total, print_trainable_parameters'
// "trainable%".
func (r Report) Percent() float64 {
	if r.Total == 0 {
		return 0
	}
	return 100 * float64(r.Trainable) / float64(r.Total)
}

// PercentOfBase returns 100·Trainable/Base: the trainable share of the
// pretrained model's size.
func (r Report) PercentOfBase() float64 {
	if r.Base == 0 {
		return 0
	}
	return 100 * float64(r.Trainable) / float64(r.Base)
}

// String formats r as Hugging Face PEFT prints it, after the method, and
// then the percentage of the base model.
func (r Report) String() string {
	what := fmt.Sprintf("on %d layers", r.Layers)
	if r.AllParameters {
		what = fmt.Sprintf("of every parameter (%d linear layers and the rest)", r.Layers)
	}
	return fmt.Sprintf("%s %s: trainable params: %s || all params: %s || trainable%%: %.4f || of the base model's %s: %.4f%%",
		r.Method, what, thousands(r.Trainable), thousands(r.Total), r.Percent(), thousands(r.Base), r.PercentOfBase())
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Report counts the model's trainable and total parameters: those the
// module's Params lists and those of the adapted layers ([Layer.Params]),
// each tensor once, so that a module that lists its slots' parameters (as
// [graph.Module] asks) and one that lists only its original weights count
// the same.
func (m *Model) Report() Report {
	r := Report{Method: m.cfg.Method, Layers: len(m.layers),
		AllParameters: m.cfg.Method == Full && slices.Contains(m.cfg.TargetModules, AllParameters)}
	seen := map[*graph.Value]bool{}
	count := func(ps []*graph.Value) {
		for _, p := range ps {
			if p == nil || seen[p] {
				continue
			}
			seen[p] = true
			r.Total += int64(p.Len())
			if p.Trainable() {
				r.Trainable += int64(p.Len())
			}
		}
	}
	count(m.module.Params())
	count(m.others) // listed by the module already, unless it left some out
	var adapters int64
	for _, l := range m.layers {
		count(l.Params())
		if l.method != Full {
			for _, p := range l.Trainable() {
				adapters += int64(p.Len())
			}
		}
	}
	r.Base = r.Total - adapters
	return r
}

// Merge merges every layer (see [Layer.Merge]). Full's layers are left as
// they are: the module computes with the trained weights themselves.
func (m *Model) Merge() error {
	for _, l := range m.layers {
		if l.method == Full {
			continue
		}
		if err := l.Merge(); err != nil {
			return err
		}
	}
	return nil
}

// Unmerge unmerges every layer.
func (m *Model) Unmerge() {
	for _, l := range m.layers {
		l.Unmerge()
	}
}

// Unload puts the original layers back into their slots, frees the
// adapters and makes trainable again the module parameters Inject froze.
// The model then computes what it computed before Inject: Full's trained
// tensors get their pretrained values back (unless [Model.ForgetPretrained]
// let those go) and are frozen again. m must not be used afterwards.
//
// Ownership: the adapters' tensors ([Layer.Trainable], caches, merged
// weights) belong to m and only Unload (or [Model.MergeAndUnload]) frees
// them; the module's own tensors, the wrapped base layers' included,
// belong to the module. So a program frees an adapted model by calling
// Unload and the module's own free (e.g. llama's Model.Free), in either
// order: a module that frees the base layers through the wrapping layers
// (as llama's does, via [Layer.Base]) leaves the adapters to Unload, and
// Unload does not bring freed module parameters back to life.
func (m *Model) Unload() { m.unload(true) }

// unload is Unload; restore false keeps Full's trained values
// (MergeAndUnload).
func (m *Model) unload(restore bool) {
	for i, l := range m.layers {
		*m.slots[i] = l.base
	}
	m.leave(restore)
	m.layers, m.slots = nil, nil
	m.restore()
}

// MergeAndUnload writes every layer's W' and b' into its base layer's own
// tensors, puts the base layers back into their slots and frees the
// adapters: the model becomes a plain model that computes the adapted
// function at the base model's cost (save it with the model's own
// writer). A weight shared with another part of the model (tied
// embeddings) changes there too. A base weight stored in bfloat16 cannot
// hold W' but rounded: the parameter takes a float32 buffer holding W' in
// place of its bfloat16 one ([graph.Value.Replace], so a weight shared
// with the embedding follows), and the merged model's linear layers are
// float32 (twice the memory of bfloat16). Full has trained the base
// tensors themselves: they keep their trained values and are frozen. m
// must not be used afterwards.
//
// Every layer's W' and b' are computed ([Layer.Merge]) before any base
// tensor is written: where one fails (out of memory, a freed parameter),
// MergeAndUnload returns its error with the model as it was, adapters in
// place and base weights untouched, the layers it merged unmerged again,
// so that the caller can free memory and retry, or go on with the adapted
// model. An error while writing the base tensors (a device failure)
// leaves the model in an undefined state.
func (m *Model) MergeAndUnload() error {
	var merged []*Layer
	for _, l := range m.layers {
		if l.method == Full || l.merged != nil {
			continue
		}
		if err := l.Merge(); err != nil {
			for _, done := range merged {
				done.Unmerge()
			}
			return err
		}
		merged = append(merged, l)
	}
	var errs []error
	for _, l := range m.layers {
		if l.method != Full {
			errs = append(errs, l.fold())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.unload(false)
	return nil
}
