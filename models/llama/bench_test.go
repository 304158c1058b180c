package llama_test

import (
	"testing"
	"time"

	"github.com/sora-go/sora/models/internal/reference"
	"github.com/sora-go/sora/models/llama"
)

// BenchmarkGenerate times greedy generation with stories260K over all 512
// positions from the prompt "Once upon a time" (not stopping at BOS), as
// llama2.c's "run stories260K.bin -t 0 -n 512 -i 'Once upon a time'" does,
// and reports tokens/s. The "reference" sub-benchmark runs the same loop on
// models/internal/reference, the plain float32 host forward written like
// llama2.c's run.c, as the baseline of the same run; "model" reports its
// speed relative to that baseline too.
//
// llama2.c's own run.c is not part of the repository; to compare with it,
// build it with gcc -O3 -march=native and run the command above on the
// same machine.
func BenchmarkGenerate(b *testing.B) {
	w, tok := loadStories(b)
	prompt := tok.Encode("Once upon a time", true, false)
	const steps = 512
	var refRate float64
	b.Run("reference", func(b *testing.B) {
		m, err := reference.New(w)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for range b.N {
			token := prompt[0]
			for pos := range steps {
				logits, err := m.Forward(token, pos)
				if err != nil {
					b.Fatal(err)
				}
				token = reference.Argmax(logits)
				if pos+1 < len(prompt) {
					token = prompt[pos+1]
				}
			}
		}
		refRate = float64(b.N*steps) / time.Since(start).Seconds()
		b.ReportMetric(refRate, "tok/s")
	})
	b.Run("model", func(b *testing.B) {
		be := openCPU(b)
		m := newModel(b, be, w)
		gen, err := m.NewGenerator(0)
		if err != nil {
			b.Fatal(err)
		}
		defer gen.Close()
		if _, err := gen.Generate(prompt, llama.GenerateOptions{Steps: steps}, nil); err != nil { // warm-up
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			seq, err := gen.Generate(prompt, llama.GenerateOptions{Steps: steps}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if len(seq) != steps+1 {
				b.Fatalf("generated %d tokens, want %d", len(seq), steps+1)
			}
		}
		rate := float64(b.N*steps) / time.Since(start).Seconds()
		b.ReportMetric(rate, "tok/s")
		if refRate > 0 {
			b.ReportMetric(rate/refRate, "x-reference")
		}
	})
}
