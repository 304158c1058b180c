package llama_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/sora-go/sora/models/llama"
)

func TestArgmax(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		logits []float32
		want   int
	}{
		{[]float32{1, 3, 2}, 1},
		{[]float32{5, 5, 1}, 0},        // first on ties, as llama2.c
		{[]float32{-3, -1, -1, -2}, 1}, // negative logits
		{[]float32{nan, 2, 7}, 2},      // a NaN is never chosen over a number
		{[]float32{1, nan, 0}, 0},
		{[]float32{4}, 0},
	} {
		if got := llama.Argmax(tc.logits); got != tc.want {
			t.Errorf("Argmax(%v) = %d, want %d", tc.logits, got, tc.want)
		}
	}
}

// TestSamplerDistribution draws many tokens and checks each token's
// frequency against the probability it should have, within five standard
// deviations of a binomial count.
func TestSamplerDistribution(t *testing.T) {
	logits := []float32{0, 1, 2, float32(math.Log(0.5)), -1}
	softmax := func(temp float64, keep []int) []float64 {
		p := make([]float64, len(logits))
		var s float64
		for _, i := range keep {
			p[i] = math.Exp(float64(logits[i]) / temp)
			s += p[i]
		}
		for i := range p {
			p[i] /= s
		}
		return p
	}
	all := []int{0, 1, 2, 3, 4}
	// At temperature 1 the probabilities are 0.0835, 0.227, 0.617,
	// 0.0418, 0.0307: the smallest set whose sum exceeds 0.8 is {2, 1}
	// (0.844), 0.9 needs {2, 1, 0} (0.928) and 0.95 {2, 1, 0, 3} (0.969).
	for _, tc := range []struct {
		name       string
		temp, topP float64
		want       []float64
	}{
		{"temperature 1", 1, 0, softmax(1, all)},
		{"temperature 2.5", 2.5, 1, softmax(2.5, all)},
		{"temperature 0.5", 0.5, 0, softmax(0.5, all)},
		{"top-p 0.8", 1, 0.8, softmax(1, []int{1, 2})},
		{"top-p 0.9", 1, 0.9, softmax(1, []int{0, 1, 2})},
		{"top-p 0.95", 1, 0.95, softmax(1, []int{0, 1, 2, 3})},
		{"top-p 0.5 keeps the best", 1, 0.5, softmax(1, []int{2})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := llama.NewSampler(tc.temp, tc.topP, 42)
			if err != nil {
				t.Fatal(err)
			}
			const n = 40000
			counts := make([]int, len(logits))
			for range n {
				counts[s.Sample(logits)]++
			}
			for i, p := range tc.want {
				sd := math.Sqrt(n * p * (1 - p))
				if d := math.Abs(float64(counts[i]) - n*p); d > 5*sd+0.5 {
					t.Errorf("token %d drawn %d times of %d, expected %.0f ± %.0f", i, counts[i], n, n*p, sd)
				}
			}
		})
	}
}

func TestSamplerGreedyAndArguments(t *testing.T) {
	s, err := llama.NewSampler(0, 0.9, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Greedy() {
		t.Error("temperature 0 is not greedy")
	}
	for range 10 {
		if got := s.Sample([]float32{0.1, 0.3, 0.2}); got != 1 {
			t.Fatalf("greedy sample %d, want 1", got)
		}
	}
	for _, bad := range [][2]float64{{-1, 0}, {math.NaN(), 0}, {math.Inf(1), 0}, {1, -0.1}, {1, 1.5}, {1, math.NaN()}} {
		if _, err := llama.NewSampler(bad[0], bad[1], 0); err == nil {
			t.Errorf("NewSampler(%v, %v): no error", bad[0], bad[1])
		}
	}
	// A tiny temperature concentrates on the arg-max, and an infinite
	// logit falls back to it instead of drawing from NaN probabilities.
	s, _ = llama.NewSampler(1e-30, 0, 1)
	if got := s.Sample([]float32{1, 3, 2}); got != 1 {
		t.Errorf("sampling at temperature 1e-30 gave %d, want the arg-max 1", got)
	}
	s, _ = llama.NewSampler(1, 0, 1)
	if got := s.Sample([]float32{1, 2, float32(math.Inf(1)), 0}); got != 2 {
		t.Errorf("sampling with an infinite logit gave %d, want its index 2", got)
	}
}

func TestSamplerAllocatesNothing(t *testing.T) {
	logits := make([]float32, 512)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)))
	}
	for _, topP := range []float64{0, 0.9} {
		s, err := llama.NewSampler(0.8, topP, 3)
		if err != nil {
			t.Fatal(err)
		}
		s.Sample(logits)
		if a := testing.AllocsPerRun(100, func() { s.Sample(logits) }); a != 0 {
			t.Errorf("top-p %v: %v allocations per Sample", topP, a)
		}
	}
}

func ExampleSampler() {
	logits := []float32{0.5, 2.5, 1.0}
	greedy, _ := llama.NewSampler(0, 0, 0)
	fmt.Println(greedy.Sample(logits))
	// Nucleus sampling at top-p 0.5 keeps only the most likely token here
	// (its probability, 0.73, already exceeds 0.5).
	nucleus, _ := llama.NewSampler(1, 0.5, 42)
	fmt.Println(nucleus.Sample(logits), nucleus.Sample(logits))
	// Output:
	// 1
	// 1 1
}
