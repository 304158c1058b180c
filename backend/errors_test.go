package backend_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sora-go/sora/backend"
)

// deviceOOM stands for a backend's own error type for a failed
// allocation: it keeps its type and message and matches
// backend.ErrOutOfMemory through an Is method for its out-of-memory
// status alone, as *cuda.Error and *ascend.ACLError do.
type deviceOOM struct{ status int }

func (e *deviceOOM) Error() string { return fmt.Sprintf("malloc: status %d", e.status) }

func (e *deviceOOM) Is(target error) bool { return target == backend.ErrOutOfMemory && e.status == 2 }

// noData is a Buffer with no storage: a tensor's shape needs only its
// length.
type noData int

func (b noData) Len() int             { return int(b) }
func (b noData) DType() backend.DType { return backend.Float32 }

// TestErrOutOfMemoryChain checks that a backend's out-of-memory error
// keeps matching ErrOutOfMemory on the ways this package carries errors
// up (an OpError, Errorf with %w, the sticky Recorder, errors.Join),
// with the backend's own error still reachable by errors.As; and that
// other failures, and an error formatted with %v, do not match.
func TestErrOutOfMemoryChain(t *testing.T) {
	oom, other := &deviceOOM{status: 2}, &deviceOOM{status: 700}
	x, err := backend.NewTensor(noData(6), 0, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	recorded := func(e error) error {
		var r backend.Recorder
		r.Record(e)
		r.Record(errors.New("a later failure"))
		return r.Take()
	}
	for _, c := range []struct {
		name      string
		err       error
		want      bool
		ownStatus int // the backend error errors.As finds (0: none)
	}{
		{"the sentinel", backend.ErrOutOfMemory, true, 0},
		{"wrapped with %w", fmt.Errorf("cpu: Alloc [4]: %w", backend.ErrOutOfMemory), true, 0},
		{"a backend's own type", oom, true, 2},
		{"in an OpError", &backend.OpError{Op: "matmul", Err: fmt.Errorf("launch: %w", oom)}, true, 2},
		{"by Errorf", backend.Errorf(backend.OpMatMul, []backend.Tensor{x}, "workspace: %w", oom), true, 2},
		{"recorded", recorded(&backend.OpError{Op: "softmax", Err: oom}), true, 2},
		{"joined", errors.Join(errors.New("close failed"), fmt.Errorf("step: %w", oom)), true, 2},
		{"another status", &backend.OpError{Op: "matmul", Err: other}, false, 700},
		{"formatted with %v", fmt.Errorf("graph: %v", oom), false, 0},
		{"unavailable", &backend.UnavailableError{Backend: "cuda", Reason: "libcuda.so.1 not found"}, false, 0},
	} {
		if got := errors.Is(c.err, backend.ErrOutOfMemory); got != c.want {
			t.Errorf("%s: errors.Is(%v, ErrOutOfMemory) = %v, want %v", c.name, c.err, got, c.want)
		}
		var d *deviceOOM
		if got := errors.As(c.err, &d); got != (c.ownStatus != 0) || got && d.status != c.ownStatus {
			t.Errorf("%s: errors.As(%v) = %v (%v), want the backend's error of status %d", c.name, c.err, got, d, c.ownStatus)
		}
	}
	if got := backend.ErrOutOfMemory.Error(); got != "out of memory" {
		t.Errorf("ErrOutOfMemory says %q", got)
	}
}

// A caller tells an allocation that failed for lack of memory, on any
// backend, from other failures with errors.Is, through every layer that
// wrapped it with %w. (The error here is made up; a backend's Alloc or
// Sync returns such errors.)
func ExampleErrOutOfMemory() {
	fromBackend := fmt.Errorf("cuda: Alloc [512, 4096]: %w", backend.ErrOutOfMemory)
	err := fmt.Errorf("train: step 3: graph: allocating [512, 4096]: %w", fromBackend)
	if errors.Is(err, backend.ErrOutOfMemory) {
		fmt.Println("out of memory: try a smaller batch")
	}
	// Output: out of memory: try a smaller batch
}
