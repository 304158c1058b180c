// Package jinja renders the Jinja2 chat templates that Hugging Face
// tokenizers ship (tokenizer_config.json's chat_template), written here in
// Go for package chat: Parse reads a template with the syntax transformers
// configures (trim_blocks and lstrip_blocks on, loop controls, the
// generation tag), and a Template renders it against values built from
// JSON or Go (FromJSON, FromGo), with the globals chat templates call
// (raise_exception, strftime_now) and Limits that bound the work one
// rendering may do, so that a hostile or broken template fails with an
// *Error naming its line instead of exhausting the machine.
package jinja
