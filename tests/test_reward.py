"""The reward model: InstructGPT's loss checked by hand, a scripted labeler's rule learned to >= 0.9 held-out
pairwise accuracy, normalization on the demonstrations, and the real HH pairs (accuracy reported, above chance)."""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path

import pytest
import torch

from corpusforge.feedback import exchange, labelers
from corpusforge.feedback.store import Store
from corpusforge.trainer import reward
from feedback_servers import tiny_run

def scripted_store(path: Path, n_prompts: int) -> Store:
    store = Store(path)
    labelers.synthetic(store, n_prompts, rule="shorter")
    return store


def test_the_loss_is_instructgpts_formula_computed_by_hand():
    rewards = torch.tensor([1.0, 0.0, -0.5, 0.3, -0.2, 0.1, 0.4])
    element = torch.tensor([0, 0, 0, 1, 1, 1, 2])
    rank = torch.tensor([0, 1, 2, 0, 0, 1, -1])  # element 1: answers 0 and 1 tied; element 2: a thumbs down
    rating = torch.tensor([0, 0, 0, 0, 0, 0, -1])

    def nls(x: float) -> float:  # -log sigmoid(x)
        return -math.log(1 / (1 + math.exp(-x)))

    first = (nls(1.0 - 0.0) + nls(1.0 + 0.5) + nls(0.0 + 0.5)) / 3  # all K-choose-2 = 3 pairs, averaged
    second = (nls(0.3 - 0.1) + nls(-0.2 - 0.1)) / 2  # the tied pair dropped
    third = 0.5 * nls(-1 * 0.4)  # the pointwise term of a thumbs down
    want = (first + second + third) / 3
    got = reward.preference_loss(rewards, element, rank, rating, rating_weight=0.5)
    assert got.item() == pytest.approx(want, rel=1e-6)
    all_tied = reward.preference_loss(torch.tensor([0.2, 0.9]), torch.tensor([0, 0]), torch.tensor([0, 0]),
                                      torch.tensor([0, 0]), 0.5)
    assert all_tied.item() == 0.0  # nothing to learn from a full tie


def train_reward(base: Path, feedback: list[str], out: Path, **settings):
    config = reward.make_config(out, {"base": str(base), "feedback": feedback, "device": "cpu", "log_interval": 5,
                                      "peak_tflops": 1.0,  # MFU against a stated peak: no measuring in a test
                                      **settings})
    return reward.train(config, out)


def test_the_reward_model_learns_a_scripted_labelers_rule_on_held_out_prompts(tmp_path):
    base = tiny_run(tmp_path / "sft", n_embd=64, block_size=128)
    scripted_store(tmp_path / "feedback.sqlite", 250)
    summary = train_reward(base, [str(tmp_path / "feedback.sqlite")], tmp_path / "rm", epochs=2, lr=1e-3,
                           min_lr=1e-4, eval_interval=20, held_out=0.2)
    assert summary["held_out_accuracy"] >= 0.9, summary
    curve = json.loads((tmp_path / "rm" / "accuracy.json").read_text())["curve"]
    assert curve[0]["comparisons_seen"] == 0 and curve[-1]["comparisons_seen"] > curve[1]["comparisons_seen"]
    assert (tmp_path / "rm" / "accuracy.png").stat().st_size > 1000
    # normalized: the demonstrations score 0 on average
    net, meta = reward.load(tmp_path / "rm")
    from corpusforge.mix.tokenizer import load
    from corpusforge.trainer.data import preferences

    feedback = preferences.read_feedback([str(tmp_path / "feedback.sqlite")])
    demos = list(preferences.demonstration_sequences(feedback, load(base / "tokenizer.json"), 128))
    assert len(demos) == 3 and meta["normalization"]["reference"] == "3 demonstrations"
    assert reward.score(net, demos, pad_id=1, device="cpu").mean().item() == pytest.approx(0.0, abs=1e-5)


def test_exported_feedback_trains_like_the_store_and_ratings_count(tmp_path):
    base = tiny_run(tmp_path / "sft", block_size=128)
    store = scripted_store(tmp_path / "feedback.sqlite", 30)
    reply = store.offer("reply", labeler="bob", model="tiny", sampling={}, answers=["Blue."],
                        context=[{"role": "user", "content": "Sky?"}])
    store.submit_rating(reply["offer_id"], 1, key=secrets.token_hex(16), labeler="bob")
    exchange.export(store, tmp_path / "export")
    a = train_reward(base, [str(tmp_path / "feedback.sqlite")], tmp_path / "a", held_out=0.3)
    b = train_reward(base, [str(tmp_path / "export")], tmp_path / "b", held_out=0.3)
    assert a["data"] == b["data"] and a["data"]["ratings"] in (0, 1) and a["data"]["demonstrations"] == 3
    assert a["held_out_accuracy"] == b["held_out_accuracy"]


@pytest.mark.slow
def test_real_hh_pairs_accuracy_is_reported_and_beats_chance(shared_data, tmp_path):
    store = Store(tmp_path / "hh.sqlite")
    exchange.import_preferences(store, shared_data / "chat" / "hh-rlhf" / "harmless-base-test.jsonl.gz")
    base = tiny_run(tmp_path / "sft", block_size=128)
    summary = train_reward(base, [str(tmp_path / "hh.sqlite")], tmp_path / "rm", lr=1e-3, min_lr=1e-4,
                           batch_size=16, eval_interval=50, held_out=0.2)
    print(f"HH harmless-base: held-out pairwise accuracy {summary['held_out_accuracy']:.3f} on "
          f"{summary['data']['pairs_held_out']} pairs")
    assert summary["held_out_accuracy"] > 0.5


def test_an_interrupted_reward_run_resumes_exactly(tmp_path):
    from corpusforge.trainer import checkpoint

    base = tiny_run(tmp_path / "sft", block_size=96)
    scripted_store(tmp_path / "feedback.sqlite", 40)
    settings = {"max_steps": 6, "batch_size": 4, "eval_interval": 3, "checkpoint_interval": 3, "held_out": 0.2}
    train_reward(base, [str(tmp_path / "feedback.sqlite")], tmp_path / "whole", **settings)
    config = reward.make_config(tmp_path / "cut", {"base": str(base), "feedback": [str(tmp_path / "feedback.sqlite")],
                                                   "device": "cpu", "peak_tflops": 1.0, **settings})
    assert reward.train(config, tmp_path / "cut", stop_at=3)["step"] == 3
    config = reward.make_config(tmp_path / "cut", {}, resume=True)
    assert reward.train(config, tmp_path / "cut", resume=True)["step"] == 6
    whole, cut = (checkpoint.load(checkpoint.path_in(tmp_path / run))[1] for run in ("whole", "cut"))
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    curves = [json.loads((tmp_path / run / "accuracy.json").read_text())["curve"] for run in ("whole", "cut")]
    assert curves[0] == curves[1]
