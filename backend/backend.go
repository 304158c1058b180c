package backend

import (
	"fmt"
	"slices"
)

// Backend is a device together with an execution queue (a CUDA or Ascend
// stream, or the calling goroutine on the CPU). It is the whole op interface
// that models, PEFT layers and the autodiff tape are written against.
//
// A Backend is not safe for concurrent use: like a stream, it orders the ops
// of one caller. See the package documentation for the error convention:
// ops record their first failure and Sync returns it.
//
// The packages above compare Backends with == to refuse tensors of two
// backends in one computation, so an implementation's dynamic type must be
// comparable: a pointer, as every backend here is (a struct value holding
// a func, slice or map would make the comparison panic).
type Backend interface {
	Memory
	Ops

	// Name returns the registry name ("cpu", "cuda", "ascend").
	Name() string
	// Device describes the device in words, with what decides the bits of
	// its results (the processor's kernels, the libraries' versions, the
	// matrix-product mode), e.g. "AMD EPYC 7B13 (avx2 fma), simd (matmul
	// avx2-fma 6x16, rows avx2)". Two backends with the same Name
	// and Device are meant to compute the same bits, so that a run resumed
	// on either goes on bit for bit: train compares it with what a
	// checkpoint recorded. It leaves out what can differ between runs on
	// one device and configuration, such as where compiled kernels were
	// found or how many threads share the work where that changes no bits
	// (a backend reports those by methods of its own, as the CUDA
	// backend's Kernels and the CPU backend's Threads).
	Device() string
	// Supports reports whether the backend implements op. The conformance
	// suite skips, and reports, cases of unsupported ops.
	Supports(op Op) bool
	// Sync waits until every enqueued op has finished and returns, then
	// clears, the first error recorded since the previous Sync.
	Sync() error
	// Close waits for pending work and releases the device. Tensors of a
	// closed backend must not be used.
	Close() error
}

// Memory allocates device buffers and moves data between host and device.
type Memory interface {
	// Alloc returns a new contiguous tensor of the given shape. Its contents
	// are unspecified until written. A failure (out of memory) is returned
	// directly rather than recorded, since the caller cannot go on without it.
	Alloc(dt DType, shape ...int) (Tensor, error)
	// Free releases the buffer that t views. Views of a freed buffer must
	// not be used. Freeing the zero Tensor does nothing.
	Free(t Tensor)
	// BytesInUse returns the bytes currently held by live allocations of
	// this backend, including any pool of freed-but-cached blocks that the
	// backend has not returned to the device.
	BytesInUse() int64
	// Upload copies src (len(src) == dst.Len()) from the host into the
	// contiguous tensor dst. src may be reused as soon as Upload returns.
	Upload(dst Tensor, src []float32)
	// Download waits for pending work, copies the contiguous tensor src into
	// dst (len(dst) == src.Len()) and returns the first error recorded so far
	// (clearing it, as Sync does).
	Download(dst []float32, src Tensor) error
	// Fill sets every element of the contiguous tensor dst to v.
	Fill(dst Tensor, v float32)
	// Copy copies src into dst element by element; both may be strided views
	// of the same shape (see [Tensor.Strided], [Tensor.Permute]), and src may
	// broadcast with stride 0. dst must not overlap itself or src. With
	// accumulate, dst += src instead of dst = src.
	Copy(dst, src Tensor, accumulate bool)
}

// Ops are the compute kernels, forward and backward. All tensors are
// contiguous float32 unless stated otherwise, and an output may alias an
// input only where the op says so.
type Ops interface {
	// MatMul computes C = alpha·op(A)·op(B) + beta·C for each matrix of a
	// batch, where op(X) is X or Xᵀ as p says. A, B and C have rank 2 or 3;
	// rank-3 tensors are batches of matrices: with a batch of 1 on A or B
	// that operand is shared by every matrix of C. A is [m, k] ([k, m] when
	// p.TransA), B is [k, n] ([n, k] when p.TransB), C is [m, n]. When beta
	// is 0, C's prior contents are ignored (NaNs in C do not propagate).
	MatMul(c, a, b Tensor, p MatMulParams)

	// Binary computes dst = a op b element-wise. b may have the same shape
	// as a, or broadcast: a row vector of a's row length (shape [cols]) is
	// applied to every row, and a column of shape [rows, 1] to every column.
	// dst has a's shape and may alias a.
	Binary(op BinaryOp, dst, a, b Tensor)
	// Scale computes dst = alpha·src; dst may alias src.
	Scale(dst, src Tensor, alpha float32)
	// Axpy computes y += alpha·x for tensors of equal length.
	Axpy(y Tensor, alpha float32, x Tensor)

	// Unary computes dst = f(src) element-wise; dst may alias src.
	Unary(op UnaryOp, dst, src Tensor)
	// UnaryGrad computes dx = dy ⊙ f'(x), the backward of Unary. dx may
	// alias dy.
	UnaryGrad(op UnaryOp, dx, x, dy Tensor)

	// ReduceRows reduces each row of src into one element of dst, whose
	// length is src's number of rows.
	ReduceRows(op ReduceOp, dst, src Tensor)
	// SumColumns sums src over its rows: dst (length = src's row length)
	// gets Σ_rows src[row, j]. It is the backward of a row broadcast and the
	// gradient of a bias.
	SumColumns(dst, src Tensor)

	// Softmax computes dst = softmax(p.Scale·src) over each row, with an
	// optional causal mask (see [SoftmaxParams]). dst may alias src.
	Softmax(dst, src Tensor, p SoftmaxParams)
	// SoftmaxGrad computes the backward of Softmax from its output y and the
	// upstream gradient dy: dx = p.Scale · y ⊙ (dy − Σ_row dy⊙y). Masked
	// positions get 0. dx may alias dy.
	SoftmaxGrad(dx, y, dy Tensor, p SoftmaxParams)

	// RMSNorm computes dst = x / sqrt(mean(x²) + eps) ⊙ w over each row;
	// w has the row length. dst may alias x.
	RMSNorm(dst, x, w Tensor, eps float32)
	// RMSNormGrad computes the input gradient dx (overwritten) and, when dw
	// is not the zero Tensor, adds the weight gradient into dw. With
	// r = 1/sqrt(mean(x²) + eps) per row and n the row length:
	//
	//	dx = r·(w⊙dy) − x·r³·Σ(w⊙dy⊙x)/n
	//	dw += Σ_rows dy⊙x·r
	RMSNormGrad(dx, dw, x, w, dy Tensor, eps float32)
	// LayerNorm computes dst = (x − mean) / sqrt(var + eps) ⊙ gamma + beta
	// over each row (biased variance). beta may be the zero Tensor. dst may
	// alias x.
	LayerNorm(dst, x, gamma, beta Tensor, eps float32)
	// LayerNormGrad computes dx (overwritten) and adds the parameter
	// gradients into dgamma and dbeta when they are not the zero Tensor.
	// With x̂ = (x − mean)·rstd and g = gamma⊙dy per row:
	//
	//	dx = rstd·(g − mean(g) − x̂·mean(g⊙x̂))
	//	dgamma += Σ_rows dy⊙x̂;  dbeta += Σ_rows dy
	LayerNormGrad(dx, dgamma, dbeta, x, gamma, dy Tensor, eps float32)

	// RoPE applies rotary position embedding to src of shape
	// [batch, seq, heads, headDim] (headDim even): the token at sequence
	// index t has position p.Offset + t. With p.Inverse it rotates by the
	// opposite angle, which is RoPE's backward. dst may alias src.
	RoPE(dst, src Tensor, p RoPEParams)

	// Attention is fused scaled dot-product attention (optional: see
	// [OpAttention]): per batch element b, query head h and query i,
	//
	//	s_j   = cap(Scale · q[b,i,h]·k[b,j,g])    (cap: see AttentionParams.Softcap)
	//	out[b,i,h] = Σ_j softmax_j(s) · v[b,j,g]
	//
	// over the keys j the mask of p lets query i see, where g = h / (heads /
	// kvHeads) is the key/value head that query head h shares with its
	// group (grouped-query attention; heads a multiple of kvHeads). q and
	// out are [batch, queries, heads, headDim], k and v [batch, keys,
	// kvHeads, headDim]: the layout of the projections' outputs, so no
	// transpose is needed on either side. The [queries, keys] scores are
	// never stored whole. lse, when not the zero Tensor, is [batch, heads,
	// queries] and receives each row's log Σ_j exp(s_j) (natural log, over
	// the visible keys), which AttentionGrad takes. out and lse must not
	// alias an input or each other. k and v must be finite, hidden keys'
	// too: a kernel, like the unfused composition, may multiply a hidden
	// key's weight of exactly 0 by its value (the CPU's does, for keys
	// inside the range a block of rows reads), and 0·NaN is NaN.
	Attention(out, lse, q, k, v Tensor, p AttentionParams)
	// AttentionGrad is Attention's backward: given the forward's inputs,
	// its out and lse, and the upstream gradient dout, it writes
	// (overwrites) dq, dk and dv, the gradients of q, k and v; dk and dv
	// sum over each key/value head's group of query heads. Masked scores
	// contribute nothing. The outputs must not alias any input or each
	// other.
	AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout Tensor, p AttentionParams)

	// Gather copies rows of table [vocab, dim] into dst [len(ids), dim]:
	// dst[i] = table[ids[i]]. ids live on the host and are copied before
	// the call returns; an id outside [0, vocab) is an error. dst is
	// float32; table is float32, or BFloat16 on a backend that supports
	// [OpMatMulBF16] (a frozen embedding stored at half the memory), whose
	// rows are widened into dst exactly.
	Gather(dst, table Tensor, ids []int32)
	// ScatterAdd is Gather's backward: dtable[ids[i]] += dy[i]. Both are
	// float32 (a bfloat16 table is frozen: it has no gradient).
	ScatterAdd(dtable, dy Tensor, ids []int32)

	// CrossEntropy writes into loss (one element per row of logits
	// [rows, vocab]) the cross-entropy −log softmax(logits)[target], with
	// label smoothing when p.Smoothing > 0. Rows whose target equals
	// p.IgnoreIndex get loss 0. targets live on the host (len = rows).
	CrossEntropy(loss, logits Tensor, targets []int32, p CrossEntropyParams)
	// CrossEntropyGrad writes d(p.Scale·Σ loss)/d logits into dlogits:
	// p.Scale·(softmax(logits) − smoothed one-hot), and 0 for ignored rows.
	CrossEntropyGrad(dlogits, logits Tensor, targets []int32, p CrossEntropyParams)

	// AdamW updates param in place from grad with moment buffers m and v,
	// as torch.optim.AdamW does (see [AdamWParams]).
	AdamW(param, grad, m, v Tensor, p AdamWParams)
}

// MatMulParams configures MatMul.
type MatMulParams struct {
	TransA, TransB bool
	Alpha, Beta    float32
}

// BinaryOp is an element-wise binary operation.
type BinaryOp uint8

// The binary ops.
const (
	Add BinaryOp = iota + 1
	Sub
	Mul
	Div
)

var binaryNames = [...]string{Add: "add", Sub: "sub", Mul: "mul", Div: "div"}

func (o BinaryOp) String() string {
	if int(o) < len(binaryNames) && binaryNames[o] != "" {
		return binaryNames[o]
	}
	return fmt.Sprintf("BinaryOp(%d)", uint8(o))
}

// Valid reports whether o is one of BinaryOps.
func (o BinaryOp) Valid() bool { return slices.Contains(BinaryOps, o) }

// BinaryOps lists every BinaryOp.
var BinaryOps = []BinaryOp{Add, Sub, Mul, Div}

// UnaryOp is an element-wise function with a derivative.
type UnaryOp uint8

// The unary ops. GELU is the exact form x·Φ(x) with the Gaussian CDF Φ
// (PyTorch's default). GELUTanh is GELU's tanh approximation, PyTorch's
// gelu(approximate="tanh") and transformers' "gelu_pytorch_tanh" (Gemma's
// activation):
//
//	GELUTanh(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
//	            = x·σ(y),  y = 2·√(2/π)·(x + 0.044715·x³),
//
// σ the logistic function, with derivative σ(y) + x·σ(y)·σ(−y)·y′, y′ =
// 2·√(2/π)·(1 + 3·0.044715·x²). It tends to x for large x and to −0 for
// very negative x, and is finite for every finite x.
const (
	Exp UnaryOp = iota + 1
	Log
	Sqrt
	Rsqrt
	Tanh
	SiLU
	GELU
	ReLU
	Neg
	Square
	Sigmoid
	GELUTanh
)

var unaryNames = [...]string{Exp: "exp", Log: "log", Sqrt: "sqrt", Rsqrt: "rsqrt", Tanh: "tanh",
	SiLU: "silu", GELU: "gelu", ReLU: "relu", Neg: "neg", Square: "square", Sigmoid: "sigmoid",
	GELUTanh: "gelu_tanh"}

func (o UnaryOp) String() string {
	if int(o) < len(unaryNames) && unaryNames[o] != "" {
		return unaryNames[o]
	}
	return fmt.Sprintf("UnaryOp(%d)", uint8(o))
}

// Valid reports whether o is one of UnaryOps.
func (o UnaryOp) Valid() bool { return slices.Contains(UnaryOps, o) }

// UnaryOps lists every UnaryOp.
var UnaryOps = []UnaryOp{Exp, Log, Sqrt, Rsqrt, Tanh, SiLU, GELU, ReLU, Neg, Square, Sigmoid, GELUTanh}

// ReduceOp is a row-wise reduction.
type ReduceOp uint8

// The row reductions.
const (
	Sum ReduceOp = iota + 1
	SumSquares
	Max
)

var reduceNames = [...]string{Sum: "sum", SumSquares: "sumsq", Max: "max"}

func (o ReduceOp) String() string {
	if int(o) < len(reduceNames) && reduceNames[o] != "" {
		return reduceNames[o]
	}
	return fmt.Sprintf("ReduceOp(%d)", uint8(o))
}

// Valid reports whether o is one of ReduceOps.
func (o ReduceOp) Valid() bool { return slices.Contains(ReduceOps, o) }

// ReduceOps lists every ReduceOp.
var ReduceOps = []ReduceOp{Sum, SumSquares, Max}

// SoftmaxParams configures Softmax and SoftmaxGrad.
//
// With Causal set, src is viewed as [batch, queries, keys] (rank 2 means a
// batch of one; for rank 4 and above the leading axes fold into the batch) and the query at row i may attend to key j only when
// j ≤ i + QueryOffset; masked entries come out as exactly 0. QueryOffset is
// the position of the first query among the keys, as during cached
// generation (keys − queries for the usual square case is 0).
//
// Window, when positive, narrows the causal mask to a sliding window (the
// local attention layers of Gemma 2 and 3, Mistral): the query at position
// p = i + QueryOffset sees key j only when j ≤ p and p − j < Window, so at
// most Window keys, itself included; Window 1 sees only itself. This is
// transformers' sliding_window_causal_mask_function (masking_utils.py:
// sliding_window_overlay keeps kv_idx > q_idx − sliding_window, and-ed with
// the causal kv_idx ≤ q_idx), with Window = config.sliding_window. 0 means
// no window. A window needs Causal (even for a single query, as in cached
// decoding, where the window still hides keys older than Window), must not
// be negative, and must leave every query some key: queries + QueryOffset −
// Window < keys (only a query placed beyond the last key can lose them
// all). The shared validation refuses anything else.
type SoftmaxParams struct {
	Scale       float32 // 0 means 1
	Causal      bool
	QueryOffset int
	Window      int // sliding-window width in keys; 0 for none (needs Causal)
}

// EffectiveScale returns Scale, or 1 when Scale is 0.
func (p SoftmaxParams) EffectiveScale() float32 {
	if p.Scale == 0 {
		return 1
	}
	return p.Scale
}

// AttentionParams configures Attention and AttentionGrad.
//
// The mask fields mean what SoftmaxParams' do, with queries and keys the
// sequence lengths of q and k: Causal lets query i see key j only when j ≤
// i + QueryOffset, Window (which needs Causal) narrows that to the last
// Window keys, and the same rules apply (every query must see a key).
// Without Causal, QueryOffset only places the queries for Segments.
type AttentionParams struct {
	// Scale multiplies q·k; it must be positive (1/√headDim for the usual
	// attention; there is no default, so that a forgotten scale is an
	// error, not a silently different model).
	Scale float32
	// Softcap, when positive, caps the scaled scores to
	// Softcap·tanh(Scale·q·k / Softcap), Gemma 2's attention soft-capping.
	// 0 means no cap.
	Softcap     float32
	Causal      bool
	QueryOffset int
	Window      int
	// Segments, when not nil, packs several documents into each sequence
	// (sequence packing): it holds one document number per key, batch·keys
	// of them (Segments[b·keys + j] for key j of sequence b),
	// non-decreasing along each sequence, and a query sees only the keys
	// of its own document, on top of the causal mask and window. Query i
	// sits at key position i + QueryOffset, which must be a key (queries +
	// QueryOffset ≤ keys), and belongs to that key's document; it always
	// sees at least that key. Each document then attends as if it were
	// alone in its sequence, but for the positions RoPE gave it, which run
	// on across a sequence's documents; rotary scores depend only on the
	// distance between query and key, so they come out the same. The
	// backend reads the slice during the call only. Only fused attention
	// takes segments: Mask drops them.
	Segments []int32
}

// SegmentBounds writes, for every key of every sequence of a batch packed
// as AttentionParams.Segments describes (segments holds batch·keys
// document numbers), the first key of its document into starts and one
// past the last into ends; both have segments' length. Kernels turn a
// query's document into its range of visible keys with them. With keys 0
// there are no sequences to bound, and it writes nothing.
func SegmentBounds(segments []int32, keys int, starts, ends []int32) {
	if keys <= 0 {
		return // a step of 0 would never leave the loop below
	}
	for b0 := 0; b0+keys <= len(segments); b0 += keys {
		seq := segments[b0 : b0+keys]
		for j0 := 0; j0 < keys; {
			j1 := j0 + 1
			for j1 < keys && seq[j1] == seq[j0] {
				j1++
			}
			for j := j0; j < j1; j++ {
				starts[b0+j], ends[b0+j] = int32(j0), int32(j1)
			}
			j0 = j1
		}
	}
}

// Mask returns p's mask as SoftmaxParams (with p's Scale), the form in
// which Softmax takes the same mask: an unfused attention computes
// Softmax(cap(q·kᵀ), p.Mask()) (with the cap scaling by Scale/Softcap
// first and the softmax by Softcap, when there is one).
func (p AttentionParams) Mask() SoftmaxParams {
	return SoftmaxParams{Scale: p.Scale, Causal: p.Causal, QueryOffset: p.QueryOffset, Window: p.Window}
}

// RoPELayout says which elements of a head are rotated together.
type RoPELayout uint8

const (
	// Interleaved rotates consecutive pairs (x[2i], x[2i+1]), as llama2.c does.
	Interleaved RoPELayout = iota + 1
	// HalfSplit rotates (x[i], x[i+d/2]), as Hugging Face LLaMA does.
	HalfSplit
)

func (l RoPELayout) String() string {
	switch l {
	case Interleaved:
		return "interleaved"
	case HalfSplit:
		return "half-split"
	}
	return "RoPELayout(?)"
}

// RoPEParams configures RoPE. Pair i of a head (i < headDim/2) at position
// pos is rotated by the angle φ = pos·f_i, counter-clockwise: a pair (a, b)
// becomes (a·cos φ − b·sin φ, a·sin φ + b·cos φ). Inverse uses −φ. The
// inverse frequency f_i is Theta^(−2i/headDim), or Freqs[i] when Freqs is
// not nil. Backends compute φ, its sine and cosine in float64.
type RoPEParams struct {
	Layout  RoPELayout
	Theta   float32 // base, 10000 for LLaMA-2; unused (and unchecked) when Freqs is set
	Offset  int     // position of sequence index 0
	Inverse bool    // rotate by the negative angle (the backward)
	// Freqs, when not nil, gives the inverse frequency of every pair, in
	// place of Theta's geometric series: it must hold headDim/2 finite
	// numbers. Scaled rotary embeddings (Llama 3.1's "llama3" rope_scaling,
	// linear position interpolation) are a choice of Freqs. They are
	// float64 so that frequencies computed on the host as
	// Theta^(−2i/headDim) give exactly the angles of the Theta path. The
	// backend reads the slice during the call only.
	Freqs []float64
}

// CrossEntropyParams configures CrossEntropy and CrossEntropyGrad.
type CrossEntropyParams struct {
	// IgnoreIndex marks rows without a target (loss 0, gradient 0). PyTorch
	// uses −100. It has no "unset" value: the zero value ignores target 0,
	// so callers always set it (package graph does).
	IgnoreIndex int32
	// Smoothing is the label-smoothing weight ε: the target distribution is
	// (1−ε)·one-hot + ε/vocab. 0 disables it.
	Smoothing float32
	// Scale multiplies the gradient (CrossEntropyGrad only), typically
	// 1/(number of counted rows) for a mean loss. Unlike SoftmaxParams.Scale,
	// 0 is taken literally and gives a zero gradient.
	Scale float32
}

// AdamWParams configures one AdamW step, following torch.optim.AdamW:
//
//	param ← param − LR·WeightDecay·param
//	m ← Beta1·m + (1−Beta1)·g;  v ← Beta2·v + (1−Beta2)·g²
//	param ← param − LR · (m / (1−Beta1^Step)) / (sqrt(v / (1−Beta2^Step)) + Eps)
//
// The scalars are float64, as PyTorch's are Python floats: 1−Beta2 and the
// bias corrections are computed from them before a kernel rounds what it
// needs to float32 (as float32, 0.999 is 0.99900001, whose 1−Beta2 would
// shrink every second moment by 1.3e-5 relative).
type AdamWParams struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	Step                               int // 1 for the first step
}

// Op names an op of the interface, for [Backend.Supports] and reports.
type Op string

// The ops, as named by Supports and by the conformance suite.
const (
	OpCopy             Op = "copy"
	OpFill             Op = "fill"
	OpMatMul           Op = "matmul"
	OpBinary           Op = "binary"
	OpScale            Op = "scale"
	OpAxpy             Op = "axpy"
	OpUnary            Op = "unary"
	OpUnaryGrad        Op = "unary_grad"
	OpReduceRows       Op = "reduce_rows"
	OpSumColumns       Op = "sum_columns"
	OpSoftmax          Op = "softmax"
	OpSoftmaxGrad      Op = "softmax_grad"
	OpRMSNorm          Op = "rmsnorm"
	OpRMSNormGrad      Op = "rmsnorm_grad"
	OpLayerNorm        Op = "layernorm"
	OpLayerNormGrad    Op = "layernorm_grad"
	OpRoPE             Op = "rope"
	OpGather           Op = "gather"
	OpScatterAdd       Op = "scatter_add"
	OpCrossEntropy     Op = "cross_entropy"
	OpCrossEntropyGrad Op = "cross_entropy_grad"
	OpAdamW            Op = "adamw"

	// OpMatMulBF16 is optional (not in AllOps): MatMul with a BFloat16 B
	// operand (A and C float32), and with it BFloat16 buffers (Alloc,
	// Upload rounding to nearest even, Download, Free, Copy into a
	// float32 tensor, and Gather from a BFloat16 table into a float32
	// dst). A backend without it refuses BFloat16 everywhere; models keep
	// float32 weights there.
	OpMatMulBF16 Op = "matmul_bf16"

	// OpAttention and OpAttentionGrad are optional (not in AllOps): fused
	// attention, Attention and AttentionGrad. A backend that lacks them
	// records an error when they are called; package graph then composes
	// attention from MatMul and Softmax instead, storing the scores.
	OpAttention     Op = "attention"
	OpAttentionGrad Op = "attention_grad"
)

// OptionalOps lists the ops a backend may lack; [Backend.Supports] says
// which it has.
var OptionalOps = []Op{OpMatMulBF16, OpAttention, OpAttentionGrad}

// AllOps lists every op of the interface.
var AllOps = []Op{OpCopy, OpFill, OpMatMul, OpBinary, OpScale, OpAxpy, OpUnary, OpUnaryGrad,
	OpReduceRows, OpSumColumns, OpSoftmax, OpSoftmaxGrad, OpRMSNorm, OpRMSNormGrad,
	OpLayerNorm, OpLayerNormGrad, OpRoPE, OpGather, OpScatterAdd, OpCrossEntropy,
	OpCrossEntropyGrad, OpAdamW}
