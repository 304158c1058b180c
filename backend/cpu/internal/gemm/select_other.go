//go:build !amd64

package gemm

func selectKernel(portable bool) *kernel { return goKernel }
