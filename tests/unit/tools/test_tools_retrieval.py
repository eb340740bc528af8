"""BM25 retrieval over a small corpus: build from JSONL and text, save, load, rank, use as a tool."""

from __future__ import annotations

import json

import pytest

from instructkit.chat.conversation import ToolCall
from instructkit.errors import DataError
from instructkit.toolset.registry import load_toolset
from instructkit.toolset.retrieval import BM25Index, read_documents

FACTS = [
    {"id": "fr", "title": "France", "text": "Paris is the capital of France and its largest city."},
    {"id": "de", "title": "Germany", "text": "Berlin is the capital of Germany."},
    {"id": "zebu", "title": "Zebu", "text": "The zebu is a humped ox native to South Asia."},
    {"id": "nile", "title": "Nile", "text": "The Nile is a river in north-eastern Africa, about 6,650 km long."},
]


@pytest.fixture()
def corpus(tmp_path):
    (tmp_path / "facts.jsonl").write_text("\n".join(json.dumps(f) for f in FACTS) + "\n")
    (tmp_path / "notes.md").write_text("Mount Everest is the highest mountain.\n\nThe okapi lives in Congo's forests.\n")
    return tmp_path


def test_build_save_load_search(corpus, tmp_path):
    docs = list(read_documents([corpus]))
    assert len(docs) == 6 and docs[0].source.endswith("facts.jsonl:1")
    BM25Index.build(docs).save(tmp_path / "ix")
    ix = BM25Index.load(tmp_path / "ix")
    assert ix.search("capital of Germany", 1)[0][1].id == "de"
    assert ix.search("humped ox", 2)[0][1].title == "Zebu"
    assert ix.search("where do okapi live", 1)[0][1].title == "notes"
    hits = ix.search("capital", 10)
    assert {d.id for _, d in hits} == {"fr", "de"} and hits[0][0] >= hits[1][0]
    assert ix.search("xylophone quux") == []          # no query word in the corpus: no results, no error
    ts = load_toolset("search", index=str(tmp_path / "ix"))
    r = ts.run(ToolCall("search", {"query": "How long is the Nile?"}))
    assert r.ok and r.content.startswith("[1] Nile: The Nile is a river")


def test_bad_record_names_file_line_field(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"title": "no text"}\n')
    with pytest.raises(DataError) as e:
        list(read_documents([tmp_path / "bad.jsonl"]))
    assert e.value.line == 2 and e.value.field == "text"
