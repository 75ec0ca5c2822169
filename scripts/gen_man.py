#!/usr/bin/env python3
"""Generate the man page ``man/gradcheck.1`` from the command tree behind the Typer app.

    python scripts/gen_man.py            # (re)write man/gradcheck.1
    python scripts/gen_man.py --check    # exit 1 with a diff summary if it is stale (CI)
    python scripts/gen_man.py --stdout   # print the page instead of writing it

Every command, argument and option comes from ``typer.main.get_command(app)``: names, metavars,
types and choices, defaults, ranges, environment variables and help texts are read from the
parameters themselves, so a new command or flag lands in the page by rerunning this script (and
``tests/cli/test_man.py`` fails until somebody does). Only the surrounding prose (EXAMPLES, FILES, part
of ENVIRONMENT) is static text here; EXIT STATUS comes from ``gradcheck_cli.errors.EXIT_CODES``.

The output is deterministic: the version is ``gradcheck_cli.__version__`` and the date field of
``.TH`` is left empty (a date from the clock, the git history or ``SOURCE_DATE_EPOCH`` would make the
committed file differ from a fresh regeneration on another day or machine, and the sync test and
``--check`` would then fail for no change at all; the version already says which release the page
describes). Typer's shell-detection switch for the completion options is neutralised while the
command tree is built, so the page documents what users get, whatever the environment.

No dependency beyond what gradcheck already needs (typer, rich): the roff is written here.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import enum
import inspect
import os
import re
import sys
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAN_PATH = ROOT / "man" / "gradcheck.1"
REGENERATE = "python scripts/gen_man.py"

if str(ROOT) not in sys.path:  # the checkout's package, not some other installed copy
    sys.path.insert(0, str(ROOT))

# Typer builds ``--install-completion``/``--show-completion`` as plain flags (shell auto-detected) or,
# with this variable set, as options taking a shell name. Users get the flags.
_SHELL_DETECTION_SWITCH = "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"

WRAP = 90  # source line width of running text (roff refills it anyway; short lines keep diffs small)


# --------------------------------------------------------------------------------------------- roff

_SPECIAL = {
    "\\": r"\e",  # a literal backslash
    "-": r"\-",  # ASCII hyphen-minus: option names and values stay copy-pasteable
    "'": r"\(aq",  # straight apostrophe, not a typographic quote
    "`": r"\(ga",  # grave accent, not an opening quote
}


def esc(text: str) -> str:
    """Escape text for use inside a roff line (not at its start: see :func:`text_lines`)."""
    out = []
    for char in text:
        if char in _SPECIAL:
            out.append(_SPECIAL[char])
        elif char == "\t" or char == "\n":
            out.append(" ")
        elif ord(char) < 32 or ord(char) == 127:
            continue
        elif ord(char) > 126:  # keep the source ASCII; groff knows every Unicode character by number
            out.append(rf"\[u{ord(char):04X}]")
        else:
            out.append(char)
    return "".join(out)


def arg(text: str) -> str:
    """One macro argument: escaped, double quotes as ``\\(dq``, always quoted (spaces allowed)."""
    return '"' + esc(text).replace('"', r"\(dq") + '"'


def guard(line: str, *, keep_indent: bool = False) -> str:
    """A text line must not start with a control character (``.`` or ``'``), nor, in fill mode, with a
    space (that would force a break); in no-fill mode (``keep_indent``) leading spaces are kept."""
    if not keep_indent:
        line = line.lstrip(" ")
    return r"\&" + line if line[:1] in (".", "'") else line


def bold(text: str) -> str:
    return rf"\fB{esc(text)}\fR"


def italic(text: str) -> str:
    return rf"\fI{esc(text)}\fR"


def text_lines(text: str) -> list[str]:
    """Running text: wrapped (on the raw text, so escapes are never split), escaped, guarded."""
    lines = textwrap.wrap(" ".join(text.split()), WRAP, break_long_words=False, break_on_hyphens=False)
    return [guard(esc(line)) for line in lines]


# ------------------------------------------------------------------------------------- help texts

# rich's markup tags (rich.markup.RE_TAGS): optional backslashes, then [tag].
_RICH_TAG = re.compile(r"(\\*)\[([a-z#/@][^[]*?)]")


def _is_rich_markup(tag: str) -> bool:
    if tag == "link" or tag.startswith(("/", "@", "link=")):
        return True
    try:
        from rich.style import Style

        Style.parse(tag)
    except Exception:  # noqa: BLE001 - rich raises StyleSyntaxError (and others on odd input)
        return False
    return True


def strip_rich_markup(text: str) -> str:
    r"""Remove rich style tags (``[bold]``, ``[/]``, ``[red on white]``, ``[link=...]``) and unescape ``\[``.

    Bracketed text that is no valid style (``[tool.gradcheck]``, ``[x>=1]``) is kept as written:
    it is almost certainly meant literally (rich itself would swallow it).
    """

    def replace(match: re.Match[str]) -> str:
        backslashes, tag = match.group(1), match.group(2)
        kept = "\\" * (len(backslashes) // 2)
        if len(backslashes) % 2:  # escaped: a literal [tag]
            return f"{kept}[{tag}]"
        return kept if _is_rich_markup(tag) else f"{kept}[{tag}]"

    return _RICH_TAG.sub(replace, text)


def paragraphs(help_text: str | None) -> list[tuple[bool, str]]:
    """``(preformatted, text)`` paragraphs of a click/typer help text.

    Click conventions: everything from a form feed on is private; a paragraph starting with a
    ``\\b`` line is not rewrapped. Other paragraphs are joined into one line of text.
    """
    if not help_text:
        return []
    text = inspect.cleandoc(help_text.split("\f", 1)[0])
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if lines and lines[0].strip() == "\b":
            body = "\n".join(strip_rich_markup(line) for line in lines[1:]).rstrip()
            if body.strip():
                out.append((True, body))
        else:
            joined = " ".join(strip_rich_markup(block).split())
            if joined:
                out.append((False, joined))
    return out


def first_sentence(help_text: str | None) -> str:
    paras = paragraphs(help_text)
    return paras[0][1] if paras else ""


def help_body(help_text: str | None, *, first: str = ".PP") -> list[str]:
    """roff for help paragraphs; ``first`` starts the first one (``.PP``, ``.IP``, or ``""`` for none)."""
    out: list[str] = []
    for index, (pre, para) in enumerate(paragraphs(help_text)):
        opener = first if index == 0 else (".IP" if first == ".IP" else ".PP")
        if opener:
            out.append(opener)
        if pre:
            out.append(".nf")
            out.extend(guard(esc(line), keep_indent=True) if line.strip() else r"\&" for line in para.splitlines())
            out.append(".fi")
        else:
            out.extend(text_lines(para))
    return out


# ------------------------------------------------------------------------------ the command tree


@contextlib.contextmanager
def _env_without(name: str) -> Iterator[None]:
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


def load_command():
    """The click command behind ``gradcheck_cli.cli.app:app``, as users get it."""
    import typer.main

    from gradcheck_cli.cli.app import app

    with _env_without(_SHELL_DETECTION_SWITCH):
        return typer.main.get_command(app)


def _context(command, name: str, parent=None):
    cls = getattr(command, "context_class", None)
    if cls is None:  # pragma: no cover - every click Command has one
        import click

        cls = click.Context
    return cls(command, info_name=name, parent=parent, resilient_parsing=True)


def walk(command, ctx, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """``(path, command, context)`` for the command and every visible subcommand, depth first."""
    yield path, command, ctx
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        return
    names = command.list_commands(ctx) if hasattr(command, "list_commands") else sorted(subcommands)
    for name in names:
        sub = command.get_command(ctx, name) if hasattr(command, "get_command") else subcommands.get(name)
        if sub is None or getattr(sub, "hidden", False):
            continue
        yield from walk(sub, _context(sub, name, parent=ctx), (*path, name))


def visible_params(command, ctx) -> list:
    """Parameters shown by ``--help`` (the help option included), in declaration order."""
    return [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]


def is_option(param) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def option_names(param) -> list[str]:
    """Every spelling of an option: short forms first, then long ones, then the negative forms."""
    primary = sorted(param.opts, key=lambda o: 0 if len(o) == 2 or not o.startswith("--") else 1)
    return [*primary, *getattr(param, "secondary_opts", [])]


def all_option_names(command=None) -> dict[str, list[str]]:
    """``{"gradcheck analyze": ["--input", "-i", ...]}`` for every visible command (for the tests)."""
    command = command if command is not None else load_command()
    return {
        " ".join(path): [name for p in visible_params(cmd, ctx) if is_option(p) for name in option_names(p)]
        for path, cmd, ctx in walk(command, _context(command, "gradcheck"), ("gradcheck",))
    }


def _choices(param) -> list[str]:
    desc = getattr(param, "type_descriptor", None)  # recent typer: its own parameter types, no click ParamType
    if desc is not None:
        raw = desc.choices if getattr(desc, "is_choice", False) else None
    else:  # click parameter types
        raw = getattr(getattr(param, "type", None), "choices", None)
    return [c.value if isinstance(c, enum.Enum) else str(c) for c in raw or ()]


_TYPE_LABELS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "Path": "PATH",
                "UUID": "UUID", "datetime": "DATETIME"}


def _label(annotation) -> str:
    name = getattr(annotation, "__name__", str(annotation))
    return _TYPE_LABELS.get(name, name.upper())


def _type_labels(param) -> list[str]:
    """Placeholder names for the value(s) an option takes: one per ``nargs`` (tuples name each part)."""
    nargs = max(getattr(param, "nargs", 1) or 1, 1)
    desc = getattr(param, "type_descriptor", None)
    if desc is not None:  # recent typer: its own parameter types, no click ParamType
        annotation = desc.annotation
        if getattr(desc, "is_tuple", False):
            return [_label(a) for a in typing.get_args(annotation)] or ["VALUE"] * nargs
        if getattr(desc, "is_path", False):
            label = "FILE" if getattr(desc, "is_file", False) else "PATH"
        elif getattr(desc, "is_list", False):
            label = _label((typing.get_args(annotation) or (str,))[0])
        else:
            label = _label(annotation)
        return [label] * nargs
    ptype = getattr(param, "type", None)  # click parameter types
    parts = getattr(ptype, "types", None)
    if parts:
        return [_click_label(t) for t in parts]
    return [_click_label(ptype)] * nargs


def _click_label(ptype) -> str:
    """The same label for a click type as for its annotation, whichever typer built it.

    typer 0.28's vendored click names them "str", "int range", "float range"; the range itself is
    printed on its own line, so the page reads the same under every typer version.
    """
    name = str(getattr(ptype, "name", "value")).removesuffix(" range")
    return _TYPE_LABELS.get(name, name.upper())


def value_placeholder(param) -> str:
    """roff for what follows an option name (nothing for flags): metavar, choices or type."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return italic(param.metavar)
    if choices := _choices(param):
        return "{" + "|".join(bold(c) for c in choices) + "}"
    return " ".join(italic(label) for label in _type_labels(param))


def argument_name(param) -> str:
    return param.metavar or (param.name or "ARG").upper()


def _default_text(param, ctx) -> str | None:
    show = getattr(param, "show_default", None)
    if isinstance(show, str):
        return show
    if show is False:
        return None
    try:
        default = param.get_default(ctx, call=False)
    except Exception:  # noqa: BLE001 - a default that cannot be computed is simply not shown
        return None
    if default is None or callable(default):
        return "(dynamic)" if callable(default) else None
    if getattr(param, "is_flag", False):
        secondary = getattr(param, "secondary_opts", [])
        if secondary and isinstance(default, bool):
            return (param.opts if default else secondary)[0]
        return None  # a plain flag is off unless given
    if isinstance(default, (list, tuple)):
        items = [d.value if isinstance(d, enum.Enum) else str(d) for d in default]
        return ", ".join(items) if items else None
    if isinstance(default, enum.Enum):
        return str(default.value)
    text = str(default)
    return text if text else None


def _range_text(param) -> str | None:
    ptype = getattr(param, "type", None)
    low = getattr(param, "min", None) if hasattr(param, "type_descriptor") else getattr(ptype, "min", None)
    high = getattr(param, "max", None) if hasattr(param, "type_descriptor") else getattr(ptype, "max", None)
    low_open = bool(getattr(ptype, "min_open", False))
    high_open = bool(getattr(ptype, "max_open", False))
    if getattr(param, "count", False) and low == 0 and high is None:
        return None
    if low is not None and high is not None:
        return f"from {low} to {high}" + (" (bounds excluded)" if low_open or high_open else "")
    if low is not None:
        return f"greater than {low}" if low_open else f"at least {low}"
    if high is not None:
        return f"less than {high}" if high_open else f"at most {high}"
    return None


def _envvars(param) -> list[str]:
    envvar = getattr(param, "envvar", None)
    if not envvar:
        return []
    return [envvar] if isinstance(envvar, str) else [str(e) for e in envvar]


def param_facts(param, ctx) -> list[str]:
    """Short plain-text facts appended to a parameter's help: default, range, repeatable, env."""
    facts = []
    if getattr(param, "required", False) and is_option(param):
        facts.append("Required.")
    default = _default_text(param, ctx)
    if default is not None:
        facts.append(f"Default: {default}.")
    range_text = _range_text(param)
    if range_text:
        facts.append(f"Range: {range_text}.")
    if getattr(param, "multiple", False) and "repeat" not in (param.help or "").lower():
        facts.append("May be given more than once.")
    if getattr(param, "count", False):
        facts.append("May be given more than once (counted).")
    envvars = _envvars(param)
    if envvars:
        facts.append(f"Environment: {', '.join(envvars)}.")
    return facts


def param_entry(param, ctx) -> list[str]:
    """A ``.TP`` item: the tag line (names and value) and the help with its facts."""
    if is_option(param):
        tag = ", ".join(bold(name) for name in option_names(param))
        value = value_placeholder(param)
        if value:
            tag += " " + value
    else:
        tag = italic(argument_name(param))
        if getattr(param, "nargs", 1) == -1:
            tag += "\\&..."
        choices = _choices(param)
        if choices:
            tag += " {" + "|".join(bold(c) for c in choices) + "}"
    out = [".TP", guard(tag)]
    help_lines = help_body(getattr(param, "help", None), first="")
    # Continuation paragraphs inside a .TP body must stay indented: .IP, not .PP.
    help_lines = [".IP" if line == ".PP" else line for line in help_lines]
    facts = param_facts(param, ctx)
    if help_lines and facts:  # on a line of their own: the help need not end in a full stop
        help_lines.extend([".br", *text_lines(" ".join(facts))])
    elif facts:
        help_lines = text_lines(" ".join(facts))
    if not help_lines and not is_option(param) and getattr(param, "required", False):
        help_lines = ["Required."]
    return out + (help_lines or [r"\&"])


def synopsis(path: tuple[str, ...], command, ctx) -> list[str]:
    """``.B "gradcheck analyze"`` plus the line of its operands."""
    pieces = [r"[\fIOPTIONS\fR]"]
    for param in visible_params(command, ctx):
        if is_option(param):
            continue
        name = italic(argument_name(param))
        if getattr(param, "nargs", 1) == -1:
            name += "..."
        pieces.append(name if getattr(param, "required", False) else f"[{name}]")
    if getattr(command, "commands", None) is not None:
        pieces.append(r"\fICOMMAND\fR [\fIARGS\fR]...")
    return [f".B {arg(' '.join(path))}", guard(" ".join(pieces))]


# --------------------------------------------------------------------------------- static prose

DESCRIPTION = (
    "gradcheck runs one or several instrumented forward and backward passes of a PyTorch model "
    "(TorchScript, torch.export, a state_dict with its factory, a trusted pickle) or an ONNX model and "
    "reports, layer by layer, the forward signal, the backward signal and the weight gradients; it flags "
    "vanishing and exploding gradients and activations, dead ReLUs, saturated sigmoid/tanh units, "
    "activations that are not zero-centred and weight scales that do not suit the activation that "
    "follows, with the initialisation that does. Reports are rich tables, JSON, Markdown or HTML; the "
    "exit status says whether a finding in the fail set was raised, so a CI job can gate on it."
)

DESCRIPTION_HELP = ("Every command answers --help with the same information as this page; "
                    "global options go before the command name.")

FILES = (
    ("gradcheck.toml",
     ("The settings as top-level keys; found by walking up from the current directory, and preferred to a "
      "pyproject.toml in the same folder; --config FILE overrides.")),
    ("pyproject.toml",
     "[tool.gradcheck] table, found by walking up from the current directory; --config FILE overrides."),
)

ENVIRONMENT = (
    ("COLUMNS", ("Width of the tables. When unset, the terminal's width, or 160 columns when the output is "
                 "not a terminal (CI logs), so rows never wrap.")),
    ("NO_COLOR", "When set (non-empty), no colours; --color overrides."),
    ("FORCE_COLOR", "When set (non-empty, not 0), colours even when the output is not a terminal; NO_COLOR wins."),
    ("GRADCHECK_<KEY>", ("Any config key for analyze (GRADCHECK_FAIL_ON, GRADCHECK_DEVICE, GRADCHECK_STEPS ...): "
                         "overrides the config file, yields to the command line; a bad value is a usage error.")),
    ("GRADCHECK_DIST_TIMEOUT", ("Seconds a distributed run (--distributed) waits on a collective before a hung rank "
                                "ends every rank (default 300).")),
    ("RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT", "Set by torchrun; --distributed reads them."),
    ("_GRADCHECK_COMPLETE", ("Set by the shell completion scripts (see --show-completion) to ask for "
                             "completions instead of running a command; not for interactive use.")),
)

EXAMPLES = (
    ("Analyse a TorchScript model on a data sample:",
     ["gradcheck analyze model.ts --input batch.pt"]),
    ("Write the JSON report of a torch.export program to a file; the verdict is printed:",
     ["gradcheck analyze model.pt2 --input images.pt --format json --output report.json"]),
    ("Build the model with a factory function and feed it random data of a given shape:",
     ["gradcheck analyze my_models.py:build_model --input-shape 256,256"]),
    ("A state_dict with the factory that builds its architecture, four passes of 16 samples:",
     ["gradcheck analyze weights.safetensors --factory my_models.py:build_model \\",
      "    --input batch.pt --batches 4 --batch-size 16"]),
    ("CI gate: fail (exit status 1) on any finding, print only the verdict:",
     ["gradcheck analyze model.pt2 --input batch.pt --fail-on all --quiet"]),
    ("A Markdown summary for a GitHub Actions job page:",
     ['gradcheck analyze model.onnx --format markdown >> "$GITHUB_STEP_SUMMARY"']),
    ("Shell completion for the current shell, now or for good:",
     ['eval "$(gradcheck --show-completion)"', "gradcheck --install-completion"]),
)

SEE_ALSO = (
    ("python3", "1"),
)
SEE_ALSO_TEXT = ("The project README (model formats, the measured statistics, the verdict rules and their "
                 "thresholds, the JSON report); gradcheck schema prints the JSON Schema of the report.")


# ------------------------------------------------------------------------------------ the page


def _name_line(summary: str) -> str:
    """The NAME description: lower-case start (unless an acronym), no final full stop."""
    summary = summary.rstrip(".")
    if summary[:1].isupper() and summary[1:2].islower():
        summary = summary[0].lower() + summary[1:]
    return summary


def render(command=None) -> str:
    """The complete man page as a string (deterministic for a given command tree and version)."""
    from gradcheck_cli import __version__
    from gradcheck_cli.errors import EXIT_CODES

    command = command if command is not None else load_command()
    prog = "gradcheck"
    root_ctx = _context(command, prog)
    tree = list(walk(command, root_ctx, (prog,)))
    subcommands = tree[1:]

    out = [
        r'.\" Generated by scripts/gen_man.py from the gradcheck command line; do not edit.',
        rf'.\" Regenerate with: {REGENERATE}',
        # Empty date (see the module docstring): the output must not depend on when it is generated.
        f'.TH GRADCHECK 1 "" {arg(f"gradcheck {__version__}")} "User Commands"',
        # No hyphenation, ragged right: option names and values in running text stay whole and greppable.
        ".nh",
        ".ad l",
        ".SH NAME",
        rf"{prog} \- " + esc(_name_line(first_sentence(command.help))),
        ".SH SYNOPSIS",
    ]
    for index, (path, cmd, ctx) in enumerate(tree):
        if index:
            out.append(".br")
        out.extend(synopsis(path, cmd, ctx))

    out.append(".SH DESCRIPTION")
    out.extend(help_body(command.help, first=".PP") or [".PP"])
    out.append(".PP")
    out.extend(text_lines(DESCRIPTION))
    out.append(".PP")
    out.extend(text_lines(DESCRIPTION_HELP))

    if subcommands:
        out.append(".SH COMMANDS")
        for path, cmd, _ctx in subcommands:
            out.append(".TP")
            tag = bold(" ".join(path[1:]))
            if getattr(cmd, "deprecated", False):
                tag += " (deprecated)"
            out.append(guard(tag))
            body = help_body(cmd.help or getattr(cmd, "short_help", None), first="")
            out.extend([".IP" if line == ".PP" else line for line in body] or [r"\&"])
            out.extend([".IP", rf"Options: see \fB{esc(' '.join(path))}\fR under \fBOPTIONS\fR."])

    out.append(".SH OPTIONS")
    for index, (path, cmd, ctx) in enumerate(tree):
        params = visible_params(cmd, ctx)
        out.append(f".SS {arg('Global options' if index == 0 else ' '.join(path))}")
        if index:
            out.extend(synopsis(path, cmd, ctx))
        arguments = [p for p in params if not is_option(p)]
        options = [p for p in params if is_option(p)]
        if arguments:
            out.append(".PP")
            out.append(r"\fBArguments\fR")
            for param in arguments:
                out.extend(param_entry(param, ctx))
        if options:
            out.append(".PP")
            out.append(r"\fBOptions\fR" if index else r"Given before the command name:")
            for param in options:
                out.extend(param_entry(param, ctx))

    out.append(".SH EXIT STATUS")
    for code, meaning in EXIT_CODES:
        out.extend([".TP", bold(str(code))])
        out.extend(text_lines(meaning))

    out.append(".SH FILES")
    for name, meaning in FILES:
        out.extend([".TP", guard(rf"\fI{esc(name)}\fR")])
        out.extend(text_lines(meaning))

    out.append(".SH ENVIRONMENT")
    seen = set()
    for _path, cmd, ctx in tree:  # environment variables that parameters read, then the static ones
        for param in visible_params(cmd, ctx):
            for var in _envvars(param):
                if var in seen:
                    continue
                seen.add(var)
                name = option_names(param)[-1] if is_option(param) else argument_name(param)
                out.extend([".TP", bold(var), *text_lines(f"Default for {' '.join(_path)} {name}.")])
    for var, meaning in ENVIRONMENT:
        if var not in seen:
            out.extend([".TP", bold(var), *text_lines(meaning)])

    out.append(".SH EXAMPLES")
    for caption, commands in EXAMPLES:
        out.append(".PP")
        out.extend(text_lines(caption))
        out.extend([".PP", ".RS 4", ".nf"])
        out.extend(guard(esc(line), keep_indent=True) for line in commands)
        out.extend([".fi", ".RE"])

    out.append(".SH SEE ALSO")
    out.append(", ".join(rf"\fB{esc(page)}\fR({section})" for page, section in SEE_ALSO) + ";")
    out.extend(text_lines(SEE_ALSO_TEXT))
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------- main


def diff_summary(old: str, new: str, limit: int = 40) -> str:
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "man/gradcheck.1 (committed)",
                                     "man/gradcheck.1 (generated)", lineterm="", n=1))
    added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
    shown = diff[:limit]
    more = f"\n... {len(diff) - limit} more diff lines" if len(diff) > limit else ""
    return f"{added} line(s) added, {removed} removed:\n" + "\n".join(shown) + more


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the man page is stale; write nothing")
    parser.add_argument("--stdout", action="store_true", help="print the page instead of writing it")
    parser.add_argument("--output", type=Path, default=MAN_PATH, help=f"where to write (default: {MAN_PATH})")
    args = parser.parse_args(argv)

    page = render()
    if args.stdout:
        sys.stdout.write(page)
        return 0
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if args.check:
        if current == page:
            print(f"{args.output}: up to date")
            return 0
        print(f"{args.output} is stale; run: {REGENERATE}", file=sys.stderr)
        print(diff_summary(current, page), file=sys.stderr)
        return 1
    if current == page:
        print(f"{args.output}: unchanged")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page, encoding="utf-8", newline="\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
