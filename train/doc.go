// Package train is sora's fine-tuning loop: it trains a models/llama model,
// usually wrapped by a PEFT method of package peft, on the token sequences
// of package data, and evaluates it.
//
// One [Trainer.Run] does what a user of "sora finetune" expects:
//
//   - optimizer steps of --batch sequences, split into micro-batches whose
//     gradients accumulate to exactly those of the whole batch (the loss is
//     divided by the step's total number of target tokens);
//   - AdamW with decoupled weight decay, LoRA+ parameter groups, a
//     constant, linear or cosine schedule after a linear warm-up, and
//     gradient clipping by global norm (at 1 unless set; NoClip turns it
//     off);
//   - a progress bar on a terminal (loss, learning rate, tokens/s, ETA) or
//     plain log lines otherwise, and one JSON object per step in
//     metrics.jsonl in the output folder;
//   - checkpoints every SaveEvery steps, at the end and on interruption
//     (context cancellation, e.g. Ctrl-C), each a folder written under a
//     temporary name and renamed into place, holding the adapter in Hugging
//     Face PEFT layout, the exact trainable tensors, the optimizer state and
//     the step and the settings; Resume continues from the newest one
//     (refusing other settings but the learning rate and the number of
//     steps, which may grow, or shrink to no fewer than trained: the
//     schedule is then computed for the new number from the checkpoint's
//     step on) and, on the CPU,
//     reaches bit for bit the weights of an uninterrupted run, dropout
//     included (its masks follow the step: see peft.Model.SetDropoutStep);
//   - with evaluation data, an evaluation every EvalEvery steps and at the
//     end; optionally the weights of the best evaluation so far kept in
//     best/ (KeepBest) and early stopping after EarlyStopping evaluations
//     without improvement, both by BestMetric, both resumed as they
//     stood;
//   - a NaN or infinite loss or gradient stops the run with an error before
//     the optimizer touches the weights, naming the newest checkpoint (its
//     weights are finite, but may have diverged already: the error gives
//     the largest); a run that fails before it trains a step leaves the
//     output folder as it found it: a fresh run writes its metrics log
//     under a temporary name until its first step (or a checkpoint of an
//     interruption before it), and only then replaces an earlier run's
//     metrics.jsonl and removes its best/;
//   - one run at a time writes into an output folder: a run holds it
//     ([LockOutput]) and another into it fails at once, and the hold ends
//     with the process however it ends (on Linux, macOS and the BSDs).
//
// # Data order
//
// The training sequences are visited in a stream of epochs, each a
// permutation of the data drawn from a PCG generator seeded with the seed
// and the epoch number; optimizer step s takes positions s·Batch to
// (s+1)·Batch−1 of the stream. The order is thus a function of the seed and
// the step alone, which is what lets a resumed run see the same batches.
//
// # Packing
//
// With Options.Packing each micro-batch's sequences share rows
// (data.Pack, data.MakePackedBatch), each attending only to itself
// (llama.Batch.Segments, through the backend's fused attention), instead of
// one sequence per row padded to the longest. The data order, the batches
// and the targets stay those of an unpacked run, so a packed run trains as
// an unpacked one does, to float32 rounding, with less padding to compute
// (Result.Padding and the positions of metrics.jsonl say how much).
// TRL's SFTTrainer packs the whole data set into rows of a fixed length
// instead, which changes the number of sequences a step trains on; here
// Options.Batch, Epochs and LR keep their meaning.
package train
