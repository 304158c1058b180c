package optim_test

import (
	"fmt"

	"github.com/sora-go/sora/graph/optim"
)

// The learning-rate factor of a 2-step warm-up followed by a cosine decay
// to step 10, as Hugging Face's get_cosine_schedule_with_warmup gives it:
// the first step (step 0) has factor 0.
func ExampleWarmupCosine() {
	s := optim.WarmupCosine{Warmup: 2, Total: 10}
	for step := range 11 {
		fmt.Printf("%.3f ", s.Factor(step))
	}
	fmt.Println()
	// Output: 0.000 0.500 1.000 0.962 0.854 0.691 0.500 0.309 0.146 0.038 0.000
}
