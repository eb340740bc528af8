"""A scripted teacher for the synth tests: deterministic answers per request, no model.

It answers by what the prompt asks (task list, instance, evolution, equality judgement, follow-up,
plain answer), each answer a pure function of (prompt, seed), so runs are reproducible. With
``FAKE_TEACHER_LOG`` set, every request it receives is appended to that file (one hash per line);
``FAKE_TEACHER_DELAY`` seconds of sleep per request make a subprocess easy to kill mid-run.
"""

from __future__ import annotations

import hashlib
import os
import random
import time

from instructkit.lm.api import GenerateResult

WORDS = ("river mountain algorithm poem budget recipe garden planet violin market theorem castle engine novel "
         "protein satellite festival contract glacier museum harbor orchard circuit journal lantern meadow "
         "nebula opera pyramid quartz rainforest saxophone telescope tundra umbrella volcano waterfall yacht "
         "zeppelin bakery canyon desert elephant fjord galaxy hurricane island jungle kayak lagoon").split()
VERBS = "Describe Explain Summarize Compare List Classify Rewrite Translate Outline Evaluate Design Predict".split()


def _rng(prompt: str, seed) -> random.Random:
    return random.Random(hashlib.sha256(f"{prompt}|{seed}".encode()).hexdigest())


def _instruction(r: random.Random) -> str:
    return f"{r.choice(VERBS)} the {' '.join(r.sample(WORDS, 4))} in {r.randint(2, 9)} sentences."


class FakeTeacher:
    name = "fake-teacher"
    fingerprint = "fake-teacher-v1"
    batch_size = 4

    def __init__(self, mode: str = "ok"):
        self.mode = mode
        self.calls = 0
        self.log = os.environ.get("FAKE_TEACHER_LOG")
        self.delay = float(os.environ.get("FAKE_TEACHER_DELAY", "0"))

    def answer(self, req) -> str:
        text = req.prompt if req.prompt is not None else req.messages[-1]["content"]
        r = _rng(text, req.seed)
        if self.mode == "garbage":
            return "".join(r.choice("#@!? ") for _ in range(40))
        if "Use exactly this format" in text:
            start = int(text.rsplit("###\n", 1)[1].split(".")[0])
            out = []
            for i in range(start, start + 4):
                out.append(f"{i}. Instruction: {_instruction(r)}\n{i}. Input:\n<noinput>\n{i}. Output:\nA short answer {i}.")
            if r.random() < 0.5:
                out.append(f"{start + 4}. Instruction: Draw a picture of a {r.choice(WORDS)} for me today.\n"
                           f"{start + 4}. Input:\n<noinput>\n{start + 4}. Output:\nok")
            body = "\n###\n".join(out)
            return body.split("Instruction:", 1)[1] if r.random() < 0.5 else body
        if "Continue the list" in text:
            return "\n".join(f"Task {i}: {_instruction(r)}" for i in range(9, 13))
        if text.startswith("Write one example for the task"):
            return "Input: <noinput>\nOutput: " + " ".join(r.sample(WORDS, 5))
        if text.rstrip().endswith("Is it classification?"):  # self-instruct paper: classification or not
            return "Yes" if r.random() < 0.4 else "No"
        if text.startswith("Given the classification task definition"):  # output-first instances
            return "\n".join(f"Class label: {lab}\nSentence: " + " ".join(r.sample(WORDS, 6))
                             for lab in ("Positive", "Negative"))
        if text.startswith("Come up with examples for the following tasks"):  # input-first instances
            return "\n".join(f"Example {k}\nText: {' '.join(r.sample(WORDS, 6))}\nOutput: {' '.join(r.sample(WORDS, 5))}"
                             for k in (1, 2))
        if "#Rewritten Prompt#:" in text or "#Created Prompt#:" in text:
            given = text.split("#Given Prompt#:\n", 1)[1].split("\n\n#", 1)[0]
            k = r.random()
            if k < 0.15:
                return "#Rewritten Prompt#: " + given
            return given + " Also consider the " + " and ".join(r.sample(WORDS, 2)) + "."
        if "Do you think they are equal" in text:
            return "Equal" if r.random() < 0.2 else "Not Equal"
        if "Write the user's next message" in text:
            return "USER: Can you tell me more about the " + r.choice(WORDS) + "?"
        k = r.random()
        if k < 0.1:
            return "I'm sorry, I cannot help with that."
        if k < 0.15:
            return "The, of and to."
        return "Here is an answer about " + " ".join(r.sample(WORDS, 8)) + "."

    def generate(self, requests):
        out = []
        for req in requests:
            self.calls += 1
            if self.delay:
                time.sleep(self.delay)
            text = self.answer(req)
            if self.log:  # the cache's own key, so tests can compare what was sent with what was cached
                from instructkit.synth.teacher import request_key
                with open(self.log, "a") as f:
                    f.write(request_key(self.fingerprint, req) + "\n")
            out.append(GenerateResult([text], [len(text.split())]))
        return out


def make():
    return FakeTeacher(os.environ.get("FAKE_TEACHER_MODE", "ok"))
