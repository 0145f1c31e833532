"""The GPT model: shapes, causal masking, tied weights, sampling, and that it can learn (overfit one batch)."""

from __future__ import annotations

import pytest
import torch

from corpusforge.trainer.model import GPT, GPTConfig, preset, sample_next


def small_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{"vocab_size": 50, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32, **overrides}))


def test_shapes_and_loss():
    net = small_model()
    idx = torch.randint(0, 50, (3, 16))
    logits, loss = net(idx)
    assert logits.shape == (3, 16, 50) and loss is None
    logits, loss = net(idx, idx)
    assert loss.shape == () and 3.0 < loss.item() < 5.0  # near ln(50) = 3.9 at initialization
    assert net(idx[:, :5])[0].shape == (3, 5, 50)
    with pytest.raises(ValueError, match="longer than block_size"):
        net(torch.zeros(1, 17, dtype=torch.long))


def test_a_token_never_attends_ahead():
    net = small_model().eval()
    idx = torch.randint(0, 50, (2, 16))
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 50
    before, after = net(idx)[0], net(changed)[0]
    assert torch.equal(before[:, :9], after[:, :9])  # positions before 9 cannot see it
    assert not torch.allclose(before[:, 9:], after[:, 9:])  # 9 and later do


def test_output_layer_is_the_token_embedding():
    net = small_model()
    assert not any("lm_head" in name for name, _ in net.named_parameters())
    c = net.config
    per_block = 2 * c.n_embd + 12 * c.n_embd * c.n_embd  # two LayerNorm gains, attention and MLP matrices
    assert net.num_params(non_embedding=False) == c.vocab_size * c.n_embd + c.block_size * c.n_embd \
        + c.n_layer * per_block + c.n_embd
    idx = torch.full((1, 4), 3)
    with torch.no_grad():
        base = net(idx)[0][0, -1].clone()
        net.wte.weight[7] += 1.0  # token 7 is not in the input: only the output layer sees this row
        moved = net(idx)[0][0, -1]
    assert (moved - base).abs().argmax().item() == 7


def test_gpt2_124m_preset_has_gpt2_small_parameter_count():
    with torch.device("meta"):  # shapes only: no memory, no init time
        net = GPT(preset("gpt2-124m", vocab_size=50257, bias=True))
    assert net.num_params(non_embedding=False) == 124_439_808  # GPT-2 small, as published
    with pytest.raises(ValueError, match="unknown preset"):
        preset("gpt5", vocab_size=10)
    with pytest.raises(ValueError, match="multiple of n_head"):
        preset("tiny", vocab_size=10, n_embd=130)


def test_generate_is_deterministic_with_a_seed():
    net = small_model()
    start = torch.tensor([[1, 2, 3]])

    def sample(seed, **kw):
        return net.generate(start, 20, generator=torch.Generator().manual_seed(seed), **kw)

    a, b, c = sample(1), sample(1), sample(2)
    assert a.shape == (1, 23) and torch.equal(a[:, :3], start)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = net.generate(start, 20, temperature=0)
    assert torch.equal(sample(3, top_k=1), greedy) and torch.equal(sample(4, top_p=1e-6), greedy)
    assert net.training  # generate restores the mode it found


def test_generate_stops_at_the_stop_token():
    net = small_model()
    first = net.generate(torch.tensor([[1]]), 1, temperature=0)[0, -1].item()
    out = net.generate(torch.tensor([[1]]), 10, temperature=0, stop_token=first)
    assert out.tolist() == [[1, first]]


def test_top_k_and_top_p_keep_only_the_likely_tokens():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log().repeat(4000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_next(logits, top_k=2, generator=g).flatten().tolist()) == {0, 1}
    assert set(sample_next(logits, top_p=0.75, generator=g).flatten().tolist()) == {0, 1}  # 0.5 + 0.3 reach 0.75
    assert set(sample_next(logits, top_p=0.85, generator=g).flatten().tolist()) == {0, 1, 2}
    assert set(sample_next(logits, generator=g).flatten().tolist()) == {0, 1, 2, 3}


def test_overfits_a_small_batch():
    net = small_model(dropout=0.0)
    torch.manual_seed(1)
    batch = torch.randint(0, 50, (4, 17))
    opt = net.optimizer(lr=3e-3, betas=(0.9, 0.99), weight_decay=0.0)
    for _ in range(200):
        _, loss = net(batch[:, :-1], batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05  # from ~3.9: it memorized 64 random next tokens
