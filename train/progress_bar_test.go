package train

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"
)

// TestBarStepMatchesLoss checks that every line the progress bar draws
// shows a step together with that step's own loss (the bar's counter used
// to lag one step behind the description).
func TestBarStepMatchesLoss(t *testing.T) {
	var out bytes.Buffer
	b := NewBar(&out)
	b.Start(3, 0)
	for step := 1; step <= 3; step++ {
		b.Step(Status{Step: step, Total: 3, Loss: float64(step) + 0.5})
	}
	b.Finish()
	re := regexp.MustCompile(`step (\d+)/3  loss (\d+\.\d+)`)
	shown := re.FindAllStringSubmatch(out.String(), -1)
	if len(shown) == 0 {
		t.Fatalf("no step drawn in %q", out.String())
	}
	last := 0
	for _, m := range shown {
		step, _ := strconv.Atoi(m[1])
		loss, _ := strconv.ParseFloat(m[2], 64)
		if loss != float64(step)+0.5 {
			t.Errorf("drawn: step %d with loss %g, want %g", step, loss, float64(step)+0.5)
		}
		last = step
	}
	if last != 3 {
		t.Errorf("last drawn step %d, want 3 (output %q)", last, out.String())
	}
}
