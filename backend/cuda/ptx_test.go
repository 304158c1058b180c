package cuda

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// findClang returns a clang that can compile CUDA device code and its
// major version, or "". Debian and Ubuntu install versioned names
// (clang-19); the newest is preferred, then plain clang.
func findClang() (string, int) {
	var names []string
	if p := os.Getenv("SORA_CLANG"); p != "" {
		names = append(names, p)
	}
	for v := 30; v >= 11; v-- {
		names = append(names, fmt.Sprintf("clang-%d", v))
	}
	names = append(names, "clang")
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			continue
		}
		out, err := exec.Command(p, "--version").Output()
		if err != nil {
			continue
		}
		if m := regexp.MustCompile(`clang version (\d+)`).FindSubmatch(out); m != nil {
			v, _ := strconv.Atoi(string(m[1]))
			return p, v
		}
	}
	return "", 0
}

// compilePTX compiles kernels.cu to PTX for arch with clang, without the
// CUDA toolkit: testdata/clang_prelude.h declares what NVRTC provides.
func compilePTX(t *testing.T, clang, arch, ptxFeature string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kernels.ptx")
	args := []string{"-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=" + arch, "-nocudainc", "-nocudalib",
		"-Xclang", "-target-feature", "-Xclang", "+" + ptxFeature,
		"-include", filepath.Join("testdata", "clang_prelude.h"),
		"-O2", "-Wall", "-Werror", "-S", "-o", out, "kernels.cu"}
	cmd := exec.Command(clang, args...)
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", clang, strings.Join(args, " "), err, msg)
	}
	ptx, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(ptx)
}

var (
	ptxEntry = regexp.MustCompile(`(?s)\.visible \.entry (\w+)\(\s*(.*?)\)`)
	ptxParam = regexp.MustCompile(`\.param (?:\.align (\d+) )?\.(\w+)(?: \.ptr)?(?: \.(?:global|shared|const|local))?(?: \.align \d+)? \w+?_param_\d+(?:\[(\d+)\])?`)
)

// ptxParamKinds returns, per kernel, the size in bytes and PTX type of
// each parameter, e.g. "u32", "f64", "b8[208]".
func ptxParamKinds(t *testing.T, ptx string) map[string][]string {
	t.Helper()
	kernels := map[string][]string{}
	for _, m := range ptxEntry.FindAllStringSubmatch(ptx, -1) {
		var kinds []string
		for _, line := range strings.Split(m[2], ",") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			p := ptxParam.FindStringSubmatch(line)
			if p == nil {
				t.Fatalf("kernel %s: cannot read PTX parameter %q", m[1], line)
			}
			k := p[2]
			if p[3] != "" {
				k += "[" + p[3] + "]"
			}
			kinds = append(kinds, k)
		}
		kernels[m[1]] = kinds
	}
	return kernels
}

// ptxKind is how clang declares a parameter of kind k.
func ptxKind(k argKind) string {
	switch k {
	case argI32:
		return "u32"
	case argF32:
		return "f32"
	case argF64:
		return "f64"
	case argCopy, argAttn:
		return "b8[" + strconv.Itoa(k.size()) + "]"
	}
	return "u64" // pointers and long long
}

// TestKernelsCompileToPTX compiles the embedded kernel source with clang
// for two architectures and checks that every kernel the Go side launches
// is there with exactly the parameter types and sizes its kernelSpec packs
// (and that the source defines no kernel the Go side does not know). It
// needs clang (apt-get install clang); without it, it skips.
func TestKernelsCompileToPTX(t *testing.T) {
	clang, version := findClang()
	if clang == "" {
		t.Skip("no clang found (install clang, or set SORA_CLANG): the kernel source is not compiled by this test")
	}
	for _, target := range []struct {
		arch, ptx  string
		minVersion int // first clang release that knows the architecture
	}{{"sm_80", "ptx70", 11}, {"sm_90", "ptx78", 16}} {
		t.Run(target.arch, func(t *testing.T) {
			if version < target.minVersion {
				t.Skipf("%s is clang %d; %s needs clang %d or later", clang, version, target.arch, target.minVersion)
			}
			ptx := compilePTX(t, clang, target.arch, target.ptx)
			if !strings.Contains(ptx, ".target "+target.arch) {
				t.Fatalf("PTX does not target %s", target.arch)
			}
			got := ptxParamKinds(t, ptx)
			for _, k := range kernelSpecs {
				params, ok := got[k.name]
				if !ok {
					t.Errorf("kernel %s: not in the PTX", k.name)
					continue
				}
				var want []string
				for _, p := range k.params {
					want = append(want, ptxKind(p))
				}
				if strings.Join(params, " ") != strings.Join(want, " ") {
					t.Errorf("kernel %s: PTX parameters %v, the Go side packs %v", k.name, params, want)
				}
				delete(got, k.name)
			}
			for name := range got {
				t.Errorf("kernel %s is in kernels.cu but not in kernelSpecs", name)
			}
			checkPTXMemory(t, ptx)
		})
	}
}

// TestPTXParamParsing checks the parser of the test above on PTX text of
// the forms clang writes, so that the comparison cannot pass vacuously.
func TestPTXParamParsing(t *testing.T) {
	ptx := `.visible .entry k(
	.param .align 8 .b8 k_param_0[208],
	.param .u64 .ptr .global .align 4 k_param_1,
	.param .u32 k_param_2,
	.param .f64 k_param_3
)
{
}
.visible .entry other(
	.param .f32 other_param_0
)`
	got := ptxParamKinds(t, ptx)
	if strings.Join(got["k"], " ") != "b8[208] u64 u32 f64" || strings.Join(got["other"], " ") != "f32" || len(got) != 2 {
		t.Errorf("parsed %v", got)
	}
}

// maxStaticShared is the static shared memory a block may declare on every
// architecture (48 KiB; more needs dynamic shared memory and an opt-in).
const maxStaticShared = 48 << 10

var (
	ptxShared = regexp.MustCompile(`(?m)^\s*\.shared \.align \d+ \.b8 (\S+)\[(\d+)\];`)
	ptxLocal  = regexp.MustCompile(`(?m)^\s*\.local \.align \d+ \.b8\s+(\S+)\[(\d+)\];`)
)

// checkPTXMemory checks the memory the kernels declare in ptx: each
// kernel's static shared memory (its own declarations and, conservatively,
// every one at module scope, which the device functions' reductions use)
// stays within maxStaticShared, and the attention kernels keep their
// accumulator arrays in registers: no local memory, which would mean an
// array indexed at run time or a device function not inlined.
func checkPTXMemory(t *testing.T, ptx string) {
	t.Helper()
	entries := ptxEntry.FindAllStringIndex(ptx, -1)
	if len(entries) == 0 {
		t.Fatal("no kernels in the PTX")
	}
	module := 0
	for _, m := range ptxShared.FindAllStringSubmatchIndex(ptx[:entries[0][0]], -1) {
		n, _ := strconv.Atoi(ptx[m[4]:m[5]])
		module += n
	}
	for i, e := range entries {
		end := len(ptx)
		if i+1 < len(entries) {
			end = entries[i+1][0]
		}
		body := ptx[e[0]:end]
		name := ptxEntry.FindStringSubmatch(body)[1]
		shared := module
		for _, m := range ptxShared.FindAllStringSubmatch(body, -1) {
			n, _ := strconv.Atoi(m[2])
			shared += n
		}
		if shared > maxStaticShared {
			t.Errorf("kernel %s: %d bytes of static shared memory, more than %d", name, shared, maxStaticShared)
		}
		if strings.HasPrefix(name, "attn_") {
			if m := ptxLocal.FindStringSubmatch(body); m != nil {
				t.Errorf("kernel %s: %s bytes of local memory (%s): an accumulator array left registers", name, m[2], m[1])
			}
		}
	}
}
