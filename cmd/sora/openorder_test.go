package main

import (
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// testUnavailable is a backend registered in the tests only, which no
// machine can run.
const testUnavailable = "test-unavailable"

type unavailableDriver struct{}

func (unavailableDriver) Probe() (string, error) {
	return "", &backend.UnavailableError{Backend: testUnavailable, Reason: "a test backend that never runs"}
}

func (d unavailableDriver) Open() (backend.Backend, error) {
	_, err := d.Probe()
	return nil, err
}

func init() { backend.Register(testUnavailable, unavailableDriver{}) }

// TestUnavailableBackendFirst checks that the commands that load a model
// report a backend this machine cannot run (status 3) before they read the
// model, whose path here does not even exist: on a real model the load
// would otherwise come first and take a while.
func TestUnavailableBackendFirst(t *testing.T) {
	dir := t.TempDir()
	model, tok, data := dir+"/absent.bin", dir+"/absent-tok.bin", dir+"/absent.json"
	for _, args := range [][]string{
		{"finetune", "--model", model, "--tokenizer", tok, "--data", data},
		{"eval", "--model", model, "--tokenizer", tok, "--data", data},
		{"generate", "--model", model, "--tokenizer", tok},
	} {
		code, _, errOut := runCLI(t, append(args, "--backend", testUnavailable)...)
		if code != exitUnavailable || !strings.Contains(errOut, "never runs") {
			t.Errorf("%v: status %d, stderr %q; want %d and the backend's reason", args, code, errOut, exitUnavailable)
		}
	}
}
