package ascend

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/conformance"
)

// float32Limited lists conformance cases whose reference cannot be met by
// a kernel that keeps its intermediates in float32, with the NMSE such a
// kernel does meet. LayerNorm of a two-element row is ±1 whatever the
// input, so its input gradient is the difference of nearly equal terms
// (about eps/(d²+eps) of each, d half the difference of the two elements);
// aclnnLayerNorm hands mean and rstd to aclnnLayerNormBackward as float32,
// and their rounding alone moves that difference by about 1e-3 of itself.
// The CPU backend passes because it works in float64 throughout. These
// cases must still come within the looser bound.
var float32Limited = map[string]float64{
	"layernorm_grad/1x2/": 1e-5,
}

var nmseRE = regexp.MustCompile(`nmse ([0-9.eE+-]+) > threshold`)

// TestConformanceThroughDouble runs the whole conformance suite against
// the backend on the ACL test double, one subtest per case (select with
// -run 'TestConformanceThroughDouble/softmax/'). The backend supports every
// op but the optional ones, so no other case may be skipped.
func TestConformanceThroughDouble(t *testing.T) {
	b, _ := openDouble(t, Options{})
	var sum conformance.Summary
	limited := 0
	for _, c := range conformance.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			o := conformance.RunCase(b, c, 0)
			switch o.Status {
			case conformance.Skipped:
				sum.Skipped++
				if !conformance.SkippedOptional(b, c) {
					t.Errorf("skipped: %s", o.Reason)
				}
			case conformance.Failed:
				for prefix, bound := range float32Limited {
					if !strings.HasPrefix(c.Name, prefix) {
						continue
					}
					// Every failed check must be an NMSE within bound.
					ms := nmseRE.FindAllStringSubmatch(o.Reason, -1)
					ok := len(ms) > 0 && len(ms) == strings.Count(o.Reason, "nmse ")
					for _, m := range ms {
						v, err := strconv.ParseFloat(m[1], 64)
						ok = ok && err == nil && v <= bound
					}
					if ok {
						limited++
						t.Logf("float32-limited case, within %g: %s", bound, o.Reason)
						return
					}
				}
				sum.Failed++
				t.Error(o.Reason)
			default:
				sum.Passed++
			}
		})
	}
	t.Logf("conformance through the ACL test double: %s; %d float32-limited", sum, limited)
}
