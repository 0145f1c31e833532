"""The bundled GPT trainer: the model (`model`), pretraining on the weighted corpus (`pretrain`), checkpoints
(`checkpoint`), character-level text (`chars`) and sampling (`generate`). See docs/trainer.md."""
