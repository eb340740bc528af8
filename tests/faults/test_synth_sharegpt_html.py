"""Issue #24 item 8: HTML -> markdown only for messages that are HTML, never code inside markdown."""

import json

from instructkit.models.tiny import make_tiny_tokenizer
from instructkit.config.synth import CleanConfig
from instructkit.synth.sharegpt import clean

PHP = ("Add the SDK before the closing body tag:\n\n```php\n$output = '<div id=\"fb-root\"></div>';\n"
       "if ($user_id) {\n    echo $output;\n}\n```\n\nThen call `init_sdk()` from my_module.")
INDENTED = ("Use this template:\n\n    <div class=\"card\">\n        <span>{{ user_name }}</span>\n    </div>\n\n"
            "and keep the file_name as it is.")
UNDERSCORES = "Rename <b>max_len</b> to max_length in config_file.py and rerun."
PASTED = '<div id="app"><p>{{ first_name }}</p></div>'  # a user pasting HTML code, no fence
SCRAPED = ('<div class="markdown prose"><p>Use <code>snake_case</code> names like max_len:</p>'
           '<pre><code>def f(a_b):\n    return a_b * 2\n</code></pre></div>')


def _run(tmp_path, *pairs):
    recs = [{"id": f"c{i}", "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
            for i, (q, a) in enumerate(pairs)]
    p = tmp_path / "sg.json"
    p.write_text(json.dumps(recs))
    items, rep = clean(CleanConfig(input=str(p), max_tokens=4096), make_tiny_tokenizer(), progress=False)
    return {it["id"]: it["messages"] for it in items}, rep


def test_code_and_markdown_messages_are_left_byte_identical(tmp_path):
    out, rep = _run(tmp_path, ("How do I add the Facebook SDK?", PHP), ("Give me a card template.", INDENTED),
                    ("What should I rename?", UNDERSCORES), (PASTED, "That template prints the first name."))
    assert out["c0"][1]["content"] == PHP            # '<div id="fb-root"></div>' kept, indentation kept
    assert out["c1"][1]["content"] == INDENTED       # indented code: not flattened, no tag removed
    assert out["c2"][1]["content"] == UNDERSCORES    # no '\_' anywhere
    assert out["c3"][0]["content"] == PASTED         # user's pasted HTML is code, not a scrape
    assert rep.counts["html_converted_messages"] == 0
    assert rep.counts["tags_in_prose_left_as_is"] >= 2  # counted, so the report shows what was not converted


def test_a_scraped_html_answer_is_converted_keeping_code(tmp_path):
    out, rep = _run(tmp_path, ("How do I name things in Python?", SCRAPED))
    md = out["c0"][1]["content"]
    assert rep.counts["html_converted_messages"] == 1
    assert "<p>" not in md and "<div" not in md and "\\_" not in md
    assert "`snake_case`" in md and "max_len" in md
    assert "def f(a_b):\n    return a_b * 2" in md  # the code block keeps its indentation and underscores
