"""The pretraining loop: exact resume (from --stop-at and from Ctrl-C), DDP over two gloo processes, checkpoints
refused when damaged, what a run leaves behind, `corpusforge generate`, and learning on real books."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from tokenizers import Tokenizer

from corpusforge.trainer import checkpoint, devices, loop, pretrain
from corpusforge.trainer.data.chars import TextBlocks
from corpusforge.trainer.generate import choose_checkpoint, generate_text
from corpusforge.trainer.model import GPT, GPTConfig
from corpusforge.runtime import RunContext

ROOT = Path(__file__).resolve().parent.parent
QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the test session

# A model small enough that a step takes milliseconds; dropout on, so resuming must restore the RNG too.
SMALL = dict(n_layer=2, n_head=2, n_embd=64, block_size=32, dropout=0.1, batch_size=8, warmup_steps=4,
             log_interval=4, eval_interval=20, checkpoint_interval=20, eval_blocks=16)  # 256 tokens per step
STEPS = 60
LEARN_STEPS = 150
AUSTEN = ("1342-0.txt.gz", "105.txt.gz")  # Pride and Prejudice, Persuasion


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> str:
    """Real English prose (Python's own reference documentation, shipped with every CPython) as one text file."""
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("text") / "python-reference.txt"
    path.write_text("\n\n".join(topics[k] for k in sorted(topics)), encoding="utf-8")
    return str(path)


def book_documents(shared_data: Path) -> list[dict]:
    """Two Gutenberg novels in parts of 20,000 characters, and the wikitext articles, as document rows."""
    import gzip

    import mwparserfromhell

    from corpusforge import language
    from corpusforge.documents import make_document

    docs = []
    for name in AUSTEN:
        path = shared_data / "books" / "gutenberg-test-corpus" / name
        text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        for part, start in enumerate(range(0, len(text), 20_000)):
            chunk = text[start:start + 20_000]
            docs.append(make_document(source="books", text=chunk, lang="en", lang_score=1.0, origin_file=str(path),
                                      origin_offset=start, origin_id=f"{name}:{part}", book_id=name, part=part))
    for page_id, path in enumerate(sorted((shared_data / "wikipedia" / "wtf_wikipedia-wikitext").glob("*.txt")), 1):
        text = mwparserfromhell.parse(path.read_text(encoding="utf-8")).strip_code().strip()
        if len(text) >= 200:
            lang, score = language.identify(text)
            docs.append(make_document(source="wikipedia", text=text, lang=lang, lang_score=score,
                                      origin_file=str(path), url=f"https://en.wikipedia.org/wiki/{path.stem}",
                                      page_id=page_id, origin_id=str(page_id)))
    return docs


@pytest.fixture(scope="module")
def corpus(shared_data, dask_client, tmp_path_factory) -> Path:
    """A corpus made by the mix code (`corpusforge.mix`): books and wikipedia sets, a 2,048-token BPE."""
    from corpusforge import runtime
    from corpusforge.mix import mixer, tokenizer

    root = tmp_path_factory.mktemp("corpus")
    with runtime.ShardWriter(root / "documents" / "documents.parquet", row_group_rows=32) as writer:
        writer.write_rows(book_documents(shared_data))
    tokenizer.run(tokenizer.TokenizerConfig(inputs=[str(root / "documents")], vocab_size=2048,
                                              sample_chars_per_source=2_000_000, output=str(root / "tokenizer")),
                  RunContext(client=dask_client, console=QUIET))
    sets = [mixer.MixSet(name, name, [str(root / "documents")], weight)
            for name, weight in (("books", 0.7), ("wikipedia", 0.3))]
    mixer.run(mixer.MixConfig(sets=sets, tokenizer=str(root / "tokenizer" / "tokenizer.json"),
                              budget_tokens=1_000_000, shard_tokens=100_000, row_group_tokens=10_000,
                              val_fraction=0.05, seed=3,
                              output=str(root / "corpus")),
              RunContext(client=dask_client, console=QUIET))
    return root / "corpus"


def config(out: Path, data: str, **values) -> pretrain.TrainConfig:
    """SMALL on a corpus folder or a text file."""
    source = {"corpus": data} if Path(data).is_dir() else {"text": [data]}
    return pretrain.make_config(out, {**source, "max_steps": STEPS, **SMALL, **values})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, text_file) -> Path:
    """A character-level run that was never interrupted."""
    out = tmp_path_factory.mktemp("reference")
    pretrain.train(config(out, text_file), out, console=QUIET)
    return out


@pytest.fixture(scope="module")
def corpus_reference(tmp_path_factory, corpus) -> Path:
    """A run on the corpus that was never interrupted."""
    out = tmp_path_factory.mktemp("corpus-reference")
    pretrain.train(config(out, str(corpus)), out, console=QUIET)
    return out


# Bit-for-bit equality across processes needs the same number of CPU threads (float sums split differently);
# distributed sets OMP_NUM_THREADS=1 in this process's environment once a Dask cluster has started.
ENV = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "corpusforge.cli", *args], cwd=ROOT, capture_output=True,
                          timeout=300, env=ENV)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()  # no newline translation: text has \r
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def same_tensors(run_a: Path, run_b: Path, steps: int = STEPS) -> bool:
    meta_a, model_a, optim_a = checkpoint.load(checkpoint.path_in(run_a))
    meta_b, model_b, optim_b = checkpoint.load(checkpoint.path_in(run_b))
    assert meta_a["step"] == meta_b["step"] == steps
    return model_a.keys() == model_b.keys() and all(torch.equal(model_a[k], model_b[k]) for k in model_a) and all(
        torch.equal(optim_a["state"][i][k], optim_b["state"][i][k]) for i in optim_a["state"]
        for k in optim_a["state"][i])


def records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def losses(run: Path) -> list:
    """What a run computed, without its timings."""
    return [(r["step"], r["loss"]) for r in records(run, "train")] + [(r["step"], r["loss"]) for r in
                                                                      records(run, "val")]


def test_lr_schedule_warms_up_then_decays_to_min_lr(text_file, tmp_path):
    c = config(tmp_path, text_file, lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=100)
    lrs = [loop.lr_at(s, c) for s in range(101)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # warmup rises
    assert lrs[10] == pytest.approx(1e-3) and lrs[100] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then only falls
    assert lrs[55] == pytest.approx(5.5e-4)  # halfway through the cosine: the midpoint


def test_interrupted_and_resumed_equals_uninterrupted_bit_for_bit(corpus_reference, corpus, tmp_path):
    first = pretrain.train(config(tmp_path, str(corpus)), tmp_path, stop_at=30, console=QUIET)
    assert first["step"] == 30 and first["stopped_early"]
    meta = checkpoint.read_meta(checkpoint.path_in(tmp_path))
    assert meta["step"] == 30 and meta["readers"][0]["blocks_yielded"] == 30 * SMALL["batch_size"]
    resumed = pretrain.make_config(tmp_path, {}, resume=True)  # the settings come from the checkpoint
    assert resumed == config(tmp_path, str(corpus))
    pretrain.train(resumed, tmp_path, resume=True, console=QUIET)
    assert same_tensors(corpus_reference, tmp_path)
    assert losses(corpus_reference) == [x for x in losses(tmp_path) if x[0] != 30]  # plus an eval where it stopped


def test_ctrl_c_checkpoints_and_resume_continues_exactly(reference, text_file, tmp_path):
    args = ["train", "pretrain", "--text", text_file, "--out", str(tmp_path), "--max-steps", str(STEPS)]
    args += [f"--set={k}={v}" for k, v in SMALL.items()]
    proc = subprocess.Popen([sys.executable, "-m", "corpusforge.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    metrics = tmp_path / "metrics.jsonl"
    while proc.poll() is None and not (metrics.exists() and '"kind": "train"' in metrics.read_text()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    stopped_at = checkpoint.read_meta(checkpoint.path_in(tmp_path))["step"]
    assert 0 < stopped_at < STEPS, "the run ended before it could be interrupted"
    assert "stopping after this step" in err and "--resume continues" in err
    cli("train", "pretrain", "--out", str(tmp_path), "--resume")
    assert same_tensors(reference, tmp_path)


def test_best_weights_are_the_ones_at_the_lowest_validation_loss(tmp_path):
    """A short text and a high learning rate overfit, so the best step is not the last. best.safetensors holds the
    weights that scored the lowest recorded validation loss (re-evaluating them gives that loss exactly), the
    summary and the resumable checkpoint name that step, and `generate` samples from them unless told `last`."""
    from pydoc_data.topics import topics

    text = tmp_path / "short.txt"
    text.write_text(topics["if"][:4000], encoding="utf-8")
    run = tmp_path / "run"
    c = config(run, str(text), lr=1e-2, eval_interval=10)
    summary = pretrain.train(c, run, console=QUIET)
    val = {r["step"]: r["mean"] for r in records(run, "val")}
    best_step = min(val, key=val.get)
    assert 0 < best_step < STEPS, val  # the run overfits: the premise of this test
    assert (summary["best_step"], summary["best_val_loss"]) == (best_step, val[best_step])
    assert checkpoint.read_meta(checkpoint.path_in(run))["best_step"] == best_step

    meta, weights = checkpoint.load_weights(checkpoint.path_in(run, "best"))
    assert meta["step"] == best_step and meta["val_loss"]["text"] == val[best_step]
    net = GPT(GPTConfig(**meta["model_config"]))
    net.load_state_dict(weights)
    blocks = pretrain.validation_blocks(c, ["text"], pretrain.Distributed())
    assert pretrain.evaluate(net, blocks, c.batch_size, contextlib.nullcontext(), pretrain.Distributed()) == {
        "text": val[best_step]}

    best = generate_text(run, "if", max_new_tokens=40, seed=1)
    assert best == generate_text(run, "if", max_new_tokens=40, seed=1, which="best")
    assert best != generate_text(run, "if", max_new_tokens=40, seed=1, which="last")
    assert cli("generate", str(run), "--prompt", "if", "--max-new-tokens", "40", "--seed", "1",
               "--checkpoint", "last").stdout.strip() == generate_text(run, "if", max_new_tokens=40, seed=1,
                                                                          which="last")[0].strip()
    # The command's default: the last weights when the best come from the first half of the run, saying so.
    default = cli("generate", str(run), "--prompt", "if", "--max-new-tokens", "40", "--seed", "1")
    early = 2 * best_step < summary["step"]
    assert default.stdout.strip() == generate_text(run, "if", max_new_tokens=40, seed=1,
                                                   which="last" if early else "best")[0].strip()
    assert (f"the lowest held-out loss came at step {best_step}" in default.stderr) == early


def test_bf16_autocast_trains_and_resumes_bit_for_bit(text_file, tmp_path):
    """The mixed-precision path CUDA takes by default (bf16 autocast), run on the CPU: it learns, and an
    interrupted run resumes to the same weights as an uninterrupted one."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    # bf16 matmuls are emulated on a CPU (several times slower than float32): half the steps, checked every 10
    bf16 = dict(dtype="bfloat16", max_steps=30, eval_interval=10, checkpoint_interval=10)
    summary = pretrain.train(config(whole, text_file, **bf16), whole, console=QUIET)
    assert summary["dtype"] == "bfloat16"
    val = [r["loss"]["text"] for r in records(whole, "val")]
    assert val[-1] < val[0] - 0.5, val
    pretrain.train(config(parts, text_file, **bf16), parts, stop_at=15, console=QUIET)
    pretrain.train(pretrain.make_config(parts, {}, resume=True), parts, resume=True, console=QUIET)
    assert same_tensors(whole, parts, steps=30)


@pytest.mark.slow
def test_torch_compile_matches_eager_and_checkpoints_plain_weights(reference, text_file, tmp_path):
    """`torch.compile` (on by default on CUDA) run through inductor on the CPU: the same losses as eager up to
    float rounding, a checkpoint with the model's own parameter names (not the compiled wrapper's), a resume, and
    the compilation time kept out of tokens/s."""
    steps = 12
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    pretrain.train(config(eager, text_file, max_steps=steps, dropout=0.0), eager, console=QUIET)
    summary = pretrain.train(config(compiled, text_file, max_steps=steps, dropout=0.0, compile=True), compiled,
                             stop_at=8, console=QUIET)
    assert summary["startup_seconds"] > 0
    pretrain.train(pretrain.make_config(compiled, {}, resume=True), compiled, resume=True, console=QUIET)
    _, weights = checkpoint.load_weights(checkpoint.path_in(compiled))
    assert weights.keys() == GPT(GPTConfig(**checkpoint.read_meta(checkpoint.path_in(eager))["model_config"])
                                 ).state_dict().keys()
    pairs = list(zip(records(eager, "train"), records(compiled, "train"), strict=True)) + list(zip(
        records(eager, "val"), [r for r in records(compiled, "val") if r["step"] != 8], strict=True))
    assert [a["step"] for a, _ in pairs] == [b["step"] for _, b in pairs] == [4, 8, 12, 0, 12]
    for a, b in pairs:
        assert b["mean" if a["kind"] == "val" else "loss"] == pytest.approx(a["mean" if a["kind"] == "val" else "loss"],
                                                                          rel=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the CPU runs the same paths above)")
def test_cuda_defaults_bf16_compiled_and_resume(text_file, tmp_path):
    """On a GPU: the defaults pick CUDA, bf16 autocast and torch.compile; the run learns and resumes."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    summary = pretrain.train(config(whole, text_file), whole, console=QUIET)
    assert (summary["device"], summary["dtype"]) == ("cuda", "bfloat16") and summary["startup_seconds"] > 0
    val = [r["loss"]["text"] for r in records(whole, "val")]
    assert val[-1] < val[0] - 0.5, val
    pretrain.train(config(parts, text_file), parts, stop_at=25, console=QUIET)
    pretrain.train(pretrain.make_config(parts, {}, resume=True), parts, resume=True, console=QUIET)
    _, a, _ = checkpoint.load(checkpoint.path_in(whole))
    _, b, _ = checkpoint.load(checkpoint.path_in(parts))
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-2  # GPU kernels need not be exact
    assert generate_text(whole, "if", max_new_tokens=20, device="cuda")[0].startswith("if")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_equal_one_process_with_the_same_global_batch(corpus, tmp_path):
    settings = {**SMALL, "dropout": 0.0, "batch_size": 4, "grad_accum": 2, "max_steps": 12}
    single = tmp_path / "single"
    pretrain.train(pretrain.make_config(single, {"corpus": str(corpus), **settings}), single, console=QUIET)
    ddp = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", str(free_port()), "-m", "corpusforge.cli", "train", "pretrain", "--corpus", str(corpus),
         "--out", str(ddp), *[f"--set={k}={v}" for k, v in settings.items()]],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 × cpu" in proc.stderr
    meta, weights_ddp, _ = checkpoint.load(checkpoint.path_in(ddp))
    assert meta["world_size"] == 2 and len(meta["readers"]) == 2
    _, weights_single, _ = checkpoint.load(checkpoint.path_in(single))
    torch.manual_seed(pretrain.TrainConfig.seed)  # the trainer's initial weights
    initial = GPT(GPTConfig(**meta["model_config"])).state_dict()
    moved = max((weights_single[k] - initial[k]).abs().max().item() for k in weights_single)
    differ = max((weights_single[k] - weights_ddp[k]).abs().max().item() for k in weights_single)
    assert moved > 1e-3 and differ < 1e-5  # same up to the order of float additions
    assert [r["step"] for r in records(ddp, "val")] == [0, 12]
    for a, b in zip(records(single, "val"), records(ddp, "val")):
        assert a["loss"].keys() == b["loss"].keys() == {"books", "wikipedia"}
        assert all(a["loss"][k] == pytest.approx(b["loss"][k], abs=1e-5) for k in a["loss"])


def test_rank_streams_are_disjoint_and_cover_the_single_stream(text_file):
    def blocks(rank, world, n):
        it = iter(TextBlocks(text_file, 32, seed=5, rank=rank, world_size=world))
        return [next(it).tobytes() for _ in range(n)]

    whole = blocks(0, 1, 40)
    r0, r1 = blocks(0, 2, 20), blocks(1, 2, 20)
    assert whole[0::2] == r0 and whole[1::2] == r1


def test_a_run_leaves_per_source_metrics_a_plot_the_tokenizer_and_a_summary(corpus_reference, corpus):
    run = corpus_reference
    train, val = records(run, "train"), records(run, "val")
    assert [r["step"] for r in train] == list(range(4, STEPS + 1, 4))
    assert [r["step"] for r in val] == [0, 20, 40, 60]
    assert all(r["loss"].keys() == {"books", "wikipedia"} for r in val)  # validation loss per source
    assert val[0]["loss"]["books"] == pytest.approx(math.log(2048), abs=0.1)  # untrained: uniform over the vocab
    assert val[-1]["loss"]["books"] < val[0]["loss"]["books"] - 1.0
    assert all(r["tokens_per_s"] > 0 and r["mfu"] > 0 and math.isfinite(r["grad_norm"]) for r in train)
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((run / "_summary.json").read_text())
    assert summary["step"] == STEPS and summary["tokens"] == STEPS * 8 * 32 and not summary["stopped_early"]
    assert summary["val_loss"] == val[-1]["loss"]
    saved, original = (Tokenizer.from_file(str(p / "tokenizer.json")) for p in (run, corpus))
    assert saved.get_vocab() == original.get_vocab() and saved.encode("Mr. Darcy").ids == original.encode(
        "Mr. Darcy").ids
    assert json.loads((run / "config.json").read_text())["model"]["vocab_size"] == 2048
    assert not list(run.glob(".*tmp"))  # no temporary file left behind


def test_generate_continues_the_prompt_repeatably(corpus_reference):
    run = corpus_reference
    a = generate_text(run, "It is a truth", max_new_tokens=30, seed=3, num_samples=2)
    assert a == generate_text(run, "It is a truth", max_new_tokens=30, seed=3, num_samples=2)
    assert a != generate_text(run, "It is a truth", max_new_tokens=30, seed=4, num_samples=2)
    assert all(t.startswith("It is a truth") and len(t) > 20 for t in a)
    out = cli("generate", str(run), "--prompt", "It is a truth", "--max-new-tokens", "30", "--seed", "3").stdout
    assert out.strip() == generate_text(run, "It is a truth", max_new_tokens=30, seed=3,
                                        which=choose_checkpoint(run)[0])[0].strip()


def test_damaged_checkpoints_are_refused_with_a_clear_message(reference, tmp_path):
    good = checkpoint.path_in(reference).read_bytes()
    header = 8 + int.from_bytes(good[:8], "little")
    cases = {
        "truncated": good[: len(good) // 2],
        "flipped data byte": good[:-1000] + bytes([good[-1000] ^ 1]) + good[-999:],
        "edited metadata": good.replace(f'\\"step\\": {STEPS}'.encode(), f'\\"step\\": {STEPS + 1}'.encode()),
        "empty": b"",
    }
    assert cases["edited metadata"] != good and header < len(good) - 1000
    for what, data in cases.items():
        run = tmp_path / what.replace(" ", "-")
        run.mkdir()
        checkpoint.path_in(run).write_bytes(data)
        with pytest.raises(checkpoint.CheckpointError, match="damaged checkpoint, refused"):
            checkpoint.load(checkpoint.path_in(run))
    proc = cli("generate", str(tmp_path / "truncated"), "--prompt", "x", check=False)
    assert proc.returncode == 2 and "damaged checkpoint, refused" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("train", "pretrain", "--out", str(tmp_path / "flipped-data-byte"), "--resume", check=False)
    assert proc.returncode == 2 and "damaged checkpoint, refused" in proc.stderr


def test_a_run_is_not_overwritten_and_resumes_only_with_the_same_settings(reference, text_file, tmp_path):
    with pytest.raises(pretrain.TrainError, match="already holds a checkpoint .*--resume"):
        pretrain.train(config(reference, text_file), reference, console=QUIET)
    with pytest.raises(pretrain.TrainError, match=r"cannot resume with different lr \(0.001 -> 0.002\)"):
        pretrain.train(config(reference, text_file, lr=2e-3), reference, resume=True, console=QUIET)
    proc = cli("train", "pretrain", "--text", text_file, "--out", str(tmp_path), "--set", "batch_size=0",
               check=False)
    assert proc.returncode == 2 and "batch_size: must be >= 1" in proc.stderr
    proc = cli("train", "pretrain", "--out", str(tmp_path), check=False)
    assert proc.returncode == 2 and "give exactly one of corpus" in proc.stderr


def test_a_checkpoint_copied_from_another_run_is_refused_on_resume(reference, tmp_path):
    """A run folder (its config.json: seed 7, 4 layers) given the checkpoint of another run: --resume names what
    differs in one line, exit 2, and leaves the folder as it was."""
    run_config = json.loads((reference / "config.json").read_text())
    run_config["train"]["seed"] = 7
    run_config["model"]["n_layer"] = 4
    (tmp_path / "config.json").write_text(json.dumps(run_config))
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 4, "loss": 9.0}\n')
    checkpoint.path_in(tmp_path).write_bytes(checkpoint.path_in(reference).read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = cli("train", "pretrain", "--out", str(tmp_path), "--resume", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "is from another run" in proc.stderr
    assert "model n_layer 4 in config.json, 2 in the checkpoint" in proc.stderr
    assert "seed 7 in config.json, 1337 in the checkpoint" in proc.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # in a copy of the folder of the run that wrote it, the checkpoint resumes (to 4 more steps)
    own = shutil.copytree(reference, tmp_path / "own")
    cli("train", "pretrain", "--out", str(own), "--resume", "--max-steps", str(STEPS + 4))
    assert checkpoint.read_meta(checkpoint.path_in(own))["step"] == STEPS + 4


def set_tokens(corpus: Path, name: str, split: str) -> np.ndarray:
    """A set's tokens in one split, each document followed by end-of-text (as the reader streams them)."""
    import pyarrow.parquet as pq

    from corpusforge.mix import manifest

    m = manifest.load(corpus)
    entry = next(s for s in m["sets"] if s["name"] == name)
    docs = [np.append(np.asarray(row, dtype=np.int64), m["tokenizer"]["eot_id"]) for shard in entry[split]["shards"]
            for row in pq.read_table(corpus / shard["path"], columns=["tokens"]).column("tokens").to_pylist()]
    return np.concatenate(docs)


def unigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) on `val` of token frequencies counted on `train` (add-one smoothed)."""
    counts = np.bincount(train, minlength=vocab_size) + 1.0
    return float(-np.log(counts / counts.sum())[val].mean())


@pytest.mark.slow
@pytest.mark.shared_data
def test_tiny_preset_learns_the_books_far_below_a_unigram_model(corpus, tmp_path):
    c = pretrain.make_config(tmp_path, {"corpus": str(corpus), "sets": ["books"], "preset": "tiny",
                                        "max_steps": LEARN_STEPS, "eval_interval": LEARN_STEPS, "warmup_steps": 20})
    summary = pretrain.train(c, tmp_path, console=QUIET)
    baseline = unigram_loss(set_tokens(corpus, "books", "train"), set_tokens(corpus, "books", "val"), 2048)
    assert baseline > 5.5  # what word frequencies alone predict
    assert summary["val_loss"]["books"] < baseline - 0.5, (summary["val_loss"], baseline)  # 1.65x lower perplexity


def test_a_peak_measured_under_load_is_measured_again_rather_than_reporting_mfu_above_100(text_file, tmp_path,
                                                                                          monkeypatch):
    """On a shared CPU the matmul peak measured at start can be far too low (another job had the cores), which
    would show MFU above 100%; the trainer then measures again and keeps the higher peak."""
    monkeypatch.setattr(devices, "peak_flops", lambda *a: (1e6, "measured float32 matmul on cpu"))  # 1 MFLOP/s
    summary = pretrain.train(config(tmp_path, text_file, max_steps=8), tmp_path, console=QUIET)
    assert summary["peak_flops"] > 1e8 and 0 < summary["mfu"] <= 1
    assert all(0 < r["mfu"] <= 1 for r in records(tmp_path, "train"))
