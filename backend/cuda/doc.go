// Package cuda is the NVIDIA GPU backend of SORA for Go. It registers
// itself with the backend registry as "cuda".
//
// The package uses no cgo: it finds the NVIDIA libraries at run time and
// loads them with github.com/ebitengine/purego, so a binary built with
// CGO_ENABLED=0 runs both on machines without a GPU (where the backend
// reports itself unavailable) and on GPU servers. It needs
//
//   - libcuda.so.1, the driver API, installed with the NVIDIA driver;
//   - libcublas.so.13 or libcublas.so.12, with the libcublasLt of the same
//     major version, for matrix products;
//   - libnvrtc.so.13 or libnvrtc.so.12, with its libnvrtc-builtins, to
//     compile the kernels at run time.
//
// A CUDA 13 library is used only when the driver supports CUDA 13.
//
// # Where the libraries are looked for
//
// In this order, the first folder holding a library that loads wins:
//
//  1. $SORA_CUDA_PATH, a list of folders separated by ':' (each folder and
//     its lib64 and lib subfolders);
//  2. $CUDA_HOME and $CUDA_PATH (their lib64 and lib subfolders);
//  3. the folders of $LD_LIBRARY_PATH;
//  4. /usr/local/cuda/lib64;
//  5. the system library folders (/usr/lib/<triplet>, /lib/<triplet>,
//     /usr/lib64, /lib64, /usr/lib, /usr/lib/wsl/lib, /usr/local/nvidia/lib64,
//     /usr/local/nvidia/lib);
//  6. the nvidia/*/lib folders that pip-installed CUDA wheels create in
//     Python environments, found without running Python: $VIRTUAL_ENV,
//     $CONDA_PREFIX, ~/.local/lib/python3*/site-packages,
//     /usr/local/lib/python3*/{dist,site}-packages,
//     /usr/lib/python3*/{dist,site}-packages and ~/.pyenv/versions/*, newest
//     Python first; then $CONDA_PREFIX/lib, where conda's CUDA packages go;
//  7. the dynamic linker's own search (ld.so.cache) by library name.
//
// When something is missing, [backend.Open] and "sora backends" answer a
// *[backend.UnavailableError] that names what is missing (a library, a
// symbol in it, a device) and lists the folders searched.
//
// # Status
//
// This package currently implements loading and registration only: it
// finds and loads the libraries, resolves every symbol the implementation
// will call, initialises the driver and finds the device. The ops
// themselves are not written yet, so on a machine with a working GPU
// Open still answers an error saying so; nothing is emulated.
package cuda
