package cuda

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// TestKernelTarget: SASS for the device where NVRTC knows its
// architecture, else PTX for the newest one it knows at or below the
// device's; an error where it knows none of those.
func TestKernelTarget(t *testing.T) {
	cuda128 := []int{50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 120}
	for _, tc := range []struct {
		name         string
		major, minor int
		archs        []int
		force        bool
		want         string // the target's arch, "" for an error
		wantWhy      string
	}{
		{"known", 8, 0, cuda128, false, "sm_80", ""},
		{"known, forced", 8, 0, cuda128, true, "compute_80", "Options.PTX"},
		{"newer than NVRTC", 12, 0, []int{75, 80, 86, 89, 90}, false, "compute_90", "does not compile for sm_120"},
		{"between two", 8, 6, []int{75, 80, 90}, false, "compute_80", "does not compile for sm_86"},
		{"older than NVRTC", 7, 0, []int{75, 80, 90}, false, "", ""},
		{"older than NVRTC, forced", 7, 0, []int{75, 80, 90}, true, "", ""},
		{"newer than NVRTC, forced", 12, 0, []int{75, 80, 86, 89, 90}, true, "compute_90", "does not compile for sm_120"},
		{"Blackwell B300 with CUDA 12.8", 10, 3, cuda128, false, "compute_101", "does not compile for sm_103"},
		{"no list", 8, 9, nil, false, "sm_89", ""},
		{"no list, forced", 8, 9, nil, true, "sm_89", ""},
	} {
		k, why, err := kernelTarget(tc.major, tc.minor, tc.archs, tc.force)
		if tc.want == "" {
			// The GPU is too old for this NVRTC: the advice is an older one.
			if err == nil || !strings.Contains(err.Error(), "7.0") || !strings.Contains(err.Error(), "7.5, 8.0, 9.0") ||
				!strings.Contains(err.Error(), "older CUDA toolkit") || strings.Contains(err.Error(), "newer") {
				t.Errorf("%s: %+v, %v; want an error naming the GPU's 7.0 and NVRTC's list, asking for an older NVRTC", tc.name, k, err)
			}
			continue
		}
		if err != nil || k.arch() != tc.want || !strings.Contains(why, tc.wantWhy) || (tc.wantWhy == "") != (why == "") {
			t.Errorf("%s: %s (%q), %v; want %s for a reason with %q", tc.name, k.arch(), why, err, tc.want, tc.wantWhy)
		}
		if k.ptx != strings.HasPrefix(tc.want, "compute_") {
			t.Errorf("%s: ptx = %v for %s", tc.name, k.ptx, tc.want)
		}
	}
}

// TestPTXFallback opens the emulated device (compute capability 8.0) with
// an NVRTC that does not know sm_80 and with Options.PTX: the kernels are
// compiled to PTX for the newest architecture NVRTC knows at or below
// 8.0, cached under that name and loaded, and the backend computes; with
// an NVRTC that knows only newer ones the open fails naming them.
func TestPTXFallback(t *testing.T) {
	r := fakeProbe(t)
	nvrtc := fakeCounters(t, r.nvrtc, "sora_fake_nvrtc")
	for _, tc := range []struct {
		name, archs string
		opts        Options
		want, why   string
	}{
		{"older NVRTC", "52,60,70,75", Options{}, "compute_75", "NVRTC does not compile for sm_80"},
		{"asked for", "", Options{PTX: true}, "compute_80", "asked for by Options.PTX"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SORA_FAKE_NVRTC_ARCHS", tc.archs)
			compiled.Clear()
			t.Cleanup(compiled.Clear)
			dir := t.TempDir()
			tc.opts.CacheDir = dir
			n0, p0 := nvrtc[0], nvrtc[1]
			b, err := openBackend(r, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if nvrtc[0] != n0+1 || nvrtc[1] != p0+1 {
				t.Errorf("%d compilations, %d to PTX; want one to PTX", nvrtc[0]-n0, nvrtc[1]-p0)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "kernels-"+tc.want+"-*.ptx"))
			if len(files) != 1 {
				t.Fatalf("cache folder holds %q, want one %s PTX file", files, tc.want)
			}
			wantOrigin := "PTX for " + tc.want + ", compiled by the driver at load (" + tc.why
			if k := b.Kernels(); !strings.HasPrefix(k, wantOrigin) || !strings.HasSuffix(k, "compiled by NVRTC, cached in "+files[0]) {
				t.Errorf("Kernels() = %q, want %q…, cached in %s", k, wantOrigin, files[0])
			}
			checkAdd(t, b)
			// A second open finds the PTX in the cache.
			compiled.Clear()
			b2, err := openBackend(r, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer b2.Close()
			if k := b2.Kernels(); !strings.HasPrefix(k, wantOrigin) || !strings.HasSuffix(k, "cached in "+files[0]) || nvrtc[0] != n0+1 {
				t.Errorf("second open: Kernels() = %q after %d compilations, want the cached PTX", k, nvrtc[0]-n0)
			}
			// A third finds it in the process.
			b3, err := openBackend(r, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer b3.Close()
			if k := b3.Kernels(); !strings.HasPrefix(k, wantOrigin) || !strings.HasSuffix(k, "): compiled earlier in this process") ||
				strings.Count(k, "PTX for") != 1 || nvrtc[0] != n0+1 {
				t.Errorf("third open: Kernels() = %q after %d compilations, want %q…: compiled earlier in this process", k, nvrtc[0]-n0, wantOrigin)
			}
			checkAdd(t, b3)
		})
	}
	t.Run("only newer archs", func(t *testing.T) {
		t.Setenv("SORA_FAKE_NVRTC_ARCHS", "86,90")
		compiled.Clear()
		t.Cleanup(compiled.Clear)
		b, err := openBackend(r, Options{NoCache: true})
		if err == nil {
			b.Close()
			t.Fatal("open succeeded with an NVRTC that knows only newer GPUs")
		}
		for _, want := range []string{"NVRTC 12.8", "8.6, 9.0", "this GPU's 8.0"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})
}

// TestPTXDriverTooOld opens the emulated device with Options.PTX and a
// driver older than NVRTC: the driver refuses the PTX
// (CUDA_ERROR_UNSUPPORTED_PTX_VERSION, although it would load NVRTC's
// cubin), and the error says which versions it takes.
func TestPTXDriverTooOld(t *testing.T) {
	t.Setenv("SORA_FAKE_DRIVER_VERSION", "12040")
	r := fakeProbe(t)
	if r.driverVersion != 12040 {
		t.Fatalf("driver version %d, want the 12040 set", r.driverVersion)
	}
	compiled.Clear()
	t.Cleanup(compiled.Clear)
	b, err := openBackend(r, Options{PTX: true, NoCache: true})
	if err == nil {
		b.Close()
		t.Fatal("open succeeded with PTX from NVRTC 12.8 on a CUDA 12.4 driver")
	}
	for _, want := range []string{"loading PTX for compute_80 (asked for by Options.PTX", "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
		"PTX from NVRTC 12.8 needs a driver for CUDA 12.8 or newer, and this one is for CUDA 12.4", "without Options.PTX"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// The cubin loads.
	b, err = openBackend(r, Options{NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	checkAdd(t, b)
}

// checkAdd runs an element-wise op on b and checks its result, so that a
// test knows the loaded kernels run.
func checkAdd(t *testing.T, b *Backend) {
	t.Helper()
	x, err := b.Alloc(backend.Float32, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(x)
	b.Upload(x, []float32{1, 2, 3})
	b.Binary(backend.Add, x, x, x)
	got := make([]float32, 3)
	if err := b.Download(got, x); err != nil {
		t.Fatal(err)
	}
	if got[0] != 2 || got[1] != 4 || got[2] != 6 {
		t.Errorf("x+x = %v, want [2 4 6]", got)
	}
}
