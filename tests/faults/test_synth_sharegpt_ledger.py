"""Issue #24 item 9: ShareGPT accounting per conversation (read = kept + each drop, exactly) and per piece;
language detection on the whole conversation's prose with code removed; FastChat's rules as options."""

import json

from instructkit.models.tiny import make_tiny_tokenizer
from instructkit.config.synth import CleanConfig
from instructkit.synth.sharegpt import clean

LONG = " ".join(f"The hero walked to village number {i} and met a friendly baker there." for i in range(30))
CODE_ES = ("```python\n# calcular el promedio de los valores de la lista y devolver el resultado redondeado\n"
           "def calcular_promedio(valores):\n    # sumar todos los elementos de la lista de valores\n"
           "    total = sum(valores)\n    # dividir entre la cantidad de elementos que tiene la lista\n"
           "    return round(total / len(valores), 2)\n```")


def conv(cid, *turns):
    return {"id": cid, "conversations": [{"from": f, "value": v} for f, v in turns]}


RECORDS = [
    conv("ok", ("human", "What is the capital city of France, and why is it famous?"),
         ("gpt", "Paris is the capital of France. It is famous for its museums, food and the Eiffel Tower.")),
    conv("too_long", ("human", "Tell me a long story " + LONG), ("gpt", "Sure, the story goes " + LONG)),
    conv("split", *[(r, f"Turn {k}: " + " ".join(["Please explain how the weather changes during summer."] * 6))
                    for k in range(6) for r in ("human", "gpt")]),
    conv("code_en", ("human", "Why does this function fail on an empty list?\n\n" + CODE_ES),
         ("gpt", "It divides by the length of the list, which is zero for an empty list, so Python raises a "
                 "ZeroDivisionError. Check for an empty list first and return None or raise a clear error.")),
    conv("fr", ("human", "Bonjour, pouvez-vous m'expliquer comment fonctionne la photosynthèse des plantes vertes ?"),
         ("gpt", "Bien sûr. La photosynthèse est le processus par lequel les plantes utilisent la lumière du soleil.")),
    conv("code_only", ("human", "```\nls -la | grep foo\n```"), ("gpt", "```\n-rw-r--r-- 1 me me 0 foo\n```")),
    conv("blocked", ("human", "Are you ChatGPT made by OpenAI? Tell me honestly please."), ("gpt", "I am an AI model.")),
    conv("short", ("human", "Hi"), ("gpt", "Hey")),
    conv("limit", ("human", "Write me a poem about the sea and the sky."),
         ("gpt", "Too many requests in 1 hour. Try again later.")),
    conv("empty", ("human", "Hello?"), ("gpt", "")),
]


def test_conversation_ledger_balances_and_pieces_are_counted_apart(tmp_path):
    p = tmp_path / "sg.json"
    p.write_text(json.dumps(RECORDS))
    cfg = CleanConfig(input=str(p), max_tokens=1000, languages=["en"], blocked_words=["openai", "chatgpt"], min_chars=16)
    items, rep = clean(cfg, make_tiny_tokenizer(), progress=False)
    c = rep.counts
    drops = {"all_turn_pairs_longer_than_max_tokens": 1, "language:fr": 1, "blocked_words": 1, "too_short": 1,
             "blocked_response": 1, "empty_message": 1}
    assert {k: c[k] for k in drops} == drops
    kept_ids = {it["id"].rsplit("_", 1)[0] if it["id"].startswith("split_") else it["id"] for it in items}
    assert kept_ids == {"ok", "split", "code_en", "code_only"} and c["kept"] == 4
    assert c["read"] == len(RECORDS) == c["kept"] + sum(drops.values())  # exact: nothing vanishes
    led = rep.extra["ledger"]
    assert led["conversations"]["dropped"] == drops and led["conversations"]["balanced"]
    assert led["pieces"]["written"] == len(items) == c["pieces_written"] and led["pieces"]["conversations_split"] == 1
    assert led["pieces"]["turn_pairs_longer_than_max_tokens"] == 1
    assert c["language_undetectable_kept"] == 1  # code only: no prose to judge, kept and counted
    md = (rep.markdown(rep.to_dict([], None)))
    assert "## Conversations: read 10 = kept 4 + dropped 6" in md


def test_fastchat_rules_are_off_unless_asked(tmp_path):
    p = tmp_path / "sg.json"
    p.write_text(json.dumps([RECORDS[6], RECORDS[7]]))
    items, rep = clean(CleanConfig(input=str(p), max_tokens=300), make_tiny_tokenizer(), progress=False)
    assert len(items) == 2 and rep.counts["blocked_words"] == 0 and rep.counts["too_short"] == 0
