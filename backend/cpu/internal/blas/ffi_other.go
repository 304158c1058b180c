//go:build !((darwin || linux) && (amd64 || arm64)) || noblas

package blas

// supported is false: elsewhere purego needs cgo (FreeBSD, Linux on other
// architectures, for float arguments) or has no dlopen (Windows), and a
// build with -tags noblas leaves it out on purpose (importing purego makes
// a Linux binary dynamically linked), so this build does not import it and
// Load returns ErrUnsupported.
const supported = false

func open(string) (*Library, error) { return nil, ErrUnsupported }
