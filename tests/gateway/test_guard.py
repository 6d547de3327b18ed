"""The runaway-repetition guard (pure): loops it cuts and where, near-misses it keeps, and the
same verdict for a whole answer as for any split of it into streamed deltas."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import msgspec
import pytest

from tiergate_gateway.guard import GuardSettings, RepetitionGuard, Trip, TripKind, check_text

DEFAULT = GuardSettings()

REAL_LOOP = "The TiEgate server uses a custom configuration to decide which model answers. "
INTRO = (
    "Good question! Routing is decided per request, before any engine is woken. "
    "Here is what happens:\n\n"
)
A, B = "The cache is warm again. ", "The queue is short today. "
C, D = "Requests wait for a slot. ", "Answers stream back at once. "
FRENCH = "Le serveur choisit le modèle qui répond à chaque question. "
GERMAN = "Der Server wählt für jede Anfrage das passende Modell aus. "
CHINESE = "我们是好朋友"
JAPANESE = "これはテストの文です。"
FENCE = "```python\n"
APPEND = "    x.append(0)\n"


@dataclass(frozen=True)
class Loop:
    id: str
    text: str
    kind: TripKind
    kept: str
    """`text[:end]`: everything up to the copy that proved the loop."""


LOOPS = [
    Loop("real model loop", REAL_LOOP * 5, "sentence", (REAL_LOOP * 3).rstrip()),
    Loop(
        "real loop cut on the third copy", REAL_LOOP * 3 + "The", "sentence", (REAL_LOOP * 3)[:-1]
    ),
    Loop("after normal text", INTRO + REAL_LOOP * 5, "sentence", INTRO + (REAL_LOOP * 3).rstrip()),
    Loop("cycle of two sentences", (A + B) * 4, "sentence", ((A + B) * 3).rstrip()),
    Loop(
        "cycle of four sentences", (A + B + C + D) * 4, "sentence", ((A + B + C + D) * 3).rstrip()
    ),
    Loop(
        "case, spacing and end marks differ",
        "Restart the server. restart  the SERVER.\nRestart the server!  And again",
        "sentence",
        "Restart the server. restart  the SERVER.\nRestart the server!",
    ),
    Loop(
        "closing quote after the end mark",
        'He said "stop the loop." ' * 4,
        "sentence",
        ('He said "stop the loop." ' * 3).rstrip(),
    ),
    Loop(
        "numbered list items",
        "1. Install the package.\n2. Install the package.\n3. Install the package.\n4. Install",
        "sentence",
        "1. Install the package.\n2. Install the package.\n3. Install the package.",
    ),
    Loop(
        "bullets of both kinds",
        "- Restart the server.\n* Restart the server.\n- Restart the server.\n- Restart",
        "sentence",
        "- Restart the server.\n* Restart the server.\n- Restart the server.",
    ),
    Loop("french", FRENCH * 5, "sentence", (FRENCH * 3).rstrip()),
    Loop("german", GERMAN * 5, "sentence", (GERMAN * 3).rstrip()),
    Loop("japanese with end marks", JAPANESE * 5, "sentence", JAPANESE * 3),
    Loop(
        "line without punctuation",
        "Paris is the capital\n" * 6,
        "line",
        ("Paris is the capital\n" * 4).rstrip("\n"),
    ),
    Loop(
        "numbered lines without punctuation",
        "".join(f"{i}. Paris is the capital\n" for i in range(1, 7)),
        "line",
        "".join(f"{i}. Paris is the capital\n" for i in range(1, 5)).rstrip("\n"),
    ),
    Loop(
        "cycle of two lines, blank lines between",
        "Paris is the capital\n\nLyon is a city\n\n" * 5,
        "line",
        ("Paris is the capital\n\nLyon is a city\n\n" * 4).rstrip("\n"),
    ),
    Loop(
        "fenced code line, past ten copies",
        FENCE + APPEND * 14 + "```\n",
        "line",
        FENCE + (APPEND * 10).rstrip("\n"),
    ),
    Loop(
        "table row",
        "| a | b |\n|---|---|\n" + "| 1 | Paris |\n" * 12,
        "line",
        "| a | b |\n|---|---|\n" + ("| 1 | Paris |\n" * 10).rstrip("\n"),
    ),
    Loop(
        "run-on n-gram",
        "So " + "and then the model " * 10,
        "ngram",
        "So " + ("and then the model " * 5).rstrip(),
    ),
    Loop("chinese phrase without spaces", CHINESE * 10, "ngram", CHINESE * 5),
    Loop("word run", "This is very " + "very " * 10, "token_run", "This is" + " very" * 8),
    Loop("word run with commas", "no, " * 12, "token_run", "no, " * 7 + "no"),
    Loop("punctuation run", "Wow" + "!" * 300, "char_run", "Wow" + "!" * 160),
    Loop("letter run", "a" * 500, "char_run", "a" * 160),
    Loop("blank lines forever", "Done.\n" + "\n" * 300, "char_run", "Done.\n" + "\n" * 159),
]


@pytest.mark.parametrize("loop", LOOPS, ids=[loop.id for loop in LOOPS])
def test_loops_are_cut(loop: Loop) -> None:
    trip = check_text(loop.text, DEFAULT)
    assert trip is not None
    assert (trip.kind, loop.text[: trip.end]) == (loop.kind, loop.kept)


@pytest.mark.parametrize(
    "sentence", [REAL_LOOP, FRENCH, GERMAN, A], ids=["english", "french", "german", "short"]
)
def test_sentence_loop_keeps_at_most_three_copies(sentence: str) -> None:
    text = "Sure. " + sentence * 8
    trip = check_text(text, DEFAULT)
    assert trip is not None
    assert trip.kind == "sentence"
    assert text[: trip.end].count(sentence.strip()) == 3


PROSE = """\
Tiergate is a gateway that sits between the clients of a service and the engines that run \
its language models. Every request passes through it in the same order: the caller is \
identified, the policy of the caller's tier is applied, and only then is a model chosen. \
The order matters, because a request that is refused should never wake a sleeping GPU or \
reach an engine at all.

The choice of the model is a pure function of the request and of the state of the \
backends. A small model on the CPU answers most of the anonymous traffic, while the larger \
models on the GPU are kept for the users who signed in and for the agents that need tools. \
When the GPU is asleep, the gateway decides whether the request can wait for it to wake, or \
whether the small model should answer at once. The state of each backend is read from the \
shared store, so that all the replicas of the gateway make the same decision.

Limits are counted per subject and per tier. The number of requests in a window of time, \
the number of tokens and the number of streams in flight are each checked before the \
request is admitted, and each is settled when the answer ends, whether it ends well, with \
an error, or because the client went away. The counts of the tokens are corrected to the \
usage that the engine reports, so that a short answer does not use up the budget of a long \
one.

Most of the work of the gateway is in the relay of the streamed answer. The chunks of the \
engine are forwarded as they come, without buffering, and the fields that the engine adds \
but the clients do not expect are dropped on the way. If the engine stalls for too long, \
the stream is ended with a clear error rather than left hanging. The design of each part is \
described in a short document next to the code, with a table of the modules and a diagram \
of the flow of one request from the socket to the engine and back.
"""

POEM = """\
The river runs beneath the hill,
Sing low, sing low, the night is still.
The lanterns sway along the shore,
Sing low, sing low, the night is still.
Sing low, sing low, the night is still.
And morning finds us at the door.

Sing low, sing low, the night is still,
The river runs beneath the hill.
"""

TABLE = """\
| Tier | Model | Tools | Streaming | Limit |
|------|-------|-------|-----------|-------|
| anonymous | small | no | yes | 300 |
| user | small | yes | yes | 1024 |
| user | large | yes | yes | 1024 |
| agent | large | yes | yes | 4096 |

| Feature | A | B | C | D | E | F | G | H | I |
|---|---|---|---|---|---|---|---|---|---|
| Streaming | yes | yes | yes | yes | yes | yes | yes | yes | yes |
| Tools | yes | yes | yes | yes | yes | yes | yes | yes | no |
| | | | | | | | | | |
| | | | | | | | | | |
"""

CODE = """\
Pad the list with zeros:

```python
def pad(x):
    x.append(0)
    x.append(0)
    x.append(0)
    print("-" * 40)
    print(x)
    print("-" * 40)
    print("-" * 40)
    return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
```

And in JavaScript:

```js
function walk(a) {
  if (a) {
    for (const b of a) {
      if (b) {
        log(b);
      }
    }
  }
}
}
}
}
```
"""

NEAR_MISSES = {
    "numbered list sharing words": (
        "1. Install the package.\n2. Install the config.\n3. Install the service.\n"
        "4. Install the timer.\n5. Install the hook.\n"
    ),
    "list numbers change": "".join(f"Row {i} of 6 is ready.\n" for i in range(1, 7)),
    "markdown table": TABLE,
    "fenced code": CODE,
    "poem with refrain": POEM,
    "rules and underlines": (
        "Setup\n=====\n\nInstall it.\n\n---\n\nUsage\n=====\n\nRun it.\n\n---\n\n***\n\n---\n"
    ),
    "ellipsis and laughter": "Well... ha ha ha. No, no, no. Wait... Hmm... ha ha ha ha!",
    "short sentences": "Yes. Yes. Yes. I see. I see. I see. Thank you! Thank you!",
    "a sentence twice": REAL_LOOP * 2,
    "prose": PROSE,
    "prose in french and german": (
        "Le serveur choisit le modèle. Ensuite, il transmet la réponse au client sans attendre "
        "la fin. Si le modèle ne répond pas, il essaie le suivant.\n"
        "Der Server wählt das Modell. Danach leitet er die Antwort weiter, ohne auf das Ende "
        "zu warten. Antwortet das Modell nicht, versucht er das nächste.\n"
    ),
    "chinese prose": (
        "网关位于客户端和模型引擎之间。每个请求先确认调用者的身份\uff0c再应用该层级的策略\uff0c"
        "然后才选择模型。被拒绝的请求不会唤醒正在休眠的显卡。哈哈哈\uff0c这是一个好问题。"
    ),
    "japanese prose": "これはテストです。ゲートウェイはモデルを選びます。はい、はい、はい。",
    "long lines and words": ("x" * 40 + "y" * 40 + " ") * 30 + "\n" + "abc" * 700,
}


@pytest.mark.parametrize("text", list(NEAR_MISSES.values()), ids=list(NEAR_MISSES))
def test_near_misses_are_kept(text: str) -> None:
    assert check_text(text, DEFAULT) is None


def test_prose_is_long_enough() -> None:
    assert len(PROSE) >= 1500
    assert PROSE.count(" of the ") >= 8


PIECES = [
    *"ab  ..\n\n1|`!-我。é",
    "the ",
    "1. ",
    "```\n",
    "| a |",
    "x.append(0)\n",
    "Install the package. ",
    "...",
    "\t",
    "zzzzz",
    "!!!!!",
]
LINE_PIECES = ["ab\n", "x.append(0)\n", "```\n", "| a |\n", "1. b.\n", "- ab\n", "\n", "}\n", "c"]


def _fuzz_texts(count: int, pieces: list[str], seed: int) -> list[str]:
    """Random texts from the pieces the rules care about; loops are likely."""
    rng = random.Random(seed)
    return ["".join(rng.choices(pieces, k=rng.randint(1, 400))) for _ in range(count)]


FUZZ = _fuzz_texts(60, PIECES, 7) + _fuzz_texts(30, LINE_PIECES, 8)
TIGHT = GuardSettings(
    sentence_repeats=2,
    min_sentence_words=1,
    line_repeats=2,
    code_line_repeats=3,
    ngram_repeats=2,
    ngram_min_tokens=3,
    token_run=3,
    char_run=8,
)
ALL_TEXTS = [loop.text for loop in LOOPS] + list(NEAR_MISSES.values()) + FUZZ


def _split(text: str, rng: random.Random) -> list[str]:
    deltas, at = [], 0
    while at < len(text):
        size = rng.choice((1, 1, 2, 3, 4, 4, 5, 8, 13))
        deltas.append(text[at : at + size])
        at += size
    return deltas


def _stream(deltas: list[str], settings: GuardSettings) -> Trip | None:
    """Feed `deltas`; check the trip lands in the delta that reported it and then stays."""
    guard, fed, trip = RepetitionGuard(settings), 0, None
    for delta in deltas:
        result = guard.feed(delta)
        if trip is None and result is not None:
            assert fed <= result.end <= fed + len(delta)
            trip = result
        assert result is trip
        assert guard.tripped is trip
        fed += len(delta)
    return trip


@pytest.mark.parametrize("settings", [DEFAULT, TIGHT], ids=["default", "tight"])
def test_any_split_gives_the_whole_texts_verdict(settings: GuardSettings) -> None:
    rng = random.Random(1234)
    trips = 0
    for text in ALL_TEXTS:
        whole = check_text(text, settings)
        trips += whole is not None
        assert _stream(list(text), settings) == whole, text
        for _ in range(12):
            assert _stream(_split(text, rng), settings) == whole, text
    assert trips >= len(LOOPS)  # the fuzz texts trip too, so splits are compared on trips


def test_fuzz_texts_trip_every_kind() -> None:
    kinds = {trip.kind for text in FUZZ if (trip := check_text(text, TIGHT)) is not None}
    assert kinds == {"sentence", "line", "ngram", "token_run", "char_run"}


def test_tripped_guard_stays_tripped() -> None:
    guard = RepetitionGuard(DEFAULT)
    assert guard.tripped is None
    assert guard.feed(REAL_LOOP * 2) is None
    assert guard.feed(REAL_LOOP.rstrip()) is None  # certain only when the next character comes
    trip = guard.feed(" Then")
    assert trip == Trip("sentence", len(REAL_LOOP) * 3 - 1)
    assert guard.feed("completely different text. " * 3) is trip
    assert guard.feed("") is trip
    assert guard.tripped is trip


def test_disabled_guard_never_trips() -> None:
    off = GuardSettings(enabled=False)
    assert all(check_text(loop.text, off) is None for loop in LOOPS)
    guard = RepetitionGuard(off)
    assert [guard.feed(REAL_LOOP) for _ in range(5)] == [None] * 5


def test_thresholds_are_settings() -> None:
    looser = GuardSettings(sentence_repeats=4, char_run=400)
    text = REAL_LOOP * 5
    trip = check_text(text, looser)
    assert trip is not None
    assert text[: trip.end].count(REAL_LOOP.strip()) == 4
    assert check_text("!" * 300, looser) is None


def test_settings_load_from_a_tier_table() -> None:
    settings = msgspec.toml.decode(b"enabled = true\nline_repeats = 6\n", type=GuardSettings)
    assert settings.line_repeats == 6
    assert settings.sentence_repeats == DEFAULT.sentence_repeats


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"sentence_repeat": 3}, "Object contains unknown field `sentence_repeat`"),
        ({"sentence_repeats": 1}, "Expected `int` >= 2 - at `$.sentence_repeats`"),
        ({"char_run": 2}, "Expected `int` >= 8 - at `$.char_run`"),
        ({"enabled": "yes"}, "Expected `bool`, got `str` - at `$.enabled`"),
    ],
    ids=["misspelt", "below bound", "char run too short", "wrong type"],
)
def test_bad_settings_name_the_field(table: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(message)):
        msgspec.convert(table, GuardSettings)
