"""Text rules of ShareGPT cleaning: which messages are HTML, their conversion, code stripping, FastChat's rules.

ShareGPT's scrape stored the assistant's *rendered* answer as HTML (``<div class="markdown prose"><p>..``);
later dumps (V3 "cleaned") are already markdown, where the only tags are inside code people wrote
(``$output = '<div id="fb-root"></div>';``). Running ``markdownify`` on such a message deletes the tags
from the code, flattens its indentation and escapes every ``_``. So a message is converted only when it
*is* HTML: outside code (fenced, indented, inline) it starts with a block tag and ends with a closing tag,
and it holds no markdown code fence (a fence means it is markdown already).
"""

from __future__ import annotations

import re

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_CODE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_BLOCK_START = re.compile(r"\A\s*<(div|p|ol|ul|pre|table|h[1-6]|blockquote|dl)\b[^>]*>", re.I)
_CLOSE_END = re.compile(r"</[a-z][a-z0-9]*\s*>\s*\Z", re.I)
_TAG = re.compile(r"</?[a-z][a-z0-9]*\b[^>]*>", re.I)

# FastChat clean_sharegpt.html_to_markdown: the scrape's noise around code blocks and regenerations
_DIV = re.compile("<div.*?>")
_SPAN = re.compile("<span.*?>")
_CODE_LANG = re.compile(r"```\s*(.*?)(?:Copy code)+(.+?)\s*?```", re.S)
_REGENERATE = re.compile(r"\d+ / \d+")
_COPY_CHARS = re.compile(r"Copy\d+ chars / \d+ words")
_COPY_CODE = re.compile(r"```(.*?)Copy code\s*```")


def split_code(text: str) -> list[tuple[bool, str]]:
    """``[(is_code, chunk)]`` by lines: fenced blocks (``` or ~~~, closed by the same fence or the end) and
    indented blocks (4 spaces or a tab after a blank line, as CommonMark); everything else is prose."""
    out: list[tuple[bool, str]] = []
    lines = text.split("\n")
    i, prev_blank = 0, True
    while i < len(lines):
        line = lines[i]
        m = _FENCE_OPEN.match(line)
        if m:
            fence, j = m.group(1), i + 1
            while j < len(lines) and not (lines[j].lstrip().startswith(fence[0] * len(fence))
                                          and not lines[j].strip().strip(fence[0])):
                j += 1
            out.append((True, "\n".join(lines[i: j + 1])))
            i, prev_blank = j + 1, False
            continue
        if prev_blank and line.strip() and (line.startswith("    ") or line.startswith("\t")):
            j = i
            while j < len(lines) and (not lines[j].strip() or lines[j].startswith(("    ", "\t"))):
                j += 1
            out.append((True, "\n".join(lines[i:j])))
            i, prev_blank = j, False
            continue
        out.append((False, line))
        prev_blank = not line.strip()
        i += 1
    return out


def has_fence(text: str) -> bool:
    return any(_FENCE_OPEN.match(x) for x in text.split("\n"))


def prose(text: str) -> str:
    """The text with every code block and inline code span removed (for language detection, HTML tests)."""
    return _INLINE_CODE.sub(" ", "\n".join(c for is_code, c in split_code(text) if not is_code))


def is_html(text: str) -> bool:
    """True when the message is an HTML document (a scraped rendering), not markdown with code in it."""
    if "<" not in text or has_fence(text):
        return False
    p = prose(text).strip()
    return bool(_BLOCK_START.match(p) and _CLOSE_END.search(p))


def has_tag_outside_code(text: str) -> bool:
    """A tag-like string in prose (counted when left alone, so the report shows what was not converted)."""
    return bool(_TAG.search(prose(text)))


def html_to_markdown(val: str) -> str:
    """FastChat's conversion, with ``markdownify`` told not to escape ``_``/``*`` (a model trained on
    ``snake\\_case`` writes backslashes) and headings as ``#``."""
    from markdownify import markdownify

    val = _SPAN.sub("", _DIV.sub("", val))  # FastChat: keeps indentation and underscores inside <pre> code
    val = markdownify(val, heading_style="ATX", escape_underscores=False, escape_asterisks=False,
                      escape_misc=False).strip()
    val = _CODE_LANG.sub("```\\g<1>\n\\g<2>\n```", val)
    noise = _REGENERATE.search(val)
    if noise and noise.start() == 0:
        val = val[noise.end():]
    val = _COPY_CODE.sub("", _COPY_CHARS.sub("", val))
    return val.replace("\n\n\n", "\n").strip()


def blocked_word(text: str, words: list[str]) -> str | None:
    """FastChat's blocked-words rule: the first word found (case-insensitive substring), or None."""
    low = text.lower()
    return next((w for w in words if w.lower() in low), None)
