module github.com/sora-go/sora

go 1.26

require (
	github.com/chewxy/math32 v1.0.0 // indirect
	github.com/ebitengine/purego v0.11.3 // indirect
	github.com/klauspost/cpuid/v2 v2.4.2 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	golang.org/x/sys v0.41.0 // indirect
	gonum.org/v1/gonum v0.17.0 // indirect
	gorgonia.org/vecf32 v0.9.0 // indirect
)
