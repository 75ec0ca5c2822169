"""The man page (``scripts/gen_man.py`` -> ``man/gradcheck.1``) and shell completion.

The man page is generated from the command tree behind the Typer app and committed; these tests
fail when it is stale (a command, option or help text changed without regenerating it), when it
does not render cleanly, or when it leaves out a command or an option. The completion tests run
the installed ``gradcheck`` console script the way a shell's completion function does.
"""

from __future__ import annotations

import importlib.util
import locale
import os
import re
import shutil
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import pytest
import typer

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man" / "gradcheck.1"
REGENERATE = "python scripts/gen_man.py"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_man", ROOT / "scripts" / "gen_man.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_man = _load_generator()


@pytest.fixture(scope="module")
def command():
    return gen_man.load_command()


@pytest.fixture(scope="module")
def option_names(command) -> dict[str, list[str]]:
    return gen_man.all_option_names(command)


# ------------------------------------------------------------------------------------- rendering


def _utf8_locale() -> str:
    """A UTF-8 locale this machine has (man-db warns on stderr about one it cannot set)."""
    saved = locale.setlocale(locale.LC_CTYPE)
    try:
        for name in ("C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8"):
            try:
                locale.setlocale(locale.LC_CTYPE, name)
            except locale.Error:
                continue
            return name
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    return "C"


def _render_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAN_KEEP_FORMATTING", "MANOPT", "MANROFFOPT", "MANSECT", "GROFF_SGR", "LANGUAGE")
           and not k.startswith("LC_")}
    env.update(MANWIDTH="100", MANPAGER="cat", PAGER="cat", LC_ALL=_utf8_locale(), LANG=_utf8_locale())
    return env


def _plain(text: str) -> str:
    """Rendered text with formatting and typographic dashes undone: what a reader greps for."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # SGR escapes
    text = re.sub(r".\x08", "", text)  # overstrike bold/underline
    return text.translate({0x2010: "-", 0x2011: "-", 0x2012: "-", 0x2013: "-", 0x2212: "-", 0x2019: "'"})


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=False, capture_output=True, text=True, env=env, timeout=60)


def _needs(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def _man(path: Path) -> subprocess.CompletedProcess:
    return _run([_needs("man"), "-l", str(path)], _render_env())


def _groff(path: Path) -> subprocess.CompletedProcess:
    """groff with every warning enabled, output discarded: stderr holds the warnings."""
    return _run([_needs("groff"), "-man", "-Tutf8", "-ww", "-z", str(path)], _render_env())


@pytest.fixture(scope="module")
def rendered() -> str:
    result = _man(MAN)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"man -l {MAN.relative_to(ROOT)} warned:\n{result.stderr}"
    return _plain(result.stdout)


def _has_option(text: str, name: str) -> bool:
    """``name`` as a whole option (``--input`` is not found inside ``--input-shape``)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def _options_sections(text: str) -> dict[str, str]:
    """The rendered OPTIONS section split into its subsections: {heading: body}.

    man(1) puts section headings in column 0 and subsection headings (.SS) at 3 spaces; bodies
    are indented further.
    """
    match = re.search(r"^OPTIONS\n(.*?)(?=^\S)", text, re.MULTILINE | re.DOTALL)
    assert match, "no OPTIONS section in the rendered page"
    sections: dict[str, str] = {}
    heading = None
    for line in match.group(1).splitlines():
        if re.match(r"^ {1,4}\S", line):
            heading = line.strip()
            sections[heading] = ""
        elif heading is not None:
            sections[heading] += line + "\n"
    return sections


# ------------------------------------------------------------------------------------- the tests


def test_committed_man_page_is_regenerated_exactly():
    page = gen_man.render()
    committed = MAN.read_text(encoding="utf-8") if MAN.exists() else ""
    assert committed == page, (
        f"man/gradcheck.1 is stale (the command line changed); run `{REGENERATE}` and commit the result.\n"
        + gen_man.diff_summary(committed, page))


def test_generation_is_deterministic_and_independent_of_typer_shell_detection(monkeypatch):
    first = gen_man.render()
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    monkeypatch.setenv("COLUMNS", "40")
    assert gen_man.render() == first
    assert re.search(r'^\.TH GRADCHECK 1 "" "gradcheck [^"]+" ', first, re.MULTILINE)


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    target = tmp_path / "gradcheck.1"
    target.write_text(".TH OLD 1\n", encoding="utf-8")
    assert gen_man.main(["--check", "--output", str(target)]) == 1
    err = capsys.readouterr().err
    assert REGENERATE in err and "added" in err and "+.SH NAME" in err
    assert target.read_text(encoding="utf-8") == ".TH OLD 1\n"  # --check writes nothing
    assert gen_man.main(["--output", str(target)]) == 0
    assert gen_man.main(["--check", "--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == gen_man.render()


def test_man_renders_without_warnings(rendered):
    result = _groff(MAN)
    assert result.returncode == 0 and result.stderr == "", f"groff -ww warned:\n{result.stderr}"
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "EXIT STATUS", "FILES",
                    "ENVIRONMENT", "EXAMPLES", "SEE ALSO"):
        assert re.search(rf"^{section}$", rendered, re.MULTILINE), f"no {section} section"


def test_every_option_of_every_command_is_documented_under_it(rendered, option_names):
    sections = _options_sections(rendered)
    missing = []
    for path, names in option_names.items():
        heading = "Global options" if path == "gradcheck" else path
        body = sections.get(heading)
        if body is None:
            missing.append(f"{path}: no subsection")
            continue
        missing += [f"{path} {name}" for name in names if not _has_option(body, name)]
    assert not missing, f"not in man/gradcheck.1 (run `{REGENERATE}`): {', '.join(missing)}"


def test_every_command_appears(rendered, option_names):
    synopsis = re.search(r"^SYNOPSIS\n(.*?)^\S", rendered, re.MULTILINE | re.DOTALL).group(1)
    commands = re.search(r"^COMMANDS\n(.*?)^\S", rendered, re.MULTILINE | re.DOTALL).group(1)
    assert len(option_names) > 1, "the app has no subcommands?"
    for path in option_names:
        assert re.search(rf"^\s+{re.escape(path)}(\s|$)", synopsis, re.MULTILINE), f"{path} not in SYNOPSIS"
        if path != "gradcheck":
            assert re.search(rf"^\s+{re.escape(path.split(' ', 1)[1])}(\s|$)", commands, re.MULTILINE), \
                f"{path} not in COMMANDS"


def test_exit_status_comes_from_the_one_table(rendered):
    from gradcheck_cli import errors
    from gradcheck_cli.cli import io as cli
    from gradcheck_cli.errors import EXIT_CODES

    codes = [code for code, _ in EXIT_CODES]
    assert codes == sorted(set(codes))
    defined = {value for name, value in vars(errors).items() if name.startswith("EXIT_") and isinstance(value, int)}
    defined |= {value for name, value in vars(cli).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert defined <= set(codes), f"exit codes raised but not documented in errors.EXIT_CODES: {defined - set(codes)}"
    status = re.search(r"^EXIT STATUS\n(.*?)^\S", rendered, re.MULTILINE | re.DOTALL).group(1)
    for code, meaning in EXIT_CODES:
        first_words = " ".join(meaning.split()[:3])
        assert re.search(rf"^\s+{code}\s+{re.escape(first_words)}", status, re.MULTILINE), f"exit status {code}"


UNICODE_HELP = "back\\slash, \u00fcn\u00efc\u00f6d\u00e9 \u2014 dash"


class _Colour(str, Enum):
    red = "red"
    dark_blue = "dark-blue"


def _tricky_app():
    """A Typer app whose help texts hold every roff and rich special the generator must handle."""
    app = typer.Typer(name="tricky", help="Tricky [bold]tool[/bold].", rich_markup_mode="rich",
                      add_completion=False)

    @app.command(help="Run it.\n\nSecond paragraph.\n\n\b\n  keep\n    this layout\n\f\nPRIVATE")
    def run(
        path: Annotated[Path, typer.Argument(help="[bold]Input[/bold] file.")],
        colour: Annotated[_Colour, typer.Option("--colour", "-C", help=r"A \[literal] and a [tool.x] table.")]
        = _Colour.red,
        level: Annotated[int, typer.Option("--level", min=1, max=5, envvar="TRICKY_LEVEL",
                                           help=".starts with a dot")] = 3,
        flag: Annotated[bool, typer.Option("--flag/--no-flag", help="'starts with a quote")] = True,
        pair: Annotated[tuple[int, float], typer.Option("--pair", help=UNICODE_HELP)] = (1, 2.0),
        secret: Annotated[str, typer.Option("--secret", hidden=True)] = "",
    ) -> None:
        pass

    @app.command(hidden=True)
    def invisible() -> None:
        """Never shown."""

    group = typer.Typer(help="A group.")

    @group.command()
    def leaf(names: Annotated[list[str] | None, typer.Option("--name", "-N", help="A name.")] = None) -> None:
        """A leaf."""

    app.add_typer(group, name="group")
    return typer.main.get_command(app)


def test_generator_escapes_roff_and_strips_rich_markup(tmp_path):
    page = gen_man.render(_tricky_app())
    macros = {".TH", ".SH", ".SS", ".TP", ".IP", ".PP", ".B", ".br", ".nf", ".fi", ".RS", ".RE", ".nh", ".ad", '.\\"'}
    for line in page.splitlines():
        assert not line.startswith("'"), line
        if line.startswith("."):
            assert line.split(" ", 1)[0] in macros, f"text taken for a macro: {line!r}"
    assert page.isascii()
    assert r"\-\-colour" in page and r"back\eslash" in page and "PRIVATE" not in page

    path = tmp_path / "tricky.1"
    path.write_text(page, encoding="utf-8")
    result = _groff(path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    result = _man(path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = _plain(result.stdout)
    for expected in ("Tricky tool.", "Input file.", "A [literal] and a [tool.x] table.", ".starts with a dot",
                     "'starts with a quote", UNICODE_HELP,
                     "-C, --colour {red|dark-blue}", "--flag, --no-flag", "--pair INTEGER FLOAT",
                     "TRICKY_LEVEL", "Range: from 1 to 5", "Default: red.", "Default: --flag.",
                     "  keep\n", "    this layout", "gradcheck group leaf", "-N, --name TEXT", "Second paragraph."):
        assert expected in text, f"{expected!r} not in the rendered page"
    for absent in ("[bold]", "--secret", "invisible", "Never shown", "PRIVATE"):
        assert absent not in text


# ------------------------------------------------------------------------------ shell completion


def _console_script() -> str:
    """The installed ``gradcheck`` entry point (next to this interpreter first: a pyenv shim would
    re-resolve the interpreter)."""
    for candidate in (Path(sys.executable).parent / "gradcheck", Path(sys.executable).parent / "gradcheck.exe"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("gradcheck")
    if found is None:
        pytest.skip("the gradcheck console script is not installed (pip install -e .)")
    return found


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("_GRADCHECK_COMPLETE", "COMP_WORDS", "COMP_CWORD") and not k.startswith("_TYPER_COMPLETE")}
    env.update(extra)
    return env


def _complete(words: str, cword: int | None = None) -> list[str]:
    """What bash completion asks the program for: ``COMP_WORDS``/``COMP_CWORD`` in, one candidate a line out."""
    if cword is None:
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    env = _clean_env(_GRADCHECK_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
    result = _run([_console_script()], env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("shell, marker", [("bash", "complete "), ("zsh", "compdef"), ("fish", "complete ")])
def test_show_completion_prints_a_script(shell, marker):
    env = _clean_env(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    result = _run([_console_script(), "--show-completion", shell], env)
    assert result.returncode == 0, result.stderr
    assert f"_GRADCHECK_COMPLETE=complete_{shell}" in result.stdout
    assert marker in result.stdout and "gradcheck" in result.stdout


def test_completes_command_names(option_names):
    assert _complete("gradcheck ana") == ["analyze"]
    commands = {path.split()[1] for path in option_names if path.count(" ") == 1}
    assert set(_complete("gradcheck ")) == commands


def test_completes_option_names(option_names):
    assert _complete("gradcheck analyze --form") == ["--format"]
    long_names = {n for n in option_names["gradcheck analyze"] if n.startswith("--")}
    assert long_names <= set(_complete("gradcheck analyze --"))


def test_completes_choice_values(command):
    from gradcheck_cli.cli.formats import OutputFormat

    analyze = command.commands["analyze"]
    param = next(p for p in analyze.params if "--format" in getattr(p, "opts", ()))
    choices = gen_man._choices(param)
    assert choices == [f.value for f in OutputFormat]
    assert _complete("gradcheck analyze model.pt --format ") == choices
    assert _complete("gradcheck analyze model.pt -F m") == ["markdown"]


def test_bash_completion_script_completes_in_bash(tmp_path):
    bash = _needs("bash")
    script = tmp_path / "gradcheck-completion.bash"
    env = _clean_env(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    result = _run([_console_script(), "--show-completion", "bash"], env)
    script.write_text(result.stdout, encoding="utf-8")
    program = (f'source "{script}"\n'
               "complete -p gradcheck\n"
               "COMP_WORDS=(gradcheck analyze --form); COMP_CWORD=2\n"
               "_gradcheck_completion gradcheck\n"
               'printf "reply:%s\\n" "${COMPREPLY[@]}"\n')
    env = _clean_env(PATH=os.pathsep.join([str(Path(_console_script()).parent), os.environ.get("PATH", "")]))
    result = _run([bash, "--norc", "--noprofile", "-c", program], env)
    assert result.returncode == 0, result.stderr
    assert "-F _gradcheck_completion gradcheck" in result.stdout
    assert "reply:--format" in result.stdout.splitlines()
