"""GSM8K annotations become tool conversations; bad annotations are counted, not kept."""

from __future__ import annotations

import json

import pytest

from instructkit.chat import IGNORE_INDEX, render
from instructkit.tools.convert import convert_gsm8k, gsm8k_conversation
from instructkit.data.readers import read_conversations
from instructkit.errors import DataError

Q = "Natalia sold clips to 48 of her friends in April, and then half as many in May. How many altogether?"
A = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72"


def test_annotations_become_calls_and_results(tiny_tokenizer):
    c = gsm8k_conversation(Q, A)
    assert [m.role for m in c.messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert c.messages[1].content == "Natalia sold 48/2 =" and c.messages[1].tool_calls[0].arguments == {"expression": "48/2"}
    assert c.messages[2].content == "24" and c.messages[4].content == "72"
    assert c.messages[5].content == "72 clips altogether.\n#### 72"
    r = render(c, tiny_tokenizer, "chatml_tools")
    trained = tiny_tokenizer.decode([i for i, l in zip(r.input_ids, r.labels) if l != IGNORE_INDEX])
    assert '"expression": "48+24"' in trained and "<tool_response>" not in trained
    plain = gsm8k_conversation(Q, A, strip_annotations_only=True)
    assert plain.messages[1].content.startswith("Natalia sold 48/2 = 24 clips") and plain.tools is None


@pytest.mark.parametrize("answer,reason", [
    ("x <<48/2=25>>25\n#### 25", "result_mismatch"), ("x <<os.system(1)=0>>0\n#### 0", "calculator_error"),
    ("x <<48/2>>24\n#### 24", "malformed_annotation"), ("no final answer", "missing_field")])
def test_bad_annotations(answer, reason):
    with pytest.raises(DataError) as e:
        gsm8k_conversation(Q, answer)
    assert e.value.reason == reason


def test_convert_file_counts_and_reads_back(tmp_path):
    src = tmp_path / "g.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [{"question": Q, "answer": A},
                                                     {"question": "q", "answer": "<<2*3=7>>7\n#### 7"},
                                                     {"question": "q2", "answer": "It is 5.\n#### 5"}]) + "\n")
    rep = convert_gsm8k(src, tmp_path / "out.jsonl")
    assert rep["counts"] == {"read": 3, "kept": 2, "calls": 2, "result_mismatch": 1}
    assert "g.jsonl:2" in rep["examples"]["result_mismatch"][0]
    convs = list(read_conversations(tmp_path / "out.jsonl"))
    assert convs[0].messages == gsm8k_conversation(Q, A).messages and convs[0].tools


@pytest.mark.shared
def test_real_gsm8k_converts(shared_data, tmp_path):
    rep = convert_gsm8k(shared_data / "gsm8k" / "train.jsonl", tmp_path / "o.jsonl", limit=300)
    assert rep["counts"]["kept"] == 300 and rep["counts"]["calls"] > 600


def test_people_qa_set_and_tool_eval(tmp_path, tiny_model_dir):
    from instructkit.tools.convert import build_people_qa
    from instructkit.tools.experiment import retrieval_qa_eval
    from instructkit.toolset.retrieval import BM25Index

    rep = build_people_qa(tmp_path / "pqa", n_people=40, n_train=10, n_test=4)
    [conv] = list(read_conversations(rep["train"]))[:1]
    assert conv.messages[1].tool_calls[0].name == "search" and conv.tools[0]["function"]["name"] == "search"
    name = conv.messages[1].tool_calls[0].arguments["query"]
    assert conv.messages[2].content.startswith(f"[1] {name}: {name} lives in")   # the real search result
    assert BM25Index.load(rep["index"]).search(name, 1)[0][1].title == name
    res = retrieval_qa_eval(tiny_model_dir, rep["test"], rep["index"], tmp_path / "ev", n=2, max_new_tokens=4,
                            batch_size=2)
    assert res["n"] == 2 and set(res["modes"]) == {"with_tools", "without_tools"}
    assert (tmp_path / "ev" / "report.md").read_text().startswith("# retrieval_qa with and without search")
