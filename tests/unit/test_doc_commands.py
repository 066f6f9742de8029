"""Every command block in the docs is run by a test or marked as not run.

The convention (also stated in docs/README.md): a command block is a fenced (```) or indented (four spaces, after
a blank line) code block in README.md or docs/*.md with a line that starts with a command (a word of COMMANDS,
or a path ending in /python, after an optional `$ ` prompt and VAR=value assignments). Each one is either

- run by a test: RUN_BY maps (doc, the block's first command line) to the file that runs it and a name that
  file contains (the test function; for CI's script, the line itself), or
- marked: the last non-blank line before it is a comment starting `<!-- not run by tests` (the reason after a
  colon).

A block that is neither fails, and so does a RUN_BY entry whose block or runner is gone. RUN_BY lists only tests
that really run the block as written: a test that runs some other form of a command does not count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- not run by tests"
COMMANDS = {
    "pvar-loop", "bash", "sh", "python", "python3", "pip", "docker", "git", "curl", "sudo", "apt-get",
    "export", "cd", "accelerate", "ray", "alembic",
}  # fmt: skip

# (doc, first command line of the block) -> (file that runs the block, a name in that file)
RUN_BY: dict[tuple[str, str], tuple[str, str]] = {
    ("README.md", "bash scripts/dev test"): (".ci/run", "bash scripts/dev test"),  # CI's job is this line
    ("docs/operators.md", "pvar-loop init"): (  # the by-hand block, command by command
        "tests/integration/test_manual_rounds.py",
        "test_guide_by_hand_section_runs_a_round",
    ),
}


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the block's first content line
    lines: tuple[str, ...]
    before: str  # the last non-blank line before the block ("" at the top of the file)


def _is_command(line: str) -> bool:
    words = line.strip().removeprefix("$ ").split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    return bool(words) and (words[0] in COMMANDS or words[0].endswith("/python"))


def code_blocks(text: str) -> list[Block]:
    """Fenced and indented code blocks, with the last non-blank line before each."""
    lines = text.splitlines()
    blocks, i, last = [], 0, ""
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("```")), len(lines)
            )
            blocks.append(Block(i + 2, tuple(lines[i + 1 : end]), last))
            i, last = end + 1, "```"
            continue
        if line.startswith("    ") and line.strip() and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = [x[4:] for x in lines[i:end]]
            while body and not body[-1].strip():
                body.pop()
            blocks.append(Block(i + 1, tuple(body), last))
            i, last = end, body[-1]
            continue
        if line.strip():
            last = line.strip()
        i += 1
    return blocks


def command_blocks(text: str) -> list[tuple[Block, str]]:
    """(block, its first command line) for every code block holding a command."""
    out = []
    for block in code_blocks(text):
        first = next((x.strip() for x in block.lines if _is_command(x)), None)
        if first is not None:
            out.append((block, first))
    return out


def _docs() -> list[str]:
    return ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def test_the_parser_finds_fenced_and_indented_command_blocks():
    text = "\n".join([
        "Intro", "", "    pvar-loop init", "    pvar-loop run", "", "Text", MARKER + ": why -->", "",
        "```bash", "$ PVAR_LOOP_DATA_DIR=x .venv/bin/python -m loop.cli status", "```", "", "    [scoring]",
        '    engine = "ray"', "", "```", "a diagram ──►", "```",
    ])  # fmt: skip
    found = command_blocks(text)
    assert [(b.line, first) for b, first in found] == [
        (3, "pvar-loop init"),
        (10, "$ PVAR_LOOP_DATA_DIR=x .venv/bin/python -m loop.cli status"),
    ]
    assert found[0][0].before == "Intro" and found[1][0].before.startswith(MARKER)
    assert len(code_blocks(text)) == 4  # the TOML and the diagram are blocks, not command blocks


@pytest.mark.parametrize("doc", _docs())
def test_every_command_block_is_run_by_a_test_or_marked(doc):
    unaccounted = [
        f"{doc}:{block.line}: {first}"
        for block, first in command_blocks((ROOT / doc).read_text(encoding="utf-8"))
        if (doc, first) not in RUN_BY and not block.before.startswith(MARKER)
    ]
    assert not unaccounted, (
        "command blocks neither run by a test (RUN_BY in tests/unit/test_doc_commands.py) nor preceded by "
        f"`{MARKER}: <reason> -->`:\n" + "\n".join(unaccounted)
    )


@pytest.mark.parametrize(("doc", "first"), list(RUN_BY))
def test_run_by_entries_name_a_block_and_a_runner_that_exist(doc, first):
    blocks = [f for _, f in command_blocks((ROOT / doc).read_text(encoding="utf-8"))]
    assert first in blocks, f"{doc} has no command block starting {first!r} any more: update RUN_BY"
    runner, name = RUN_BY[(doc, first)]
    assert (ROOT / runner).is_file(), runner
    assert name in (ROOT / runner).read_text(encoding="utf-8"), f"{runner} does not contain {name!r}"
