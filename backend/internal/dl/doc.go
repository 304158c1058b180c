// Package dl loads shared libraries with dlopen for the device backends
// (and their test doubles) on the systems that have it, Linux and macOS.
// It exists so that the one subtle part, keeping the goroutine on one
// thread while purego reads dlerror, is written once. Elsewhere the
// package is empty: the backends have their own loaders or stubs there.
package dl
