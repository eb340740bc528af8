"""The T0 training mixture as prompt/completion files, one per promptsource template.

File names are ``<dataset>[_<subset>]_<template name>.jsonl`` with every separator flattened to
``_`` (``cnn_dailymail_3_0_0_tldr_summary`` = dataset cnn_dailymail, subset 3.0.0, template
tldr_summary). Dataset ids are recovered by the longest known prefix: from the promptsource
template tree when one is given (``dataset/subset`` -> ``dataset_subset``), else from
:data:`T0_CLUSTERS` (the T0 paper's training datasets and their task clusters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from instructkit.errors import DataError
from instructkit.jsonl import iter_jsonl

# T0 (Sanh et al. 2022), Figure 2: training task clusters and their datasets (file-name prefixes)
T0_CLUSTERS: dict[str, str] = {
    **dict.fromkeys(["adversarial_qa_dbert", "adversarial_qa_dbidaf", "adversarial_qa_droberta", "quoref", "ropes",
                     "duorc_ParaphraseRC", "duorc_SelfRC"], "extractive_qa"),
    **dict.fromkeys(["commonsense_qa", "cosmos_qa", "dream", "qasc", "quail", "quarel", "quartz", "sciq",
                     "social_i_qa", "wiki_hop_original", "wiqa", "cos_e_v1_11"], "multiple_choice_qa"),
    **dict.fromkeys(["kilt_tasks_hotpotqa", "wiki_qa"], "closed_book_qa"),
    **dict.fromkeys(["amazon_polarity", "app_reviews", "imdb", "rotten_tomatoes", "yelp_review_full"], "sentiment"),
    **dict.fromkeys(["ag_news", "dbpedia_14", "trec"], "topic_classification"),
    **dict.fromkeys(["glue_mrpc", "glue_qqp", "paws_labeled_final"], "paraphrase"),
    **dict.fromkeys(["common_gen", "wiki_bio"], "structure_to_text"),
    **dict.fromkeys(["cnn_dailymail_3_0_0", "gigaword", "multi_news", "samsum", "xsum"], "summarization"),
}
EOT = "<|endoftext|>"


@dataclass
class PCDataset:
    """One data set of prompt/completion files: ``templates[template_id] = [(prompt, completion)]``."""
    id: str
    cluster: str
    templates: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    #: records dropped per reason (e.g. empty completions in the real T0 files), reported by ``data mix``
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(v) for v in self.templates.values())


def known_prefixes(promptsource_dir: str | Path | None = None) -> list[str]:
    names = set(T0_CLUSTERS)
    if promptsource_dir and Path(promptsource_dir).is_dir():
        root = Path(promptsource_dir)
        for f in root.rglob("templates.yaml"):
            rel = f.parent.relative_to(root).as_posix()
            names.add(re.sub(r"[/.\-]", "_", rel))
    return sorted(names, key=len, reverse=True)


def split_name(stem: str, prefixes: list[str]) -> tuple[str, str]:
    """``("cnn_dailymail_3_0_0", "tldr_summary")`` from a file stem (longest known prefix wins)."""
    for p in prefixes:
        if stem.startswith(p + "_"):
            return p, stem[len(p) + 1:]
    head, _, tail = stem.partition("_")  # unknown data set: first token, reported as such by cluster "t0"
    return head, tail or "default"


def read_pc_file(path: Path, skipped: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """Records of one file; empty completions are skipped and counted in ``skipped`` (None: raise)."""
    out = []
    for i, d in iter_jsonl(path):
        try:
            p, c = d["prompt"], d["completion"]
        except (KeyError, TypeError) as e:
            raise DataError(f"not a prompt/completion record ({e})", path=str(path), line=i,
                            reason="invalid_record") from None
        # the files end completions with GPT-2's literal end-of-text marker; our renderer adds the
        # model's own end-of-turn token, so the literal one must not be trained on
        c = c.removesuffix(EOT).strip()
        if not c and skipped is not None:
            skipped["empty_completion"] = skipped.get("empty_completion", 0) + 1
            continue
        if not c:
            raise DataError("empty completion", path=str(path), line=i, field="completion",
                            reason="empty_assistant")
        out.append((p.rstrip(), c))
    return out


def load_t0_dir(folder: str | Path, promptsource_dir: str | Path | None = None) -> list[PCDataset]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("T0 folder not found", path=str(folder), reason="missing_file")
    if promptsource_dir is None and (folder.parent / "promptsource_templates").is_dir():
        promptsource_dir = folder.parent / "promptsource_templates"
    prefixes = known_prefixes(promptsource_dir)
    by_id: dict[str, PCDataset] = {}
    for f in sorted(folder.glob("*.jsonl")):
        ds, tpl = split_name(f.stem, prefixes)
        d = by_id.setdefault(ds, PCDataset(ds, T0_CLUSTERS.get(ds, "t0")))
        d.templates[f"{ds}/{tpl}"] = read_pc_file(f, d.skipped)
        d.files[f"{ds}/{tpl}"] = str(f)
    return list(by_id.values())
