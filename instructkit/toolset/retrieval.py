"""BM25 retrieval over a user's own files (``instructkit tools index``), as a tool the model calls.

Documents come from JSONL (one record per line: ``text`` / ``content`` / ``passage``, optional
``title`` and ``id``) and from ``.txt``/``.md`` files (one document per paragraph, titled by the file
name). The index is a folder: the ``bm25s`` sparse matrices plus ``docs.jsonl`` (the passages, with
their source file and line) and ``index.json`` (what was indexed, when, with how many documents).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from instructkit.errors import DataError, InstructkitError
from instructkit.jsonl import iter_jsonl, read_jsonl

TEXT_KEYS = ("text", "content", "passage", "body")
DOC_SUFFIXES = (".jsonl", ".txt", ".md")
STOPWORDS = "en"


@dataclass
class Doc:
    text: str
    title: str = ""
    id: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "text": self.text, "source": self.source}


def _files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in DOC_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise InstructkitError(f"{p}: no such file or folder")
    if not out:
        raise InstructkitError("no .jsonl/.txt/.md documents found in " + ", ".join(map(str, paths)))
    return out


def read_documents(paths: Iterable[str | Path]) -> Iterator[Doc]:
    """Documents from files/folders; a bad JSONL record raises :class:`DataError` with file:line:field."""
    for f in _files(paths):
        if f.suffix == ".jsonl":
            for n, rec in iter_jsonl(f):
                key = next((k for k in TEXT_KEYS if isinstance(rec, dict) and isinstance(rec.get(k), str)), None)
                if key is None:
                    raise DataError(f"no text field (one of {', '.join(TEXT_KEYS)})", path=str(f), line=n,
                                    field="text", reason="missing_field")
                yield Doc(rec[key], str(rec.get("title") or ""), str(rec.get("id", f"{f.name}:{n}")), f"{f}:{n}")
        else:
            text = f.read_text(encoding="utf-8", errors="replace")
            for k, para in enumerate(p.strip() for p in re.split(r"\n\s*\n", text)):
                if para:
                    yield Doc(para, f.stem, f"{f.name}#{k}", str(f))


class BM25Index:
    """A bm25s index and its passages; ``search(query, k)`` returns ``[(score, Doc)]``, best first."""

    def __init__(self, retriever: Any, docs: list[Doc]):
        self.retriever, self.docs = retriever, docs

    @classmethod
    def build(cls, docs: Iterable[Doc]) -> "BM25Index":
        import bm25s

        docs = list(docs)
        if not docs:
            raise InstructkitError("nothing to index: no documents")
        tokens = bm25s.tokenize([f"{d.title}\n{d.text}" for d in docs], stopwords=STOPWORDS, show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        return cls(retriever, docs)

    def save(self, out: str | Path, sources: list[str] | None = None) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(out / "bm25"), show_progress=False)
        with (out / "docs.jsonl").open("w", encoding="utf-8") as f:
            for d in self.docs:
                f.write(json.dumps(d.to_dict(), ensure_ascii=False) + "\n")
        (out / "index.json").write_text(json.dumps({"documents": len(self.docs), "sources": sources or [],
                                                    "kind": "bm25s"}, indent=2))
        return out

    @classmethod
    def load(cls, path: str | Path) -> "BM25Index":
        import bm25s

        path = Path(path)
        if not (path / "docs.jsonl").is_file() or not (path / "bm25").is_dir():
            raise InstructkitError(f"{path}: not a retrieval index (build one with `instructkit tools index`)")
        retriever = bm25s.BM25.load(str(path / "bm25"))
        docs = [Doc(**rec) for rec in read_jsonl(path / "docs.jsonl")]
        return cls(retriever, docs)

    def search(self, query: str, k: int = 3) -> list[tuple[float, Doc]]:
        import bm25s

        q = bm25s.tokenize([query], stopwords=STOPWORDS, return_ids=False, show_progress=False)[0]
        vocab = self.retriever.vocab_dict
        q = [t for t in q if t in vocab]
        if not q:  # no query word is in the corpus: nothing can match (bm25s would raise)
            return []
        k = max(1, min(k, len(self.docs)))
        idx, scores = self.retriever.retrieve([q], k=k, show_progress=False)
        return [(float(s), self.docs[int(i)]) for i, s in zip(idx[0], scores[0]) if s > 0]


def format_hits(hits: list[tuple[float, Doc]], max_chars: int = 600) -> str:
    if not hits:
        return "no results"
    return "\n".join(f"[{n}] {(d.title + ': ') if d.title else ''}{d.text[:max_chars]}" for n, (_s, d) in
                     enumerate(hits, 1))


SEARCH_SCHEMA = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the local document collection; returns the best-matching passages.",
        "parameters": {"type": "object",
                       "properties": {"query": {"type": "string", "description": "what to look for"},
                                      "k": {"type": "integer", "description": "how many passages (default 3)"}},
                       "required": ["query"]},
    },
}


def search_function(index: str | Path | BM25Index, k: int = 3) -> Any:
    """``search(query, k=3) -> text``: the search tool's function over an index (registered as a tool by
    :mod:`instructkit.toolset.registry` with :data:`SEARCH_SCHEMA`)."""
    idx = index if isinstance(index, BM25Index) else BM25Index.load(index)

    def search(query: str, k: int = k) -> str:
        return format_hits(idx.search(str(query), int(k)))

    return search
