//go:build !((darwin || linux) && (amd64 || arm64))

package blas

// supported is false: elsewhere purego needs cgo (FreeBSD, Linux on other
// architectures, for float arguments) or has no dlopen (Windows), so
// this build does not import it and Load returns ErrUnsupported.
const supported = false

func open(string) (*Library, error) { return nil, ErrUnsupported }
