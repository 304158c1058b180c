package main

import (
	"bytes"
	"errors"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/conformance"
)

// The CLI tests run the conformance command on a few cases of their own,
// so that they stay fast and do not depend on the size of the real suite,
// and on a backend that breaks one op on purpose.
func init() {
	conformance.Register(conformance.Case{
		Name: "clitest/scale",
		Op:   backend.OpScale,
		Run: func(e *conformance.Env) {
			x := e.Uniform(6*7, -1, 1)
			src := e.Input(x, 6, 7)
			dst := e.Output(6, 7)
			e.B.Scale(dst.T, src, -3)
			ref := make([]float64, len(x))
			for i, v := range x {
				ref[i] = -3 * float64(v)
			}
			e.Check(dst, ref)
		},
	})
	conformance.Register(conformance.Case{
		Name: "clitest/fill",
		Op:   backend.OpFill,
		Run: func(e *conformance.Env) {
			dst := e.Output(3, 5)
			e.B.Fill(dst.T, 0.25)
			ref := make([]float64, 15)
			for i := range ref {
				ref[i] = 0.25
			}
			e.Check(dst, ref)
		},
	})
	backend.Register("clitest-broken", brokenDriver{})
}

// brokenBackend is the CPU backend with Scale off by a relative 1e-3 and
// Fill reported unsupported.
type brokenBackend struct{ backend.Backend }

func (b brokenBackend) Name() string { return "clitest-broken" }

func (b brokenBackend) Scale(dst, src backend.Tensor, alpha float32) {
	b.Backend.Scale(dst, src, alpha*1.001)
}

func (b brokenBackend) Supports(op backend.Op) bool {
	return op != backend.OpFill && b.Backend.Supports(op)
}

type brokenDriver struct{}

func (brokenDriver) Probe() (string, error) { return "a deliberately broken CPU backend", nil }
func (brokenDriver) Open() (backend.Backend, error) {
	b, err := backend.Open("cpu")
	if err != nil {
		return nil, err
	}
	return brokenBackend{b}, nil
}

// runCLI runs the command line args and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

var summaryRE = regexp.MustCompile(`^(\d+) passed, (\d+) failed, (\d+) skipped$`)

// parseSummary parses the last line of a conformance run.
func parseSummary(t *testing.T, stdout string) (passed, failed, skipped int) {
	t.Helper()
	m := summaryRE.FindStringSubmatch(lastLine(stdout))
	if m == nil {
		t.Fatalf("last line %q is not a summary; output:\n%s", lastLine(stdout), stdout)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return n(m[1]), n(m[2]), n(m[3])
}

func TestTopLevel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		stdout   []string // substrings
		stderr   []string
		quietOut bool // nothing on stdout
		quietErr bool // nothing on stderr
	}{
		{name: "no args", args: nil, code: 0, stdout: []string{"Usage: sora <command>", "backends", "conformance", "version"}, quietErr: true},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"Commands:", "--backend NAME"}, quietErr: true},
		{name: "--help", args: []string{"--help"}, code: 0, stdout: []string{"Commands:"}, quietErr: true},
		{name: "help help", args: []string{"help", "help"}, code: 0, stdout: []string{"Commands:"}, quietErr: true},
		{name: "--version", args: []string{"--version"}, code: 0, stdout: []string{"sora ", runtime.Version()}, quietErr: true},
		{name: "-version", args: []string{"-version"}, code: 0, stdout: []string{"sora ", runtime.Version()}, quietErr: true},
		{name: "--version with an argument", args: []string{"--version", "x"}, code: 2, stderr: []string{`sora version: unexpected argument "x"`}, quietOut: true},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`, "Commands:"}, quietOut: true},
		{name: "help for a command", args: []string{"help", "conformance"}, code: 0, stdout: []string{"Usage: sora conformance", "--run FILTER", "Examples:", "sora conformance --backend cuda"}, quietErr: true},
		{name: "help for a subcommand", args: []string{"help", "bench", "gemm"}, code: 0, stdout: []string{"Usage: sora bench gemm", "--sizes", "--trans"}, quietErr: true},
		{name: "help for an unknown subcommand", args: []string{"help", "bench", "frobnicate"}, code: 2, stderr: []string{`unknown benchmark "frobnicate"`}, quietOut: true},
		{name: "help for an unknown command", args: []string{"help", "frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`}, quietOut: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.code, errOut)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			if tc.quietOut && out != "" {
				t.Errorf("unexpected stdout:\n%s", out)
			}
			if tc.quietErr && errOut != "" {
				t.Errorf("unexpected stderr:\n%s", errOut)
			}
		})
	}
}

// TestEveryCommandHelp checks that every registered command, including
// those other files add, answers --help with its usage on stdout and exit
// status 0, and rejects an unknown flag with exit status 2.
func TestEveryCommandHelp(t *testing.T) {
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runCLI(t, name, "--help")
			if code != 0 || !strings.HasPrefix(out, "Usage: sora "+name) || errOut != "" {
				t.Errorf("%s --help: status %d, stdout %q, stderr %q", name, code, out, errOut)
			}
			code, out, errOut = runCLI(t, name, "--no-such-flag")
			if code != 2 || !strings.Contains(errOut, "no-such-flag") || out != "" {
				t.Errorf("%s --no-such-flag: status %d, stdout %q, stderr %q", name, code, out, errOut)
			}
		})
	}
}

func TestBackends(t *testing.T) {
	code, out, errOut := runCLI(t, "backends")
	if code != 0 || errOut != "" {
		t.Fatalf("status %d, stderr %q", code, errOut)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		name, rest, _ := strings.Cut(l, " ")
		lines[name] = strings.TrimSpace(rest)
	}
	for _, name := range backend.Names() {
		rest, ok := lines[name]
		if !ok {
			t.Errorf("no line for backend %s:\n%s", name, out)
			continue
		}
		if !strings.HasPrefix(rest, "available ") && !strings.HasPrefix(rest, "unavailable: ") {
			t.Errorf("line for %s says neither available nor unavailable: %q", name, rest)
		}
	}
	// The blank imports of backends.go must bring in all three.
	for _, name := range []string{"cpu", "cuda", "ascend"} {
		if _, ok := lines[name]; !ok {
			t.Errorf("backend %s is not listed:\n%s", name, out)
		}
	}
	if len(lines) != len(backend.Names()) {
		t.Errorf("%d lines for %d backends:\n%s", len(lines), len(backend.Names()), out)
	}
	if !strings.HasPrefix(lines["cpu"], "available ") {
		t.Errorf("cpu line %q, want available with its features", lines["cpu"])
	}
	// Where the CUDA backend cannot run, its line says what it looked for;
	// on a GPU machine it is available and names the device.
	switch cuda := lines["cuda"]; {
	case strings.HasPrefix(cuda, "available "):
	case strings.HasPrefix(cuda, "unavailable: "):
		if !strings.Contains(cuda, "libcuda.so.1") && !strings.Contains(cuda, "device") {
			t.Errorf("cuda line %q names neither the driver library nor the device", cuda)
		}
	default:
		t.Errorf("cuda line %q, want available or unavailable with a reason", cuda)
	}
	if code, _, _ := runCLI(t, "backends", "extra"); code != 2 {
		t.Errorf("backends with an argument that is no backend: status %d, want 2", code)
	}
	// With a name: that backend's line alone, and the status says whether
	// it can run here.
	for name, line := range lines {
		code, out, _ := runCLI(t, "backends", name)
		want := 0
		if strings.HasPrefix(line, "unavailable") {
			want = 3
		}
		if code != want || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, name+" ") {
			t.Errorf("backends %s: status %d (want %d), output %q", name, code, want, out)
		}
	}
	if code, _, _ := runCLI(t, "backends", "cpu", "extra"); code != 2 {
		t.Errorf("backends cpu extra: status %d, want 2", code)
	}
}

func TestConformanceSmallSet(t *testing.T) {
	code, out, errOut := runCLI(t, "conformance", "--backend", "cpu", "--run", "clitest/", "-v")
	if code != 0 {
		t.Fatalf("status %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if p, f, s := parseSummary(t, out); p != 2 || f != 0 || s != 0 {
		t.Errorf("summary %d passed, %d failed, %d skipped; want 2, 0, 0", p, f, s)
	}
	first := strings.SplitN(out, "\n", 2)[0]
	if !strings.Contains(first, "cpu") {
		t.Errorf("first line %q does not name the backend", first)
	}
	for _, c := range []string{"PASS clitest/scale", "PASS clitest/fill"} {
		if !strings.Contains(out, c) {
			t.Errorf("-v output lacks %q:\n%s", c, out)
		}
	}
}

func TestConformanceFailureExitStatus(t *testing.T) {
	code, out, errOut := runCLI(t, "conformance", "--backend=clitest-broken", "--run=clitest/")
	if code != 1 {
		t.Errorf("status %d, want 1; stderr:\n%s", code, errOut)
	}
	if p, f, s := parseSummary(t, out); p != 0 || f != 1 || s != 1 {
		t.Errorf("summary %d passed, %d failed, %d skipped; want 0, 1, 1:\n%s", p, f, s, out)
	}
	for _, c := range []string{"FAIL clitest/scale", "SKIP clitest/fill"} {
		if !strings.Contains(out, c) {
			t.Errorf("output lacks %q:\n%s", c, out)
		}
	}
}

func TestConformanceBackendSelection(t *testing.T) {
	t.Run("env default", func(t *testing.T) {
		t.Setenv("SORA_BACKEND", "clitest-broken")
		code, out, _ := runCLI(t, "conformance", "--run", "clitest/")
		if code != 1 || !strings.Contains(out, "clitest-broken") {
			t.Errorf("SORA_BACKEND=clitest-broken: status %d, output:\n%s", code, out)
		}
	})
	t.Run("flag beats env", func(t *testing.T) {
		t.Setenv("SORA_BACKEND", "clitest-broken")
		if code, out, errOut := runCLI(t, "conformance", "--backend", "cpu", "--run", "clitest/"); code != 0 {
			t.Errorf("status %d:\n%s%s", code, out, errOut)
		}
	})
	t.Run("unknown backend", func(t *testing.T) {
		code, out, errOut := runCLI(t, "conformance", "--backend", "tpu", "--run", "clitest/")
		if code != 2 || !strings.Contains(errOut, `unknown backend "tpu"`) || !strings.Contains(errOut, "cpu") || out != "" {
			t.Errorf("status %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("unknown backend from env", func(t *testing.T) {
		t.Setenv("SORA_BACKEND", "tpu")
		code, _, errOut := runCLI(t, "conformance", "--run", "clitest/")
		if code != 2 || !strings.Contains(errOut, `unknown backend "tpu" ($SORA_BACKEND)`) {
			t.Errorf("status %d, stderr %q", code, errOut)
		}
		// Named by --backend, it is not blamed on the environment.
		t.Setenv("SORA_BACKEND", "cpu")
		if _, _, errOut := runCLI(t, "conformance", "--backend", "tpu", "--run", "clitest/"); strings.Contains(errOut, "$SORA_BACKEND") {
			t.Errorf("stderr %q blames $SORA_BACKEND for --backend tpu", errOut)
		}
	})
	t.Run("unavailable backend", func(t *testing.T) {
		code, out, errOut := runCLI(t, "conformance", "--backend", "cuda", "--run", "clitest/")
		if code != 3 || !strings.Contains(errOut, "backend cuda is unavailable: ") || out != "" {
			t.Errorf("status %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("unavailable backend from env", func(t *testing.T) {
		t.Setenv("SORA_BACKEND", testUnavailable)
		code, _, errOut := runCLI(t, "conformance", "--run", "clitest/")
		if want := "backend " + testUnavailable + " ($SORA_BACKEND) is unavailable: "; code != exitUnavailable || !strings.Contains(errOut, want) {
			t.Errorf("status %d, stderr %q; want %d and %q", code, errOut, exitUnavailable, want)
		}
		// Named by --backend, it is not blamed on the environment.
		t.Setenv("SORA_BACKEND", "cpu")
		if _, _, errOut := runCLI(t, "conformance", "--backend", testUnavailable, "--run", "clitest/"); strings.Contains(errOut, "$SORA_BACKEND") {
			t.Errorf("stderr %q blames $SORA_BACKEND for --backend %s", errOut, testUnavailable)
		}
	})
	t.Run("no matching case", func(t *testing.T) {
		code, _, errOut := runCLI(t, "conformance", "--run", "no-case-has-this-name")
		if code != 2 || !strings.Contains(errOut, "no-case-has-this-name") {
			t.Errorf("status %d, stderr %q", code, errOut)
		}
	})
	t.Run("stray argument", func(t *testing.T) {
		code, _, errOut := runCLI(t, "conformance", "cpu")
		if code != 2 || !strings.Contains(errOut, `unexpected argument "cpu"`) {
			t.Errorf("status %d, stderr %q", code, errOut)
		}
	})
}

func TestOpenBackendListsTried(t *testing.T) {
	backend.Register("clitest-missing", missingDriver{})
	var errOut bytes.Buffer
	b, code := openBackend("clitest-missing", &errOut)
	if b != nil || code != exitUnavailable {
		t.Fatalf("openBackend = %v, %d", b, code)
	}
	want := "sora: backend clitest-missing is unavailable: libfoo.so not found\ntried:\n  /opt/foo\n  /usr/lib\n"
	if errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
	if got := availability(backend.Info{Name: "clitest-missing", Err: missingErr}); got != "unavailable: libfoo.so not found (tried: /opt/foo, /usr/lib)" {
		t.Errorf("availability %q", got)
	}
	if got := availability(backend.Info{Name: "x", Err: errors.New("dial tcp:\n refused")}); got != "unavailable: dial tcp: refused" {
		t.Errorf("availability of a plain error %q", got)
	}
}

var missingErr = &backend.UnavailableError{Backend: "clitest-missing", Reason: "libfoo.so not found", Tried: []string{"/opt/foo", "/usr/lib"}}

type missingDriver struct{}

func (missingDriver) Probe() (string, error)         { return "", missingErr }
func (missingDriver) Open() (backend.Backend, error) { return nil, missingErr }

func TestVersion(t *testing.T) {
	code, out, errOut := runCLI(t, "version")
	if code != 0 || errOut != "" {
		t.Fatalf("status %d, stderr %q", code, errOut)
	}
	if !regexp.MustCompile(`^sora \S+ \(.+\) go1\.\d+\S* \w+/\w+\n$`).MatchString(out) {
		t.Errorf("version line %q", out)
	}
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/sora-go/sora", Version: "v0.1.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123abcd"},
			{Key: "vcs.time", Value: "2025-01-02T03:04:05Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	got := versionLine(bi)
	if !strings.HasPrefix(got, "sora v0.1.0 (revision 0123abcd, modified, 2025-01-02T03:04:05Z) go1.26.8 ") {
		t.Errorf("versionLine = %q", got)
	}
	bi.Settings, bi.Main.Version = nil, ""
	if got := versionLine(bi); !strings.HasPrefix(got, "sora (devel) (revision unknown) go1.26.8 ") {
		t.Errorf("versionLine without VCS = %q", got)
	}
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		text, indent string
		width        int
		want         string
	}{
		{"a b c", "", 3, "a b\nc"},
		{"one two three", "  ", 9, "  one two\n  three"},
		{"averyveryverylongword x", "", 5, "averyveryverylongword\nx"},
		{"", "", 10, ""},
	} {
		if got := wrap(tc.text, tc.width, tc.indent); got != tc.want {
			t.Errorf("wrap(%q, %d, %q) = %q, want %q", tc.text, tc.width, tc.indent, got, tc.want)
		}
	}
}
