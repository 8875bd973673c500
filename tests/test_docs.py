"""Every command the documents show is one the scripts accept.

From README.md and docs/*.md this takes each `python SCRIPT.py ...` and `python -m MODULE ...` command (a torchrun
or srun prefix is skipped: the script after it is the one checked), and `bash quickstart.sh FLAGS` as the
pretrain.py command it runs with FLAGS added: the lines of ```bash (and unlabelled) code
blocks, joined where they end in a backslash, and inline `python ...` spans. Shell loops are read as far as a
parse needs: `$VAR` and `${VAR}` take the first value of the block's `for VAR in ...` or `VAR=...`.

Two checks per command:

- **Its flags exist.** Every `--flag` it uses appears in its script's `--help` text (the subcommand's, for
  `bench.py` and `video.py prepare`; pretrain.py's for what follows `bench.py e2e --`).
- **It parses.** A command from a code block goes through the script's own parsing: `parse_args(argv)` where the
  script has one that only parses, or, for the scripts that build their parser under `if __name__ == "__main__"`
  (bench.py, video.py, checkpoints.py, toy.world), that very parser, taken as the script builds it and before it
  runs. Nothing runs and nothing is written. Skipped for commands a shell would still have to expand (`$(...)`) and
  for `finetune.py --cache_dir`, whose parse makes the folder. Inline spans often name a command without its
  arguments (`python video.py prepare`), so they get the flag check only.

Everything runs in this process; the scripts' help texts are built once each.
"""

import argparse
import contextlib
import functools
import glob
import importlib
import io
import os
import re
import runpy
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))

# scripts whose parse_args(argv) only parses: the module is imported and parse_args called
PARSE_ARGS = {"pretrain.py": "pretrain", "finetune.py": "finetune", "interpolate.py": "interpolate",
              "eval_ood.py": "eval_ood", "probe.py": "probe", "scaling.py": "scaling",
              "toy/miniature.py": "toy.miniature", "toy/assets.py": "toy.assets"}
# scripts that build their parser under `if __name__ == "__main__"`
MAIN_BLOCK = {"bench.py", "video.py", "checkpoints.py", "toy/world.py"}
# scripts that take no flags at all (model.py prints its table)
NO_FLAGS = {"model.py"}
WITH_SUBCOMMANDS = {"bench.py", "video.py"}
SHELL_ENDS = {";", "&&", "||", "|", ">", ">>", "2>&1", "&"}
COMMAND_START = r"(srun )?(torchrun|python)\s|bash quickstart\.sh\s"


def quickstart_flags():
    """The flags quickstart.sh gives pretrain.py before its own arguments ("$@")."""
    with open(os.path.join(ROOT, "quickstart.sh")) as f:
        found = re.search(r"pretrain\.py (.*?)\s*\"\$@\"", f.read())
    assert found, "quickstart.sh no longer runs pretrain.py with its arguments"
    return shlex.split(found.group(1))


class Command:
    def __init__(self, doc, line, text, tokens, inline):
        self.doc, self.line, self.text, self.inline = doc, line, text, inline
        self.unexpanded = "$" in text                   # something a shell would still expand
        self.script, self.argv = script_and_argv(tokens)

    @property
    def where(self):
        return f"{self.doc}:{self.line}"


def script_and_argv(tokens):
    """('pretrain.py', [its arguments]) from `python pretrain.py ...`, `python -m toy.world ...` or
    `[srun] torchrun [its flags] pretrain.py ...`; (None, None) for anything else (`python -c`, `python` alone)."""
    if tokens[:2] == ["bash", "quickstart.sh"]:
        return ("pretrain.py", quickstart_flags() + tokens[2:]) if len(tokens) > 2 else (None, None)
    while tokens and tokens[0] in ("srun", "torchrun"):
        tokens = tokens[1:]
        while tokens and tokens[0].startswith("-") and not tokens[0].endswith(".py"):
            tokens = tokens[1:]                         # srun's and torchrun's own flags (all --name=value here)
        tokens = ["python"] + tokens
    if len(tokens) < 2 or tokens[0] != "python":
        return None, None
    if tokens[1] == "-m" and len(tokens) > 2:
        return tokens[2].replace(".", "/") + ".py", tokens[3:]
    if tokens[1].endswith(".py"):
        return tokens[1], tokens[2:]
    return None, None


def shell_words(text):
    """The words of one command, up to a shell operator or the end of the line's comment."""
    words = []
    for word in shlex.split(text, comments=True):
        if word in SHELL_ENDS or word.startswith(">"):
            break
        if word.endswith(";"):
            words.append(word[:-1])
            break
        words.append(word)
    return words


def block_variables(lines):
    """The first value of each `for VAR in A B ...` loop and each `VAR=...` assignment of a code block."""
    found = {}
    for line in lines:
        for name, values in re.findall(r"\bfor (\w+) in ([^;]+);", line):
            found.setdefault(name, shlex.split(values)[0])
        assignment = re.match(r"^\s*(\w+)=(.+)$", line)
        if assignment and not line.lstrip().startswith(("python", "torchrun")):
            found.setdefault(assignment.group(1), shlex.split(assignment.group(2))[0])
    return found


def expand(text, variables):
    for name, value in variables.items():
        text = re.sub(r"\$\{%s\}|\$%s\b" % (name, name), value, text)
    return text


def block_commands(doc, start, lines):
    """The commands of one code block whose first line is line `start` of `doc`."""
    commands, variables, i = [], block_variables(lines), 0
    while i < len(lines):
        first, text = i, lines[i].strip()
        while text.endswith("\\") and i + 1 < len(lines):   # a continued line
            i += 1
            text = text[:-1] + " " + lines[i].strip()
        i += 1
        if not re.match(COMMAND_START, text):
            continue
        while True:                                         # a quoted argument may span lines (python -c "...")
            try:
                words = shell_words(expand(text, variables))
                break
            except ValueError:
                if i >= len(lines):
                    raise
                text, i = text + "\n" + lines[i], i + 1
        command = Command(doc, start + first, expand(text, variables), words, inline=False)
        if command.script:
            commands.append(command)
    return commands


def documented_commands():
    commands = []
    for doc in DOCUMENTS:
        with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
            lines = f.read().split("\n")
        prose, i = [], 0
        while i < len(lines):
            fence = re.match(r"^\s*```(\w*)", lines[i])
            if not fence:
                prose.append(lines[i])
                i += 1
                continue
            end = i + 1
            while end < len(lines) and not re.match(r"^\s*```", lines[end]):
                end += 1
            if fence.group(1) in ("", "bash", "sh", "shell"):
                commands += block_commands(doc, i + 2, lines[i + 1:end])
            prose += [""] * (end + 1 - i)                   # keeps the line numbers of the prose
            i = end + 1
        text = "\n".join(prose)
        for span in re.finditer(r"`([^`]+)`", text):
            body = " ".join(span.group(1).replace("\\|", "|").split())
            if re.match(COMMAND_START, body + " "):
                command = Command(doc, text.count("\n", 0, span.start()) + 1, body, shell_words(body), inline=True)
                if command.script:
                    commands.append(command)
    return commands


COMMANDS = documented_commands()

# -----------------------------------------------------------------------------
# the scripts' parsers and help texts, built once each


class _Built(Exception):
    def __init__(self, parser):
        self.parser = parser


@functools.lru_cache(maxsize=None)
def main_block_parser(script):
    """The parser a MAIN_BLOCK script builds under `if __name__ == "__main__"`, taken at its parse_args call,
    before the script does anything else."""
    def built(self, *args, **kwargs):
        raise _Built(self)
    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = built
    try:
        runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
    except _Built as b:
        return b.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{script} never parsed its command line")


def subparser(parser, name):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert name in action.choices, f"no subcommand {name!r} (there are {', '.join(action.choices)})"
            return action.choices[name]
    raise AssertionError(f"{parser.prog} has no subcommands")


@functools.lru_cache(maxsize=None)
def help_text(script, sub=None):
    if script in PARSE_ARGS:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
            importlib.import_module(PARSE_ARGS[script]).parse_args(["--help"])
        assert exit.value.code in (0, None)
        return out.getvalue()
    parser = main_block_parser(script)
    return (subparser(parser, sub) if sub else parser).format_help()


def parse(command, script, argv):
    """Parse argv as the script does; a non-zero exit fails with the command and the script's one line."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if script in PARSE_ARGS:
                importlib.import_module(PARSE_ARGS[script]).parse_args(list(argv))
            else:
                main_block_parser(script).parse_args(list(argv))
    except SystemExit as e:
        if e.code not in (0, None):
            pytest.fail(f"{command.where}: `{command.text}` does not parse: {err.getvalue().strip()}")

# -----------------------------------------------------------------------------
# the tests


def test_the_documents_show_commands():
    scripts = {c.script for c in COMMANDS}
    assert len(COMMANDS) > 100 and {"pretrain.py", "finetune.py", "bench.py", "toy/world.py"} <= scripts


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_a_documented_command_is_accepted(command):
    script, argv = command.script, command.argv
    assert os.path.isfile(os.path.join(ROOT, script)), f"{command.where}: no script {script}: `{command.text}`"
    assert script in PARSE_ARGS or script in MAIN_BLOCK or script in NO_FLAGS, f"{script}: add it to this test"
    if script in NO_FLAGS:
        assert not argv, f"{command.where}: {script} takes no arguments: `{command.text}`"
        return
    sub = argv[0] if script in WITH_SUBCOMMANDS and argv and not argv[0].startswith("-") else None
    passed_on = argv.index("--") if script == "bench.py" and "--" in argv else len(argv)
    checks = [(script, sub, argv[:passed_on])]
    if passed_on < len(argv):                                     # bench.py e2e -- PRETRAIN FLAGS
        checks.append(("pretrain.py", None, argv[passed_on + 1:]))
    for owner, owner_sub, words in checks:
        text = help_text(owner, owner_sub)
        for word in words:
            flag = word.split("=", 1)[0]
            if flag.startswith("--") and len(flag) > 2:
                assert re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(flag), text), \
                    f"{command.where}: {owner}{' ' + owner_sub if owner_sub else ''} has no {flag}: `{command.text}`"
    if command.inline or command.unexpanded or "--help" in argv:
        return
    if script == "finetune.py" and any(w.split("=")[0] == "--cache_dir" for w in argv):
        return                                                    # its parse makes the folder
    parse(command, script, argv)
    if passed_on < len(argv):
        parse(command, "pretrain.py", argv[passed_on + 1:])
