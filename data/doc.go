// Package data reads the fine-tuning data sets that sora trains and
// evaluates on and turns them into token sequences: instruction data in the
// LLM-Adapters JSON format (BoolQ, ARC, OpenBookQA, arithmetic word
// problems) for causal language modelling with the loss on the answer
// tokens only, and sentence classification data (CoLA's TSV files, BoolQ
// as a two-class task) for a classification head.
//
// It also scores predictions as LLM-Adapters' evaluation scripts do:
// answer extraction from generated text (true/false, answer1…answer5,
// numbers), accuracy, the Matthews correlation coefficient and the
// majority-class baseline.
//
// # Prompt template
//
// An LLM-Adapters row {instruction, input, output} is trained as the
// Alpaca prompt (see [Prompt]) followed by the output and EOS; only the
// output and EOS tokens count in the loss. Without an input the prompt is
//
//	Below is an instruction that describes a task. Write a response that appropriately completes the request.
//
//	### Instruction:
//	{instruction}
//
//	### Response:
//
// and with a non-empty input it is
//
//	Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.
//
//	### Instruction:
//	{instruction}
//
//	### Input:
//	{input}
//
//	### Response:
//
// each ending in one newline. This is the Alpaca template LLM-Adapters'
// finetune.py and evaluation scripts use, written without the accidental
// indentation of their Python f-strings.
//
// # Errors
//
// A malformed file is an error that names the file, the row (1-based, and
// the line where the row starts) and the field, and says what was expected.
// Nothing in a data file can make the parsers panic; both have fuzz
// targets.
package data
