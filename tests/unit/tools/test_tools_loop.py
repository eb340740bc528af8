"""The tool loop with a scripted model: calls, results, final answer, the K limit, batching, ToolLM."""

from __future__ import annotations

import pytest

from instructkit.chat import Renderer
from instructkit.lm.api import GenerateRequest, GenerateResult
from instructkit.toolset.loop import ToolLM, ToolLoop
from instructkit.chat.tool_parsers import get_parser
from instructkit.toolset.registry import Tool, load_toolset


class Scripted:
    """Answers each prompt with the next scripted text; records the prompts it saw."""

    name = "scripted"

    def __init__(self, script):
        self.script, self.prompts = list(script), []

    def generate(self, requests):
        out = []
        for r in requests:
            self.prompts.append(r.prompt)
            text = self.script.pop(0) if self.script else "done"
            out.append(GenerateResult([text(r.prompt) if callable(text) else text], [3]))
        return out


CALL = '<tool_call>\n{{"name": "calculator", "arguments": {{"expression": "{}"}}}}\n</tool_call>'


@pytest.fixture()
def renderer(tiny_tokenizer):
    return Renderer(tiny_tokenizer, "chatml_tools")


def make_loop(lm, renderer, k=4, tools="calculator"):
    return ToolLoop(lm, load_toolset(tools), renderer, get_parser("hermes"), max_calls=k)


def test_calls_results_and_final_answer(renderer):
    lm = Scripted(["Half of 48: " + CALL.format("48/2"), CALL.format("48+24") + "\n" + CALL.format("1/0"),
                   "Natalia sold 72 clips."])
    res = make_loop(lm, renderer).run([{"role": "user", "content": "How many clips?"}])
    assert res.final == "Natalia sold 72 clips." and res.stopped == "answer"
    roles = [m.role for m in res.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "tool", "assistant"]
    assert [m.content for m in res.messages if m.role == "tool"][:2] == ["24", "72"]
    assert res.messages[5].content.startswith("error: ZeroDivisionError")   # tool errors come back as results
    assert res.messages[1].content == "Half of 48:" and res.messages[2].tool_call_id == res.messages[1].tool_calls[0].id
    s = res.stats
    assert (s["made"], s["parsed"], s["executed"], s["run_failed"], s["parse_failed"], s["turns"]) == (3, 3, 3, 1, 0, 3)
    # the model saw the tool schema, then its own call and the result, in the second prompt
    assert '"name": "calculator"' in lm.prompts[0] and "<tool_response>\n24\n</tool_response>" in lm.prompts[1]


def test_k_limit_stops_the_loop(renderer):
    lm = Scripted([lambda p: "again " + CALL.format("1+1")] * 20)
    res = make_loop(lm, renderer, k=3).run([{"role": "user", "content": "loop forever"}])
    assert res.stopped == "max_calls" and res.stats["executed"] == 3 and res.stats["limit_hit"] == 1
    assert len(lm.prompts) == 4 and res.final == "again"
    assert sum(m.role == "tool" for m in res.messages) == 3


def test_parse_failures_are_counted_not_dropped(renderer):
    lm = Scripted(['<tool_call>{"name": calculator}</tool_call> so 5'])
    res = make_loop(lm, renderer).run([{"role": "user", "content": "x"}])
    assert res.stats["parse_failed"] == 1 and res.stats["failed"] == 1 and res.final == "so 5"


def test_batched_conversations_and_plugin_tool(renderer):
    def shout(text: str) -> str:
        """Upper-case the text."""
        return text.upper()

    tools = load_toolset("calculator")
    tools.add(Tool.from_function(shout))
    assert tools.schemas[1]["function"]["parameters"]["required"] == ["text"]
    replies = {"a": ['<tool_call>{"name": "shout", "arguments": {"text": "hé"}}</tool_call>', "said HÉ"],
               "b": ["no tools needed"]}

    class ByUser(Scripted):
        def generate(self, requests):
            out = []
            for r in requests:
                who = "a" if "user\na" in r.prompt else "b"
                out.append(GenerateResult([replies[who].pop(0)], [1]))
            self.prompts.append(len(requests))
            return out

    lm = ByUser([])
    loop = ToolLoop(lm, tools, renderer, get_parser("hermes"))
    ra, rb = loop.run_many([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]])
    assert ra.final == "said HÉ" and ra.messages[2].content == "HÉ" and rb.final == "no tools needed"
    assert lm.prompts == [2, 1]  # one batched generate per round


def test_toollm_wraps_an_eval_model(renderer):
    lm = Scripted([CALL.format("6*7"), "The answer is 42."])
    tlm = ToolLM(lm, make_loop(lm, renderer))
    [res] = tlm.generate([GenerateRequest(prompt="What is 6*7?", key=("gsm8k", 0))])
    assert res.texts == ["The answer is 42."] and tlm.stats["executed"] == 1
    assert tlm.traces[("gsm8k", 0)].messages[2].content == "42"
    assert "tools(calculator)" in tlm.name and "|k=4" in tlm.fingerprint


def test_with_tools_wraps_a_local_eval_model(tiny_model, tiny_tokenizer):
    from instructkit.lm.hf import HFModel
    from instructkit.toolset.loop import with_tools

    lm = HFModel(tiny_model, tiny_tokenizer, apply_chat_template=True, progress=False)
    tlm = with_tools(lm, "calculator", max_calls=2)
    assert lm.apply_chat_template is False  # the loop renders the chat (with the tool schema) itself
    [r] = tlm.generate([GenerateRequest(prompt="What is 2+2?", max_new_tokens=8, key="k")])
    assert len(r.texts) == 1 and tlm.stats["turns"] >= 1 and tlm.traces["k"].messages[0].content == "What is 2+2?"


def test_eval_runner_scores_the_final_answer_through_the_loop(renderer, tmp_path):
    from instructkit.eval.datasets import EvalItem, EvalSet
    from instructkit.eval.runner import evaluate

    def reply(prompt):  # by question and by whether the tool result is already in the prompt
        if "123*4" in prompt:
            return "So the answer is 492." if "<tool_response>\n" in prompt else CALL.format("123*4")
        return "The answer is 41." if "<tool_response>\n" in prompt else CALL.format("7*6")

    lm = Scripted([reply] * 4)
    tlm = ToolLM(lm, make_loop(lm, renderer))
    items = [EvalItem("calc", 0, "What is 123*4?", "492", metric="exact_match", answer_kind="number", cot=True),
             EvalItem("calc", 1, "What is 7*6?", "42", metric="exact_match", answer_kind="number", cot=True)]
    res = evaluate(tlm, [EvalSet("calc", items, "zero_shot")], tmp_path, progress=False)
    assert res["tasks"]["calc"]["metrics"]["exact_match"]["value"] == 0.5
    assert tlm.stats["executed"] == 2 and "tools(calculator)" in res["model"]
