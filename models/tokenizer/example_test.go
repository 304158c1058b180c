package tokenizer_test

import (
	"fmt"
	"log"

	"github.com/sora-go/sora/models/tokenizer"
)

// Example encodes and decodes a prompt with stories260K's tokenizer from the
// shared data beside the module. (It is compiled but not run by go test,
// since the shared data may be absent; TestOnceUponATime checks the ids.)
func Example() {
	tok, err := tokenizer.Load("../../../shared/data/models/stories260K/tok512.bin")
	if err != nil {
		log.Fatal(err)
	}
	ids := tok.Encode("Once upon a time", true, false)
	fmt.Println(ids)                                      // [1 403 407 261 378]
	fmt.Println(tok.DecodeAll(ids))                       // Once upon a time
	fmt.Printf("%q\n", tok.Decode(tokenizer.BOS, ids[1])) // "Once"
}

// ExampleTokenizer_NewPrinter prints a text token by token, as a streaming
// generator prints its output: "☕" and "日" are missing from stories260K's
// vocabulary and spelled in byte tokens, which print once each character
// is whole. (Compiled but not run; TestPrinterText checks the output.)
func ExampleTokenizer_NewPrinter() {
	tok, err := tokenizer.Load("../../../shared/data/models/stories260K/tok512.bin")
	if err != nil {
		log.Fatal(err)
	}
	ids := tok.Encode("Le café ☕ 日本", true, false)
	p := tok.NewPrinter(ids[0])
	for _, id := range ids[1:] {
		fmt.Print(p.Next(id))
	}
	fmt.Println() // Le café ☕ 日本
}

// ExampleLoadDir reads a Hugging Face tokenizer folder: here the
// tokenizer.json that WriteHF made from stories260K's tok512.bin, which
// encodes as llama2.c does.
func ExampleLoadDir() {
	tok, err := tokenizer.LoadDir("testdata/sp-tok512")
	if err != nil {
		log.Fatal(err)
	}
	ids := tok.Encode("Once upon a time", true, false)
	fmt.Println(ids, tok.BOS(), tok.EOS())
	fmt.Println(tok.DecodeAll(ids))
	// Output:
	// [1 403 407 261 378] 1 2
	// Once upon a time
}

// ExampleTokenizer_WriteHF writes llama2.c's tokenizer.bin as a Hugging
// Face tokenizer folder (tokenizer.json and tokenizer_config.json), as a
// converter of checkpoints does. (Compiled but not run: the shared data may
// be absent; TestTok512Fixtures checks the files.)
func ExampleTokenizer_WriteHF() {
	tok, err := tokenizer.Load("../../../shared/data/models/stories260K/tok512.bin")
	if err != nil {
		log.Fatal(err)
	}
	if err := tok.WriteHF("out/stories260K-hf"); err != nil {
		log.Fatal(err)
	}
}
