package train

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Status is the state of a run after an optimizer step.
type Status struct {
	Step, Total int
	Epoch       float64
	// Loss is the step's mean training loss.
	Loss float64
	// LR is the learning rate the step used (of the first group).
	LR float64
	// GradNorm is the global gradient norm before clipping.
	GradNorm float64
	// TokensPerSec is the recent training throughput in real (unpadded)
	// tokens per second.
	TokensPerSec float64
	// Elapsed is the wall time of this run so far and ETA the estimated
	// time to the last step.
	Elapsed, ETA time.Duration
}

// Progress shows a run's progress to a user.
type Progress interface {
	// Start announces a run of total steps of which done are already done
	// (when resuming).
	Start(total, done int)
	// Step reports a finished optimizer step.
	Step(s Status)
	// Message prints a line (an evaluation result, a checkpoint) without
	// breaking the display.
	Message(msg string)
	// Finish ends the display.
	Finish()
}

// NewProgress returns a progress bar when f is a terminal and plain log
// lines every logEvery steps otherwise (a file, a pipe, a CI log).
func NewProgress(f *os.File, logEvery int) Progress {
	if f != nil && term.IsTerminal(int(f.Fd())) {
		return NewBar(f)
	}
	return NewLog(f, logEvery)
}

// bar draws a progress bar with the loss, learning rate, tokens/s and ETA.
type bar struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

// NewBar returns a Progress that draws a progress bar on w, a terminal.
func NewBar(w io.Writer) Progress { return &bar{w: w} }

func (b *bar) Start(total, done int) {
	b.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription("training"),
		progressbar.OptionSetWidth(24),
		progressbar.OptionSetPredictTime(false), // the ETA below uses this run's steps only
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(b.w) }),
	)
	if done > 0 {
		b.bar.Set(done)
	}
}

func (b *bar) Step(s Status) {
	// The step count is part of the description, not the bar's own
	// counter: the bar draws at most every 100 ms, on whichever of Describe
	// and Set comes first, so its counter would show the step before the
	// one whose loss is printed.
	b.bar.Describe(fmt.Sprintf("step %d/%d  loss %.4f  lr %.2e  %s tok/s  ETA %s", s.Step, s.Total, s.Loss, s.LR, rate(s.TokensPerSec), short(s.ETA)))
	b.bar.Set(s.Step)
}

func (b *bar) Message(msg string) {
	b.bar.Clear()
	fmt.Fprintln(b.w, msg)
}

func (b *bar) Finish() {
	if b.bar != nil {
		b.bar.Finish()
	}
}

// logger prints one line every few steps.
type logger struct {
	w     io.Writer
	every int
	total int
}

// NewLog returns a Progress that prints a plain line to w every `every`
// steps (and at the last step): for logs and pipes, where a bar would be
// noise. A nil w prints nothing.
func NewLog(w io.Writer, every int) Progress {
	if w == nil {
		w = io.Discard
	}
	return &logger{w: w, every: max(1, every)}
}

func (l *logger) Start(total, done int) {
	l.total = total
	if done > 0 {
		fmt.Fprintf(l.w, "resuming at step %d of %d\n", done, total)
	}
}

func (l *logger) Step(s Status) {
	if s.Step%l.every != 0 && s.Step != s.Total {
		return
	}
	fmt.Fprintf(l.w, "step %*d/%d  epoch %.2f  loss %.4f  lr %.3e  grad-norm %.3f  %s tok/s  elapsed %s  ETA %s\n",
		len(fmt.Sprint(s.Total)), s.Step, s.Total, s.Epoch, s.Loss, s.LR, s.GradNorm, rate(s.TokensPerSec), short(s.Elapsed), short(s.ETA))
}

func (l *logger) Message(msg string) { fmt.Fprintln(l.w, msg) }

func (l *logger) Finish() {}

// Quiet is a Progress that shows nothing.
type Quiet struct{}

func (Quiet) Start(int, int) {}
func (Quiet) Step(Status)    {}
func (Quiet) Message(string) {}
func (Quiet) Finish()        {}

func rate(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

// short formats a duration to the second (to 0.1 s under ten seconds).
func short(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
