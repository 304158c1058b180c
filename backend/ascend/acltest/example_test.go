package acltest_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/sora-go/sora/backend"
	_ "github.com/sora-go/sora/backend/ascend"
	"github.com/sora-go/sora/backend/ascend/acltest"
)

// Run the Ascend backend on the double and make one aclnn call fail.
func Example() {
	dir, err := os.MkdirTemp("", "acltest")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	libDir, err := acltest.UseDouble(dir) // builds it and sets SORA_ASCEND_PATH
	if errors.Is(err, acltest.ErrNoCompiler) {
		fmt.Println("no C compiler")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	d, err := acltest.Attach(libDir)
	if err != nil {
		log.Fatal(err)
	}
	b, err := backend.Open("ascend")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	x, _ := b.Alloc(backend.Float32, 3)
	b.Upload(x, []float32{1, 2, 3})
	d.Inject("aclnnExpGetWorkspaceSize", 0, 1, 161002, "injected")
	b.Unary(backend.Exp, x, x)
	fmt.Println(b.Sync())
	fmt.Println(d.Calls("aclnnExpGetWorkspaceSize"), d.Fired("aclnnExpGetWorkspaceSize"))
}
