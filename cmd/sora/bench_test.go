package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sora-go/sora/backend"
)

func TestBenchGemmJSON(t *testing.T) {
	t.Setenv(cpuThreadsEnv, "") // the test must see --threads take effect
	var out, errb bytes.Buffer
	code := run([]string{"bench", "gemm", "--backend", "cpu", "--sizes", "17,32", "--trans", "NN,tn", "--threads", "1", "--time", "6ms", "--json"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	if v := os.Getenv(cpuThreadsEnv); v != "" {
		t.Errorf("$%s = %q after the run, want it put back (empty)", cpuThreadsEnv, v)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4 (2 sizes × 2 cases):\n%s", len(lines), out.String())
	}
	wantKeys := `^\{"op":"gemm","m":\d+,"n":\d+,"k":\d+,"trans":"[NT]{2}","threads":\d+,"gflops":\d+\.\d,"baseline":"` + gonumBaseline + `","baseline_gflops":\d+\.\d\}$`
	for i, line := range lines {
		if !regexp.MustCompile(wantKeys).MatchString(line) {
			t.Errorf("line %d = %s, want the documented keys in order", i, line)
		}
		var r struct {
			Op               string
			M, N, K, Threads int
			Trans, Baseline  string
			GFLOPS           float64 `json:"gflops"`
			BaselineGFLOPS   float64 `json:"baseline_gflops"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		size := []int{17, 17, 32, 32}[i]
		trans := []string{"NN", "TN"}[i%2]
		if r.M != size || r.N != size || r.K != size || r.Trans != trans || r.Threads != 1 {
			t.Errorf("line %d = %+v, want m=n=k=%d trans=%s threads=1", i, r, size, trans)
		}
		if !(r.GFLOPS > 0) || !(r.BaselineGFLOPS > 0) {
			t.Errorf("line %d: rates %v and %v, want both positive", i, r.GFLOPS, r.BaselineGFLOPS)
		}
	}
	if !strings.Contains(errb.String(), "# backend cpu:") {
		t.Errorf("stderr = %q, want a line naming the backend", errb.String())
	}
}

func TestBenchGemmTable(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "gemm", "--sizes", "8", "--trans", "TT", "--time", "3ms"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	if !regexp.MustCompile(`(?m)^TT\s+8\s+8\s+8\s+\d+\s+\d+\.\d\s+\d+\.\d\s+\d+\.\dx$`).MatchString(out.String()) {
		t.Errorf("table lacks a row for TT 8×8×8:\n%s", out.String())
	}
}

func TestBenchBadInput(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "nope"}, exitUsage, `unknown benchmark "nope"`},
		{[]string{"bench", "gemm", "--sizes", "0"}, exitUsage, `"0" is not a positive size`},
		{[]string{"bench", "gemm", "--sizes", "12,x"}, exitUsage, `"x" is not a positive size`},
		{[]string{"bench", "gemm", "--trans", "NN,NX"}, exitUsage, `"NX" is not a transpose case`},
		{[]string{"bench", "gemm", "--threads", "-1"}, exitUsage, "--threads -1"},
		{[]string{"bench", "gemm", "--time", "0s"}, exitUsage, "--time 0s"},
		{[]string{"bench", "gemm", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"bench", "gemm", "--backend", "nosuch", "--sizes", "4"}, exitUsage, `unknown backend "nosuch"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tt.args, &out, &errb); code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if !strings.Contains(errb.String(), tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", errb.String(), tt.want)
			}
		})
	}
}

func TestBenchHelpListsGemm(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out.String(), "gemm") {
		t.Errorf("sora bench lists no gemm:\n%s", out.String())
	}
}

// vendorFake is the CPU backend posing as a backend with a vendor matrix
// multiply and a device copy, as backend/cuda is: VendorMatMul and
// DeviceCopy run the CPU's MatMul and Copy and count their calls, so a
// test sees that the baselines were really run; when broken they count
// and do nothing, which the benchmarks' checks must catch. With noCopy the
// Copy op does nothing while DeviceCopy works, which bench ops' check of
// its copy kernel must catch.
type vendorFake struct {
	backend.Backend
	name           string
	broken, noCopy bool
	calls          *fakeCalls
}

// fakeCalls counts a vendorFake's baseline calls, kept by its driver so
// that tests can read them after the command closed the backend.
type fakeCalls struct{ vendor, copy atomic.Int64 }

func (f vendorFake) Name() string { return f.name }

func (f vendorFake) VendorMatMul(c, a, b backend.Tensor, p backend.MatMulParams) {
	f.calls.vendor.Add(1)
	if !f.broken {
		f.Backend.MatMul(c, a, b, p)
	}
}

func (f vendorFake) Copy(dst, src backend.Tensor, accumulate bool) {
	if !f.noCopy {
		f.Backend.Copy(dst, src, accumulate)
	}
}

func (f vendorFake) DeviceCopy(dst, src backend.Tensor) {
	f.calls.copy.Add(1)
	if !f.broken {
		f.Backend.Copy(dst, src, false)
	}
}

// namedVendorFake also names its library, as VendorName lets a backend do.
type namedVendorFake struct{ vendorFake }

func (namedVendorFake) VendorName() string { return "fakeblas" }

type vendorFakeDriver struct {
	name                  string
	named, broken, noCopy bool
	calls                 *fakeCalls
}

func (d vendorFakeDriver) Probe() (string, error) {
	return "the CPU backend with vendor and device-copy baselines", nil
}

func (d vendorFakeDriver) Open() (backend.Backend, error) {
	b, err := backend.Open("cpu")
	if err != nil {
		return nil, err
	}
	f := vendorFake{Backend: b, name: d.name, broken: d.broken, noCopy: d.noCopy, calls: d.calls}
	if d.named {
		return namedVendorFake{f}, nil
	}
	return f, nil
}

// vendorFakes are the registered fakes by name.
var vendorFakes = map[string]vendorFakeDriver{}

func init() {
	for _, d := range []vendorFakeDriver{
		{name: "clitest-vendor", named: true},
		{name: "clitest-vendor-anon"},
		{name: "clitest-vendor-broken", named: true, broken: true},
		{name: "clitest-vendor-nocopy", named: true, noCopy: true},
	} {
		d.calls = new(fakeCalls)
		vendorFakes[d.name] = d
		backend.Register(d.name, d)
	}
}

func TestBenchGemmVendorBaseline(t *testing.T) {
	tests := []struct {
		backend, baseline string
	}{
		{"clitest-vendor", "fakeblas"},
		{"clitest-vendor-anon", "vendor"},
	}
	for _, tt := range tests {
		t.Run(tt.backend, func(t *testing.T) {
			calls := vendorFakes[tt.backend].calls
			before := calls.vendor.Load()
			var out, errb bytes.Buffer
			code := run([]string{"bench", "gemm", "--backend", tt.backend, "--sizes", "16", "--trans", "NN,NT", "--time", "3ms", "--json"}, &out, &errb)
			if code != exitOK {
				t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
			}
			if calls.vendor.Load() == before {
				t.Errorf("VendorMatMul was never called")
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 2 {
				t.Fatalf("got %d lines, want 2:\n%s", len(lines), out.String())
			}
			// The fake is no CPU backend: it reports no threads, so the
			// line has no "threads" key (GOMAXPROCS would mean nothing
			// for a device).
			keys := regexp.MustCompile(`^\{"op":"gemm","m":16,"n":16,"k":16,"trans":"N[NT]","gflops":\d+\.\d,"baseline":"` +
				tt.baseline + `","baseline_gflops":\d+\.\d\}$`)
			for _, line := range lines {
				if !keys.MatchString(line) {
					t.Errorf("line %s, want baseline %q with the documented keys", line, tt.baseline)
				}
				var r struct {
					BaselineGFLOPS float64 `json:"baseline_gflops"`
				}
				if err := json.Unmarshal([]byte(line), &r); err != nil || !(r.BaselineGFLOPS > 0) {
					t.Errorf("line %s: baseline rate %v (%v), want positive", line, r.BaselineGFLOPS, err)
				}
			}
			if !strings.Contains(errb.String(), "# baseline "+tt.baseline) {
				t.Errorf("stderr = %q, want a line naming baseline %s", errb.String(), tt.baseline)
			}
		})
	}
}

func TestBenchGemmVendorTable(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "gemm", "--backend", "clitest-vendor", "--sizes", "8", "--trans", "TN", "--time", "3ms"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	for _, want := range []string{"baseline fakeblas:", "fakeblas GFLOP/s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "gonum") {
		t.Errorf("table mentions gonum although the backend has a vendor baseline:\n%s", out.String())
	}
	if !regexp.MustCompile(`(?m)^TN\s+8\s+8\s+8\s+-\s+\d+\.\d\s+\d+\.\d\s+\d+\.\dx$`).MatchString(out.String()) {
		t.Errorf("table lacks a row for TN 8×8×8 with threads '-' (no CPU backend):\n%s", out.String())
	}
}

// A vendor call that computes nothing must fail the run, not report a rate.
func TestBenchGemmVendorChecked(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "gemm", "--backend", "clitest-vendor-broken", "--sizes", "8", "--trans", "NN", "--time", "3ms", "--json"}, &out, &errb)
	if code != exitFailure {
		t.Errorf("exit %d, want %d; stdout:\n%s", code, exitFailure, out.String())
	}
	if want := "the fakeblas baseline computed a wrong product"; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr = %q, want it to contain %q", errb.String(), want)
	}
}

func TestBenchOpsHelpDocumentsRowKernels(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "ops", "--help"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	for _, want := range []string{"SORA_CPU_ROW_KERNELS", "avx2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchGemmHelpDocumentsBaselinesAndKernel(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "gemm", "--help"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	for _, want := range []string{"cuBLAS", "gonum", "SORA_CPU_GEMM_KERNEL", "avx2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}
