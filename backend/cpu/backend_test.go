package cpu

import (
	"runtime"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/cpu/internal/vec"
	"github.com/sora-go/sora/backend/internal/bf16"
	"github.com/sora-go/sora/internal/hostmem"
)

func TestRegistered(t *testing.T) {
	found := false
	for _, info := range backend.List() {
		if info.Name == "cpu" {
			found = true
			if !info.Available || info.Err != nil {
				t.Errorf("cpu listed unavailable: %v", info.Err)
			}
			if !strings.Contains(info.Description, "thread") {
				t.Errorf("description %q lacks the thread count", info.Description)
			}
		}
	}
	if !found {
		t.Fatal("cpu is not registered")
	}
	be, err := backend.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	if be.Name() != "cpu" {
		t.Errorf("Name() = %q", be.Name())
	}
}

func TestSupportsAllOps(t *testing.T) {
	be := New(Options{})
	for _, op := range backend.AllOps {
		if !be.Supports(op) {
			t.Errorf("Supports(%s) = false", op)
		}
	}
	if be.Supports("no_such_op") {
		t.Error("Supports reports an op that does not exist")
	}
}

func TestOptionsFromEnv(t *testing.T) {
	tests := []struct {
		portable, threads, kernel string
		want                      Options
		wantErr                   string
	}{
		{"", "", "", Options{}, ""},
		{"1", "", "", Options{Portable: true}, ""},
		{"true", "3", "", Options{Portable: true, Threads: 3}, ""},
		{"0", " 2 ", "", Options{Threads: 2}, ""},
		{"", "", "sse", Options{}, ""},
		{"", "", "avx512", Options{}, ""}, // known, whether or not this CPU runs it
		{"yes please", "", "", Options{}, EnvPortable},
		{"", "0", "", Options{}, EnvThreads},
		{"", "-4", "", Options{}, EnvThreads},
		{"", "many", "", Options{}, EnvThreads},
		{"", "4096", "", Options{Threads: MaxEnvThreads}, ""},
		{"", "4097", "", Options{}, EnvThreads},
		{"", "100000", "", Options{}, EnvThreads},
		{"", "", "avx", Options{}, EnvGemmKernel},
		{"", "", "bogus", Options{}, EnvGemmKernel},
	}
	t.Setenv(EnvBLAS, "")           // BLAS settings: TestBLASFromEnv
	t.Setenv(EnvMemoryLimit, "off") // the limit: TestMemoryLimitFromEnv
	t.Setenv(EnvRowKernels, "")     // the row kernels: TestRowKernels
	for _, tt := range tests {
		t.Setenv(EnvPortable, tt.portable)
		t.Setenv(EnvThreads, tt.threads)
		t.Setenv(EnvGemmKernel, tt.kernel)
		got, err := OptionsFromEnv()
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s=%q %s=%q: error %v, want one naming %s", EnvPortable, tt.portable, EnvThreads, tt.threads, err, tt.wantErr)
			}
			if _, err := backend.Open("cpu"); err == nil {
				t.Errorf("Open accepted %s=%q %s=%q", EnvPortable, tt.portable, EnvThreads, tt.threads)
			}
		case err != nil:
			t.Errorf("%s=%q %s=%q: %v", EnvPortable, tt.portable, EnvThreads, tt.threads, err)
		case got != tt.want:
			t.Errorf("%s=%q %s=%q: %+v, want %+v", EnvPortable, tt.portable, EnvThreads, tt.threads, got, tt.want)
		}
	}
}

// TestRowKernels: SORA_CPU_ROW_KERNELS takes the name of any of vec's
// sets, and the backend runs that set where this CPU can (Device names
// it) and the fastest where it cannot; other names are refused.
func TestRowKernels(t *testing.T) {
	t.Setenv(EnvBLAS, "")
	t.Setenv(EnvMemoryLimit, "off")
	t.Setenv(EnvPortable, "")
	t.Setenv(EnvThreads, "")
	t.Setenv(EnvGemmKernel, "")
	for _, name := range vec.Names {
		t.Setenv(EnvRowKernels, " "+name+" ")
		o, err := OptionsFromEnv()
		if err != nil || o.RowKernels != name {
			t.Errorf("%s=%q: %+v, %v; want RowKernels %q", EnvRowKernels, name, o, err, name)
			continue
		}
		want := vec.Best().Name
		if vec.Named(name) != nil {
			want = name
		}
		be := New(o)
		if got := be.kern.Name; got != want {
			t.Errorf("RowKernels %q runs the %s set, want %s", name, got, want)
		}
		if d := be.Device(); !strings.HasSuffix(d, "rows "+want+")") {
			t.Errorf("RowKernels %q: Device() = %q, want it to end in \"rows %s)\"", name, d, want)
		}
		p := New(Options{Portable: true, RowKernels: name})
		if p.kern != vec.Go || p.conv != bf16.Go {
			t.Errorf("Portable with RowKernels %q runs the %s set and %s bfloat16 conversions, want go and go",
				name, p.kern.Name, p.conv.Name)
		}
		p.Close()
		// The bfloat16 conversions follow a request for the Go set; with
		// any other they are the fastest.
		wantConv := bf16.Best()
		if name == "go" {
			wantConv = bf16.Go
		}
		if be.conv != wantConv {
			t.Errorf("RowKernels %q converts bfloat16 with %s, want %s", name, be.conv.Name, wantConv.Name)
		}
		be.Close()
	}
	for _, bad := range []string{"avx", "AVX2", "sse"} {
		t.Setenv(EnvRowKernels, bad)
		if _, err := OptionsFromEnv(); err == nil || !strings.Contains(err.Error(), EnvRowKernels) {
			t.Errorf("%s=%q: error %v, want one naming the variable", EnvRowKernels, bad, err)
		}
	}
}

// TestMemoryLimitFromEnv: SORA_CPU_MEMORY_LIMIT takes a byte count as
// GOMEMLIMIT does, or off; unset, the limit is the host's.
func TestMemoryLimitFromEnv(t *testing.T) {
	t.Setenv(EnvBLAS, "")
	for _, tt := range []struct {
		value string
		want  int64
		ok    bool
	}{
		{"off", 0, true},
		{"16GiB", 16 << 30, true},
		{" 512MiB ", 512 << 20, true},
		{"1073741824", 1 << 30, true},
		{"0", 0, false},
		{"16GB", 0, false},
		{"-1GiB", 0, false},
		{"lots", 0, false},
	} {
		t.Setenv(EnvMemoryLimit, tt.value)
		o, err := OptionsFromEnv()
		switch {
		case !tt.ok:
			if err == nil || !strings.Contains(err.Error(), EnvMemoryLimit) {
				t.Errorf("%s=%q: %+v, %v; want an error naming the variable", EnvMemoryLimit, tt.value, o, err)
			}
		case err != nil || o.MemoryLimit != tt.want:
			t.Errorf("%s=%q: limit %d, %v; want %d", EnvMemoryLimit, tt.value, o.MemoryLimit, err, tt.want)
		}
	}
	t.Setenv(EnvMemoryLimit, "")
	o, err := OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	info, ok := hostmem.Read()
	switch {
	case !ok && o.MemoryLimit != 0:
		t.Errorf("unset, on a host that does not tell its memory: limit %d, want 0", o.MemoryLimit)
	case ok && (o.MemoryLimit <= 0 || o.MemoryLimit > info.Total+info.SwapFree+info.Available):
		t.Errorf("unset: limit %d, want the host's available memory and swap (now %+v)", o.MemoryLimit, info)
	}
}

func TestMemoryClause(t *testing.T) {
	for _, c := range []struct {
		limit   int64
		fromEnv bool
		want    string
	}{
		{12 << 30, true, ", memory limit 12.0 GiB (SORA_CPU_MEMORY_LIMIT)"},
		{22 << 30, false, ", memory limit 22.0 GiB (the memory and swap free now)"},
		{0, true, ", no memory limit (SORA_CPU_MEMORY_LIMIT=off)"},
		{0, false, ", no memory limit (the host does not tell its free memory)"},
	} {
		if got := memoryClause(c.limit, c.fromEnv); got != c.want {
			t.Errorf("memoryClause(%d, %v) = %q, want %q", c.limit, c.fromEnv, got, c.want)
		}
	}
}

// TestPathSelection checks that both kernel paths can be selected, from
// Options and from the environment, and that Device and Probe say which is
// active.
func TestPathSelection(t *testing.T) {
	portable := New(Options{Portable: true, Threads: 2})
	if !portable.Portable() || !strings.Contains(portable.Device(), "), portable (matmul ") || portable.Threads() != 2 {
		t.Errorf("Portable option: Portable() = %v, Device() = %q, Threads() = %d", portable.Portable(), portable.Device(), portable.Threads())
	}
	fast := New(Options{})
	if fast.Portable() == simdSupported() {
		t.Errorf("default options: Portable() = %v on a CPU with SIMD support %v", fast.Portable(), simdSupported())
	}
	wantPath := "portable"
	if simdSupported() {
		wantPath = "simd"
	}
	if !strings.Contains(fast.Device(), ", "+wantPath+" (matmul ") {
		t.Errorf("default options: Device() = %q, want the %s path", fast.Device(), wantPath)
	}
	t.Logf("simd path: %s", fast.Device())

	t.Setenv(EnvPortable, "1")
	t.Setenv(EnvThreads, "1")
	t.Setenv(EnvBLAS, "")
	t.Setenv(EnvMemoryLimit, "16GiB")
	desc, err := driver{}.Probe()
	if err != nil || !strings.Contains(desc, "), portable (matmul ") || !strings.HasSuffix(desc, "), 1 thread, memory limit 16.0 GiB (SORA_CPU_MEMORY_LIMIT)") {
		t.Errorf("Probe with %s=1: %q, %v", EnvPortable, desc, err)
	}
	be, err := backend.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	if cb := be.(*Backend); !cb.Portable() || cb.opts.Threads != 1 {
		t.Errorf("Open with %s=1 %s=1: Portable() = %v, threads %d", EnvPortable, EnvThreads, cb.Portable(), cb.opts.Threads)
	}
	// Both paths compute the same product.
	for _, be := range []*Backend{portable, fast} {
		a := upload(t, be, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
		c := poisoned(t, be, 2, 2)
		be.MatMul(c, a, a, backend.MatMulParams{TransB: true, Alpha: 1})
		assertClose(t, be.Device(), download(t, be, c), []float64{14, 32, 32, 77}, 0, 0)
	}
}

func TestFeaturesMatchArch(t *testing.T) {
	desc := New(Options{}).Device()
	if runtime.GOARCH == "amd64" && simdSupported() && !strings.Contains(desc, "avx2") {
		t.Errorf("SIMD path on amd64 but avx2 not listed: %q", desc)
	}
}

// TestDeviceLeavesOutThreads checks that Device is the same whatever the
// thread cap (results do not depend on it, see TestThreadIndependence, and
// train compares Device across resumes), that Threads reports the cap,
// and that Probe, which "sora backends" prints, still names it after
// Device's description.
func TestDeviceLeavesOutThreads(t *testing.T) {
	t.Setenv(EnvBLAS, "")
	t.Setenv(EnvPortable, "")
	t.Setenv(EnvRowKernels, "") // Probe would name that set, New(Options{}) the fastest
	want := New(Options{Threads: 1}).Device()
	for _, n := range []int{0, 2, 3, 64} {
		be := New(Options{Threads: n})
		if got := be.Device(); got != want {
			t.Errorf("Threads %d: Device() = %q, with 1 thread %q", n, got, want)
		}
		wantThreads := n
		if n == 0 {
			wantThreads = runtime.GOMAXPROCS(0)
		}
		if got := be.Threads(); got != wantThreads {
			t.Errorf("Threads %d: Threads() = %d, want %d", n, got, wantThreads)
		}
	}
	if strings.Contains(want, "thread") {
		t.Errorf("Device() = %q names threads", want)
	}
	t.Setenv(EnvMemoryLimit, "off")
	for _, tc := range []struct{ env, clause string }{{"5", ", 5 threads, no memory limit (SORA_CPU_MEMORY_LIMIT=off)"}, {"1", ", 1 thread, no memory limit (SORA_CPU_MEMORY_LIMIT=off)"}} {
		t.Setenv(EnvThreads, tc.env)
		desc, err := driver{}.Probe()
		if err != nil || desc != want+tc.clause {
			t.Errorf("Probe with %s=%s: %q, %v; want %q", EnvThreads, tc.env, desc, err, want+tc.clause)
		}
	}
}
