package peft

import (
	"fmt"

	"github.com/sora-go/sora/graph"
)

// OFT as Hugging Face PEFT (0.15 and later) defines it for a linear layer:
// the input is split into nb blocks of bs features, block r is multiplied by
// an orthogonal-ish bs×bs matrix R_r, and the frozen layer is applied to the
// result:
//
//	y = (x·R_bd)·W0ᵀ + b,   R_bd = blockdiag(R_1, …, R_nb),   W' = W0·R_bdᵀ
//
// Each R_r comes from a skew-symmetric Q_r = U − Uᵀ, whose strictly upper
// triangle U (row-major, as torch.triu_indices(bs, bs, 1) orders it) is the
// trainable vector, through PEFT's default Cayley–Neumann series
// I + 2Q + 2Q² + … + 2Qⁿ⁻² + Qⁿ⁻¹ (n terms, n = 5 by default) of the Cayley
// transform (I + Q)(I − Q)⁻¹. The vectors start at zero, so R = I.

// oftConsts are the frozen helper tensors of one OFT layer.
type oftConsts struct {
	nb, bs int
	ids    []int32      // for each of bs² positions, its element in the packed table
	sign   *graph.Value // [bs², 1]: +1 above the diagonal, −1 below, 0 on it
	zero   *graph.Value // [1, nb]: the table row the diagonal gathers
	eye    *graph.Value // [nb, bs, bs]
}

func (o *oftConsts) free() {
	for _, p := range []*graph.Value{o.sign, o.zero, o.eye} {
		if p != nil {
			p.Free()
		}
	}
}

// oftBlocks returns the number of blocks and the block size for a layer
// with in input features.
func oftBlocks(cfg Config, in int) (nb, bs int, err error) {
	switch {
	case cfg.OFTBlockSize > 0:
		bs = cfg.OFTBlockSize
		if in%bs != 0 {
			return 0, 0, fmt.Errorf("OFT block size %d does not divide the %d input features", bs, in)
		}
		nb = in / bs
	case cfg.R > 0:
		nb = cfg.R
		if in%nb != 0 {
			return 0, 0, fmt.Errorf("OFT r = %d blocks do not divide the %d input features", nb, in)
		}
		bs = in / nb
	default:
		return 0, 0, fmt.Errorf("OFT needs r or a block size")
	}
	return nb, bs, nil
}

func (l *Layer) initOFT() error {
	nb, bs, err := oftBlocks(l.cfg, l.in)
	if err != nil {
		return err
	}
	nel := bs * (bs - 1) / 2
	o := &oftConsts{nb: nb, bs: bs, ids: make([]int32, bs*bs)}
	l.oft = o
	sign := make([]float32, bs*bs)
	k := 0
	for i := range bs {
		o.ids[i*bs+i] = int32(nel)
		for j := i + 1; j < bs; j++ {
			o.ids[i*bs+j], o.ids[j*bs+i] = int32(k), int32(k)
			sign[i*bs+j], sign[j*bs+i] = 1, -1
			k++
		}
	}
	if o.sign, err = l.param("oft_sign", sign, graph.Frozen, bs*bs, 1); err != nil {
		return err
	}
	if o.zero, err = l.param("oft_zero", make([]float32, nb), graph.Frozen, 1, nb); err != nil {
		return err
	}
	eye := make([]float32, nb*bs*bs)
	for r := range nb {
		for i := range bs {
			eye[r*bs*bs+i*bs+i] = 1
		}
	}
	if o.eye, err = l.param("oft_eye", eye, graph.Frozen, nb, bs, bs); err != nil {
		return err
	}
	l.oftR, err = l.param("oft_R", make([]float32, nb*nel), graph.Trainable, nb, nel)
	return err
}

// oftMatrix returns the blocks R_r as a value of shape [nb, bs, bs].
func (l *Layer) oftMatrix(g *graph.Tape) *graph.Value {
	o := l.oft
	// Gather the packed entries into the bs² positions of each block: the
	// table has one row per packed element (plus a zero row for the
	// diagonal) and one column per block.
	table := g.Concat(0, g.Transpose(l.oftR, 0, 1), o.zero)
	q := g.Mul(g.Gather(table, o.ids), o.sign) // [bs², nb]
	q = g.Reshape(g.Transpose(q, 0, 1), o.nb, o.bs, o.bs)
	// Cayley–Neumann, term for term as PEFT's _cayley_batch.
	n := l.cfg.OFTNeumannTerms
	r := o.eye
	if n > 1 {
		r = g.Add(r, g.Scale(q, 2))
		if n > 2 {
			p := g.MatMul(q, q)
			r = g.Add(r, g.Scale(p, 2))
			for i := 3; i < n-1; i++ {
				p = g.MatMul(p, q)
				r = g.Add(r, g.Scale(p, 2))
			}
			p = g.MatMul(p, q)
			r = g.Add(r, p)
		}
	}
	return r
}

// oftApply multiplies every row of x [N, in], block by block, by R_r
// (x·R_bd), or by R_rᵀ when transposed (x·R_bdᵀ, used to merge W0·R_bdᵀ).
func (l *Layer) oftApply(g *graph.Tape, x, r *graph.Value, transposed bool) *graph.Value {
	o := l.oft
	n := x.Dim(0)
	xb := g.Transpose(g.Reshape(x, n, o.nb, o.bs), 0, 1) // [nb, N, bs]
	var y *graph.Value
	if transposed {
		y = g.MatMulNT(xb, r)
	} else {
		y = g.MatMul(xb, r)
	}
	return g.Reshape(g.Transpose(y, 0, 1), n, l.in)
}

func (l *Layer) oftInput(g *graph.Tape, x *graph.Value) *graph.Value {
	return l.oftApply(g, x, l.oftMatrix(g), false)
}
