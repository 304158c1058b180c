package conformance

import (
	"fmt"

	"github.com/sora-go/sora/backend"
)

func init() {
	type ec struct {
		vocab, dim int
		rows       []int // shape of the gathered rows tensor without dim
		distinct   bool  // ids without repeats
	}
	cases := []ec{
		{1, 1, []int{1}, false},
		{13, 7, []int{20}, false},
		{127, 64, []int{33}, true},
		{5, 4096, []int{3}, false},
		{17, 6, []int{2, 3}, false},
		{1000, 128, []int{509}, false},
	}
	ids := func(e *Env, c ec) []int32 {
		n := backend.Shape(c.rows).NumElements()
		out := make([]int32, n)
		if c.distinct {
			for i, p := range e.Rand.Perm(c.vocab)[:n] {
				out[i] = int32(p)
			}
			return out
		}
		// Repeats on purpose: ScatterAdd must add every occurrence.
		for i := range out {
			out[i] = int32(e.Rand.Intn(c.vocab))
		}
		if n > 2 && c.vocab > 1 {
			out[n-1] = out[0]
		}
		return out
	}
	for _, c := range cases {
		c := c
		suffix := fmt.Sprintf("%s/table=%s", dims(c.rows...), dims(c.vocab, c.dim))
		rowsShape := append(append([]int(nil), c.rows...), c.dim)
		Register(Case{
			Name: "gather/" + suffix,
			Op:   backend.OpGather,
			Run: func(e *Env) {
				tv := e.Uniform(c.vocab*c.dim, -1, 1)
				table := e.Input(tv, c.vocab, c.dim)
				id := ids(e, c)
				o := e.Output(rowsShape...)
				e.B.Gather(o.T, table, id)
				e.Check(o, gathered(tv, id, c.dim))
			},
		})
		// The same lookups from a bfloat16 table (a frozen embedding at
		// half the memory), on backends with the optional op: each row
		// the stored values widened, exactly.
		Register(Case{
			Name:  fmt.Sprintf("%s/gather/%s", backend.OpMatMulBF16, suffix),
			Op:    backend.OpMatMulBF16,
			Needs: []backend.Op{backend.OpGather},
			Run: func(e *Env) {
				table, tv := e.InputBF16(e.Uniform(c.vocab*c.dim, -3, 3), c.vocab, c.dim)
				id := ids(e, c)
				o := e.Output(rowsShape...)
				e.B.Gather(o.T, table, id)
				e.CheckTol(string(backend.OpGather), o, gathered(tv, id, c.dim))
			},
		})
		Register(Case{
			Name: "scatter_add/" + suffix,
			Op:   backend.OpScatterAdd,
			Run: func(e *Env) {
				dyv := e.Uniform(backend.Shape(rowsShape).NumElements(), -1, 1)
				dy := e.Input(dyv, rowsShape...)
				id := ids(e, c)
				t0 := e.Uniform(c.vocab*c.dim, -1, 1)
				o := e.OutputInit(t0, c.vocab, c.dim)
				e.B.ScatterAdd(o.T, dy, id)
				ref := F64(t0)
				for r, i := range id {
					for j := 0; j < c.dim; j++ {
						ref[int(i)*c.dim+j] += float64(dyv[r*c.dim+j])
					}
				}
				e.Check(o, ref)
			},
		})
	}
}

// gathered is the reference of a Gather: the rows ids of table, whose rows
// have dim elements, one after another.
func gathered(table []float32, ids []int32, dim int) []float64 {
	ref := make([]float64, 0, len(ids)*dim)
	for _, i := range ids {
		ref = append(ref, F64(table[int(i)*dim:(int(i)+1)*dim])...)
	}
	return ref
}
