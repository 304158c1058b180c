package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
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
	wantKeys := `^\{"op":"gemm","m":\d+,"n":\d+,"k":\d+,"trans":"[NT]{2}","threads":\d+,"gflops":\d+\.\d,"baseline":"gonum","baseline_gflops":\d+\.\d\}$`
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
