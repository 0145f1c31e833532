"""Decontamination (GPT-3, appendix C) on real book text with planted evaluation passages: what is cut, what is
dropped, what is ignored as common, the n of short sets, normalization, damaged evaluation files, the same bytes on
any cluster, and the stats section."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shard_io import read_errors

from corpusforge import cli, decontaminate, runtime, schema
from corpusforge.decontaminate import DecontaminateConfig, EvalSetConfig
from corpusforge.decontaminate.cut import CutRules, cut
from corpusforge.decontaminate.evals import read_eval_set
from corpusforge.decontaminate.ngrams import build_index, choose_n
from corpusforge.documents import make_document
from corpusforge.errors import UserError
from corpusforge.stats import collect, report, tables
from corpusforge.runtime import RunContext

# Evaluation text written for these tests (none of it is in the books the documents come from).
PASSAGE = ("The lighthouse keeper counted forty seven gulls on the northern rocks before the storm reached the "
           "harbour wall that evening")
COMMON = "Please read the terms and conditions carefully before you sign anything with the bank or the agent today"
TEN = "A copper kettle sang on the iron stove while the twins argued about whose turn it was to fetch water"
SHORT = ["the miller sold fresh flour to the baker every week", "seven white swans swam slowly past the old mill pond",
         "a red kite circled high over the ripe barley field", "the ferry left the island at nine every single morning",
         "snow closed the mountain pass for three whole weeks last winter",
         "an owl hunted along the hawthorn hedge at dusk", "the blacksmith mended the broken gate hinge once again today",
         "two fishing boats were pulled up high on the shingle", "the choir sang carols in the cold stone chapel tonight",
         "rain drummed all night on the tin roof of the barn"]
HTML_EXAMPLE = "the secret phrase is marmalade sandwiches for every single bear in the station"


def _book_chunks(shared_data: Path, count: int, size: int = 3000) -> list[str]:
    """`count` passages of real prose from a Gutenberg novel, from its middle (no licence text)."""
    with gzip.open(shared_data / "books" / "gutenberg-test-corpus" / "1342-0.txt.gz", "rt", encoding="utf-8") as f:
        text = re.sub(r"\s+", " ", f.read())
    start = len(text) // 5
    return [text[start + i * size: start + (i + 1) * size] for i in range(count)]


def _plant(text: str, phrase: str, at: int) -> str:
    return f"{text[:at]} {phrase} {text[at:]}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data):
    """Three shards of book passages with evaluation text planted, the evaluation files, and the documents by
    role."""
    root = tmp_path_factory.mktemp("decontaminate")
    chunks = iter(_book_chunks(shared_data, 40))
    docs: dict[str, str] = {}
    docs["long"] = _plant(next(chunks), PASSAGE, 1500)
    docs["short"] = f"A note left on the door. {PASSAGE}. Nothing else."
    many = next(chunks) + next(chunks)
    for k in range(11):  # 11 plantings 450 characters apart, the first 500 characters in: 12 pieces
        many = _plant(many, PASSAGE, 500 + k * (450 + len(PASSAGE) + 2))
    docs["many"] = many
    docs["shouted"] = _plant(next(chunks), "THE LIGHTHOUSE-KEEPER counted “forty-seven” gulls, on the Northern "
                                           "Rocks; before the STORM reached the harbour wall ... that evening!", 900)
    for i in range(11):
        docs[f"common{i}"] = _plant(next(chunks), COMMON, 1200)
    for i in range(10):
        docs[f"ten{i}"] = _plant(next(chunks), TEN, 1200)
    docs["short_example"] = _plant(next(chunks), SHORT[3], 1000)
    docs["html"] = _plant(next(chunks), "The secret phrase is <marmalade> sandwiches, for every single bear in "
                                        "the station", 1400)
    for i in range(4):
        docs[f"clean{i}"] = next(chunks)
    rows = {role: make_document(source="books", text=text, lang="en", lang_score=1.0, origin_file="test.txt",
                                origin_id=role) for role, text in docs.items()}
    inputs = root / "dedup"
    roles = list(rows)
    for s in range(3):
        with runtime.ShardWriter(inputs / f"part-{s}.parquet") as writer:
            writer.write_rows([rows[r] for r in roles[s::3]])
    evals = root / "evals"
    evals.mkdir()
    lines = [json.dumps({"id": "p1", "text": PASSAGE}), "{not json", json.dumps({"id": "p2", "text": COMMON}),
             json.dumps({"id": "nope", "question": "where is the text?"}), json.dumps({"id": "p3", "text": TEN}),
             json.dumps({"id": "p4", "text": HTML_EXAMPLE})]
    (evals / "passages.jsonl").write_text("\n".join(lines) + "\n")
    (evals / "short.txt").write_text("\n".join(SHORT) + "\n")
    config = DecontaminateConfig(inputs=[str(inputs)], output=str(root / "out"), evals=[
        EvalSetConfig(path=str(evals / "passages.jsonl"), fields=["text"], id_field="id"),
        EvalSetConfig(path=str(evals / "short.txt"), name="short")])
    return root, config, rows


@pytest.fixture(scope="module")
def decontaminated(corpus, dask_client):
    root, config, rows = corpus
    summary = decontaminate.run(dataclasses.replace(config, output=str(root / "out")), RunContext(client=dask_client))
    out = root / "out"
    return summary, out, rows, read_docs(out), pq.read_table(out / decontaminate.DECONTAMINATION_FILE).to_pylist()


def read_docs(folder: Path) -> list[dict]:
    """The document shards of a stage folder (not its `_` side files), checked against the contract."""
    rows = []
    for path in sorted(folder.glob("[!_]*.parquet")):
        table = pq.read_table(path)
        schema.check_table(table)
        rows += table.to_pylist()
    return rows


def _pieces(docs, original):
    return sorted((d for d in docs if d["cut_from"] == original["id"]), key=lambda d: d["piece"])


def test_a_planted_passage_is_cut_with_its_margins_and_the_rest_kept(decontaminated):
    _, _, rows, docs, cuts = decontaminated
    long = rows["long"]
    start = long["text"].index(PASSAGE)
    end = start + len(PASSAGE)
    pieces = _pieces(docs, long)
    assert [p["text"] for p in pieces] == [long["text"][:start - 200], long["text"][end + 200:]]
    assert [(p["piece"], p["piece_offset"]) for p in pieces] == [(0, 0), (1, end + 200)]
    assert all(p["id"] != long["id"] and p["origin_id"] == "long" and p["source"] == "books" for p in pieces)
    assert long["id"] not in {d["id"] for d in docs}
    mine = [c for c in cuts if c["document_id"] == long["id"]]
    assert {c["action"] for c in mine} == {"cut"} and {c["example_id"] for c in mine} == {"p1"}
    assert min(c["cut_start"] for c in mine) == start - 200 and max(c["cut_end"] for c in mine) == end + 200
    assert mine[0]["ngram"] == " ".join(PASSAGE.split()[:13]) and mine[0]["ngram_start"] == start


def test_a_short_document_goes_and_eleven_plantings_drop_the_document_whole(decontaminated):
    summary, _, rows, docs, cuts = decontaminated
    kept = {d["id"] for d in docs} | {d["cut_from"] for d in docs}
    assert rows["short"]["id"] not in kept and rows["many"]["id"] not in kept
    actions = {c["document_id"]: c["action"] for c in cuts}
    assert actions[rows["short"]["id"]] == "dropped_no_piece_left"
    assert actions[rows["many"]["id"]] == "dropped_too_many_pieces"
    planted = [(m.start(), m.end()) for m in re.finditer(re.escape(PASSAGE), rows["many"]["text"])]
    assert len(planted) == 11 and len(cut(len(rows["many"]["text"]), planted, CutRules()).pieces) == 12
    assert summary.counts["dropped_contaminated"] == 2 and summary.counts["too_many_pieces"] == 1
    assert summary.counts["no_piece_left"] == 1


def test_case_and_punctuation_do_not_hide_a_passage(decontaminated):
    _, _, rows, docs, cuts = decontaminated
    assert len(_pieces(docs, rows["shouted"])) == 2
    found = [c["ngram"] for c in cuts if c["document_id"] == rows["shouted"]["id"]]
    assert found[0].startswith("THE LIGHTHOUSE-KEEPER counted “forty-seven”")


def test_a_phrase_in_more_than_ten_documents_is_ignored_and_one_in_ten_is_cut(decontaminated):
    summary, _, rows, docs, cuts = decontaminated
    by_id = {d["id"]: d for d in docs}
    for i in range(11):
        assert by_id[rows[f"common{i}"]["id"]]["text"] == rows[f"common{i}"]["text"]
        assert by_id[rows[f"common{i}"]["id"]]["cut_from"] is None
    for i in range(10):
        assert len(_pieces(docs, rows[f"ten{i}"])) == 2
    assert summary.extra["common_ngrams"] == len(COMMON.split()) - 12
    assert summary.counts["ignored_common"] == 11 * (len(COMMON.split()) - 12)
    assert not any(c["example_id"] == "p2" for c in cuts)


def test_short_examples_lower_n_and_dirty_examples_are_listed(decontaminated):
    summary, out, rows, docs, cuts = decontaminated
    sets = summary.extra["eval_sets"]
    assert sets["short"]["ngram"] == 9 and sets["short"]["length_percentile"] == 9
    assert sets["passages"]["ngram"] == 13
    assert len(_pieces(docs, rows["short_example"])) == 2
    assert {(c["eval_set"], c["example_id"]) for c in cuts if c["document_id"] == rows["short_example"]["id"]} \
        == {("short", "4")}
    dirty = pq.read_table(out / decontaminate.DIRTY_FILE).to_pylist()
    assert {(d["eval_set"], d["example_id"]) for d in dirty} == {("passages", "p1"), ("passages", "p3"),
                                                                 ("passages", "p4"), ("short", "4")}
    assert sets["passages"]["dirty"] == 3 and sets["passages"]["clean"] == 1 and sets["short"]["clean"] == 9
    by_id = {d["id"]: d for d in docs}
    for clean in (rows[f"clean{i}"] for i in range(4)):
        assert by_id[clean["id"]]["text"] == clean["text"] and by_id[clean["id"]]["cut_from"] is None


def test_damaged_evaluation_lines_are_reported_and_the_rest_is_used(decontaminated):
    summary, out, _, _, cuts = decontaminated
    errors = [e for e in read_errors(out) if e["stage"] == "evals"]
    assert [(Path(e["file"]).name, e["offset"], e["unit"]) for e in errors] == [("passages.jsonl", 2, "line"),
                                                                                ("passages.jsonl", 4, "line")]
    assert "no field 'text'" in errors[1]["reason"]
    assert summary.errors == 2 and summary.extra["eval_sets"]["passages"]["errors"] == 2
    assert {c["example_id"] for c in cuts if c["eval_set"] == "passages"} == {"p1", "p3", "p4"}


def test_the_same_bytes_on_one_worker_and_on_separate_processes(corpus, decontaminated, separate_cluster):
    root, config, _ = corpus
    _, out, *_ = decontaminated
    decontaminate.run(dataclasses.replace(config, output=str(root / "one")), RunContext(workers=1))
    decontaminate.run(dataclasses.replace(config, output=str(root / "remote")),
                      RunContext(scheduler=separate_cluster))
    files = sorted(p.name for p in out.glob("*.parquet"))
    assert len(files) == 5
    for other in ("one", "remote"):
        assert {f: (root / other / f).read_bytes() for f in files} == {f: (out / f).read_bytes() for f in files}


def test_stats_and_the_html_report_show_what_was_cut_escaped(decontaminated):
    _, out, *_ = decontaminated
    stages = [s for s in collect.stage_reports(out.parent) if s["folder"] == out.name]
    stage = stages[0]
    every = collect.decontamination(out / decontaminate.DECONTAMINATION_FILE, None, examples=1000)
    assert stage["drops"] == {"dropped_contaminated": 2}
    sets = stage["decontamination"]["eval_sets"]
    assert sets["passages"]["dirty"] == 3 and sets["passages"]["actions"]["dropped_too_many_pieces"] == 11 * 8
    rows = tables.decontamination_rows({"stages": stages})
    assert [r[0] for r in rows] == ["passages", "short"]
    page = "\n".join(report._decontamination({"stages": [{**stage, "decontamination": every}]}))
    assert "&lt;marmalade&gt;" in page and "<marmalade>" not in page


# ------------------------------------------------------------------------------------------ no cluster needed
@pytest.mark.parametrize("spans, length, outcome, pieces", [
    ([(1000, 1080)], 3000, "cut", [(0, 800), (1280, 3000)]),
    ([(100, 180)], 3000, "cut", [(380, 3000)]),  # the window starts at the text's start: no head piece
    ([(300, 380)], 3000, "cut", [(0, 100), (580, 3000)]),  # the 100-character head is a piece, dropped as short
    ([(1000, 1080), (1300, 1380)], 3000, "cut", [(0, 800), (1580, 3000)]),  # overlapping windows merge
    ([(200, 260)], 500, "dropped_no_piece_left", [(460, 500)]),
])
def test_cut_rules(spans, length, outcome, pieces):
    plan = cut(length, spans, CutRules())
    assert plan.outcome == outcome and plan.pieces == pieces
    assert [plan.pieces[k] for k in plan.kept] == [p for p in pieces if p[1] - p[0] >= 200]


def test_choose_n_is_the_fifth_percentile_within_eight_and_thirteen():
    assert choose_n(np.array([30] * 19 + [5]), 13, 8, 5.0) == (8, 5)
    assert choose_n(np.array([10, 11, 40, 50] * 5), 13, 8, 5.0) == (10, 10)
    assert choose_n(np.array([40] * 20), 13, 8, 5.0) == (13, 40)


def test_evaluation_files_of_every_kind(tmp_path):
    conversation = [{"role": "user", "content": [{"type": "text", "text": "Translate: good morning"}]},
                    {"role": "assistant", "content": "Guten Morgen"}]
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": conversation}) + "\n" + json.dumps(conversation)
                                         + "\n")
    pq.write_table(pa.table({"q": ["one?", "two?"], "choices": [["a", "b"], ["c"]], "key": ["x", "y"]}),
                   tmp_path / "mc.parquet")
    (tmp_path / "para.txt").write_bytes(b"first line\nsame paragraph\n\n\nsecond \xff bad\nthird\n\nfourth\n")
    with gzip.open(tmp_path / "cut.jsonl.gz", "wb") as f:
        f.write(("".join(json.dumps({"text": f"example {i}"}) + "\n" for i in range(500))).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes((tmp_path / "cut.jsonl.gz").read_bytes()[:-200])

    def read(**kw):
        rep = runtime.FileReport(input=kw["path"])
        return read_eval_set(EvalSetConfig(**kw), rep), rep

    chat, rep = read(path=str(tmp_path / "chat.jsonl"))
    assert chat.texts == ["Translate: good morning\nGuten Morgen"] * 2 and chat.name == "chat" and not rep.errors
    mc, _ = read(path=str(tmp_path / "mc.parquet"), fields=["q", "choices"], id_field="key", name="mc")
    assert mc.texts == ["one?\na\nb", "two?\nc"] and mc.ids == ["x", "y"]
    para, rep = read(path=str(tmp_path / "para.txt"), split="paragraph")
    assert para.texts == ["first line\nsame paragraph", "third", "fourth"] and para.ids == ["1", "6", "8"]
    assert [(e["offset"], e["reason"].split(":")[0]) for e in rep.errors] == [(5, "not UTF-8")]
    gz, rep = read(path=str(tmp_path / "cut.jsonl.gz"))
    assert 0 < len(gz.texts) < 500 and gz.texts[0] == "example 0"
    assert len(rep.errors) == 1 and rep.errors[0]["reason"].startswith("unreadable")
    with pytest.raises(UserError, match="no such file"):
        read(path=str(tmp_path / "missing.jsonl"))


def test_spaceless_scripts_match_by_characters():
    index = build_index([_eval_set(["周六早上我照例去了离家不远的城南菜市场"])], 13, 8, 5.0)
    docs, keys = index.lookup.hits(["周六早上，我照例去了离家不远的城南菜市场。秋天的菜市场特别热闹", "别的文字完全不同的一段话"])
    assert set(docs.tolist()) == {0} and len(set(keys.tolist())) == 19 - 13 + 1


def _eval_set(texts):
    from corpusforge.decontaminate.evals import EvalSet

    return EvalSet(name="s", path="s", ids=[str(i) for i in range(len(texts))], texts=texts)


def test_cli(corpus, tmp_path, capsys, dask_client):
    root, config, _ = corpus
    evals = root / "evals"
    args = ["decontaminate", str(root / "dedup"), "--evals", str(evals / "passages.jsonl"), str(evals / "short.txt"),
            "--name", "qa", "--field", "text", "-o", str(tmp_path / "out"), "--scheduler",
            dask_client.scheduler.address]
    assert cli.main([*args, "--fail-on-error"]) == 1  # the damaged lines
    summary = json.loads((tmp_path / "out" / runtime.SUMMARY_FILE).read_text())
    assert set(summary["extra"]["eval_sets"]) == {"qa", "short"} and summary["counts"]["dropped_contaminated"] == 2
    assert cli.main(["decontaminate", str(root / "dedup"), "--evals", str(tmp_path / "nope.jsonl"),
                     "-o", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err
