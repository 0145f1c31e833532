"""The bundled GPT trainer: the model (`model`), one training core (`loop`: schedule, stop, metrics, checkpoints and
exact resume; `devices`: DDP, precision, peak FLOPs) with its users, pretraining (`pretrain`) and supervised
fine-tuning (`sft`), what they read (`data`), checkpoints (`checkpoint`) and sampling (`generate`). See
docs/trainer.md."""
