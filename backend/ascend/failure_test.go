package ascend

import (
	"errors"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// injection is one failure the double is told to produce.
type injection struct {
	call        string
	skip, times int
	status      int32
	msg         string
}

// TestFailureInjection makes one ACL or aclnn call fail at a time and
// checks that the failure surfaces as a Go error naming the call, its
// status and the double's message, that nothing crashes, that the backend
// works again afterwards and (openDouble's cleanup) that no device memory,
// host memory or aclnn object is left behind.
func TestFailureInjection(t *testing.T) {
	cases := []struct {
		name string
		inj  injection
		// run does the work that hits the failure and returns the error
		// that surfaces (from Alloc, Sync or Download).
		run func(t *testing.T, b *Backend, x, y backend.Tensor) error
		// want are further substrings of the error.
		want []string
		// leakedExecutors is how many executors the failure strands
		// (phase one done, phase two never called).
		leakedExecutors int64
		// lateInject: run makes the injection itself.
		lateInject bool
	}{
		{
			name: "alloc", inj: injection{call: "aclrtMalloc", status: 207001, msg: "injected: device memory exhausted"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				_, err := b.Alloc(backend.Float32, 1000)
				return err
			},
			want: []string{"ACL_ERROR_RT_MEMORY_ALLOCATION", "alloc [1000]"},
		},
		{
			name: "op temporary", inj: injection{call: "aclrtMalloc", status: 207001, msg: "injected: no room for a temporary"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Softmax(y, x, backend.SoftmaxParams{Scale: 0.5})
				return b.Sync()
			},
			want: []string{"softmax [3, 5],[3, 5]"},
		},
		{
			// The injection is made inside run, once the inputs exist: it
			// hits the allocation of aclnnMm's workspace, after phase one
			// has made an executor that can then never run.
			name: "workspace", inj: injection{call: "aclrtMalloc", status: 207001, msg: "injected: no room for a workspace"},
			lateInject: true,
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				c, _ := b.Alloc(backend.Float32, 3, 3)
				if err := double.Inject("aclrtMalloc", 0, 1, 207001, "injected: no room for a workspace"); err != nil {
					t.Fatal(err)
				}
				b.MatMul(c, x, x, backend.MatMulParams{TransB: true, Alpha: 1})
				return b.Sync()
			},
			want:            []string{"workspace of", "aclnnMm", "matmul"},
			leakedExecutors: 1,
		},
		{
			name: "phase one", inj: injection{call: "aclnnMulGetWorkspaceSize", status: 161002, msg: "injected: bad shapes"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Binary(backend.Mul, y, x, x)
				return b.Sync()
			},
			want: []string{"binary [3, 5],[3, 5],[3, 5]", "ACLNN_ERR_PARAM_INVALID"},
		},
		{
			name: "phase two", inj: injection{call: "aclnnSoftmax", status: 361001, msg: "injected: launch failed"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Softmax(y, x, backend.SoftmaxParams{})
				return b.Sync()
			},
			want: []string{"ACLNN_ERR_RUNTIME_ERROR", "softmax"},
		},
		{
			name: "device", inj: injection{call: "exec:aclnnSoftmax", status: 507015, msg: "injected: AI core exception"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Softmax(y, x, backend.SoftmaxParams{})
				return b.Sync()
			},
			want: []string{"aclrtSynchronizeStream", "ACL_ERROR_RT_AICORE_EXCEPTION"},
		},
		{
			name: "tensor description", inj: injection{call: "aclCreateTensor", skip: 1, status: 1, msg: "injected: no descriptor"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Binary(backend.Add, y, x, x)
				return b.Sync()
			},
			want: []string{"returned NULL"},
		},
		{
			name: "scalar", inj: injection{call: "aclCreateScalar", status: 1, msg: "injected: no scalar"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Scale(y, x, 3)
				return b.Sync()
			},
			want: []string{"returned NULL", "scale"},
		},
		{
			name: "int array", inj: injection{call: "aclCreateIntArray", status: 1, msg: "injected: no int array"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				d, _ := b.Alloc(backend.Float32, 3)
				b.ReduceRows(backend.Sum, d, x)
				return b.Sync()
			},
			want: []string{"returned NULL", "reduce_rows"},
		},
		{
			name: "upload queue", inj: injection{call: "aclrtMemcpyAsync", status: 107000, msg: "injected: copy refused"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Upload(y, make([]float32, 15))
				return b.Sync()
			},
			want: []string{"upload [3, 5]", "ACL_ERROR_RT_PARAM_INVALID"},
		},
		{
			name: "upload on device", inj: injection{call: "exec:aclrtMemcpyAsync", status: 507015, msg: "injected: DMA fault"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Upload(y, make([]float32, 15))
				out := make([]float32, 15)
				return b.Download(out, y)
			},
			want: []string{"aclrtSynchronizeStream"},
		},
		{
			name: "staging memory", inj: injection{call: "aclrtMallocHost", status: 207001, msg: "injected: no pinned memory"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				// Bigger than any staging block the pool holds.
				z, _ := b.Alloc(backend.Float32, 1000)
				b.Upload(z, make([]float32, 1000))
				return b.Sync()
			},
			want: []string{"upload [1000]"},
		},
		{
			name: "download copy", inj: injection{call: "aclrtMemcpy", status: 107000, msg: "injected: copy back refused"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				return b.Download(make([]float32, 15), x)
			},
			want: []string{"download [3, 5]"},
		},
		{
			name: "synchronize", inj: injection{call: "aclrtSynchronizeStream", status: 507046, msg: "injected: timeout"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Unary(backend.Exp, y, x)
				return b.Sync()
			},
			want: []string{"ACL_ERROR_RT_STREAM_SYNC_TIMEOUT"},
		},
		{
			name: "context", inj: injection{call: "aclrtSetCurrentContext", status: 107017, msg: "injected: context lost"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				b.Unary(backend.Exp, y, x)
				return b.Sync()
			},
			want: []string{"unary"},
		},
		{
			name: "middle of a composition", inj: injection{call: "aclnnInplaceAddGetWorkspaceSize", skip: 1, status: 161002, msg: "injected: second add refused"},
			run: func(t *testing.T, b *Backend, x, y backend.Tensor) error {
				m, _ := b.Alloc(backend.Float32, 3, 5)
				v, _ := b.Alloc(backend.Float32, 3, 5)
				b.Fill(m, 0)
				b.Fill(v, 0)
				b.AdamW(y, x, m, v, backend.AdamWParams{LR: 0.1, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, Step: 1})
				return b.Sync()
			},
			want: []string{"adamw"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, d := openDouble(t, Options{})
			x := upload(t, b, []float32{1, 2, 3, 4, 5, -1, -2, -3, -4, -5, 0.5, 0.25, 0, 1, 2}, 3, 5)
			y, err := b.Alloc(backend.Float32, 3, 5)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			if !tc.lateInject {
				if err := d.Inject(tc.inj.call, tc.inj.skip, max(tc.inj.times, 1), tc.inj.status, tc.inj.msg); err != nil {
					t.Fatal(err)
				}
			}
			execBefore := d.Live("executors")
			err = tc.run(t, b, x, y)
			if err == nil {
				t.Fatalf("no error; calls: %v", d.Log())
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{tc.inj.call, tc.inj.msg}, tc.want...) {
				if w != "" && !strings.Contains(msg, strings.TrimPrefix(w, "exec:")) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if !strings.Contains(msg, "injected") {
				t.Errorf("error %q lacks the double's message", msg)
			}
			var ae *ACLError
			if !errors.As(err, &ae) {
				t.Errorf("error %q is not an *ACLError", msg)
			}
			// Memory that ran out, the device's or the pinned staging
			// memory's, and that alone, is backend.ErrOutOfMemory.
			if got, want := errors.Is(err, backend.ErrOutOfMemory), tc.inj.status == 207001; got != want {
				t.Errorf("errors.Is(%q, backend.ErrOutOfMemory) = %v, want %v", msg, got, want)
			}
			// The error was taken; the backend works again.
			if err := b.Sync(); err != nil {
				t.Fatalf("second Sync: %v", err)
			}
			z, _ := b.Alloc(backend.Float32, 3, 5)
			b.Binary(backend.Add, z, x, x)
			got := download(t, b, z)
			for i, v := range []float32{1, 2, 3, 4, 5, -1, -2, -3, -4, -5, 0.5, 0.25, 0, 1, 2} {
				if got[i] != 2*v {
					t.Fatalf("after the failure: x+x = %v", got)
				}
			}
			if d.Live("pending_tasks") != 0 {
				t.Errorf("%d tasks still queued after Download", d.Live("pending_tasks"))
			}
			if got := d.Live("executors") - execBefore; got != tc.leakedExecutors {
				t.Errorf("%d executors stranded, want %d", got, tc.leakedExecutors)
			}
		})
	}
}

// TestOpenFailures makes each step of Open fail in turn: Open must return
// the error and undo the steps already done.
func TestOpenFailures(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	if double == nil {
		t.Skip("no double attached")
	}
	d := double
	for _, call := range []string{"aclrtSetDevice", "aclrtCreateContext", "aclrtCreateStream"} {
		t.Run(call, func(t *testing.T) {
			d.Reset()
			before := map[string]int64{}
			for _, k := range leakCounters {
				before[k] = d.Live(k)
			}
			if err := d.Inject(call, 0, 1, 507033, "injected: "+call+" refused"); err != nil {
				t.Fatal(err)
			}
			b, err := Open(Options{})
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), call) || !strings.Contains(err.Error(), "injected: "+call+" refused") {
				t.Errorf("error %q does not name %s and its message", err, call)
			}
			for _, k := range leakCounters {
				if got := d.Live(k); got != before[k] {
					t.Errorf("%s = %d after the failed Open, want %d", k, got, before[k])
				}
			}
			d.Reset()
			// The device is usable again.
			b, err = Open(Options{})
			if err != nil {
				t.Fatalf("Open after the failure: %v", err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("no such device", func(t *testing.T) {
		d.Reset()
		_, err := Open(Options{Device: 3})
		if err == nil || !strings.Contains(err.Error(), "aclrtSetDevice") {
			t.Fatalf("Open(device 3) = %v, want an aclrtSetDevice error", err)
		}
	})
}

// TestOutOfMemory checks the memory-limit path: an allocation past the
// limit fails with a clear error; one that fits only once the pool's cached
// blocks are returned succeeds after the pool returns them.
func TestOutOfMemory(t *testing.T) {
	b, d := openDouble(t, Options{})
	const mib = 1 << 20
	big, err := b.Alloc(backend.Float32, 3*mib/8) // 1.5 MiB: a 2 MiB block
	if err != nil {
		t.Fatal(err)
	}
	b.Free(big) // cached in the pool
	if got := b.BytesInUse(); got != 2*mib {
		t.Fatalf("BytesInUse = %d with one cached 2 MiB block", got)
	}
	d.SetMemLimit(d.Live("device_bytes") + mib/2)
	// A 1 MiB block fits only once the cached 2 MiB go back to the device.
	frees := d.Calls("aclrtFree")
	x, err := b.Alloc(backend.Float32, mib/4)
	if err != nil {
		t.Fatalf("Alloc that fits after trimming the pool: %v", err)
	}
	if d.Calls("aclrtFree") == frees {
		t.Error("the pool did not return its cached block")
	}
	if got := b.BytesInUse(); got != mib {
		t.Errorf("BytesInUse = %d, want the 1 MiB block", got)
	}
	// 4 MiB never fit.
	_, err = b.Alloc(backend.Float32, mib)
	if err == nil || !IsOutOfMemory(err) || !errors.Is(err, backend.ErrOutOfMemory) || !strings.Contains(err.Error(), "out of device memory") {
		t.Fatalf("Alloc past the limit: %v, want an out-of-memory error", err)
	}
	t.Log(err)
	b.Free(x)
	d.SetMemLimit(0)
}

// TestForeignAndFreedTensors checks the ownership errors.
func TestForeignAndFreedTensors(t *testing.T) {
	b, _ := openDouble(t, Options{})
	b2, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	x := upload(t, b, []float32{1, 2, 3}, 3)
	y := upload(t, b2, []float32{1, 2, 3}, 3)
	b.Binary(backend.Add, x, x, y)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "another backend") {
		t.Errorf("foreign tensor: %v", err)
	}
	b.Free(x)
	b.Unary(backend.Neg, x, x)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("freed tensor: %v", err)
	}
	b.Free(x)
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "freed twice") {
		t.Errorf("double free: %v", err)
	}
}
