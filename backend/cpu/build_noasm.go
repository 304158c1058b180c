//go:build noasm

package cpu

// noasmBuild tells that this binary was built with -tags noasm, under which
// cpuid reads no CPU features and only the pure-Go kernels run.
const noasmBuild = true
