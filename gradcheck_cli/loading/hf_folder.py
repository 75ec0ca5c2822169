"""A Hugging Face model folder (``save_pretrained``: ``config.json`` + safetensors or ``.bin`` weights,
possibly sharded with an index), built with transformers from the config and its own weights.

Nothing is downloaded (``local_files_only``) and no code from the folder runs unless the user says
``--trust-remote-code``: a config whose ``auto_map`` names its own modeling code is refused without it.
Pickled ``.bin`` weights go through transformers' own loader, which reads them with
``weights_only=True``. When no data is given, text models get token ids within their vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from gradcheck_cli.errors import ModelLoadError, first_line
from gradcheck_cli.loading.base import LoadedModel

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
DEFAULT_BATCH, DEFAULT_TOKENS = 2, 16


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path / 'config.json'} is not a readable JSON config: {first_line(exc)}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path / 'config.json'} is not a model config (a JSON object)")
    return data


def _token_ids(model: Any, vocab: Any) -> Any:
    """For a text model: (seed, batch size, range) -> random token ids within its vocabulary; else None."""
    if not (isinstance(vocab, int) and vocab > 1 and getattr(model, "main_input_name", "") == "input_ids"):
        return None

    def make(seed: int, batch_size: int | None, value_range: tuple[int, int] | None) -> tuple[Any, ...]:
        generator = torch.Generator().manual_seed(seed)
        low, high = value_range or (0, vocab)
        return (torch.randint(low, high, (batch_size or DEFAULT_BATCH, DEFAULT_TOKENS), generator=generator),)

    return make


def load_hf_folder(path: Path, device: torch.device, trust_remote_code: bool = False) -> LoadedModel:
    config = _config(path)
    if config.get("auto_map") and not trust_remote_code:
        raise ModelLoadError(f"{path} ships its own modeling code (config.json has auto_map)",
                             hint="pass --trust-remote-code only if you trust whoever made it")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelLoadError(f"{path} has a config.json but no weights ({', '.join(WEIGHT_FILES)})",
                             hint="save the model with save_pretrained")
    try:
        import transformers
    except ImportError:
        raise ModelLoadError(f"{path} is a Hugging Face model folder", hint="pip install transformers") from None
    architectures = config.get("architectures") or []
    loader = (getattr(transformers, architectures[0], None) if architectures else None) or transformers.AutoModel
    try:
        model = loader.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; all mean "cannot build it"
        raise ModelLoadError(f"cannot build the model in {path}: {first_line(exc)}",
                             hint="check config.json and that transformers knows the architecture") from None
    model.to(device)
    name = architectures[0] if architectures else type(model).__name__
    return LoadedModel(model, "hf_folder", str(path), make_inputs=_token_ids(model, config.get("vocab_size")),
                       notes=[f"built {name} from {path / 'config.json'} with its saved weights"])
