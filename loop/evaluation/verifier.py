"""Checkable instructions (IFEval-like) and the rule-based verifier that scores a response against them.

The demo world's "gold" preference: a prompt carries its constraints in metadata, and the verifier's score is
the fraction of them a response satisfies. Each constraint is a small JSON-able dict {"kind": ..., params...}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_WORD = re.compile(r"[A-Za-z0-9']+")
_NUMBER = re.compile(r"\d+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _max_words(text: str, c: Mapping[str, Any]) -> bool:
    return len(_words(text)) < c["n"]


def _keyword(text: str, c: Mapping[str, Any]) -> bool:
    return c["word"].lower() in (w.lower() for w in _words(text))


def _no_letter(text: str, c: Mapping[str, Any]) -> bool:
    return c["letter"].lower() not in text.lower()


def _numbers(text: str, c: Mapping[str, Any]) -> bool:
    return len(_NUMBER.findall(text)) >= c["n"]


def _start_word(text: str, c: Mapping[str, Any]) -> bool:
    words = _words(text)
    return bool(words) and words[0].lower() == c["word"].lower()


def _end_word(text: str, c: Mapping[str, Any]) -> bool:
    words = _words(text)
    return bool(words) and words[-1].lower() == c["word"].lower()


def _no_word(text: str, c: Mapping[str, Any]) -> bool:
    return c["word"].lower() not in (w.lower() for w in _words(text))


def _title(text: str, c: Mapping[str, Any]) -> bool:
    titles = re.findall(r"<<([^<>]+)>>", text)
    # A copied placeholder is not a title.
    return any(t.strip() and t.strip().lower() not in ("title", "your title") for t in titles)


def _no_commas(text: str, c: Mapping[str, Any]) -> bool:
    return "," not in text


def _word_twice(text: str, c: Mapping[str, Any]) -> bool:
    return [w.lower() for w in _words(text)].count(c["word"].lower()) >= 2


def _all_caps(text: str, c: Mapping[str, Any]) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    return bool(letters) and all(ch.isupper() for ch in letters)


def _bullets(text: str, c: Mapping[str, Any]) -> bool:
    return sum(1 for line in text.splitlines() if line.lstrip().startswith(("* ", "- "))) == c["n"]


def _quotes(text: str, c: Mapping[str, Any]) -> bool:
    t = text.strip()
    return len(t) >= 2 and t[0] == '"' and t[-1] == '"'


CHECKS: dict[str, Callable[[str, Mapping[str, Any]], bool]] = {
    "max_words": _max_words,
    "keyword": _keyword,
    "no_letter": _no_letter,
    "numbers": _numbers,
    "start_word": _start_word,
    "end_word": _end_word,
    "no_word": _no_word,
    "title": _title,
    "no_commas": _no_commas,
    "word_twice": _word_twice,
    "all_caps": _all_caps,
    "bullets": _bullets,
    "quotes": _quotes,
}

INSTRUCTIONS: dict[str, str] = {
    "max_words": "Use fewer than {n} words.",
    "keyword": 'Include the word "{word}".',
    "no_letter": 'Do not use the letter "{letter}".',
    "numbers": "Include at least {n} numbers written as digits.",
    "start_word": 'Start your answer with the word "{word}".',
    "end_word": 'End your answer with the word "{word}".',
    "no_word": 'Do not use the word "{word}".',
    "title": "Give your answer a title in double angular brackets, like <<a title>>.",
    "no_commas": "Do not use any commas.",
    "word_twice": 'Use the word "{word}" at least twice.',
    "all_caps": "Write your whole answer in capital letters.",
    "bullets": "Answer with exactly {n} bullet points starting with '* '.",
    "quotes": "Wrap your whole answer in double quotation marks.",
}


def instruction(constraint: Mapping[str, Any]) -> str:
    return INSTRUCTIONS[constraint["kind"]].format(**constraint)


def check(response: str, constraint: Mapping[str, Any]) -> bool:
    kind = constraint.get("kind")
    if kind not in CHECKS:
        raise ValueError(f"unknown constraint kind {kind!r}; known: {', '.join(sorted(CHECKS))}")
    return CHECKS[kind](response, constraint)


def verify(response: str, constraints: Sequence[Mapping[str, Any]]) -> float:
    """Fraction of constraints satisfied (the gold reward in [0, 1])."""
    if not constraints:
        raise ValueError("no constraints to verify against")
    return sum(check(response, c) for c in constraints) / len(constraints)


def gold_by_prompt(
    constraints: Mapping[str, Sequence[Mapping[str, Any]]],
) -> Callable[[str, str], float | None]:
    """judge(prompt, response): the verifier's score against that prompt's constraints; None for a prompt
    without any (callers count those as not judged)."""

    def judge(prompt: str, response: str) -> float | None:
        found = constraints.get(prompt)
        return verify(response, found) if found else None

    return judge
