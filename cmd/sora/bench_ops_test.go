package main

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"
)

func TestBenchOpsJSON(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "ops", "--n", "4096", "--cols", "64", "--threads", "2", "--time", "3ms", "--json"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	// The copy is timed beside each kernel; the header gives the range.
	if !regexp.MustCompile(`# baseline copy: host copy over 2 goroutines, timed in turns with each kernel: \d+\.\d–\d+\.\d GB/s \(one goroutine: \d+\.\d\)`).MatchString(errb.String()) {
		t.Errorf("stderr does not give the range of the copies and one goroutine's:\n%s", errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	// Every kernel prints a line unless the backend reports it unsupported.
	if want := len(benchOps) - strings.Count(errb.String(), "does not support"); len(lines) != want {
		t.Fatalf("got %d lines, want %d:\n%s\nstderr:\n%s", len(lines), want, out.String(), errb.String())
	}
	keys := regexp.MustCompile(`^\{"op":"[a-z_]+","n":4096,"cols":64,"threads":2,"bytes_per_element":\d+,"gbps":\d+\.\d,"baseline":"copy","baseline_gbps":\d+\.\d,"fraction_of_copy":\d+\.\d\d\}$`)
	for _, line := range lines {
		if !keys.MatchString(line) {
			t.Errorf("line %s lacks the documented keys", line)
		}
		var r opsResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		// Each line's fraction is of its own baseline (up to the
		// rounding of the three printed figures).
		got, want := float64(r.FractionOfCpy), float64(r.GBPS)/float64(r.BaselineGBPS)
		if tol := 0.005 + 0.05*(1+want)/float64(r.BaselineGBPS); math.Abs(got-want) > tol {
			t.Errorf("%s: fraction_of_copy %v, want gbps/baseline_gbps = %.3f", line, got, want)
		}
	}
}

func TestBenchOpsTableAndSelection(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "ops", "--n", "1024", "--cols", "32", "--ops", "copy,softmax", "--time", "3ms"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	for _, op := range []string{"copy", "softmax"} {
		if !regexp.MustCompile(`(?m)^` + op + `\s+1024\s+32\s`).MatchString(out.String()) {
			t.Errorf("no row for %s:\n%s", op, out.String())
		}
	}
	if strings.Contains(out.String(), "adamw") {
		t.Errorf("--ops copy,softmax also ran adamw:\n%s", out.String())
	}
}

// TestBenchOpsOneThreadLine checks the baseline line at --threads 1
// names one goroutine, as the backend line beside it names one thread.
func TestBenchOpsOneThreadLine(t *testing.T) {
	code, out, errOut := runCLI(t, "bench", "ops", "--n", "1024", "--cols", "32", "--ops", "copy", "--threads", "1", "--time", "3ms")
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if !strings.Contains(out, "baseline: host copy over 1 goroutine, ") || strings.Contains(out, "one goroutine:") {
		t.Errorf("the baseline line does not say 1 goroutine, or gives one goroutine's copy again beside it:\n%s", out)
	}
}

func TestBenchOpsBadInput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--ops", "copy,frobnicate"}, `unknown kernel "frobnicate"`},
		{[]string{"--n", "0"}, "-n 0"},
		{[]string{"--n", "100", "--cols", "7"}, "--cols 7"},
		{[]string{"--threads", "-2"}, "--threads -2"},
		{[]string{"--time", "-1s"}, "--time -1s"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(append([]string{"bench", "ops"}, tt.args...), &out, &errb); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(errb.String(), tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", errb.String(), tt.want)
			}
		})
	}
}

func TestBenchOpsDeviceCopyBaseline(t *testing.T) {
	calls := vendorFakes["clitest-vendor"].calls
	before := calls.copy.Load()
	var out, errb bytes.Buffer
	code := run([]string{"bench", "ops", "--backend", "clitest-vendor", "--n", "2048", "--cols", "64", "--ops", "add,softmax", "--time", "3ms", "--json"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	if calls.copy.Load() == before {
		t.Errorf("DeviceCopy was never called")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), out.String())
	}
	// No "threads": neither the device's kernels nor its copy run on host
	// goroutines.
	keys := regexp.MustCompile(`^\{"op":"(add|softmax)","n":2048,"cols":64,"bytes_per_element":\d+,"gbps":\d+\.\d,"baseline":"device-copy","baseline_gbps":\d+\.\d,"fraction_of_copy":\d+\.\d\d\}$`)
	for _, line := range lines {
		if !keys.MatchString(line) {
			t.Errorf("line %s, want baseline device-copy with the documented keys", line)
		}
	}
	if !strings.Contains(errb.String(), "# baseline device-copy:") {
		t.Errorf("stderr = %q, want a line naming the device-copy baseline", errb.String())
	}

	out.Reset()
	errb.Reset()
	if code := run([]string{"bench", "ops", "--backend", "clitest-vendor", "--n", "1024", "--cols", "32", "--ops", "copy", "--time", "3ms"}, &out, &errb); code != exitOK {
		t.Fatalf("table: exit %d, stderr:\n%s", code, errb.String())
	}
	if !strings.Contains(out.String(), "baseline: the device's own device-to-device copy, ") {
		t.Errorf("table header does not name the device copy:\n%s", out.String())
	}
	if !regexp.MustCompile(`(?m)^copy\s+1024\s+32\s+-\s`).MatchString(out.String()) {
		t.Errorf("the table's threads column is not - for a device:\n%s", out.String())
	}
}

// A device copy that copies nothing must fail the run, not set a baseline.
// The device copy, timed before each kernel, writes the output tensor the
// copy kernel writes too: it copies another operand, so that a copy kernel
// that does nothing still fails its check.
func TestBenchOpsCopyKernelCheckedBesideDeviceCopy(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "ops", "--backend", "clitest-vendor-nocopy", "--n", "1024", "--cols", "32", "--ops", "add,copy", "--time", "3ms", "--json"}, &out, &errb)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitFailure, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "sora bench ops: copy: ") {
		t.Errorf("stderr = %q, want the copy kernel's check to fail", errb.String())
	}
}

func TestBenchOpsDeviceCopyChecked(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "ops", "--backend", "clitest-vendor-broken", "--n", "1024", "--cols", "32", "--ops", "add", "--time", "3ms", "--json"}, &out, &errb)
	if code != exitFailure {
		t.Errorf("exit %d, want %d; stdout:\n%s", code, exitFailure, out.String())
	}
	if want := "baseline device-copy on backend clitest-vendor-broken: the copy is wrong"; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr = %q, want it to contain %q", errb.String(), want)
	}
}

// TestSynopsisFlagSpelling checks that every flag a command's usage line
// names is spelled there as its flag list spells it (a one-letter flag
// is listed as -n, longer ones as --name), so the two never disagree.
func TestSynopsisFlagSpelling(t *testing.T) {
	flagRE := regexp.MustCompile(`(?:^|[\s\[|])(--?[a-z][a-z0-9-]*)`)
	listed := regexp.MustCompile(`(?m)^  (--?[a-z][a-z0-9-]*)`)
	var cmds [][]string
	for name := range commands {
		cmds = append(cmds, []string{name})
	}
	for name := range benchCommands {
		cmds = append(cmds, []string{"bench", name})
	}
	for _, c := range cmds {
		_, out, _ := runCLI(t, append(c, "--help")...)
		first, _, _ := strings.Cut(out, "\n")
		if !strings.HasPrefix(first, "Usage: sora "+strings.Join(c, " ")) {
			t.Errorf("sora %s --help: first line %q, want its usage line", strings.Join(c, " "), first)
			continue
		}
		have := map[string]bool{}
		for _, m := range listed.FindAllStringSubmatch(out, -1) {
			have[m[1]] = true
		}
		for _, m := range flagRE.FindAllStringSubmatch(first, -1) {
			if !have[m[1]] {
				t.Errorf("sora %s: usage line names %s, which its flag list does not\n%s", strings.Join(c, " "), m[1], out)
			}
		}
	}
}
