package train

import "github.com/sora-go/sora/backend"

// Memory is the most memory a run's backend held, for a backend that
// keeps high-water marks (backend.MemoryTracker). Its figures count the
// backend's tensors (and a device backend's cached blocks), not the Go
// heap: see backend.MemoryUsage for what they include.
type Memory struct {
	// Backend is the backend's registry name, as DeviceSpan.Backend.
	Backend string
	// PeakInUse is the most bytes the backend's tensors held, and
	// PeakReserved the most it held from the device with what it keeps
	// to reuse (a device pool's freed blocks, the CPU's scratch), from
	// the backend's opening or last ResetPeakMemory
	// before Run (in sora finetune its opening: loading the model and
	// the zero-shot evaluation count) to the end of Run, the
	// evaluations included.
	PeakInUse, PeakReserved int64
	// TrainPeakInUse and TrainPeakReserved are the same over the
	// training steps alone (what --batch, --micro-batch and --max-len
	// decide), with the checkpoints saved between them but not the
	// evaluations. 0 when this Run trained no step.
	TrainPeakInUse, TrainPeakReserved int64
	// DeviceTotal is the device's memory, 0 where the backend does not
	// tell it.
	DeviceTotal int64
}

// memWatch follows a backend's peaks through a run's phases, telling the
// training steps from the rest: at each change of phase it takes the
// backend's peaks into the run's and resets them (ResetPeakMemory). A
// zero memWatch (a backend that keeps no peaks) does nothing.
type memWatch struct {
	tr       backend.MemoryTracker
	name     string
	training bool // the phase since the last reset
	// trained is whether a training step has ended (step): a training
	// phase need not hold one (a resume whose first evaluation stops
	// the run early, a run cancelled before its first step), and the
	// training steps' peaks are reported only where a step ran.
	trained bool
	all     backend.MemoryUsage
	train   backend.MemoryUsage
}

// newMemWatch starts watching b, taking the peaks it holds so far into
// the run's and starting a phase of training or not.
func newMemWatch(b backend.Backend, training bool) *memWatch {
	tr, ok := b.(backend.MemoryTracker)
	if !ok {
		return &memWatch{}
	}
	w := &memWatch{tr: tr, name: b.Name()}
	w.phase(training)
	return w
}

// fold takes the peaks of the phase under way into the run's.
func (w *memWatch) fold() (all, train backend.MemoryUsage) {
	all, train = w.all, w.train
	u := w.tr.MemoryUsage()
	all.PeakInUse, all.PeakReserved = max(all.PeakInUse, u.PeakInUse), max(all.PeakReserved, u.PeakReserved)
	all.DeviceTotal = u.DeviceTotal
	if w.training {
		train.PeakInUse, train.PeakReserved = max(train.PeakInUse, u.PeakInUse), max(train.PeakReserved, u.PeakReserved)
	}
	return all, train
}

// phase ends the phase under way and starts one of training or not.
func (w *memWatch) phase(training bool) {
	if w.tr == nil {
		return
	}
	w.all, w.train = w.fold()
	w.tr.ResetPeakMemory()
	w.training = training
}

// step records that a training step has ended, in a training phase.
func (w *memWatch) step() {
	w.trained = w.trained || w.training
}

// result returns the run's peaks so far, nil for a backend that keeps
// none.
func (w *memWatch) result() *Memory {
	if w.tr == nil {
		return nil
	}
	all, train := w.fold()
	m := &Memory{Backend: w.name, PeakInUse: all.PeakInUse, PeakReserved: all.PeakReserved, DeviceTotal: all.DeviceTotal}
	if w.trained {
		m.TrainPeakInUse, m.TrainPeakReserved = train.PeakInUse, train.PeakReserved
	}
	return m
}

// noteSpan records the training steps' peaks so far in the last of spans
// when it is the span of this run's steps (now): the most of what it
// recorded (an earlier run on the same device, resumed) and this run's.
// It does nothing before this run trains a step.
func (w *memWatch) noteSpan(spans []DeviceSpan, now DeviceSpan) {
	if w.tr == nil || !w.trained || len(spans) == 0 || !spans[len(spans)-1].sameDevice(now) {
		return
	}
	_, train := w.fold()
	last := &spans[len(spans)-1]
	last.PeakMemoryBytes = max(last.PeakMemoryBytes, train.PeakInUse)
	last.PeakReservedBytes = max(last.PeakReservedBytes, train.PeakReserved)
}
