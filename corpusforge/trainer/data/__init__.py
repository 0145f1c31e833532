"""What the trainer reads, one module per kind of data: `blocks` (token blocks from the weighted corpus or plain text,
and epochs over fixed blocks), `chars` (the character tokenizer and reader), `chat` (conversations, the chat template
and packing; it imports no torch, since the mixer imports the special tokens from it)."""
