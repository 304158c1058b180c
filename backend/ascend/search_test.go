package ascend

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// tree creates empty library files: each key is a folder (relative to
// root) and its value the files in it.
func tree(t *testing.T, root string, files map[string][]string) {
	t.Helper()
	for dir, names := range files {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(root, dir, n), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

var (
	runtimeLibs = []string{libRuntime, libNNOpBase}
	monoLibs    = []string{libRuntime, libNNOpBase, libOpAPI}
	splitLibs   = append([]string{libRuntime, libNNOpBase}, splitOpAPI...)
)

func TestLocate(t *testing.T) {
	if runtime.GOOS == "windows" {
		// The cases are written with Linux paths and lists, and the
		// search never runs there: loadLibrary refuses windows first
		// (TestUnsupportedOS).
		t.Skip("the library search runs only where CANN exists, and windows is refused before it")
	}
	cases := []struct {
		name   string
		files  map[string][]string
		env    map[string]string // values may use {root}
		layout string            // "" when an error is expected
		// want are substrings of the paths found (runtime, opapi[0]) or of
		// the error.
		runtimeIn, opapiIn string
		errHas             []string
		triedHas           []string
	}{
		{
			name: "monolithic", files: map[string][]string{"a": monoLibs},
			env: map[string]string{"SORA_ASCEND_PATH": "{root}/a"}, layout: libOpAPI, runtimeIn: "/a/", opapiIn: "/a/",
		},
		{
			name: "split", files: map[string][]string{"a": splitLibs},
			env: map[string]string{"SORA_ASCEND_PATH": "{root}/a"}, layout: "split", opapiIn: "libopapi_math.so",
		},
		{
			name: "both layouts: libopapi.so wins", files: map[string][]string{"a": append(splitLibs, libOpAPI)},
			env: map[string]string{"SORA_ASCEND_PATH": "{root}/a"}, layout: libOpAPI, opapiIn: "/a/libopapi.so",
			triedHas: []string{"split operator libraries ignored"},
		},
		{
			name: "incomplete split", files: map[string][]string{"a": append(runtimeLibs, "libopapi_math.so", "libopapi_nn.so")},
			env:      map[string]string{"SORA_ASCEND_PATH": "{root}/a"},
			errHas:   []string{"not found: libopapi.so (or libopapi_math.so + libopapi_nn.so + libopapi_transformer.so)"},
			triedHas: []string{"incomplete split operator libraries, missing libopapi_transformer.so"},
		},
		{
			name: "nothing anywhere", files: map[string][]string{"a": nil, "home/lib64": nil, "ld": nil},
			env: map[string]string{"SORA_ASCEND_PATH": "{root}/a", "ASCEND_HOME_PATH": "{root}/home",
				"LD_LIBRARY_PATH": "{root}/ld"},
			errHas: []string{"not found: libascendcl.so, libnnopbase.so, libopapi.so"},
			triedHas: []string{"/a ($SORA_ASCEND_PATH): nothing", "/a/lib64 ($SORA_ASCEND_PATH): no such folder",
				"/home/lib64 ($ASCEND_HOME_PATH): nothing", "/ld ($LD_LIBRARY_PATH): nothing", "/toolkit: no such folder"},
		},
		{
			name: "spread over folders", files: map[string][]string{"home/lib64": runtimeLibs, "ld": {libOpAPI}},
			env:    map[string]string{"ASCEND_HOME_PATH": "{root}/home", "LD_LIBRARY_PATH": "/nonexistent:{root}/ld"},
			layout: libOpAPI, runtimeIn: "/home/lib64/", opapiIn: "/ld/",
		},
		{
			name: "SORA_ASCEND_PATH first", files: map[string][]string{"a": monoLibs, "home/lib64": monoLibs},
			env:    map[string]string{"SORA_ASCEND_PATH": "{root}/a", "ASCEND_HOME_PATH": "{root}/home"},
			layout: libOpAPI, runtimeIn: "/a/", opapiIn: "/a/",
		},
		{
			name: "lib64 below SORA_ASCEND_PATH", files: map[string][]string{"a/lib64": monoLibs},
			env:    map[string]string{"SORA_ASCEND_PATH": "{root}/a"},
			layout: libOpAPI, runtimeIn: "/a/lib64/",
		},
		{
			name: "toolkit home", files: map[string][]string{"tk/lib64": splitLibs},
			env:    map[string]string{"ASCEND_TOOLKIT_HOME": "{root}/tk"},
			layout: "split", runtimeIn: "/tk/lib64/",
		},
		{
			name: "default toolkit folder", files: map[string][]string{"toolkit": monoLibs},
			env:    map[string]string{},
			layout: libOpAPI, runtimeIn: "/toolkit/",
		},
		{
			name: "first folder with operators decides the layout", files: map[string][]string{"a": splitLibs, "b": monoLibs},
			env:    map[string]string{"SORA_ASCEND_PATH": "{root}/a:{root}/b"},
			layout: "split", opapiIn: "/a/",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tree(t, root, tc.files)
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = strings.ReplaceAll(v, "{root}", root)
			}
			e := systemSearchEnv()
			e.getenv = func(k string) string { return env[k] }
			e.defaultDir = filepath.Join(root, "toolkit")
			loc, tried, err := e.locate()
			joined := strings.Join(tried, "\n")
			for _, w := range tc.triedHas {
				if !strings.Contains(joined, w) {
					t.Errorf("tried list lacks %q:\n%s", w, joined)
				}
			}
			if tc.layout == "" {
				if err == nil {
					t.Fatalf("found %+v, want an error", loc)
				}
				for _, w := range tc.errHas {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				// As the driver reports it.
				u := unavailable(err.Error(), tried)
				if !backend.IsUnavailable(u) || !strings.Contains(u.Error(), "ascend unavailable: ") || !strings.Contains(u.Error(), "(tried: ") {
					t.Errorf("unavailable error reads %q", u)
				}
				return
			}
			if err != nil {
				t.Fatalf("locate: %v\ntried:\n%s", err, joined)
			}
			if !strings.HasPrefix(loc.layout, tc.layout) {
				t.Errorf("layout %q, want %q", loc.layout, tc.layout)
			}
			wantN := 1
			if tc.layout == "split" {
				wantN = 3
			}
			if len(loc.opapi) != wantN {
				t.Errorf("operator libraries %v, want %d", loc.opapi, wantN)
			}
			if tc.runtimeIn != "" && !strings.Contains(loc.runtime, tc.runtimeIn) {
				t.Errorf("runtime at %s, want in %s", loc.runtime, tc.runtimeIn)
			}
			if tc.opapiIn != "" && !strings.Contains(loc.opapi[0], tc.opapiIn) {
				t.Errorf("operators at %v, want in %s", loc.opapi, tc.opapiIn)
			}
		})
	}
}

func TestOptionsFromEnv(t *testing.T) {
	cases := []struct {
		env    map[string]string
		want   Options
		errHas string
	}{
		{env: map[string]string{}, want: Options{}},
		{env: map[string]string{"SORA_ASCEND_DEVICE": "3", "SORA_ASCEND_MATMUL": "fast"}, want: Options{Device: 3, MatMul: MatMulFast}},
		{env: map[string]string{"SORA_ASCEND_MATMUL": "float32"}, want: Options{MatMul: MatMulKeepFloat32}},
		{env: map[string]string{"SORA_ASCEND_MATMUL": "Auto"}, want: Options{MatMul: MatMulAuto}},
		{env: map[string]string{"SORA_ASCEND_DEVICE": "x"}, errHas: "SORA_ASCEND_DEVICE"},
		{env: map[string]string{"SORA_ASCEND_DEVICE": "-1"}, errHas: "SORA_ASCEND_DEVICE"},
		{env: map[string]string{"SORA_ASCEND_MATMUL": "hf16"}, errHas: `SORA_ASCEND_MATMUL="hf16"`},
	}
	for _, tc := range cases {
		o, err := optionsFromEnv(func(k string) string { return tc.env[k] })
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.errHas)
			}
			continue
		}
		if err != nil || o != tc.want {
			t.Errorf("%v: %+v, %v; want %+v", tc.env, o, err, tc.want)
		}
	}
}

func TestACLErrorFormat(t *testing.T) {
	e := &ACLError{Call: "aclnnMm", Status: 161002, Message: "shapes"}
	if got := e.Error(); got != "aclnnMm returned 161002 (ACLNN_ERR_PARAM_INVALID): shapes" {
		t.Errorf("Error() = %q", got)
	}
	e = &ACLError{Call: "aclrtMalloc", Status: 207001}
	if !IsOutOfMemory(&backend.OpError{Op: "x", Err: e}) {
		t.Error("IsOutOfMemory does not see through OpError")
	}
	if IsOutOfMemory(errors.New("aclrtMalloc 207001")) {
		t.Error("IsOutOfMemory on a plain error")
	}
	for _, c := range []struct {
		status int32
		oom    bool
	}{{207001, true}, {200000, true}, {207002, false}, {507015, false}, {0, false}} {
		err := &backend.OpError{Op: "x", Err: &ACLError{Call: "aclrtMalloc", Status: c.status}}
		if errors.Is(err, backend.ErrOutOfMemory) != c.oom || IsOutOfMemory(err) != c.oom {
			t.Errorf("status %d: errors.Is(err, backend.ErrOutOfMemory) = %v, IsOutOfMemory = %v; want %v",
				c.status, errors.Is(err, backend.ErrOutOfMemory), IsOutOfMemory(err), c.oom)
		}
	}
	if !strings.Contains(e.Error(), "no message") {
		t.Errorf("empty message reads %q", e.Error())
	}
}

func TestUnsupportedOS(t *testing.T) {
	for _, tc := range []struct {
		goos, want string
	}{
		{"linux", ""},
		{"darwin", ""},
		{"windows", "not available on windows: Huawei's CANN, whose ACL runtime and aclnn operators this backend calls, has no Windows release (it runs on Linux)"},
		{"freebsd", "not available on freebsd: Huawei's CANN, whose ACL runtime and aclnn operators this backend calls, runs on Linux only"},
	} {
		if got := unsupportedOS(tc.goos); got != tc.want {
			t.Errorf("unsupportedOS(%q) = %q, want %q", tc.goos, got, tc.want)
		}
	}
}
