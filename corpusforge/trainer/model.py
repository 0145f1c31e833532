"""A GPT-2-style decoder in one file: config, key/value cache, causal self-attention, MLP, pre-norm block, the model
and `generate`.

Read it top to bottom: `GPTConfig` says what a model is, `PRESETS` names the sizes from a CPU-sized `tiny` to
`gpt2-124m`, and `GPT.forward` maps token ids to next-token logits (and the loss when targets are given). The output
layer is the token embedding itself (tied weights), as in GPT-2. Two additions to nanoGPT's model: `doc_ids` masks
attention to each document of a packed block (positions restart per document, so a packed conversation computes
what it computes alone), and a `KVCache` keeps each layer's keys and values so a generated token costs one position.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterator

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class GPTConfig:
    """The shape of a model. `vocab_size` comes from the tokenizer (or is padded above it for speed)."""

    vocab_size: int
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False  # GPT-2 has biases in Linear and LayerNorm; without them it trains a little better and faster

    def validate(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


# Named model shapes. `tiny` trains in minutes on a 2-core CPU (nanoGPT's CPU shakespeare shape, longer context);
# `small` is nanoGPT's shakespeare GPU shape; `gpt2-124m` is GPT-2 small.
PRESETS: dict[str, dict] = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
}


def preset(name: str, vocab_size: int, **overrides) -> GPTConfig:
    """The GPTConfig of preset `name` for a vocabulary, with keyword overrides (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    config = GPTConfig(vocab_size=vocab_size, **{**PRESETS[name], **given})
    config.validate()
    return config


class KVCache:
    """Each layer's keys and values for the first `length` positions of up to `block_size`, and the token ids they
    came from, so generation feeds only new tokens and a later prompt reuses the prefix it shares (`reuse`).

    `left_pad` (B,): how many padding positions open each row, so prompts of different lengths share one batch: a
    row's positions count from its first real token and no real token attends to its padding."""

    def __init__(self, config: GPTConfig, batch_size: int, device=None, dtype=torch.float32,
                 left_pad: torch.Tensor | None = None):
        shape = (config.n_layer, batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.ids = torch.full((batch_size, config.block_size), -1, dtype=torch.long, device=device)
        self.length = 0
        self.left_pad = left_pad

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store a layer's keys and values (B, H, T, hd) after the cached positions; all of them so far."""
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def reuse(self, idx: torch.Tensor) -> int:
        """Keep only the cached positions whose tokens start `idx` (B, T), leaving at least one token of `idx` to
        feed (its logits are the next token's); returns how many are kept."""
        n = min(self.length, idx.shape[1] - 1)
        same = (self.ids[:, :n] == idx[:, :n]).all(dim=0)
        self.length = int(same.long().cumprod(dim=0).sum()) if n > 0 else 0
        return self.length


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees only positions <= t (PyTorch's fused SDPA kernels), or the
    positions a boolean `mask` allows, with keys and values kept in a `KVCache` when one is given."""

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.layer = layer  # its slot in a KVCache
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None
                ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        # without a mask, queries and keys start at the same position (causal) or there is one query (sees all)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=mask is None and T > 1)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()  # exact, as nanoGPT (GPT-2 used the tanh approximation; the two differ by < 1e-3)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None
                ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token + position embeddings, `n_layer` blocks, a final LayerNorm, and logits through the token embedding."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(number of residual additions) so the stream's variance
        # does not grow with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, doc_ids: torch.Tensor | None = None,
                cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) for token ids `idx` (B, T); with `targets` (B, T) also the mean cross-entropy
        (targets of -1 are ignored).

        `doc_ids` (B, T): the document of each position in a packed block (contiguous runs); a position attends
        only to earlier positions of its document, and positions count from each document's start. `cache`: `idx`
        follows the cache's `length` positions, whose keys and values are reused; the cache grows by T.
        """
        logits = F.linear(self.hidden(idx, doc_ids=doc_ids, cache=cache), self.wte.weight)  # tied: output = embedding
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def hidden(self, idx: torch.Tensor, *, doc_ids: torch.Tensor | None = None, cache: KVCache | None = None
               ) -> torch.Tensor:
        """The final normalized hidden states (B, T, n_embd) that `forward` maps to logits; a scalar head (the reward
        model's) reads them instead. `doc_ids` and `cache` as in `forward`."""
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size {self.config.block_size}")
        mask = None
        pos = torch.arange(start, start + T, device=idx.device)
        if doc_ids is not None:
            if cache is not None:
                raise ValueError("doc_ids and a cache cannot be combined")
            pos, mask = document_positions(doc_ids)
        elif cache is not None and cache.left_pad is not None:
            keys = torch.arange(start + T, device=idx.device)
            pad = cache.left_pad[:, None, None]
            # a padding query sees itself only (a query seeing no key would give NaN, which masked keys still spread)
            mask = ((keys <= pos[:, None]) & (keys >= pad)) | (keys == pos[:, None])
            mask = mask[:, None]
            pos = (pos - cache.left_pad[:, None]).clamp(min=0)
        elif start and T > 1:  # new tokens after cached ones: query i (at start + i) sees keys up to start + i
            mask = torch.arange(start + T, device=idx.device) <= pos[:, None]
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x, mask, cache)
        if cache is not None:
            cache.ids[:, start:start + T] = idx
            cache.length += T
        return self.ln_f(x)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position embedding (the token embedding counts: it is also the
        output layer)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward): 6 per parameter plus attention (PaLM appendix B, as in
        nanoGPT), for full blocks of `block_size` tokens."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * c.block_size

    def optimizer(self, lr: float, betas: tuple[float, float], weight_decay: float, fused: bool = False
                  ) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices and embeddings only (not on LayerNorm gains or biases)."""
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, generator: torch.Generator | None = None,
                 stop_token: int | Collection[int] | None = None, use_cache: bool = True) -> torch.Tensor:
        """Extend `idx` (B, T) by up to `max_new_tokens` sampled tokens; returns (B, T + new).

        `temperature` 0 is greedy; `top_k` keeps the k likeliest tokens, `top_p` the smallest set whose probability
        reaches p (nucleus sampling). Pass a seeded `generator` for repeatable samples. Generation stops early once
        every row has produced a `stop_token` (an id or ids). `use_cache=False` recomputes the whole context for
        every token (the reference the cache is tested against).
        """
        cache = KVCache(self.config, idx.shape[0], idx.device, self.wte.weight.dtype) if use_cache else None
        new = list(self.stream(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                               generator=generator, stop_token=stop_token, cache=cache))
        return torch.cat([idx, *new], dim=1)

    @torch.no_grad()
    def stream(self, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None,
               stop_token: int | Collection[int] | None = None, cache: KVCache | None = None
               ) -> Iterator[torch.Tensor]:
        """The tokens `generate` samples, one (B, 1) tensor at a time, as they are made (a chat prints them).

        With a `cache`, only the tokens after the prefix the cache already holds are fed, then one per step; once
        the context outgrows `block_size`, each step recomputes the last `block_size` tokens, as without a cache.
        """
        was_training = self.training
        self.eval()
        stops = torch.tensor([] if stop_token is None else [stop_token] if isinstance(stop_token, int)
                             else list(stop_token), dtype=torch.long, device=idx.device)
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        try:
            for _ in range(max_new_tokens):
                if cache is not None and idx.shape[1] <= self.config.block_size:
                    logits, _ = self(idx[:, cache.reuse(idx):], cache=cache)
                else:
                    logits, _ = self(idx[:, -self.config.block_size:])
                next_id = sample_next(logits[:, -1, :].float(), temperature=temperature, top_k=top_k, top_p=top_p,
                                      generator=generator)
                idx = torch.cat([idx, next_id], dim=1)
                yield next_id
                done |= torch.isin(next_id.squeeze(1), stops)
                if bool(done.all()):
                    break
        finally:
            self.train(was_training)



class ScalarGPT(GPT):
    """The GPT with a scalar head instead of next-token logits (the reward model; later PPO's value model): the
    score of a sequence is read from the final hidden state of its last token."""

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.head = nn.Linear(config.n_embd, 1)  # its bias is what normalization shifts
        nn.init.normal_(self.head.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, last: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Scores (B,) of the sequences `idx` (B, T), each read at its position `last` (B,) (right padding after
        it changes nothing: attention is causal)."""
        h = self.hidden(idx)
        return self.head(h[torch.arange(idx.shape[0], device=idx.device), last]).squeeze(-1).float()


def document_positions(doc_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For document ids (B, T) of contiguous documents: each position's offset in its document (B, T) and the
    attention mask (B, 1, T, T), True where a query may see a key: earlier or same position, same document."""
    B, T = doc_ids.shape
    t = torch.arange(T, device=doc_ids.device)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    first = torch.where(starts, t, 0).cummax(dim=1).values  # where each position's document starts
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]
    return t - first, (same_doc & (t[None, :] <= t[:, None]))[:, None]


def sample_next(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row (B, 1) from last-position logits (B, vocab)."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens likelier than it already reach top_p (the likeliest one always stays)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.masked_fill(torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted), float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1, generator=generator)
