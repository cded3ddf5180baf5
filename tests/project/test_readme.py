"""README.md stays one screen, and the commands it and docs/ show are ones the code accepts.

Every `weightspace ...` command and every experiment-script command (``python NN_folder/script.py ...``) in a
fenced shell block of README.md or docs/*.md is parsed by the parser that would run it (nothing is executed),
and each ``--flag`` it names must be an option of that very (sub)command, spelled out (argparse would also
accept an abbreviation). Every relative link in README.md and docs/*.md must point to a file that exists.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from weightspace.cli import main
from weightspace.cli.commands import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# written by scripts, not by hand (bench/representation_quality.py, 01_ablation_studies/summarize.py)
GENERATED = {"representation_quality.md", "01_ablation_studies_summary.md"}
HAND_WRITTEN = [p for p in PAGES if p.name not in GENERATED]

SHELL = {"", "bash", "sh", "shell", "console"}
SCRIPT = re.compile(r"^\d\d_[\w.-]+/[\w.-]+\.py$")
SEPARATORS = {"&&", "||", ";", "|", ">", ">>", "<", "&"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def fenced_blocks(text: str) -> tuple[list[tuple[str, str]], str]:
    """The fenced code blocks of a Markdown text as (language, content), and the text without them."""
    blocks, prose, fence = [], [], None
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = (stripped[3:].strip().lower(), [])
        elif fence is not None and stripped == "```":
            blocks.append((fence[0], "".join(fence[1])))
            fence = None
        elif fence is not None:
            fence[1].append(line)
        else:
            prose.append(line)
    assert fence is None, "a code block is not closed"
    return blocks, "".join(prose)


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of every fenced shell block: words split as a shell would, comments and
    redirections dropped, ``a && b`` as two commands."""
    commands = []
    for language, block in fenced_blocks(text)[0]:
        if language not in SHELL:
            continue
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words, skip = [], False
            for word in lexer:
                if word in SEPARATORS:
                    if words:
                        commands.append(words)
                    words, skip = [], word in {">", ">>", "<"}  # the word after a redirection is a file
                elif skip:
                    skip = False
                else:
                    words.append(word)
            if words:
                commands.append(words)
    return commands


def shown_commands() -> list[tuple[str, list[str]]]:
    """(page, words) of each `weightspace` and experiment-script command on every page."""
    found = []
    for page in PAGES:
        for words in shell_commands(page.read_text()):
            if words[0] == "weightspace" or (words[0] in {"python", "python3"} and len(words) > 1
                                             and SCRIPT.match(words[1])):
                found.append((rel(page), words))
    return found


def flags(words: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if w.startswith("--")]


def subcommand(words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of the deepest subcommand that `words` (after ``weightspace``) names, and that path."""
    parser, path = build_parser(), []
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser, path = subs[0].choices[word], path + [word]
    return parser, path


def check_weightspace(words: list[str]) -> None:
    parser, path = subcommand(words[1:])
    assert path, f"`{shlex.join(words)}`: no such weightspace command"
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0 and "usage: weightspace" in out.getvalue(), shlex.join(words)
    unknown = [f for f in flags(words) if f not in parser._option_string_actions]
    assert not unknown, f"`{shlex.join(words)}`: `weightspace {' '.join(path)}` has no option {unknown}"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            build_parser().parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"`{shlex.join(words)}` does not parse: {err.getvalue().strip()}")


def check_script(words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    script = ROOT / words[1]
    assert script.is_file(), f"`{shlex.join(words)}`: {words[1]} does not exist"
    if "run_script(" not in script.read_text():  # 01_ablation_studies/summarize.py: one optional folder
        assert not flags(words), f"`{shlex.join(words)}`: {words[1]} takes no options"
        return
    from weightspace.cli import experiment_run as pipeline_cli

    parsers = []
    parse = argparse.ArgumentParser.parse_args

    def spy(self, args=None, namespace=None):
        parsers.append(self)
        return parse(self, args, namespace)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", spy)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            pipeline_cli.parse_args("representation", words[2:])
        except SystemExit:
            pytest.fail(f"`{shlex.join(words)}` does not parse: {err.getvalue().strip()}")
    unknown = [f for f in flags(words) if f not in parsers[-1]._option_string_actions]
    assert not unknown, f"`{shlex.join(words)}`: the experiment scripts have no option {unknown}"


COMMANDS = shown_commands()


def test_the_readme_shows_commands():
    shown = {" ".join(words[:2]) for page, words in COMMANDS if page == "README.md"}
    assert "python 11_tetris_seed/simclr_ae_tetris_seed.py" in shown
    assert {"weightspace zoo", "weightspace run", "weightspace baselines", "weightspace report"} <= shown
    text = README.read_text()
    assert "python -m pytest -q tests\n" in text and "python -m pytest -q tests -m slow\n" in text


@pytest.mark.parametrize("page, words", COMMANDS, ids=[f"{p}:{' '.join(w[:4])}" for p, w in COMMANDS])
def test_shown_command_parses(page, words, monkeypatch):
    if words[0] == "weightspace":
        check_weightspace(words)
    else:
        check_script(words, monkeypatch)


def test_readme_fits_one_screen():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"
    long = [f"{i}: {len(line)} characters" for i, line in enumerate(lines, 1) if len(line) > 120]
    assert not long, long


@pytest.mark.parametrize("page", HAND_WRITTEN, ids=rel)
def test_no_internal_milestones_or_issue_numbers(page):
    text = page.read_text()
    found = re.findall(r"(?<!\w)#\d+|\bsession \d+|\bissue \d+|\bitem \d+ of\b", text, re.I)
    assert not found, f"{rel(page)} names {found}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page):
    text = fenced_blocks(page.read_text())[1]
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    broken = []
    for target in re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # a URL
        if target.startswith("#"):
            target = page.name + target
        path, _, anchor = target.partition("#")
        file = page.parent / path
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{rel(page)} links to missing files or headings: {broken}"


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page."""
    prose = fenced_blocks(page.read_text())[1]
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
