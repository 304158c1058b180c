// Package blas hands the CPU backend's float32 matrix multiplies to a
// system BLAS loaded at run time: cblas_sgemm from Apple's Accelerate
// framework, OpenBLAS, BLIS, Intel MKL or any library file that exports
// it. The library is found with dlopen through purego, without cgo, on
// Linux and macOS for amd64 and arm64; other builds (Windows, FreeBSD,
// other architectures, or any build with -tags noblas, which keeps a
// Linux binary statically linked) compile a stub whose Load reports that.
//
// Every call is row-major cblas_sgemm with 32-bit integer arguments (the
// LP64 interface that the usual builds of these libraries export under
// that name). Load checks that assumption before handing the library out:
// it multiplies a few small matrices of small integers, whose products are
// exact in float32, for all four transpose cases with padded leading
// dimensions, and refuses a library whose answer differs in any element.
// That catches an ILP64 build exporting the plain name, or a calling
// convention that purego and the library disagree on.
//
// What has been run: OpenBLAS 0.3.21 (Debian's libopenblas0-pthread) and
// BLIS 0.9 (libblis4-pthread) on linux/amd64, and Debian's arm64 OpenBLAS
// 0.3.21 on linux/arm64 under qemu-aarch64 (this package's tests and the
// conformance suite), through the same calls as every other library. Accelerate has NOT been run: no macOS machine was
// available. Its path, symbol and calling convention (purego packs
// darwin/arm64's stack arguments by their C sizes, which the 32-bit
// ldb/ldc rely on) are as Apple documents them, and the load-time check
// above would refuse it if the calls came out wrong rather than crash,
// unless the call itself crashes. MKL's names are listed but it has not
// been run either.
//
// The libraries parallelise a call with threads of their own, which the
// CPU backend's thread setting does not reach: OPENBLAS_NUM_THREADS,
// BLIS_NUM_THREADS, MKL_NUM_THREADS and VECLIB_MAXIMUM_THREADS
// (Accelerate) set them, each read by its library when it loads.
package blas
