"""Every code block of README.md and docs/*.md is checked against the code it shows:
Python blocks compile and every ``mlpmix.<name>...`` they mention exists; every ``mlpmix``
and ``python -m benchmarks.<tool>`` command line in a shell block parses with that
command's own argument parser. The README's test command is the one CI runs."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

import mlpmix
from conftest import REPO
from mlpmix.cli import build_parser

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def code_blocks(language: str) -> list:
    params = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text.count("\n", 0, match.start()) + 1
                params.append(pytest.param(match.group(2), id=f"{path.relative_to(REPO)}:{line}"))
    return params


def command_lines(script: str):
    """The simple commands of a shell block: continuations joined, split at ``&&``/``;``,
    leading ``VAR=value`` assignments and comments dropped."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split, lexer.commenters = True, "#"
        words = []
        for token in [*lexer, ";"]:
            if token not in (";", "&&", "||", "|", "&"):
                words.append(token)
                continue
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words.pop(0)
            if words:
                yield words
            words = []


def parse_mlpmix(argv):
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "bench" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")


def parse_benchmarks(tool, argv):
    import benchmarks.gemm_floor
    import benchmarks.report
    import benchmarks.run

    parsers = {"benchmarks.run": benchmarks.run.parse,
               "benchmarks.gemm_floor": benchmarks.gemm_floor.parse,
               "benchmarks.report": benchmarks.report.parse}
    parsers[tool](argv)


def check_command(words):
    """Parses ``words`` if it is an mlpmix or benchmark command; argparse exits with 2 on
    an unknown subcommand or option (``--help`` exits with 0)."""
    program = Path(words[0]).name
    try:
        if program == "mlpmix":
            parse_mlpmix(words[1:])
        elif program.startswith("python") and words[1:3] in (["-m", "mlpmix"],):
            parse_mlpmix(words[3:])
        elif program.startswith("python") and len(words) > 2 and words[1] == "-m" \
                and words[2].startswith("benchmarks."):
            parse_benchmarks(words[2], words[3:])
    except SystemExit as exit:
        assert exit.code == 0, f"`{shlex.join(words)}` does not parse"


@pytest.mark.parametrize("script", code_blocks("bash"))
def test_shell_commands_parse(script, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    for words in command_lines(script):
        check_command(words)


def mlpmix_references(tree: ast.AST):
    """Every longest attribute chain ``mlpmix.a.b...`` in the code."""
    for node in ast.walk(tree):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == "mlpmix" and chain:
            yield list(reversed(chain))


def resolves(chain) -> bool:
    target = mlpmix
    for name in chain:
        if not hasattr(target, name):
            return False
        target = getattr(target, name)
    return True


@pytest.mark.parametrize("source", code_blocks("python"))
def test_python_blocks_compile_and_name_real_things(source):
    tree = ast.parse(source)
    missing = [".".join(["mlpmix", *chain]) for chain in mlpmix_references(tree)
               if not resolves(chain)]
    assert not missing, missing


def test_ci_runs_the_readme_test_command():
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in (REPO / "README.md").read_text().splitlines()


def test_readme_stays_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
