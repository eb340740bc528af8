"""Tool turns with SmolLM2's real tokenizer: its own template cannot, the shipped chatml_tools can."""

import pytest

from instructkit.chat import Conversation, render
from instructkit.chat.template_check import check_template
from instructkit.errors import InstructkitError

pytestmark = pytest.mark.integration


def test_smollm2_tool_masks_token_by_token(smollm2_tokenizer):
    from tests.unit.chat.test_tool_masks import MSGS, TOOLS, check_token_by_token
    conv = Conversation.from_messages(MSGS, tools=TOOLS)
    check_token_by_token(smollm2_tokenizer, conv)
    with pytest.raises(InstructkitError, match="chatml_tools"):
        render(conv, smollm2_tokenizer)


def test_template_check_smollm2(smollm2_tokenizer):
    own = {c.name: c for c in check_template(smollm2_tokenizer)}
    assert not own["tools_rendered"].ok and not own["tool_calls_without_content"].ok
    assert "NoneType" in own["tool_calls_without_content"].detail  # the Jinja error on content: null
    assert own["assistant_mask"].ok and own["eot_in_mask"].ok and own["prefix_stable"].ok
    shipped = check_template(smollm2_tokenizer, "chatml_tools")
    assert all(c.ok for c in shipped), [c for c in shipped if not c.ok]
