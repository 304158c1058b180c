package conformance

import (
	"fmt"

	"github.com/sora-go/sora/backend"
)

// mmCase is one MatMul configuration. batchA and batchB are the batch
// extents of A and B (1 for a shared operand); rankA/rankB 2 means the
// operand is passed as a plain matrix.
type mmCase struct {
	batch, batchA, batchB int
	rankA, rankB          int
	m, n, k               int
	transA, transB        bool
	alpha, beta           float32
	// bf16 gives B as a bfloat16 tensor (op matmul_bf16).
	bf16 bool
}

func (c mmCase) name() string {
	t := map[bool]string{false: "N", true: "T"}
	s := "matmul/"
	if c.bf16 {
		s = string(backend.OpMatMulBF16) + "/"
	}
	if c.batch > 1 || c.rankA == 3 || c.rankB == 3 {
		s += fmt.Sprintf("batch=%d", c.batch)
		if c.batchA == 1 {
			s += fmt.Sprintf(",A=shared%dd", c.rankA)
		}
		if c.batchB == 1 {
			s += fmt.Sprintf(",B=shared%dd", c.rankB)
		}
		s += "/"
	}
	s += fmt.Sprintf("m=%d,n=%d,k=%d/%s%s", c.m, c.n, c.k, t[c.transA], t[c.transB])
	if c.alpha != 1 || c.beta != 0 {
		s += fmt.Sprintf("/alpha=%g,beta=%g", c.alpha, c.beta)
	}
	return s
}

func (c mmCase) run(e *Env) {
	ar, ac := c.m, c.k
	if c.transA {
		ar, ac = c.k, c.m
	}
	br, bc := c.k, c.n
	if c.transB {
		br, bc = c.n, c.k
	}
	shapeOf := func(batch, rank, r, cl int) []int {
		if rank == 2 {
			return []int{r, cl}
		}
		return []int{batch, r, cl}
	}
	av := e.Uniform(c.batchA*ar*ac, -1, 1)
	bv := e.Uniform(c.batchB*br*bc, -1, 1)
	a := e.Input(av, shapeOf(c.batchA, c.rankA, ar, ac)...)
	var b backend.Tensor
	if c.bf16 {
		// The reference multiplies the values B holds: rounded.
		b, bv = e.InputBF16(bv, shapeOf(c.batchB, c.rankB, br, bc)...)
	} else {
		b = e.Input(bv, shapeOf(c.batchB, c.rankB, br, bc)...)
	}
	cShape := []int{c.m, c.n}
	if c.rankA == 3 || c.rankB == 3 || c.batch > 1 {
		cShape = []int{c.batch, c.m, c.n}
	}
	var o *Out
	var c0 []float32
	if c.beta != 0 {
		// C's prior contents count: start from known values.
		c0 = e.Uniform(c.batch*c.m*c.n, -1, 1)
		o = e.OutputInit(c0, cShape...)
	} else {
		// beta = 0: C starts as NaN, which must not propagate.
		o = e.Output(cShape...)
	}
	e.B.MatMul(o.T, a, b, backend.MatMulParams{TransA: c.transA, TransB: c.transB, Alpha: c.alpha, Beta: c.beta})
	ref := refMatMul(av, bv, c.batch, c.batchA, c.batchB, c.m, c.n, c.k, c.transA, c.transB, float64(c.alpha), float64(c.beta), c0)
	key := string(backend.OpMatMul)
	if c.k >= 1024 {
		key = "matmul_large_k"
	}
	e.CheckTol(key, o, ref)
}

func init() {
	var cs []mmCase
	trans := [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}}
	// Plain 2-D products over tiny, prime, non-square and large-k shapes,
	// every transpose combination.
	for _, s := range [][3]int{
		{1, 1, 1}, {1, 7, 3}, {7, 1, 13}, {3, 7, 13}, {13, 127, 7}, {127, 13, 64},
		{33, 17, 129}, {64, 64, 64}, {7, 13, 4096}, {1, 127, 4096},
	} {
		for _, t := range trans {
			cs = append(cs, mmCase{batch: 1, batchA: 1, batchB: 1, rankA: 2, rankB: 2,
				m: s[0], n: s[1], k: s[2], transA: t[0], transB: t[1], alpha: 1})
		}
	}
	// Across the CPU kernel's register tile (6x16) and cache blocks, and
	// large enough to be split across threads.
	for _, s := range [][3]int{{6, 16, 1}, {12, 32, 257}, {97, 211, 263}, {200, 300, 520}} {
		for _, t := range trans {
			cs = append(cs, mmCase{batch: 1, batchA: 1, batchB: 1, rankA: 2, rankB: 2,
				m: s[0], n: s[1], k: s[2], transA: t[0], transB: t[1], alpha: 1})
		}
	}
	// alpha and beta.
	for _, ab := range [][2]float32{{0.5, 0}, {1, 1}, {-2, 0.5}, {0, 1}} {
		for _, t := range [][2]bool{{false, false}, {true, true}} {
			cs = append(cs, mmCase{batch: 1, batchA: 1, batchB: 1, rankA: 2, rankB: 2,
				m: 13, n: 7, k: 33, transA: t[0], transB: t[1], alpha: ab[0], beta: ab[1]})
		}
	}
	// Batches: every operand batched, with all transposes.
	for _, t := range trans {
		cs = append(cs, mmCase{batch: 3, batchA: 3, batchB: 3, rankA: 3, rankB: 3,
			m: 5, n: 7, k: 9, transA: t[0], transB: t[1], alpha: 1})
	}
	// One operand shared by the whole batch, as a batch of 1.
	for _, t := range trans {
		cs = append(cs,
			mmCase{batch: 3, batchA: 1, batchB: 3, rankA: 3, rankB: 3, m: 5, n: 7, k: 9, transA: t[0], transB: t[1], alpha: 1},
			mmCase{batch: 3, batchA: 3, batchB: 1, rankA: 3, rankB: 3, m: 5, n: 7, k: 9, transA: t[0], transB: t[1], alpha: 1},
		)
	}
	cs = append(cs,
		// x [batch, m, k] times a weight matrix W [n, k] transposed: a linear layer.
		mmCase{batch: 4, batchA: 4, batchB: 1, rankA: 3, rankB: 2, m: 7, n: 13, k: 33, transB: true, alpha: 1},
		mmCase{batch: 4, batchA: 4, batchB: 1, rankA: 3, rankB: 2, m: 7, n: 13, k: 33, alpha: 1},
		mmCase{batch: 4, batchA: 1, batchB: 4, rankA: 2, rankB: 3, m: 7, n: 13, k: 33, transA: true, alpha: 1},
		mmCase{batch: 2, batchA: 1, batchB: 1, rankA: 3, rankB: 2, m: 3, n: 5, k: 7, alpha: 1},
		// Attention shapes: QKᵀ and PV over batch·heads.
		mmCase{batch: 8, batchA: 8, batchB: 8, rankA: 3, rankB: 3, m: 16, n: 16, k: 8, transB: true, alpha: 0.35355339},
		mmCase{batch: 8, batchA: 8, batchB: 8, rankA: 3, rankB: 3, m: 16, n: 8, k: 16, alpha: 1},
		// Batched with alpha and beta, and a batched large k.
		mmCase{batch: 3, batchA: 3, batchB: 3, rankA: 3, rankB: 3, m: 5, n: 7, k: 9, alpha: 1, beta: 1},
		mmCase{batch: 3, batchA: 3, batchB: 1, rankA: 3, rankB: 3, m: 5, n: 7, k: 9, transA: true, alpha: 0.5, beta: -1},
		mmCase{batch: 2, batchA: 2, batchB: 2, rankA: 3, rankB: 3, m: 3, n: 5, k: 4096, transA: true, alpha: 1},
	)
	for _, c := range cs {
		c := c
		Register(Case{Name: c.name(), Op: backend.OpMatMul, Run: c.run})
	}

	// The same tensor as both operands: A·Aᵀ and Aᵀ·A (Gram matrices, as
	// DoRA's norms use).
	for _, t := range [][2]bool{{false, true}, {true, false}} {
		t := t
		name := "matmul/same_operand/A_At/13x33"
		if t[0] {
			name = "matmul/same_operand/At_A/13x33"
		}
		Register(Case{
			Name: name,
			Op:   backend.OpMatMul,
			Run: func(e *Env) {
				av := e.Uniform(13*33, -1, 1)
				a := e.Input(av, 13, 33)
				m, k := 13, 33
				if t[0] {
					m, k = 33, 13
				}
				o := e.Output(m, m)
				e.B.MatMul(o.T, a, a, backend.MatMulParams{TransA: t[0], TransB: t[1], Alpha: 1})
				e.Check(o, refMatMul(av, av, 1, 1, 1, m, m, k, t[0], t[1], 1, 0, nil))
			},
		})
	}
}
