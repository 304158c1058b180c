package jinja

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"
)

// refCase is one case of testdata/constructs.json: a template, its
// variables, and what Python's Jinja2 in transformers' environment made of
// it (scripts/chat-ref/pyref.py).
type refCase struct {
	Name       string          `json:"name"`
	Template   string          `json:"template"`
	Vars       json.RawMessage `json:"vars"`
	Python     *string         `json:"python"`
	PythonErr  string          `json:"python_error"`
	Generation [][2]int        `json:"python_generation"`
}

// refClock is the instant pyref.py's strftime_now reads.
var refClock = time.Date(2024, 7, 26, 14, 5, 9, 0, time.Local)

func refGlobals() map[string]Value {
	return map[string]Value{
		"raise_exception": RaiseException(),
		"strftime_now":    StrftimeNow(func() time.Time { return refClock }),
	}
}

// knownDivergences are the cases where this package knowingly differs
// from Python's Jinja2, with the reason; each must still fail or differ,
// so that a fix is noticed.
var knownDivergences = map[string]string{
	"big-int": "integers have 64 bits here; Python's are unbounded (this errors)",
}

func loadRefCases(t *testing.T, path string) []refCase {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []refCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cases
}

func renderRef(c refCase) (*Output, error) {
	tmpl, err := Parse(c.Name, c.Template)
	if err != nil {
		return nil, err
	}
	v, err := FromJSON(c.Vars)
	if err != nil {
		return nil, err
	}
	vars := map[string]Value{}
	d := v.(*Dict)
	for i, k := range d.Keys() {
		vars[k.(string)] = d.Values()[i]
	}
	return tmpl.Render(vars, refGlobals(), Limits{})
}

// TestConstructsAgainstPython renders every construct case, one or a few
// per language feature (testdata/constructs.json, from
// scripts/chat-ref/constructs.json), and the 53 real templates with the
// example inputs of huggingface.js's end-to-end tests (testdata/e2e.json),
// and compares with Python's output: the same text, the same generation
// spans, and an error exactly where Python raised one.
func TestConstructsAgainstPython(t *testing.T) {
	cases := loadRefCases(t, "testdata/constructs.json")
	cases = append(cases, loadRefCases(t, "testdata/e2e.json")...)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			out, err := renderRef(c)
			if why, ok := knownDivergences[c.Name]; ok {
				if err == nil && c.Python != nil && out.Text == *c.Python {
					t.Errorf("known divergence (%s) no longer diverges: remove it from the list", why)
				}
				return
			}
			if c.PythonErr != "" {
				if err == nil {
					t.Fatalf("rendered %q; Python raised %s", out.Text, c.PythonErr)
				}
				t.Logf("error as expected: %v (Python: %s)", err, c.PythonErr)
				return
			}
			if err != nil {
				t.Fatalf("error %v; Python rendered %q", err, *c.Python)
			}
			if out.Text != *c.Python {
				t.Fatalf("rendered\n%q\nPython\n%q", out.Text, *c.Python)
			}
			var spans [][2]int
			for _, s := range out.Generation {
				spans = append(spans, [2]int{s.Start, s.End})
			}
			if !reflect.DeepEqual(spans, c.Generation) {
				t.Fatalf("generation spans %v, Python %v", spans, c.Generation)
			}
		})
	}
}
