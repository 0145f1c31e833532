"""`corpusforge eval compare RUN_A RUN_B ...`: what RLHF bought and what it cost, measured the same way for any
runs (SFT, PPO, DPO). Each run answers the same held-out prompts (temperature 1, the same seeds); the table gives,
against the first run, the win rate judged by a reward model and by a scripted labeler's rule (a tie counts half),
and per run the mean reward, the share of answers the rule prefers (for a yes/no rule), the mean KL to the reference
SFT model (nats per answer) and the validation loss on the pretraining corpus (InstructGPT's "alignment tax").
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corpusforge.errors import UserError
from corpusforge.feedback import labelers
from corpusforge.options import narrow, option
from corpusforge.runtime import write_json_atomic
from corpusforge.trainer import rollouts
from corpusforge.trainer.data import chat
from corpusforge.trainer.model import ScalarGPT


@dataclasses.dataclass
class CompareConfig:
    """What `eval compare` measures and on what."""

    runs: list[str] = dataclasses.field(metadata=option("run folders; wins are counted against the first",
                                                        positional=True))
    prompts: str = dataclasses.field(metadata=option("held-out prompts (.txt or .jsonl)"))
    reward: str = dataclasses.field(default="", metadata=option("reward model run (default: a PPO run's)"))
    rule: str = dataclasses.field(default="polite", metadata=option(
        "scripted labeler rule: polite, shorter, longer, mentions (feedback/labelers.py)"))
    reference: str = dataclasses.field(default="", metadata=option(
        "the SFT run KL is measured to (default: the policy the runs started from)"))
    corpus: str = dataclasses.field(default="", metadata=option(
        "pretraining corpus for the validation loss (default: the reference's base run's)"))
    answers: int = dataclasses.field(default=2, metadata=option("answers per prompt and run"))
    max_prompts: int = dataclasses.field(default=128, metadata=option("at most this many prompts"))
    max_new_tokens: int = dataclasses.field(default=48, metadata=option("longest answer in tokens"))
    eval_blocks: int = dataclasses.field(default=32, metadata=option("pretraining validation blocks"))
    seed: int = dataclasses.field(default=1337, metadata=option("sampling seed"))
    device: str = dataclasses.field(default="cpu", metadata=option("cpu or cuda"))


@dataclasses.dataclass(kw_only=True)
class CompareCommand(CompareConfig):
    """`corpusforge eval compare RUN... --prompts FILE`: the comparison, and where its JSON goes."""

    json: str | None = dataclasses.field(default=None, metadata=option("also write the result here"))


def compare_command(command: CompareCommand) -> None:
    """`corpusforge eval compare`: `compare`, printed as a table (and written to `json`)."""
    result = compare(narrow(command, CompareConfig))
    print_table(result)
    if command.json:
        write_json_atomic(command.json, result)


def _train_config(run: str | Path) -> dict[str, Any]:
    path = Path(run) / "config.json"
    if not path.is_file():
        raise UserError(f"{run}: no config.json; name a training run folder")
    return json.loads(path.read_text(encoding="utf-8")).get("train", {})


def _follow(run: str | Path, key: str) -> str:
    """The first run up the chain (policy, base) whose config names `key`."""
    seen = 0
    while run and seen < 8 and (Path(run) / "config.json").is_file():
        train = _train_config(run)
        if train.get(key):
            return train[key][0] if isinstance(train[key], list) else train[key]
        run, seen = train.get("policy") or train.get("base") or "", seen + 1
    return ""


def compare(config: CompareConfig) -> dict[str, Any]:
    """Measure `config.runs` (see the module doc); returns {"runs": [per-run rows], "settings": ...}."""
    from corpusforge.feedback.app import read_prompts
    from corpusforge.trainer.ppo import decode, load_gpt, open_blocks
    from corpusforge.trainer.sft import load_tokenizer

    if len(config.runs) < 2:
        raise UserError("eval compare: name at least two runs")
    if config.rule not in labelers.RULES:
        raise UserError(f"--rule {config.rule!r}: known rules are {', '.join(labelers.RULES)}")
    reward_run = config.reward or next((_train_config(r).get("reward") for r in config.runs
                                        if _train_config(r).get("reward")), "")
    if not reward_run:
        raise UserError("eval compare: name the reward model with --reward RM_RUN (no PPO run names one)")
    reference_run = config.reference or next((_train_config(r).get("policy") for r in config.runs
                                              if _train_config(r).get("policy")), config.runs[0])
    corpus = config.corpus or _follow(reference_run, "corpus") or _follow(reference_run, "text")
    device = torch.device(config.device)
    tokenizer = load_tokenizer(config.runs[0])
    special = chat.special_ids(tokenizer)
    reference = load_gpt(reference_run).to(device)
    reward_model = load_gpt(reward_run, "best", ScalarGPT).to(device)
    conversations = read_prompts(config.prompts)[:config.max_prompts]
    limit = reference.config.block_size - config.max_new_tokens
    prompt_ids = [chat.render(m, tokenizer, for_generation=True)[0][-limit:] for m in conversations]
    questions = [m[-1]["content"] for m in conversations]
    val = None
    if corpus:
        reader = iter(open_blocks(corpus, reference.config.block_size, "val", config.seed, tokenizer))
        val = torch.from_numpy(np.stack([next(reader) for _ in range(config.eval_blocks)]).astype(np.int64))

    rows, texts, rewards = [], [], []
    for run in config.runs:
        net = load_gpt(run).to(device)
        if load_tokenizer(run).get_vocab() != tokenizer.get_vocab():
            raise UserError(f"{run} has another tokenizer than {config.runs[0]}")
        run_texts, run_rewards, kls, lengths = [], [], [], []
        for a in range(config.answers):
            for start in range(0, len(prompt_ids), 32):
                generator = torch.Generator(device=device).manual_seed(config.seed + 1000 * a + start)
                seqs = rollouts.sample(net, prompt_ids[start:start + 32], max_new_tokens=config.max_new_tokens,
                                       stops=(special[chat.END], special[chat.EOT]), pad_id=special[chat.PAD],
                                       generator=generator)
                run_rewards += rollouts.scores(reward_model, seqs).tolist()
                kls += rollouts.answer_kl(net, reference, seqs).tolist()
                lengths += seqs.lengths.tolist()
                run_texts += [decode(tokenizer, x) for x in seqs.answers]
        texts.append(run_texts)
        rewards.append(run_rewards)
        row = {"run": str(run), "reward": float(np.mean(run_rewards)), "kl": float(np.mean(kls)),
               "answer_tokens": float(np.mean(lengths))}
        first_key = [labelers.RULES[config.rule](q, t)[0] for q, t in zip(questions * config.answers, run_texts)]
        if all(isinstance(k, bool) for k in first_key):
            row["rule_share"] = float(np.mean(first_key))
        if val is not None:
            with torch.no_grad():
                losses = [float(net(b[:, :-1].to(device), b[:, 1:].to(device))[1]) for b in val.split(16)]
            row["pretraining_loss"] = float(np.mean(losses))
        rows.append(row)
    for i, row in enumerate(rows):
        row["win_rate_reward"] = float(np.mean([1.0 if x > y else 0.5 if x == y else 0.0
                                                for x, y in zip(rewards[i], rewards[0])]))
        row["win_rate_labeler"] = float(np.mean([_labeler_win(config.rule, q, x, y) for q, x, y in
                                                 zip(questions * config.answers, texts[i], texts[0])]))
    return {"runs": rows, "settings": {**dataclasses.asdict(config), "reward": str(reward_run),
                                       "reference": str(reference_run), "corpus": corpus,
                                       "prompts_used": len(prompt_ids)}}


def _labeler_win(rule: str, prompt: str, answer: str, baseline: str) -> float:
    """1 when the rule ranks `answer` above `baseline`, 0.5 on a tie, else 0."""
    groups = labelers.rank(rule, prompt, [{"id": "a", "text": answer}, {"id": "b", "text": baseline}])
    return 0.5 if len(groups) == 1 else 1.0 if groups[0] == ["a"] else 0.0


def print_table(result: dict[str, Any], console: Any = None) -> None:
    """The comparison as a table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:  # a file or a pipe: room for every column
        console.width = max(console.width, 150)
    s = result["settings"]
    table = Table(title=f"{s['prompts_used']} prompts x {s['answers']} answers; wins against {result['runs'][0]['run']}"
                        f"; labeler rule {s['rule']!r}; KL to {s['reference']}", header_style="bold")
    columns = [("run", "run"), ("win_rate_reward", "win rate (reward model)"),
               ("win_rate_labeler", "win rate (labeler)"), ("reward", "mean reward"),
               ("rule_share", "answers the rule prefers"), ("kl", "KL to reference"),
               ("answer_tokens", "answer tokens"), ("pretraining_loss", "pretraining val loss")]
    columns = [(k, name) for k, name in columns if any(k in row for row in result["runs"])]
    for _, name in columns:
        table.add_column(name, justify="left" if name == "run" else "right")
    for row in result["runs"]:
        table.add_row(*[Path(row["run"]).name if k == "run" else f"{row[k]:.3f}" if k in row else "-"
                        for k, _ in columns])
    console.print(table)


def markdown(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table (for the README)."""
    keys = ["win_rate_reward", "win_rate_labeler", "reward", "rule_share", "kl", "pretraining_loss"]
    keys = [k for k in keys if all(k in row for row in result["runs"])]
    lines = ["| run | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    lines += [f"| {Path(row['run']).name} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |"
              for row in result["runs"]]
    return "\n".join(lines) + "\n"
