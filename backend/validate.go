package backend

import (
	"fmt"
	"math"
)

// Argument validation shared by every backend, so that all of them accept
// and reject exactly the same calls and say so in the same words. Each Check
// function returns the dimensions the kernel needs, or an *OpError.

// checkDense requires every tensor to be present, float32 and contiguous.
func checkDense(op Op, all []Tensor, ts ...Tensor) error {
	if i, why := denseFault(ts...); i >= 0 {
		return Errorf(op, all, "tensor argument %d %s", i, why)
	}
	return nil
}

// denseFault returns the index of the first tensor that is missing, not
// float32 or strided, and why; or -1 when there is none. It builds nothing
// when all tensors are fine, so hot-path checks can defer building their
// error's argument list until they report one.
func denseFault(ts ...Tensor) (int, string) {
	for i, t := range ts {
		if why := float32Fault(t); why != "" {
			return i, why
		}
		if !t.Contiguous() {
			return i, stridedFault
		}
	}
	return -1, ""
}

// float32Fault says why t is missing or not float32, or returns "".
func float32Fault(t Tensor) string {
	switch {
	case t.IsZero():
		return "is missing"
	case t.DType() == BFloat16:
		return bf16Refused
	case t.DType() != Float32:
		return fmt.Sprintf("has dtype %s, want float32", t.DType())
	}
	return ""
}

// bf16Refused is why an op that computes refuses a BFloat16 tensor.
const bf16Refused = "has dtype bfloat16, want float32 (bfloat16 is a storage type: only MatMul's B operand, Gather's table and Copy's src take it, on a backend with the op " + string(OpMatMulBF16) + ")"

// bf16Unsupported is why a backend without OpMatMulBF16 refuses a
// BFloat16 tensor in the calls that take one where it is supported.
const bf16Unsupported = "has dtype bfloat16, which this backend does not support (it lacks the optional op " + string(OpMatMulBF16) + "); want float32"

// stridedFault is why an op other than Copy refuses a strided view.
const stridedFault = "is a strided view; only Copy accepts those"

// storedFault says why t is missing, strided, or of a dtype the backend
// does not store (BFloat16 is stored when bf16 is set), or returns "".
func storedFault(t Tensor, bf16 bool) string {
	switch {
	case t.IsZero():
		return "is missing"
	case t.DType() == BFloat16 && !bf16:
		return bf16Unsupported
	case t.DType() != Float32 && t.DType() != BFloat16:
		return fmt.Sprintf("has dtype %s, want float32", t.DType())
	case !t.Contiguous():
		return stridedFault
	}
	return ""
}

// CheckElementwise validates ops whose tensors all have the same number of
// elements (Scale, Axpy, Unary, UnaryGrad, AdamW).
func CheckElementwise(op Op, ts ...Tensor) (n int, err error) {
	if err := checkDense(op, ts, ts...); err != nil {
		return 0, err
	}
	n = ts[0].Len()
	for _, t := range ts[1:] {
		if t.Len() != n {
			return 0, Errorf(op, ts, "element counts differ")
		}
	}
	return n, nil
}

// CheckUnary validates Unary (op = OpUnary: dst, src) and UnaryGrad
// (op = OpUnaryGrad: dx, x, dy): f must be one of UnaryOps and the tensors
// as CheckElementwise requires.
func CheckUnary(op Op, f UnaryOp, ts ...Tensor) (n int, err error) {
	if n, err = CheckElementwise(op, ts...); err != nil {
		return 0, err
	}
	if !f.Valid() {
		return 0, Errorf(op, ts, "unknown unary op %d", f)
	}
	return n, nil
}

// Broadcast says how Binary's second operand is applied.
type Broadcast uint8

const (
	// NoBroadcast: b has a's shape.
	NoBroadcast Broadcast = iota
	// RowBroadcast: b is one row, added to every row of a.
	RowBroadcast
	// ColumnBroadcast: b has one element per row of a.
	ColumnBroadcast
)

// CheckBinary validates Binary (op included) and returns a's rows and row
// length and how b broadcasts. A b whose shape equals a's is never treated as a broadcast.
func CheckBinary(op BinaryOp, dst, a, b Tensor) (rows, cols int, bc Broadcast, err error) {
	all := []Tensor{dst, a, b}
	if err := checkDense(OpBinary, all, all...); err != nil {
		return 0, 0, 0, err
	}
	if !op.Valid() {
		return 0, 0, 0, Errorf(OpBinary, all, "unknown binary op %d", op)
	}
	if !dst.Shape().Equal(a.Shape()) {
		return 0, 0, 0, Errorf(OpBinary, all, "dst shape differs from a")
	}
	rows, cols = a.Rows()
	switch bs := b.Shape(); {
	case bs.Equal(a.Shape()):
		return rows, cols, NoBroadcast, nil
	case len(bs) == 1 && bs[0] == cols:
		return rows, cols, RowBroadcast, nil
	case len(bs) == 2 && bs[0] == rows && bs[1] == 1:
		return rows, cols, ColumnBroadcast, nil
	}
	return 0, 0, 0, Errorf(OpBinary, all, "b must have a's shape, [%d] or [%d, 1]", cols, rows)
}

// MatMulDims are the dimensions of a validated MatMul.
type MatMulDims struct {
	Batch   int // matrices in C
	M, N, K int
	// StrideA, StrideB and StrideC are the element distances between
	// consecutive matrices of the batch; 0 for a shared operand.
	StrideA, StrideB, StrideC int
}

// CheckMatMul validates MatMul on a backend without [OpMatMulBF16]: every
// operand float32. It is CheckMatMulDType(c, a, b, p, false).
func CheckMatMul(c, a, b Tensor, p MatMulParams) (MatMulDims, error) {
	return CheckMatMulDType(c, a, b, p, false)
}

// CheckMatMulDType validates MatMul. A and C must be float32; B may also
// be BFloat16 when bf16 is set, which a backend passes when it supports
// [OpMatMulBF16]. The dimensions and batch rules do not depend on B's
// dtype.
func CheckMatMulDType(c, a, b Tensor, p MatMulParams, bf16 bool) (MatMulDims, error) {
	all := []Tensor{c, a, b}
	if i, why := denseFault(c, a); i >= 0 {
		return MatMulDims{}, Errorf(OpMatMul, all, "tensor argument %d %s", i, why)
	}
	// For a B that is not bfloat16, storedFault says what denseFault
	// would, in the same words.
	if why := storedFault(b, bf16); why != "" {
		return MatMulDims{}, Errorf(OpMatMul, all, "tensor argument 2 %s", why)
	}
	mat := func(t Tensor) (batch, r, cl int, ok bool) {
		s := t.Shape()
		switch len(s) {
		case 2:
			return 1, s[0], s[1], true
		case 3:
			return s[0], s[1], s[2], true
		}
		return 0, 0, 0, false
	}
	ba, ar, ac, okA := mat(a)
	bb, br, bcl, okB := mat(b)
	bc, cr, cc, okC := mat(c)
	if !okA || !okB || !okC {
		return MatMulDims{}, Errorf(OpMatMul, all, "operands must have rank 2 or 3")
	}
	m, ka := ar, ac
	if p.TransA {
		m, ka = ac, ar
	}
	kb, n := br, bcl
	if p.TransB {
		kb, n = bcl, br
	}
	if ka != kb || cr != m || cc != n {
		return MatMulDims{}, Errorf(OpMatMul, all, "inner or outer dimensions disagree (transA=%v transB=%v)", p.TransA, p.TransB)
	}
	if (ba != bc && ba != 1) || (bb != bc && bb != 1) {
		return MatMulDims{}, Errorf(OpMatMul, all, "batch sizes disagree: A and B need C's batch %d or 1", bc)
	}
	d := MatMulDims{Batch: bc, M: m, N: n, K: ka, StrideC: m * n}
	if ba > 1 {
		d.StrideA = m * ka
	}
	if bb > 1 {
		d.StrideB = ka * n
	}
	return d, nil
}

// CheckReduceRows validates ReduceRows.
func CheckReduceRows(op ReduceOp, dst, src Tensor) (rows, cols int, err error) {
	all := []Tensor{dst, src}
	if err := checkDense(OpReduceRows, all, all...); err != nil {
		return 0, 0, err
	}
	if !op.Valid() {
		return 0, 0, Errorf(OpReduceRows, all, "unknown reduction %d", op)
	}
	rows, cols = src.Rows()
	if dst.Len() != rows {
		return 0, 0, Errorf(OpReduceRows, all, "dst needs one element per row (%d)", rows)
	}
	if cols == 0 {
		return 0, 0, Errorf(OpReduceRows, all, "rows are empty")
	}
	return rows, cols, nil
}

// CheckSumColumns validates SumColumns.
func CheckSumColumns(dst, src Tensor) (rows, cols int, err error) {
	all := []Tensor{dst, src}
	if err := checkDense(OpSumColumns, all, all...); err != nil {
		return 0, 0, err
	}
	rows, cols = src.Rows()
	if dst.Len() != cols {
		return 0, 0, Errorf(OpSumColumns, all, "dst needs one element per column (%d)", cols)
	}
	return rows, cols, nil
}

// CheckSoftmax validates Softmax (pass the zero Tensor for y) and
// SoftmaxGrad, returning the batch, query and key counts; without a causal
// mask batch·queries is simply the number of rows. It also enforces the
// rules of SoftmaxParams.Window.
func CheckSoftmax(op Op, dst, src, y Tensor, p SoftmaxParams) (batch, queries, keys int, err error) {
	all := []Tensor{dst, src}
	if !y.IsZero() {
		all = append(all, y)
	}
	if err := checkDense(op, all, all...); err != nil {
		return 0, 0, 0, err
	}
	for _, t := range all[1:] {
		if !t.Shape().Equal(dst.Shape()) {
			return 0, 0, 0, Errorf(op, all, "shapes differ")
		}
	}
	s := src.Shape()
	rows, keys := src.Rows()
	batch, queries = 1, rows
	if len(s) >= 3 {
		queries = s[len(s)-2]
		batch = rows / max(queries, 1)
	}
	if keys == 0 {
		return 0, 0, 0, Errorf(op, all, "rows are empty")
	}
	if err := checkMask(op, all, p, queries, keys); err != nil {
		return 0, 0, 0, err
	}
	return batch, queries, keys, nil
}

// checkMask enforces the rules of SoftmaxParams' causal mask and window
// for queries queries over keys keys (keys > 0).
func checkMask(op Op, all []Tensor, p SoftmaxParams, queries, keys int) error {
	if p.Causal && p.QueryOffset < 0 {
		return Errorf(op, all, "negative query offset %d", p.QueryOffset)
	}
	switch {
	case p.Window < 0:
		return Errorf(op, all, "negative sliding window %d", p.Window)
	case p.Window > 0 && !p.Causal:
		return Errorf(op, all, "sliding window %d without Causal: a window is a narrowed causal mask", p.Window)
	case p.Window > 0 && p.QueryOffset-p.Window >= keys-queries: // cannot overflow
		// The last query has the latest window; it starts at its position
		// − Window + 1, which must be a key for the row to have any.
		last := queries - 1 + p.QueryOffset
		return Errorf(op, all, "sliding window %d leaves the query at position %d (query offset %d) none of the %d keys: its window starts at key %d", p.Window, last, p.QueryOffset, keys, last-p.Window+1)
	}
	return nil
}

// AttentionDims are the dimensions of a validated Attention or
// AttentionGrad call.
type AttentionDims struct {
	Batch, Queries, Keys int
	Heads, KVHeads       int // query heads and key/value heads
	HeadDim              int
}

// Group returns how many query heads share each key/value head.
func (d AttentionDims) Group() int { return d.Heads / d.KVHeads }

// CheckAttention validates Attention: q and out are [batch, queries,
// heads, headDim], k and v [batch, keys, kvHeads, headDim] with keys and
// headDim positive and heads a positive multiple of kvHeads, lse is the
// zero Tensor or [batch, heads, queries], all float32 and contiguous;
// p.Scale is positive and finite, p.Softcap finite and not negative, and
// the mask follows SoftmaxParams' rules.
func CheckAttention(out, lse, q, k, v Tensor, p AttentionParams) (AttentionDims, error) {
	all := []Tensor{out, lse, q, k, v}
	d, err := checkAttention(OpAttention, all, q, k, v, p)
	if err != nil {
		return AttentionDims{}, err
	}
	named := [2]namedTensor{{"out", out}, {"lse", lse}}
	n := 1
	if !lse.IsZero() {
		n = 2 // lse is optional
	}
	if err := checkDenseNamed(OpAttention, all, named[:n]...); err != nil {
		return AttentionDims{}, err
	}
	if !out.Shape().Equal(q.Shape()) {
		return AttentionDims{}, Errorf(OpAttention, all, "out must have q's shape")
	}
	if !lse.IsZero() && !lse.Shape().Equal(Shape{d.Batch, d.Heads, d.Queries}) {
		return AttentionDims{}, Errorf(OpAttention, all, "lse must be [batch, heads, queries] = [%d, %d, %d]", d.Batch, d.Heads, d.Queries)
	}
	return d, nil
}

// CheckAttentionGrad validates AttentionGrad: q, k, v, the mask and
// scale as CheckAttention requires; out, dout and dq with q's shape, dk
// and dv with k's, and lse [batch, heads, queries], all present.
func CheckAttentionGrad(dq, dk, dv, q, k, v, out, lse, dout Tensor, p AttentionParams) (AttentionDims, error) {
	all := []Tensor{dq, dk, dv, q, k, v, out, lse, dout}
	d, err := checkAttention(OpAttentionGrad, all, q, k, v, p)
	if err != nil {
		return AttentionDims{}, err
	}
	if err := checkDenseNamed(OpAttentionGrad, all, namedTensor{"dq", dq}, namedTensor{"dk", dk}, namedTensor{"dv", dv},
		namedTensor{"out", out}, namedTensor{"lse", lse}, namedTensor{"dout", dout}); err != nil {
		return AttentionDims{}, err
	}
	for _, n := range [...]namedTensor{{"dq", dq}, {"out", out}, {"dout", dout}} {
		if !n.t.Shape().Equal(q.Shape()) {
			return AttentionDims{}, Errorf(OpAttentionGrad, all, "%s must have q's shape", n.name)
		}
	}
	for _, n := range [...]namedTensor{{"dk", dk}, {"dv", dv}} {
		if !n.t.Shape().Equal(k.Shape()) {
			return AttentionDims{}, Errorf(OpAttentionGrad, all, "%s must have k's shape", n.name)
		}
	}
	if !lse.Shape().Equal(Shape{d.Batch, d.Heads, d.Queries}) {
		return AttentionDims{}, Errorf(OpAttentionGrad, all, "lse must be [batch, heads, queries] = [%d, %d, %d]", d.Batch, d.Heads, d.Queries)
	}
	return d, nil
}

// checkAttention checks the shapes of q, k and v and the parameters, the
// part CheckAttention and CheckAttentionGrad share.
func checkAttention(op Op, all []Tensor, q, k, v Tensor, p AttentionParams) (AttentionDims, error) {
	if err := checkDenseNamed(op, all, namedTensor{"q", q}, namedTensor{"k", k}, namedTensor{"v", v}); err != nil {
		return AttentionDims{}, err
	}
	qs, ks := q.Shape(), k.Shape()
	if len(qs) != 4 || len(ks) != 4 {
		return AttentionDims{}, Errorf(op, all, "q, k and v must have rank 4: [batch, sequence, heads, headDim]")
	}
	d := AttentionDims{Batch: qs[0], Queries: qs[1], Heads: qs[2], HeadDim: qs[3], Keys: ks[1], KVHeads: ks[2]}
	switch {
	case !v.Shape().Equal(ks):
		return AttentionDims{}, Errorf(op, all, "v must have k's shape")
	case ks[0] != d.Batch:
		return AttentionDims{}, Errorf(op, all, "q has batch %d, k %d", d.Batch, ks[0])
	case ks[3] != d.HeadDim:
		return AttentionDims{}, Errorf(op, all, "q has head size %d, k %d", d.HeadDim, ks[3])
	case d.Keys == 0:
		return AttentionDims{}, Errorf(op, all, "k and v hold no keys: every query must see one")
	case d.HeadDim == 0:
		return AttentionDims{}, Errorf(op, all, "head size 0")
	case d.KVHeads == 0 || d.Heads%d.KVHeads != 0:
		return AttentionDims{}, Errorf(op, all, "%d query heads are not a multiple of %d key/value heads", d.Heads, d.KVHeads)
	case !(p.Scale > 0) || math.IsInf(float64(p.Scale), 0):
		return AttentionDims{}, Errorf(op, all, "scale %g, want a positive finite number (1/√headDim for the usual attention)", p.Scale)
	case !(p.Softcap >= 0) || math.IsInf(float64(p.Softcap), 0):
		return AttentionDims{}, Errorf(op, all, "softcap %g, want 0 (none) or a positive finite number", p.Softcap)
	}
	if err := checkMask(op, all, p.Mask(), d.Queries, d.Keys); err != nil {
		return AttentionDims{}, err
	}
	if p.Segments != nil {
		if err := checkSegments(op, all, p, d); err != nil {
			return AttentionDims{}, err
		}
	}
	return d, nil
}

// checkSegments enforces the rules of AttentionParams.Segments.
func checkSegments(op Op, all []Tensor, p AttentionParams, d AttentionDims) error {
	if len(p.Segments) != d.Batch*d.Keys {
		return Errorf(op, all, "%d segment numbers, want one per key of each sequence: batch·keys = %d", len(p.Segments), d.Batch*d.Keys)
	}
	if p.QueryOffset < 0 || d.Queries+p.QueryOffset > d.Keys {
		return Errorf(op, all, "with segments every query must sit at a key: queries %d + query offset %d > keys %d", d.Queries, p.QueryOffset, d.Keys)
	}
	for b := range d.Batch {
		seq := p.Segments[b*d.Keys : (b+1)*d.Keys]
		for j := 1; j < len(seq); j++ {
			if seq[j] < seq[j-1] {
				return Errorf(op, all, "segment numbers decrease in sequence %d at key %d (%d after %d); a sequence's documents must be contiguous, numbered in order", b, j, seq[j], seq[j-1])
			}
		}
	}
	return nil
}

// namedTensor is an argument and its name in the op's documentation, for
// ops with too many arguments for an index to say which is meant.
type namedTensor struct {
	name string
	t    Tensor
}

// checkDenseNamed is checkDense for named arguments.
func checkDenseNamed(op Op, all []Tensor, ts ...namedTensor) error {
	for _, n := range ts {
		if _, why := denseFault(n.t); why != "" {
			return Errorf(op, all, "%s %s", n.name, why)
		}
	}
	return nil
}

// Unsupported is the error a backend records when an optional op it
// lacks ([Backend.Supports] reports false) is called anyway.
func Unsupported(op Op, backendName string, ts ...Tensor) error {
	return Errorf(op, ts, "the %s backend does not implement this optional op (its Supports reports false)", backendName)
}

// CheckNorm validates RMSNorm (weight w) and LayerNorm (weight gamma and
// optional beta): x and dst have the same shape, the weight is present,
// and it and every optional parameter that is present have the row length.
func CheckNorm(op Op, dst, x, weight Tensor, optional ...Tensor) (rows, cols int, err error) {
	// The argument list of the error is built only when one is reported:
	// this check runs on every norm call.
	fail := func(format string, args ...any) error {
		return Errorf(op, append([]Tensor{dst, x, weight}, optional...), format, args...)
	}
	if rows, cols, err = checkNormInput(dst, x, fail); err != nil {
		return 0, 0, err
	}
	if err := checkRowParams(cols, fail, weight); err != nil {
		return 0, 0, err
	}
	if err := checkRowParams(cols, fail, optional...); err != nil {
		return 0, 0, err
	}
	if weight.IsZero() {
		return 0, 0, fail("the weight is missing")
	}
	return rows, cols, nil
}

// checkNormInput checks a norm's output and input; fail builds the error.
func checkNormInput(dst, x Tensor, fail func(string, ...any) error) (rows, cols int, err error) {
	if i, why := denseFault(dst, x); i >= 0 {
		return 0, 0, fail("tensor argument %d %s", i, why)
	}
	if !dst.Shape().Equal(x.Shape()) {
		return 0, 0, fail("output and input shapes differ")
	}
	rows, cols = x.Rows()
	return rows, cols, nil
}

// checkRowParams requires each parameter tensor that is present to be
// dense with cols elements; fail builds the error.
func checkRowParams(cols int, fail func(string, ...any) error, params ...Tensor) error {
	for _, p := range params {
		if p.IsZero() {
			continue
		}
		if i, why := denseFault(p); i >= 0 {
			return fail("tensor argument %d %s", i, why)
		}
		if p.Len() != cols {
			return fail("parameter needs the row length %d", cols)
		}
	}
	return nil
}

// CheckRoPE validates RoPE and returns the batch, sequence, head and head
// dimension extents.
func CheckRoPE(dst, src Tensor, p RoPEParams) (batch, seq, heads, headDim int, err error) {
	all := []Tensor{dst, src}
	if err := checkDense(OpRoPE, all, all...); err != nil {
		return 0, 0, 0, 0, err
	}
	s := src.Shape()
	if len(s) != 4 || !dst.Shape().Equal(s) {
		return 0, 0, 0, 0, Errorf(OpRoPE, all, "want dst and src of the same shape [batch, seq, heads, headDim]")
	}
	if s[3]%2 != 0 {
		return 0, 0, 0, 0, Errorf(OpRoPE, all, "head dimension %d is odd", s[3])
	}
	if p.Layout != Interleaved && p.Layout != HalfSplit {
		return 0, 0, 0, 0, Errorf(OpRoPE, all, "unknown layout %d", p.Layout)
	}
	if p.Offset < 0 {
		return 0, 0, 0, 0, Errorf(OpRoPE, all, "offset %d must not be negative", p.Offset)
	}
	if p.Freqs == nil {
		if !(p.Theta > 0) || math.IsInf(float64(p.Theta), 0) {
			return 0, 0, 0, 0, Errorf(OpRoPE, all, "theta %g must be positive and finite", p.Theta)
		}
		return s[0], s[1], s[2], s[3], nil
	}
	if len(p.Freqs) != s[3]/2 {
		return 0, 0, 0, 0, Errorf(OpRoPE, all, "%d frequencies for head dimension %d; want %d (one per pair)", len(p.Freqs), s[3], s[3]/2)
	}
	for i, f := range p.Freqs {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, 0, 0, 0, Errorf(OpRoPE, all, "frequency %d is %g; want a finite number", i, f)
		}
	}
	return s[0], s[1], s[2], s[3], nil
}

// CheckGather validates Gather (and, with the roles of dst and table taken
// by dy and dtable, ScatterAdd) on a backend without [OpMatMulBF16]: every
// tensor float32. It is CheckGatherDType(op, rowsT, table, ids, false).
func CheckGather(op Op, rowsT, table Tensor, ids []int32) (vocab, dim int, err error) {
	return CheckGatherDType(op, rowsT, table, ids, false)
}

// CheckGatherDType validates Gather (op OpGather: rowsT is dst) and
// ScatterAdd (op OpScatterAdd: rowsT is dy, table is dtable): table
// [vocab, dim], a rows tensor of len(ids)·dim elements, both contiguous,
// and every id in [0, vocab). Both are float32, except that Gather's
// table may be BFloat16 when bf16 is set, which a backend passes when it
// supports [OpMatMulBF16]: a frozen embedding stored at half the memory,
// whose rows Gather widens. ScatterAdd's dtable stays float32, since it
// accumulates gradients.
func CheckGatherDType(op Op, rowsT, table Tensor, ids []int32, bf16 bool) (vocab, dim int, err error) {
	all := []Tensor{rowsT, table}
	if i, why := denseFault(rowsT); i >= 0 {
		return 0, 0, Errorf(op, all, "tensor argument 0 %s", why)
	}
	why := ""
	if op == OpGather && table.DType() == BFloat16 {
		why = storedFault(table, bf16)
	} else if _, f := denseFault(table); f != "" {
		why = f
	}
	if why != "" {
		return 0, 0, Errorf(op, all, "tensor argument 1 %s", why)
	}
	if table.Rank() != 2 {
		return 0, 0, Errorf(op, all, "table must be [vocab, dim]")
	}
	vocab, dim = table.Dim(0), table.Dim(1)
	if rowsT.Len() != len(ids)*dim {
		return 0, 0, Errorf(op, all, "rows tensor needs %d ids × %d", len(ids), dim)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return 0, 0, Errorf(op, all, "id %d at index %d outside [0, %d)", id, i, vocab)
		}
	}
	return vocab, dim, nil
}

// CheckCrossEntropy validates CrossEntropy (out = loss) and
// CrossEntropyGrad (out = dlogits).
func CheckCrossEntropy(op Op, out, logits Tensor, targets []int32, p CrossEntropyParams) (rows, vocab int, err error) {
	all := []Tensor{out, logits}
	if err := checkDense(op, all, all...); err != nil {
		return 0, 0, err
	}
	rows, vocab = logits.Rows()
	want := rows
	if op == OpCrossEntropyGrad {
		want = rows * vocab
	}
	if out.Len() != want || len(targets) != rows {
		return 0, 0, Errorf(op, all, "want %d targets and an output of %d elements", rows, want)
	}
	for i, t := range targets {
		if t != p.IgnoreIndex && (t < 0 || int(t) >= vocab) {
			return 0, 0, Errorf(op, all, "target %d at row %d outside [0, %d)", t, i, vocab)
		}
	}
	if p.Smoothing < 0 || p.Smoothing > 1 {
		return 0, 0, Errorf(op, all, "label smoothing %g outside [0, 1]", p.Smoothing)
	}
	return rows, vocab, nil
}

// CheckCopy validates Copy on a backend without [OpMatMulBF16]: same
// shape, float32, both present, dst not broadcast. It is
// CheckCopyDType(dst, src, false).
func CheckCopy(dst, src Tensor) error { return CheckCopyDType(dst, src, false) }

// CheckCopyDType validates Copy: same shape, both present, dst not
// broadcast, and float32, except that with bf16 (the backend supports
// [OpMatMulBF16]) src may be BFloat16, converted into a float32 dst; both
// must then be contiguous, since the conversion serves to widen stored
// weights, not to permute them.
func CheckCopyDType(dst, src Tensor, bf16 bool) error {
	all := []Tensor{dst, src}
	if why := float32Fault(dst); why != "" {
		if !bf16 && dst.DType() == BFloat16 {
			why = bf16Unsupported
		}
		return Errorf(OpCopy, all, "tensor argument 0 %s", why)
	}
	if src.DType() == BFloat16 {
		if why := storedFault(src, bf16); why != "" {
			if why == stridedFault {
				why = "is a strided bfloat16 view; Copy converts bfloat16 only between contiguous tensors"
			}
			return Errorf(OpCopy, all, "tensor argument 1 %s", why)
		}
		if !dst.Contiguous() {
			return Errorf(OpCopy, all, "tensor argument 0 is a strided view; Copy converts bfloat16 only between contiguous tensors")
		}
	} else if why := float32Fault(src); why != "" {
		return Errorf(OpCopy, all, "tensor argument 1 %s", why)
	}
	if !dst.Shape().Equal(src.Shape()) {
		return Errorf(OpCopy, all, "shapes differ")
	}
	for i, s := range dst.Strides() {
		if s == 0 && dst.Shape()[i] > 1 {
			return Errorf(OpCopy, all, "dst broadcasts along axis %d", i)
		}
	}
	return nil
}

// CheckFill validates Fill.
func CheckFill(dst Tensor) error {
	return checkDense(OpFill, []Tensor{dst}, dst)
}

// CheckTransfer validates Upload and Download on a backend without
// [OpMatMulBF16]: a contiguous float32 tensor and a host slice of the same
// length. op is "upload" or "download", the name the error carries. It is
// CheckTransferDType(op, t, hostLen, false).
func CheckTransfer(op string, t Tensor, hostLen int) error {
	return CheckTransferDType(op, t, hostLen, false)
}

// CheckTransferDType validates Upload and Download: a contiguous tensor
// and a host slice of float32 of the same length. The tensor is float32,
// or BFloat16 when bf16 is set (the backend supports [OpMatMulBF16]):
// Upload rounds into it, Download widens out of it.
func CheckTransferDType(op string, t Tensor, hostLen int, bf16 bool) error {
	all := []Tensor{t}
	if why := storedFault(t, bf16); why != "" {
		return Errorf(Op(op), all, "tensor argument 0 %s", why)
	}
	if t.Len() != hostLen {
		return Errorf(Op(op), all, "host slice has %d elements, tensor %d", hostLen, t.Len())
	}
	return nil
}

// CheckNormGrad validates RMSNormGrad (pass the zero Tensor for dbeta) and
// LayerNormGrad: dx and dy have x's shape, the weight (w or gamma) is
// present with the row length, and each parameter gradient that is present
// has the row length too.
func CheckNormGrad(op Op, dx, x, dy, weight Tensor, paramGrads ...Tensor) (rows, cols int, err error) {
	// As in CheckNorm, the error's argument list is built only on failure.
	fail := func(format string, args ...any) error {
		return Errorf(op, append([]Tensor{dx, x, dy, weight}, paramGrads...), format, args...)
	}
	if weight.IsZero() {
		return 0, 0, fail("the weight is missing")
	}
	if rows, cols, err = checkNormInput(dx, x, fail); err != nil {
		return 0, 0, err
	}
	if err := checkRowParams(cols, fail, weight); err != nil {
		return 0, 0, err
	}
	if err := checkRowParams(cols, fail, paramGrads...); err != nil {
		return 0, 0, err
	}
	if i, why := denseFault(dy); i >= 0 {
		return 0, 0, fail("tensor argument %d %s", i, why)
	}
	if !dy.Shape().Equal(x.Shape()) {
		return 0, 0, fail("dy's shape differs from x's")
	}
	return rows, cols, nil
}

// CheckAdamW validates AdamW: four tensors of equal length and
// hyper-parameters for which the update is defined (Step ≥ 1, betas in
// [0, 1), LR, Eps and WeightDecay not negative).
func CheckAdamW(param, grad, m, v Tensor, p AdamWParams) (n int, err error) {
	n, err = CheckElementwise(OpAdamW, param, grad, m, v)
	if err != nil {
		return 0, err
	}
	all := []Tensor{param, grad, m, v}
	switch {
	case p.Step < 1:
		return 0, Errorf(OpAdamW, all, "step %d, want ≥ 1 (bias correction divides by 1−β^step)", p.Step)
	case !(p.Beta1 >= 0 && p.Beta1 < 1) || !(p.Beta2 >= 0 && p.Beta2 < 1):
		return 0, Errorf(OpAdamW, all, "betas %g, %g outside [0, 1)", p.Beta1, p.Beta2)
	case !(p.LR >= 0) || !(p.Eps >= 0) || !(p.WeightDecay >= 0):
		return 0, Errorf(OpAdamW, all, "lr %g, eps %g and weight decay %g must not be negative", p.LR, p.Eps, p.WeightDecay)
	}
	return n, nil
}

// MaxElements bounds the elements of one allocation so that its size in
// bytes, for any dtype, cannot overflow an int (an int64 on 64-bit
// platforms, an int32 on 32-bit ones).
const MaxElements = math.MaxInt / 16

// CheckAlloc validates the arguments of Alloc on a backend without
// [OpMatMulBF16] and returns the number of elements: the dtype must be
// Float32 (the only one the ops compute in) and no extent may be negative
// or make the size overflow. It is CheckAllocDType(dt, false, shape...).
func CheckAlloc(dt DType, shape ...int) (n int, err error) {
	return CheckAllocDType(dt, false, shape...)
}

// CheckAllocDType validates the arguments of Alloc and returns the number
// of elements: the dtype must be Float32, or BFloat16 when bf16 is set,
// which a backend passes when it supports [OpMatMulBF16] (the op that
// comes with BFloat16 buffers); no extent may be negative or make the size
// overflow.
func CheckAllocDType(dt DType, bf16 bool, shape ...int) (n int, err error) {
	switch {
	case dt == BFloat16 && !bf16:
		return 0, fmt.Errorf("Alloc %v: dtype bfloat16 not supported by this backend (it lacks the optional op %s), want float32", Shape(shape), OpMatMulBF16)
	case dt != Float32 && dt != BFloat16:
		return 0, fmt.Errorf("Alloc %v: dtype %s not supported, want float32", Shape(shape), dt)
	}
	n = 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("Alloc %v: negative extent", Shape(shape))
		}
		if d != 0 && n > MaxElements/d {
			return 0, fmt.Errorf("Alloc %v: size overflows (more than %d elements)", Shape(shape), MaxElements)
		}
		n *= d
	}
	return n, nil
}
