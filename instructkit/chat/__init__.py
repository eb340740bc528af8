"""Conversations and their rendering into tokens with loss masks."""

from instructkit.chat.conversation import ROLES, Conversation, Message
from instructkit.chat.render import IGNORE_INDEX, Rendered, Renderer, render

__all__ = ["ROLES", "Conversation", "Message", "IGNORE_INDEX", "Rendered", "Renderer", "render"]
