"""What the trainer reads, one module per kind of data (`chat`: conversations, the chat template and packing).
Nothing here imports torch at import time: the mixer imports the special tokens from `chat`."""
