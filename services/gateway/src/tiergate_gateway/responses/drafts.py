"""Output items still being streamed: what was generated so far, and the item it makes.

A draft belongs to one stream translator; `item(status)` is the output item with everything
received up to now, for `output_item.done`, the final `Response`, or the partial output of a
failed one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tiergate_proto.openai import (
    FunctionCallItem,
    ItemStatus,
    OutputContentPart,
    OutputMessage,
    OutputRefusalPart,
    OutputTextPart,
    ReasoningItem,
    ReasoningTextPart,
)

__all__ = ["CallDraft", "MessageDraft", "PartKind", "ReasoningDraft", "content_part"]

PartKind = Literal["output_text", "refusal"]
"""The two kinds of content part an output message has."""


def content_part(kind: PartKind, text: str) -> OutputContentPart:
    """An `output_text` or `refusal` part holding `text`."""
    return OutputTextPart(text=text) if kind == "output_text" else OutputRefusalPart(refusal=text)


@dataclass(slots=True)
class MessageDraft:
    """An assistant message: its parts in order, each a kind and the pieces of its text."""

    item_id: str
    output_index: int
    parts: list[tuple[PartKind, list[str]]] = field(default_factory=list)

    def part_text(self, index: int) -> str:
        """The text of part `index` so far."""
        return "".join(self.parts[index][1])

    def item(self, status: ItemStatus) -> OutputMessage:
        """The message with every part received so far."""
        content = [content_part(kind, "".join(pieces)) for kind, pieces in self.parts]
        return OutputMessage(id=self.item_id, role="assistant", status=status, content=content)


@dataclass(slots=True)
class ReasoningDraft:
    """A reasoning item: the pieces of its one `reasoning_text` part."""

    item_id: str
    output_index: int
    pieces: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The thinking so far."""
        return "".join(self.pieces)

    def item(self, status: ItemStatus) -> ReasoningItem:
        """The reasoning item with the thinking so far."""
        return ReasoningItem(
            id=self.item_id, content=[ReasoningTextPart(text=self.text())], status=status
        )


@dataclass(slots=True)
class CallDraft:
    """A function call: ids, the name, the pieces of the arguments text."""

    item_id: str
    output_index: int
    call_id: str
    name: str
    pieces: list[str] = field(default_factory=list)

    def item(self, status: ItemStatus) -> FunctionCallItem:
        """The call with the arguments so far."""
        return FunctionCallItem(
            id=self.item_id,
            call_id=self.call_id,
            name=self.name,
            arguments="".join(self.pieces),
            status=status,
        )
