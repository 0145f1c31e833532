"""What the trainer reads: token blocks from the weighted corpus or plain text (`blocks`, `chars`)."""
