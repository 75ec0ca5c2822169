"""What ``--version`` prints, and who prints in a distributed run: facts about the process, read without
importing torch (``--version`` and ``--help`` stay instant)."""

from __future__ import annotations

from pathlib import Path

from gradcheck_cli import __version__


def version_text() -> str:
    """gradcheck's version and what it runs on (torch, its CUDA build, Python), like ``transformers env``.

    Read from the installed packages' metadata, not by importing torch (1-4 s): ``--version`` stays instant.
    """
    import platform

    lines = [f"gradcheck {__version__}"]
    torch_version, cuda = _torch_build()
    if torch_version is None:
        lines.append("torch: not installed (pip install torch)")
    else:
        lines.append(f"torch {torch_version} ({cuda or 'CPU build'})")
    lines.append(f"python {platform.python_version()} ({platform.python_implementation()}, {platform.system()} "
                 f"{platform.machine()})")
    return "\n".join(lines)


def _torch_build() -> tuple[str | None, str | None]:
    """(torch's version, the GPU platform it was built for -- "CUDA 12.4", "ROCm 6.1" -- or None), without
    importing torch."""
    import importlib.metadata
    import importlib.util
    import re

    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None, None
    cuda = None
    try:
        spec = importlib.util.find_spec("torch")  # a top-level package: located, not imported
        for folder in (spec.submodule_search_locations or []) if spec is not None else []:
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
            for key, label in (("cuda", "CUDA"), ("hip", "ROCm")):
                found = re.search(rf"^{key}\b[^=\n]*=\s*['\"]([^'\"]+)['\"]", text, re.M)
                if found:
                    cuda = f"{label} {found.group(1)}"
                    break
            break
    except (OSError, ValueError, ImportError):
        pass
    return version, cuda


def follower_rank(distributed: str | None) -> bool:
    """Under torchrun (--distributed), every rank but 0 stays silent and writes nothing."""
    import os

    return distributed not in (None, "none") and os.environ.get("RANK", "0") != "0"


def silent_console():  # noqa: ANN202
    import os

    from rich.console import Console

    return Console(file=open(os.devnull, "w"), stderr=True)  # noqa: SIM115 - lives as long as the process
