package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sora-go/sora/backend"

	// The CLI is the one place that pulls in every concrete backend; each
	// registers itself with the backend registry in its init.
	_ "github.com/sora-go/sora/backend/ascend"
	_ "github.com/sora-go/sora/backend/cpu"
	"github.com/sora-go/sora/backend/cuda"
)

// kernelSource is a backend that says where its compiled kernels came
// from, which its Device leaves out (it differs between the first run on
// a device and later ones, which run the same kernels).
type kernelSource interface{ Kernels() string }

// The CUDA backend is one: a rename there must not silently drop the
// clause from the lines that name the device (see deviceLine).
var _ kernelSource = (*cuda.Backend)(nil)

// deviceLine describes b's device for the lines that name it (sora
// finetune's model: line, the bench commands' backend line, generate's
// closing line): its Device, then the threads it uses, for a backend
// that says so (", 2 threads"), and, for a backend that compiles kernels,
// where they came from ("; kernels cached in …"), so that a user sees
// whether this run compiled them.
func deviceLine(b backend.Backend) string {
	d := b.Device()
	if t, ok := b.(backend.ThreadCounter); ok {
		d += ", " + plural(t.Threads(), "thread")
	}
	if k, ok := b.(kernelSource); ok && k.Kernels() != "" {
		d += "; kernels " + k.Kernels()
	}
	return d
}

var backendsDoc = usageDoc{
	synopsis: "backends [NAME]",
	description: "Lists every backend compiled into sora, one line each: its name, then \"available\" and a " +
		"description of the device (for the CPU, the SIMD features detected with cpuid), or \"unavailable:\" " +
		"and the reason, naming the libraries and folders that were looked for. Probing loads vendor " +
		"libraries but allocates nothing on the device. With a NAME, prints that backend's line alone and " +
		"exits with status 3 when it cannot run here (2 for a name that is not a backend), so that a " +
		"script can ask whether, say, cuda is usable.",
	examples: []string{
		"sora backends",
		"sora backends cuda && sora finetune --backend cuda ...",
		"SORA_CUDA_PATH=/opt/cuda/lib64 sora backends",
	},
}

func init() {
	register(command{
		name:    "backends",
		summary: "list the backends and whether each can run on this machine",
		run:     runBackends,
	})
}

func runBackends(args []string, stdout, stderr io.Writer) int {
	// The one positional argument, a backend's name, comes first.
	name := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	fs := newFlagSet("backends")
	if code, ok := parseFlags(fs, backendsDoc, args, stdout, stderr); !ok {
		return code
	}
	if name != "" {
		if msg := unknownBackend(name); msg != "" {
			fmt.Fprintln(stderr, msg)
			return exitUsage
		}
	}
	infos := backend.List()
	width := 0
	for _, in := range infos {
		width = max(width, len(in.Name))
	}
	code := exitOK
	for _, in := range infos {
		if name != "" && in.Name != name {
			continue
		}
		fmt.Fprintf(stdout, "%-*s  %s\n", width, in.Name, availability(in))
		if !in.Available {
			code = exitUnavailable
		}
	}
	if name == "" {
		return exitOK
	}
	return code
}

// availability is the part of a "sora backends" line after the name.
func availability(in backend.Info) string {
	if in.Available {
		return "available    " + oneLine(in.Description)
	}
	var u *backend.UnavailableError
	if errors.As(in.Err, &u) {
		s := "unavailable: " + u.Reason
		if len(u.Tried) > 0 {
			s += " (tried: " + strings.Join(u.Tried, ", ") + ")"
		}
		return oneLine(s)
	}
	if in.Err == nil {
		return "unavailable: (no reason given)"
	}
	return oneLine("unavailable: " + in.Err.Error())
}

// oneLine keeps a report to a single line whatever a driver put in it.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
