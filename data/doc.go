// Package data reads the fine-tuning data sets that sora trains and
// evaluates on and turns them into token sequences: language-modelling
// data in the formats below (LLM-Adapters' instruction files such as
// BoolQ, ARC, OpenBookQA and arithmetic word problems; the prompt/completion,
// text and conversational formats of Hugging Face's TRL) for causal
// language modelling with the loss on what each format trains, and
// sentence classification data (CoLA's TSV files, BoolQ as a two-class
// task) for a classification head.
//
// It also scores predictions as LLM-Adapters' evaluation scripts do:
// answer extraction from generated text (true/false, answer1…answer5,
// numbers), accuracy, the Matthews correlation coefficient and the
// majority-class baseline.
//
// # Language-modelling files and formats
//
// [Load] reads a JSON list of row objects or JSON Lines (one object per
// line, blank lines skipped), told apart by content, not by the file's
// extension. The rows' fields say their format, and every row of a file
// must have the same one (a file that mixes them is an error naming the
// first row that differs). Fields no format uses are ignored; every
// format but text takes an optional "answer", the short gold answer that
// evaluation compares with (see [Set.Gold]). In the order they are looked
// for:
//
// messages ([FormatMessages], TRL's conversational format): a list of
// messages with a role (system, user, assistant or tool) and a string
// content, at least one from the assistant. A [ChatRenderer] (the model's
// chat template) renders them; the assistant turns are trained. The
// evaluation prompt is the messages before the last assistant message,
// rendered with the generation prompt; the gold is that message's content.
//
//	{"messages": [{"role": "user", "content": "Is the sky blue?"}, {"role": "assistant", "content": "true"}]}
//
// prompt and completion, both lists of messages
// ([FormatChatPromptCompletion], TRL's conversational prompt-completion):
// as messages, with only the completion's assistant turns trained.
//
//	{"prompt": [{"role": "user", "content": "Is the sky blue?"}], "completion": [{"role": "assistant", "content": "true"}]}
//
// prompt and completion, strings ([FormatPromptCompletion], TRL's
// prompt-completion): trained as BOS, the prompt as written (no template),
// the completion and EOS, the loss on the completion and EOS. Evaluation
// generates after the prompt; the gold is the completion.
//
//	{"prompt": "Q: Is the sky blue?\nA:", "completion": " true"}
//
// instruction, input, output and answer ([FormatInstruction],
// LLM-Adapters and Alpaca): the Alpaca template below, exactly as
// [EncodeLM] and [EncodePrompts] encode it; the gold is the answer field
// alone.
//
//	{"instruction": "Is the sky blue?", "input": "", "output": "the correct answer is true", "answer": "true"}
//
// text ([FormatText], TRL's language-modelling format): BOS, the text and
// EOS, every token after BOS trained. Such rows have no prompt: they are
// evaluated by their loss alone ([ErrNoGeneration]).
//
//	{"text": "Once upon a time, there was a little girl named Lily."}
//
// # Loss masks
//
// A [Sequence] trains the tokens after PromptLen, or, where that cannot
// say it (a conversation with several assistant turns, or text after the
// last), the tokens its Trained mask marks; [MakeBatch], [Targets] and
// [Batch.LossPositions] honour both. The whole text is encoded and each
// boundary of a trained span is placed where the encoding of the text
// before it stops agreeing with the whole (see [Set.Encode]);
// [EncodeStats].Split counts the sequences where a merge crosses a
// boundary, whose crossing token is trained.
//
// # Prompt template
//
// An LLM-Adapters row {instruction, input, output} is trained as the
// Alpaca prompt (see [Prompt]) followed by the output and EOS; only the
// output and EOS tokens count in the loss, as in LLM-Adapters' finetune.py
// with train_on_inputs off (its default, on, trains the prompt too).
// Without an input the prompt is
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
// each ending in one newline. This is the Alpaca template of
// Alpaca-LoRA's templates/alpaca.json, byte for byte, which LLM-Adapters'
// finetune.py and evaluation scripts mean to use. Their Python f-strings
// (at LLM-Adapters' commit 8166572) differ from it, and from each other,
// in whitespace: the lines from "### Instruction:" on are indented by 16
// spaces (so the prompt ends in "### Response:\n" and 16 spaces, before
// the output in finetune.py), up to two spaces follow "request.", and
// finetune.py's later blank lines hold 16 spaces. Those change the
// prompt's tokens, so a model trained there sees other prompts than one
// trained here. Their evaluation scores the text between the first
// "### Response:" of the decoded sequence and the next one, if any.
//
// # Holding out rows for evaluation
//
// [ParseHoldout] reads how much of a data file to hold out (a fraction
// of its rows or a number of rows), [Holdout.Size] rounds it to rows,
// [Split] draws the held-out rows at random with a seed (stratified by
// label, given labels), and [ReadRows] and [RowFile.Subset] write a part
// of a file in the file's own layout, each row as it was written, for the
// readers above to read back.
//
// # Errors
//
// A malformed file is an error that names the file, the row (1-based, and
// the line where the row starts) and the field, and says what was expected.
// JSON Lines errors name the line and the row (1-based, blank lines not
// counted). Nothing in a data file can make the parsers panic; each has a
// fuzz target.
package data
