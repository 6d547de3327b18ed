"""`classify()` as a table: classes, and languages with the real detector."""

from __future__ import annotations

from typing import Any

import pytest

from tiergate_gateway.routing.classify import Workload, classify, last_user_text
from tiergate_gateway.routing.language import LanguageDetection

DETECTOR = LanguageDetection(["en", "de", "fr", "es", "it", "nl", "pt"])


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


IMAGE = {
    "model": "m",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ],
}
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (ask("Hello, how are you today?"), "chat"),
        (IMAGE, "vision"),
        ({**IMAGE, "tools": TOOLS}, "vision"),  # an image cannot go to a text-only model
        (ask("What's the weather in Paris?", tools=TOOLS), "tools"),
        (ask("Weather?", functions=[{"name": "f"}]), "tools"),
        (ask("List three colours.", response_format={"type": "json_object"}), "json"),
        (ask("Person", response_format={"type": "json_schema", "json_schema": {}}), "json"),
        (ask("Answer plainly.", response_format={"type": "text"}), "chat"),
        (ask("Why does this fail?\n```python\nprint(1/0)\n```"), "code"),
        (ask("Write a Python function that reverses a list."), "code"),
        (ask("def add(a, b):\n    return a + b\nwhat is wrong here"), "code"),
        (ask("SELECT name FROM users WHERE id = 1 -- is this safe?"), "code"),
        (ask("Schreib mir eine Funktion, die eine Liste sortiert."), "code"),
        (ask("Write a short story about a lighthouse keeper."), "creative"),
        (ask("Compose a haiku about autumn rain."), "creative"),
        (ask("Schreib ein Gedicht über den Herbst."), "creative"),
        (ask("Écris un poème sur la mer."), "creative"),
        (ask("Explain how tides work."), "chat"),
        (ask("Why does my C++ build fail on templates?"), "code"),
        (ask("Is C# faster than Java here?"), "code"),
        (ask("My unit tests are flaky, what could cause that?"), "code"),
        (ask("Here is the stack trace I got."), "code"),
        (ask("Wie lerne ich Programmieren am besten?"), "code"),
        (ask("x = compute();\nprint(x);"), "code"),
        (ask("const f = (a) => a * 2"), "code"),
        (ask("Tell me a fairy tale about a fox."), "creative"),
        (ask("Raconte-moi une histoire de pirates."), "creative"),
        (ask("She is a class act; I admire her."), "chat"),  # no code shape, no ask
        (ask("Where does the word 'story' come from?"), "creative"),  # keyword, as before
        (ask("I am a Pythonista at heart, but tell me about tides."), "chat"),  # whole words
        ({"model": "m", "messages": []}, "chat"),
        ({"model": "m", "messages": "nonsense"}, "chat"),
    ],
)
def test_classes(raw: dict[str, Any], kind: str) -> None:
    assert classify(raw).kind == kind


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Kannst du mir bitte erklären, wie die Gezeiten an der Nordsee entstehen?", "de"),
        ("Schreib mir eine kurze Geschichte über einen Fuchs im Winter.", "de"),
        ("Peux-tu m'expliquer comment fonctionne la photosynthèse chez les plantes ?", "fr"),
        ("Écris un poème sur la mer et les bateaux qui rentrent au port.", "fr"),
        ("Could you explain how the tides work along the North Sea coast?", "en"),
        ("¿Cuál es la mejor manera de aprender a tocar la guitarra?", "es"),
        ("hallo", "und"),  # too short to tell
        ("", "und"),
    ],
)
def test_languages(text: str, language: str) -> None:
    assert classify(ask(text), DETECTOR.detect).language == language


def test_language_of_code_questions_ignores_the_code() -> None:
    raw = ask("Warum stürzt dieses Programm ab, wenn die Liste leer ist?\n```python\nx = []\n```")
    workload = classify(raw, DETECTOR.detect)
    assert workload == Workload("code", "de")
    assert workload.header == "code; lang=de"


def test_last_user_turn_decides() -> None:
    raw = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "Write a poem about rain."},
            {"role": "assistant", "content": "Rain falls..."},
            {"role": "user", "content": [{"type": "text", "text": "Now explain the water cycle."}]},
        ],
    }
    assert last_user_text(raw) == "Now explain the water cycle."
    assert classify(raw).kind == "chat"
    assert classify(raw).header == "chat"
