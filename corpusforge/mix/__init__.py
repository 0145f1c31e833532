"""The weighted corpus: the tokenizer (`tokenizer`), the mix of document sets into shuffled token shards (`mixer`),
the manifest that describes them (`manifest`), and the helpers both use to find and sample documents (`select`).
The reader the trainer imports is `corpusforge.trainer.data.shards`."""
