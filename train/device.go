package train

import (
	"fmt"
	"time"

	"github.com/sora-go/sora/backend"
)

// DeviceSpan is a stretch of a run's steps trained on one backend and
// device, which a resume on another machine or with another --backend
// changes: from step FromStep (1-based) up to the step before the next
// span's, or to the end. A run goes on bit for bit only on the backend and
// device it was trained on; on another its steps round differently.
type DeviceSpan struct {
	FromStep int `json:"from_step"`
	// Backend is the backend's registry name (backend.Backend.Name).
	Backend string `json:"backend"`
	// Device describes the device as the backend does
	// (backend.Backend.Device: what decides the results' bits, nothing
	// that differs between runs on one device). Checkpoints made before
	// the CUDA backend left the kernels' origin out of Device recorded it
	// with that clause taken out already, which is what Device says now.
	Device string `json:"device"`
	// StepMillis and TokensPerSec are, in Result.Devices, the mean time
	// of the span's steps and their throughput, as Result.StepTime and
	// TokensPerSec are of the whole run (the steps before a resume as
	// metrics.jsonl records them); 0 where no step of the span is
	// recorded. Checkpoints do not keep them.
	StepMillis   float64 `json:"ms_per_step,omitempty"`
	TokensPerSec float64 `json:"tokens_per_s,omitempty"`
	// PeakMemoryBytes and PeakReservedBytes are the most bytes the
	// backend's tensors held, and it reserved from the device, during
	// the span's training steps (Memory.TrainPeakInUse and
	// TrainPeakReserved): the largest of the runs that trained them,
	// where a resume went on on the same device. Checkpoints keep them.
	// 0 (absent) for a backend that keeps no peaks, and for spans
	// trained before sora recorded them.
	PeakMemoryBytes   int64 `json:"peak_memory_bytes,omitempty"`
	PeakReservedBytes int64 `json:"peak_reserved_bytes,omitempty"`
}

func (s DeviceSpan) from() int { return s.FromStep }

// sameDevice reports whether two spans are of one backend and device.
func (s DeviceSpan) sameDevice(o DeviceSpan) bool {
	return s.Backend == o.Backend && s.Device == o.Device
}

// name names the backend and device: "cuda (NVIDIA H200, …)".
func (s DeviceSpan) name() string { return fmt.Sprintf("%s (%s)", s.Backend, s.Device) }

// deviceOf returns the span of steps from step on b.
func deviceOf(b backend.Backend, from int) DeviceSpan {
	return DeviceSpan{FromStep: from, Backend: b.Name(), Device: b.Device()}
}

// deviceNote says ("" when there is nothing to say) that a resume from
// checkpoint dir, whose steps up to step trained on the spans was, goes
// on on another backend or device, now.
func deviceNote(dir string, was []DeviceSpan, step int, now DeviceSpan) string {
	if len(was) == 0 || step == 0 {
		return ""
	}
	last := was[len(was)-1]
	if last.sameDevice(now) {
		return ""
	}
	steps := fmt.Sprintf("steps %d to %d", last.FromStep, step)
	if last.FromStep == step {
		steps = fmt.Sprintf("step %d", step)
	}
	what := "device"
	if last.Backend != now.Backend {
		what = "backend"
	}
	return fmt.Sprintf("note: resuming %s on another %s: its %s trained on %s, and it goes on on %s. "+
		"A run goes on bit for bit only on the backend and device it was trained on; on another the steps round differently, "+
		"so the run matches an uninterrupted one to rounding, not exactly (run.json's device_history and metrics.jsonl tell the steps apart)",
		dir, what, steps, last.name(), now.name())
}

// deviceTimes returns spans, the device spans of a run's steps up to
// its last, with each one's mean step time and throughput: those of the
// steps before start (where the run resumed) from their records, kept,
// and those of this run's steps (start+1 up to end), which took d for
// tokens real tokens and all fall in the last span, from those totals.
func deviceTimes(spans []DeviceSpan, kept []Record, start, end int, d time.Duration, tokens int) []DeviceSpan {
	out := make([]DeviceSpan, len(spans))
	for i, sp := range spans {
		last := spanEnd(spans, i, end)
		var n, tok int
		var ms float64
		for _, r := range kept {
			if r.Loss != nil && r.Step >= sp.FromStep && r.Step <= last && r.Step <= start {
				n++
				ms += r.StepMillis
				tok += r.Tokens
			}
		}
		if i == len(spans)-1 && end > start {
			n += end - start
			ms += float64(d.Microseconds()) / 1000
			tok += tokens
		}
		sp.StepMillis, sp.TokensPerSec = 0, 0
		if n > 0 && ms > 0 {
			sp.StepMillis = ms / float64(n)
			sp.TokensPerSec = float64(tok) / (ms / 1000)
		}
		out[i] = sp
	}
	return out
}
