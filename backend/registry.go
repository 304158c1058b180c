package backend

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Driver makes one kind of backend available. A backend package registers
// its Driver in an init function.
type Driver interface {
	// Probe reports, without claiming the device, whether the backend can
	// run here: a description of the device (for the CPU, its SIMD features)
	// or an error, typically an *UnavailableError, saying what is missing.
	Probe() (description string, err error)
	// Open returns a ready backend or an error saying what is missing.
	Open() (Backend, error)
}

var (
	registryMu sync.Mutex
	registry   = map[string]Driver{}
)

// Register makes a driver available under name. It panics if name is empty
// or already registered, as database/sql.Register does: both are
// programming errors in a backend package's init.
func Register(name string, d Driver) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if name == "" || d == nil {
		panic("backend: Register with empty name or nil driver")
	}
	if _, dup := registry[name]; dup {
		panic("backend: Register called twice for " + name)
	}
	registry[name] = d
}

// Open opens the backend registered under name.
func Open(name string) (Backend, error) {
	registryMu.Lock()
	d, ok := registry[name]
	registryMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("backend: unknown backend %q (registered: %s)", name, strings.Join(Names(), ", "))
	}
	return d.Open()
}

// Names returns the registered backend names, sorted.
func Names() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Info describes a registered backend as [List] reports it.
type Info struct {
	Name string
	// Available is true when the backend can be opened here.
	Available bool
	// Description describes the device when available.
	Description string
	// Err says why the backend is unavailable.
	Err error
}

// List probes every registered backend, in name order.
func List() []Info {
	var infos []Info
	for _, name := range Names() {
		registryMu.Lock()
		d := registry[name]
		registryMu.Unlock()
		desc, err := d.Probe()
		infos = append(infos, Info{Name: name, Available: err == nil, Description: desc, Err: err})
	}
	return infos
}

// UnavailableError reports that a backend cannot run on this machine and
// what was looked for.
type UnavailableError struct {
	Backend string
	// Reason says what is missing, e.g. "libcuda.so.1 not found".
	Reason string
	// Tried lists what was looked for, e.g. the paths searched.
	Tried []string
}

func (e *UnavailableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s unavailable: %s", e.Backend, e.Reason)
	if len(e.Tried) > 0 {
		fmt.Fprintf(&b, " (tried: %s)", strings.Join(e.Tried, ", "))
	}
	return b.String()
}

// IsUnavailable reports whether err says a backend is unavailable.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// OpError is the error a backend records for a failed op: the op, the
// shapes it was called with and what went wrong.
type OpError struct {
	Op     string
	Shapes []Shape
	Err    error
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	for i, s := range e.Shapes {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(s.String())
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }

// Errorf returns an *OpError for op with the shapes of ts (zero Tensors are
// shown as []) and a formatted message.
func Errorf(op Op, ts []Tensor, format string, args ...any) error {
	shapes := make([]Shape, len(ts))
	for i, t := range ts {
		shapes[i] = t.Shape()
	}
	return &OpError{Op: string(op), Shapes: shapes, Err: fmt.Errorf(format, args...)}
}

// Recorder holds a backend's first recorded error. Backends embed it to
// implement the sticky-error convention of the package documentation.
type Recorder struct {
	mu  sync.Mutex
	err error
	// failed is err != nil, for Failed to read without the lock. Every op
	// asks first, and taking the lock is a locked instruction on amd64,
	// which waits for the store buffer to drain, the op before's streaming
	// stores included: in a profile of Softmax over 32 rows of 1024 floats
	// (one thread, Zen 5) 5% of the samples sat on it. A plain load leaves
	// the wait to whatever needs the stores done; the ops measured alike
	// either way (an Add of 16 floats 300–336 ns a call with the lock,
	// 295–306 without), so this is about what an op's first step should
	// cost, not a measured gain.
	failed atomic.Bool
}

// Record keeps err if no earlier error is held. It ignores nil.
func (r *Recorder) Record(err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	if r.err == nil {
		r.err = err
		r.failed.Store(true)
	}
	r.mu.Unlock()
}

// Failed reports whether an error is held; ops skip their work when it is.
func (r *Recorder) Failed() bool { return r.failed.Load() }

// Take returns the held error and clears it.
func (r *Recorder) Take() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.err
	if err != nil {
		r.err = nil
		r.failed.Store(false)
	}
	return err
}
