"""The arena in a real browser: headless Chromium (the distribution's package) driven by Playwright.

Log in, chat in the playground (the reply streams in pieces; copy, regenerate, clear), a multi-turn battle
on the tiny model with two adapters (both panes stream at once), a second browser session battling and
voting at the same moment, names revealed only after the vote, the leaderboard updated. Skips with a
message where Playwright or a Chromium executable is missing. Screenshots go to the test's tmp folder, and
to docs/img when INSTRUCTKIT_SCREENSHOTS=1 (how the ones in docs/serve.md were made).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.unit.serve.ui.conftest import KEY

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
if CHROMIUM is None:
    pytest.skip("no Chromium executable on PATH (apt-get install chromium)", allow_module_level=True)

DOCS_IMG = Path(__file__).resolve().parents[4] / "docs" / "img"
MODELS = {"tiny", "ada", "bob"}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        except Exception as e:  # a Chromium that cannot start here (missing libraries, ...)
            pytest.skip(f"Chromium at {CHROMIUM} could not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


def _shot(page, tmp_path: Path, name: str, **kw) -> None:
    out = tmp_path / f"arena-{name}.png"
    page.screenshot(path=str(out), **kw)
    if os.environ.get("INSTRUCTKIT_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, DOCS_IMG / out.name)


def _open(browser, base: str):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = ctx.new_page()
    page.set_default_timeout(45_000)
    page.goto(base + "/")
    assert page.url.endswith("/ui/login")  # not logged in: the login page, nothing else
    page.fill("#key", KEY)
    page.click("#login")
    page.wait_for_selector("body[data-ready='1']")
    return ctx, page


def _until(page, js: str, timeout_s: float = 45.0) -> None:
    """Poll a JS expression (page.wait_for_function compiles strings with eval, which the page's CSP forbids)."""
    t0 = time.time()
    while not page.evaluate(js):
        assert time.time() - t0 < timeout_s, f"timed out waiting for {js}"
        time.sleep(0.05)


def _battle_turn(page, prompt: str, turn: int) -> None:
    page.fill("#bt-input", prompt)
    page.press("#bt-input", "Enter")
    for side in (0, 1):  # both panes stream: each reply arrives in several pieces
        page.wait_for_selector(f"#bt-log-{side} .msg.assistant:nth-of-type({2 * turn})[data-state='done']")
    _until(page, f"document.querySelector('#bt-status').textContent.startsWith('Turn {turn}')")


def _chunks(page, sel: str) -> list[int]:
    return page.eval_on_selector_all(sel, "els => els.map(e => Number(e.dataset.chunks))")


def test_arena_in_a_browser(arena, browser, tmp_path):
    base, log = arena.base, arena.arena.votes
    n0 = len(log)
    ctx, page = _open(browser, base)

    # -- playground: pick an adapter, a system prompt, stream, copy, regenerate, clear
    page.select_option("#pg-model", "ada")
    page.fill("#pg-system", "You are a concise movie critic.")
    page.fill("#pg-max_tokens", "16")
    page.fill("#pg-input", "Write a review of the movie")
    page.press("#pg-input", "Enter")
    page.wait_for_selector("#pg-log .msg.user")
    reply = page.wait_for_selector("#pg-log .msg.assistant[data-state='done']")
    first = reply.query_selector(".text").text_content()
    assert first and _chunks(page, "#pg-log .msg.assistant")[0] > 1
    reply.hover()
    reply.query_selector(".copy").click()
    _until(page, "document.querySelector('#pg-log .copy').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == first
    _shot(page, tmp_path, "playground")
    page.eval_on_selector("#pg-log .msg.assistant", "e => { e.dataset.old = '1'; }")
    page.click("#pg-regen")
    page.wait_for_selector("#pg-log .msg.assistant:not([data-old])[data-state='done']")
    assert page.locator("#pg-log .msg.assistant").count() == 1 and page.locator("#pg-log .msg.user").count() == 1
    page.click("#pg-clear")
    assert page.locator("#pg-log .msg").count() == 0

    # -- battle: two turns, names hidden until the vote
    page.click("#tab-battle")
    page.click("details.params summary")
    page.fill("#bt-max_tokens", "12")
    _battle_turn(page, "Which number is larger, seven or nine?", 1)
    _battle_turn(page, "Why?", 2)
    assert min(_chunks(page, ".side .msg.assistant")) > 1
    assert page.text_content("#bt-name-0") == "Model A" and page.text_content("#bt-name-1") == "Model B"
    # no model name anywhere in the battle's page, replies aside (the tiny model's gibberish may spell one)
    html = page.evaluate("() => { const c = document.querySelector('#battle').cloneNode(true);"
                         " c.querySelectorAll('.msg').forEach(m => m.remove()); return c.innerHTML; }")
    assert not any(m in html for m in MODELS)
    _shot(page, tmp_path, "battle")

    # -- a second browser session battles too; both vote at the same moment
    ctx2, page2 = _open(browser, base)
    page2.click("#tab-battle")
    page2.click("details.params summary")
    page2.fill("#bt-max_tokens", "8")
    _battle_turn(page2, "Tell me about water.", 1)
    page.click("#vote-a", no_wait_after=True)
    page2.click("#vote-tie", no_wait_after=True)
    names = []
    for p in (page, page2):
        p.wait_for_selector("#bt-name-1.revealed")
        a, b = p.text_content("#bt-name-0"), p.text_content("#bt-name-1")
        assert a.startswith("Model A: ") and b.startswith("Model B: ")
        names.append((a[len("Model A: "):], b[len("Model B: "):]))
        assert p.is_disabled("#vote-b") and p.is_disabled("#bt-send")  # one vote per battle
    assert all(set(n) <= MODELS and n[0] != n[1] for n in names)
    _shot(page, tmp_path, "battle-voted")
    assert len(log) == n0 + 2
    recs = [json.loads(x) for x in log.path.read_text().splitlines()[-2:]]  # as written to disk
    assert sorted(r["winner"] for r in recs) == ["model_a", "tie"]
    assert {(r["model_a"], r["model_b"]) for r in recs} == set(names)
    assert len({r["session"] for r in recs}) == 2 and len({r["battle_id"] for r in recs}) == 2
    mine = next(r for r in recs if r["winner"] == "model_a")
    assert mine["turn"] == 2 and mine["conversation_a"][2]["content"] == "Why?"

    # -- the leaderboard shows the new votes
    page.click("#tab-leaderboard")
    page.wait_for_selector(f"#lb-table[data-votes='{n0 + 2}']")
    _until(page, "document.querySelector('#lb-winrate').complete && "
                 "document.querySelector('#lb-winrate').naturalWidth > 0")
    for m in MODELS:
        shown = int(page.text_content(f"#lb-table tr[data-model='{m}'] td:nth-child(5)"))
        assert shown == sum(m in (r["model_a"], r["model_b"]) for r in log.records)
    _shot(page, tmp_path, "leaderboard", full_page=True)

    # -- a new round clears both panes and hides the names again
    page.click("#tab-battle")
    page.click("#bt-new")
    assert page.locator(".side .msg").count() == 0 and page.text_content("#bt-name-0") == "Model A"
    assert not page.is_disabled("#bt-send")
    ctx2.close()
    ctx.close()
