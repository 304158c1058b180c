//go:build (darwin || linux) && (amd64 || arm64) && !noblas

package blas

import (
	"fmt"
	"strings"

	"github.com/ebitengine/purego"

	"github.com/sora-go/sora/backend/internal/dl"
)

// supported is whether this build can load a library: purego calls C
// functions with float arguments without cgo on these systems.
const supported = true

// open loads file and resolves cblas_sgemm, and the functions through
// which OpenBLAS or BLIS describe themselves where it has them. The
// library is never closed: the backend keeps using it, and OpenBLAS's
// threads would outlive an unload.
func open(file string) (*Library, error) {
	h, err := dl.Open(file, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		// dlerror's message names the file already.
		if msg := err.Error(); !strings.Contains(msg, file) {
			return nil, fmt.Errorf("%s: %s", file, msg)
		}
		return nil, err
	}
	fn, err := dl.Sym(h, "cblas_sgemm")
	if err != nil {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("%s loads but has no cblas_sgemm, so it is not a CBLAS library (%v)", file, err)
	}
	var c cFunc
	purego.RegisterFunc(&c, fn)
	l := &Library{name: file, sgemm: c.call}
	l.info, l.threads = describe(h)
	return l, nil
}

// describe asks the library about itself through the optional functions
// OpenBLAS (openblas_get_config, openblas_get_num_threads) and BLIS
// (bli_info_get_version_str, bli_thread_get_num_threads) export.
func describe(h uintptr) (info string, threads func() int32) {
	str := func(name string) string {
		p, err := dl.Sym(h, name)
		if err != nil {
			return ""
		}
		var f func() string
		purego.RegisterFunc(&f, p)
		return strings.Join(strings.Fields(f()), " ")
	}
	count := func(name string) func() int32 {
		p, err := dl.Sym(h, name)
		if err != nil {
			return nil
		}
		var f func() int32
		purego.RegisterFunc(&f, p)
		return f
	}
	if info = str("openblas_get_config"); info != "" {
		return info, count("openblas_get_num_threads")
	}
	if v := str("bli_info_get_version_str"); v != "" {
		return "BLIS " + v, count("bli_thread_get_num_threads")
	}
	return "", nil
}
