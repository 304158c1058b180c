// Package peft is the unified weight-conditioning layer of SORA for Go:
// LoRA, DoRA, Pre-Diag, SORA and their ablations as one layer with a
// conditioner before and after the low-rank update, plus OFT (as Hugging
// Face PEFT defines it), LoRA+ and full fine-tuning as reference points;
// injection into any [graph.Module], merging, and spectral analysis of the
// learned updates. Adapter files live in the sub-package peft/adapter.
//
// # The layer
//
// For a frozen linear layer y = x·W0ᵀ + b (W0 [out, in]) with LoRA factors
// A [r, in], B [out, r] and s = alpha/r, the methods' effective weights
// are:
//
//	LoRA        W0 + s·B·A
//	DoRA        diag(m ⊘ n)·(W0 + s·B·A),  n = row norms of W0 + s·B·A (no gradient)
//	Pre-Diag    diag(d)·W0 + s·B·A
//	SORA        R·(diag(d)·W0 + s·B·A)
//	Pre-Ortho   R·W0 + s·B·A
//	Post-Ortho  R·(W0 + s·B·A)
//	OFT         W0·R_bdᵀ  (R_bd block-diagonal, acting on the input)
//	Full        W
//
// with the rotation R = I + S, S = s_p·(D·Cᵀ − C·Dᵀ) (C, D [out, r_p]) and
// s_p = min(1, 1/(‖C‖_F + ‖D‖_F + 1e-6)), differentiated through. The bias
// follows the reference implementation: DoRA adds b outside its scale,
// Pre-Diag scales it (d ⊙ b), SORA gives R(d ⊙ b), Pre- and Post-Ortho R·b.
//
// Initialisation: A kaiming-uniform (bound 1/√in), B = 0, m = row norms of
// W0, d = 1, C kaiming-uniform with fan_out (bound 1/√out), D = C; OFT's
// blocks zero. Every method then computes the frozen layer exactly, bit
// for bit: every product that should vanish is a product with exact zeros
// (S is evaluated as s_p·(E·Cᵀ − C·Eᵀ) with E = D − C, which is exactly 0
// while D = C), and DoRA's m and n come from the same kernels.
//
// # Cost
//
// Forward never builds the effective weight, nor any [out, out] matrix;
// the only [out, in] temporaries are DoRAPEFT's B·A (that method's point)
// and, in training with at least as many rows as input features,
// diag(d)·W0 for the input gradient of the methods with a column scale
// (cheaper then than scaling the [N, out] gradient). Every
// low-rank method but DoRAPEFT is one fused op (see fused.go):
//
//	y = D(x·W0ᵀ) + row + Σⱼ (Xⱼ·Mⱼᵀ)·Pⱼᵀ
//
// D a column scale (Pre-Diag's and SORA's d, DoRA's m ⊘ n) or none, row
// the conditioned bias, and skinny terms for the LoRA path (X = drop(x),
// M = A, P = s·B, s·R·B or s·diag(m ⊘ n)·B) and for a rotation R = I + u·vᵀ
// on the frozen path (X = x, M = (d ⊙ v)ᵀ·W0 [2r_p, in], P = u): the
// rotation costs O(N·in·r_p + N·out·r_p) and no elementwise pass of its
// own. Without dropout the two terms share x and are one product of width
// r + 2r_p. DoRA gets its norms from ‖W0ᵢ + s(BA)ᵢ‖² = ‖W0ᵢ‖² +
// 2s·(W0Aᵀ)ᵢ·Bᵢ + s²·Bᵢ(AAᵀ)Bᵢᵀ with ‖W0ᵢ‖² cached, never forming B·A;
// DoRAPEFT materialises B·A each step and runs op by op, as Hugging Face
// PEFT does. They agree to float32 precision in values and gradients
// without dropout and in evaluation. With dropout in training DoRAPEFT
// computes what PEFT 0.14 computes there, x·W0ᵀ + b + (k − 1) ⊙
// (drop(x)·W0ᵀ) + k ⊙ (s·drop(x)·Aᵀ·Bᵀ) with k = m ⊘ n, a second
// full-size product that DoRA (which drops the LoRA input only) does not
// have; see [DoRAPEFT].
//
// # The exact rotation
//
// The paper's R = I + S is a first-order approximation of the orthogonal
// exp(S), with error ‖exp(S) − (I + S)‖ ≤ e^‖S‖ − 1 − ‖S‖.
// [Config.ExactRotation] uses exp(S) itself at almost the same cost: S =
// u·vᵀ has rank ≤ 2r_p, so exp(S) = I + u·φ(vᵀu)·vᵀ with φ(M) =
// Σₖ Mᵏ/(k+1)!, and φ is evaluated on the [2r_p, 2r_p] matrix M with graph
// ops (so gradients flow): M is scaled by 2⁻ʲ until ‖M‖_F ≤ 1/2, the
// degree-8 Taylor polynomial is summed by Horner's rule (truncation error
// below 6e-10, far under float32 rounding), and φ(2X) = φ(X) +
// ½·φ(X)·X·φ(X) undoes the scaling. j is chosen from ‖M‖_F, read back to
// the host (2r_p × 2r_p values) once per forward.
//
// # Models
//
// [Inject] replaces the layer slots of a [graph.Module] that the config's
// TargetModules select (the names the module gives its layers, such as
// q_proj or down_proj in models/llama, which names them as Hugging Face
// does, matched as dotted suffixes, or regular expressions, see [Match])
// and freezes the rest; full fine-tuning trains the module's own tensors
// in place instead (every parameter with the target [AllParameters]:
// embeddings, norms, heads, biases; a tied head is the embedding, one
// parameter with one gradient and one optimizer state), keeping the
// pretrained values on the host, not beside the trained ones on the device;
// [Model.Report] counts trainable parameters as Hugging Face's
// print_trainable_parameters does (of the adapted model) and of the base
// model, the two conventions of papers' tables;
// [Model.ParamGroups] gives graph/optim its groups (LoRA+: B at λ·lr;
// full fine-tuning: no weight decay on biases and norm weights, as
// Hugging Face's Trainer);
// [Model.Merge] folds every layer into one dense W' and b' (merged and
// unmerged forwards agree to float32 rounding; W0 is never overwritten, so
// unmerging restores it bit for bit); [Model.Spectra] analyses
// ΔW = W' − W0 per layer with package peft/spectral, in float64: from the
// update's factors where it is low-rank by construction (LoRA, LoRA+,
// Pre-Ortho, Post-Ortho: thin QRs and the SVD of a small core, never
// forming ΔW), otherwise by a full SVD of ΔW computed from the parameters,
// the layers spread over the cores.
//
// # Base weights stored in bfloat16
//
// A base layer's W0 may be stored in bfloat16 (graph.UploadParamAs; the
// linear layers of a llama model built with Options.BaseDType), frozen at
// half the memory. Every method but Full adapts such a layer, computing
// with W0's stored values exactly as with a float32 W0 holding them (to
// float32 rounding, the products' order of summation aside):
//
//   - LoRA, LoRA+, Pre-Diag, SORA, Pre-Ortho, Post-Ortho and OFT use W0
//     only in matrix products, which read it as it is stored: no copy.
//     (The input gradient of Pre-Diag, SORA and DoRA then scales the
//     [N, out] gradient rather than forming diag(d)·W0.)
//   - DoRA widens W0 into a float32 copy once, when the layer is made,
//     for its cached row norms ‖W0ᵢ‖²: one layer's [out, in] float32 at a
//     time, freed at once.
//   - DoRAPEFT widens W0 each forward into a float32 copy to materialise
//     W0 + s·B·A: one more [out, in] float32 temporary per layer until the
//     step ends, as large as the B·A that method makes anyway.
//   - Full is refused: it trains W0 itself, which bfloat16 storage cannot
//     hold (load the base in float32).
//
// Merging ([Layer.Merge], [Layer.EffectiveWeight]) widens W0 into a
// float32 copy for the duration of one layer's merge; merged weights are
// float32 (W0's stored values plus the update), and
// [Model.MergeAndUnload] gives the base layer that float32 weight in place
// of its bfloat16 one. The host side (spectra, [Layer.Update64]) downloads
// W0 exactly.
//
// # Parameters and ownership
//
// An adapted layer's [Layer.Params] are every parameter it computes with,
// the frozen base weight included, so that a module whose Params lists
// its slots' parameters (as [graph.Module] asks) lists the whole adapted
// model once; [Layer.Trainable] and [Model.Trainable] are the adapters'
// tensors alone (Full's: the module's tensors it trains). The adapters'
// tensors belong to the [Model] and are freed by [Model.Unload] (or
// [Model.MergeAndUnload]); the base weights belong to the module, which
// frees them, before or after Unload.
package peft
