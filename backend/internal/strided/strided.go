// Package strided prepares element-wise walks over two strided views of
// one shape, as the backends' Copy does: it drops the axes that do not
// move and merges the ones both views lay out back to back, so a walk
// takes as few, as long rows as the layouts allow.
package strided

// Axis is one axis of a two-sided walk: its extent and the element stride
// of the destination and of the source view.
type Axis struct{ N, DS, SS int }

// Merge drops axes of extent 1 and merges each axis into the next inner
// one where both views step over it contiguously (stepping it once equals
// stepping the inner axis across its whole extent), returning the axes
// outermost first; a single element is one axis of extent 1. An empty view
// (some extent 0) returns ok = false. ds and ss are the destination's and
// the source's strides, one per axis of shape.
func Merge(shape, ds, ss []int) (axes []Axis, ok bool) {
	for i, n := range shape {
		if n == 0 {
			return nil, false
		}
		if n > 1 {
			axes = append(axes, Axis{n, ds[i], ss[i]})
		}
	}
	if len(axes) == 0 {
		return []Axis{{1, 1, 1}}, true
	}
	merged := []Axis{axes[len(axes)-1]}
	for i := len(axes) - 2; i >= 0; i-- {
		in := &merged[len(merged)-1]
		a := axes[i]
		if a.DS == in.DS*in.N && a.SS == in.SS*in.N {
			in.N *= a.N
			continue
		}
		merged = append(merged, a)
	}
	for i, j := 0, len(merged)-1; i < j; i, j = i+1, j-1 {
		merged[i], merged[j] = merged[j], merged[i]
	}
	return merged, true
}
