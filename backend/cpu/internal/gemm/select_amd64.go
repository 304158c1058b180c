package gemm

func selectKernel(portable bool) *kernel { return goKernel }
