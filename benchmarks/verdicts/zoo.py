"""Model zoo sweep: gradcheck's verdict on tiny, randomly initialised transformers families.

    python benchmarks/verdicts/zoo.py                         # all families, table on stdout
    python benchmarks/verdicts/zoo.py --only gpt2,llama --out /tmp/zoo.json

Every family is built from a tiny config (4 layers per stack, 2 blocks per stage for vision, hidden 32-64, vocab 200, sequence 12, batch 2)
with random weights -- never ``from_pretrained``, nothing is downloaded -- and analysed once with
``gradcheck_cli.analyze(model, inputs)`` in train mode with the default (projection) loss. These are
models at their library's own init, so every error/warning finding here is a candidate false alarm.

The family table is data: :func:`families` returns :class:`Family` rows (name, builder, input
builder), so adding a family is one line, and a test can parametrise over it. Importing this module
imports neither torch nor transformers and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "zoo.json"

VOCAB = 200
LAYERS = 4
"""Blocks per stack: enough (>= min_depth 3) for the per-role comparison across blocks to be judged."""
SEQ = 12
BATCH = 2
TIME_BUDGET_S = 10.0


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[], Any]
    """Returns a freshly initialised nn.Module (called under a fixed torch seed)."""
    inputs: Callable[[], Any]
    """Returns the inputs for ``analyze``: a dict of keyword tensors or a tuple of positional ones."""
    note: str = ""


# ---------------------------------------------------------------- builders (lazy imports)

def hf(model_cls: str, config_cls: str, **config: Any) -> Callable[[], Any]:
    """A builder for ``transformers.<model_cls>(transformers.<config_cls>(**config))``."""

    def build() -> Any:
        import transformers

        cfg = getattr(transformers, config_cls)(**config)
        return getattr(transformers, model_cls)(cfg)

    build.__qualname__ = f"hf({model_cls})"
    return build


def tokens(vocab: int = VOCAB, batch: int = BATCH, seq: int = SEQ, low: int = 3) -> Callable[[], dict]:
    """input_ids in [low, vocab) (ids below ``low`` are reserved for pad/bos/eos)."""

    def make() -> dict:
        import torch

        return {"input_ids": torch.randint(low, vocab, (batch, seq))}

    return make


def seq2seq(vocab: int = VOCAB, batch: int = BATCH, src: int = SEQ, tgt: int = 8) -> Callable[[], dict]:
    def make() -> dict:
        import torch

        return {"input_ids": torch.randint(3, vocab, (batch, src)),
                "decoder_input_ids": torch.randint(3, vocab, (batch, tgt))}

    return make


def pixels(channels: int = 3, size: int = 32, batch: int = BATCH) -> Callable[[], dict]:
    def make() -> dict:
        import torch

        return {"pixel_values": torch.randn(batch, channels, size, size)}

    return make


def audio_features(mel: int, frames: int, tgt: int = 8, vocab: int = VOCAB, batch: int = BATCH) -> Callable[[], dict]:
    def make() -> dict:
        import torch

        return {"input_features": torch.randn(batch, mel, frames),
                "decoder_input_ids": torch.randint(3, vocab, (batch, tgt))}

    return make


def waveform(samples: int, batch: int = BATCH) -> Callable[[], dict]:
    def make() -> dict:
        import torch

        return {"input_values": torch.randn(batch, samples)}

    return make


# Shared tiny settings.
_SPECIAL = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
_ENC = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64)
_DEC = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, use_cache=False, **_SPECIAL)
_VIT = dict(hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=64)


def families() -> list[Family]:
    """The zoo: one row per family. Builders and input builders import torch/transformers lazily."""
    return [
        # encoders
        Family("bert", hf("BertModel", "BertConfig", **_ENC, pad_token_id=0), tokens()),
        Family("roberta", hf("RobertaModel", "RobertaConfig", **_ENC, pad_token_id=1, bos_token_id=0, eos_token_id=2), tokens()),
        Family("distilbert", hf("DistilBertModel", "DistilBertConfig", vocab_size=VOCAB, dim=32, n_layers=LAYERS, n_heads=2,
                                hidden_dim=64, max_position_embeddings=64, pad_token_id=0), tokens()),
        Family("albert", hf("AlbertModel", "AlbertConfig", **_ENC, embedding_size=16, **_SPECIAL), tokens()),
        Family("electra", hf("ElectraModel", "ElectraConfig", **_ENC, embedding_size=16, pad_token_id=0), tokens()),
        # decoders
        Family("gpt2", hf("GPT2LMHeadModel", "GPT2Config", vocab_size=VOCAB, n_embd=32, n_layer=LAYERS, n_head=2,
                          n_positions=64, use_cache=False, bos_token_id=1, eos_token_id=2), tokens()),
        Family("gpt_neo", hf("GPTNeoForCausalLM", "GPTNeoConfig", vocab_size=VOCAB, hidden_size=32, num_layers=LAYERS, num_heads=2,
                             attention_types=[[["global", "local"], LAYERS // 2]], window_size=8, max_position_embeddings=64,
                             use_cache=False, bos_token_id=1, eos_token_id=2), tokens()),
        Family("gpt_neox", hf("GPTNeoXForCausalLM", "GPTNeoXConfig", **{k: v for k, v in _DEC.items() if k != "num_key_value_heads"}),
               tokens()),
        Family("opt", hf("OPTForCausalLM", "OPTConfig", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=LAYERS, ffn_dim=64,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=64, use_cache=False,
                         **_SPECIAL), tokens()),
        Family("llama", hf("LlamaForCausalLM", "LlamaConfig", **_DEC), tokens()),
        Family("mistral", hf("MistralForCausalLM", "MistralConfig", **_DEC, sliding_window=8), tokens()),
        Family("qwen2", hf("Qwen2ForCausalLM", "Qwen2Config", **_DEC), tokens()),
        Family("gemma", hf("GemmaForCausalLM", "GemmaConfig", **_DEC, head_dim=8), tokens()),
        Family("gemma2", hf("Gemma2ForCausalLM", "Gemma2Config", **_DEC, head_dim=8, sliding_window=8), tokens()),
        Family("phi", hf("PhiForCausalLM", "PhiConfig", **_DEC), tokens()),
        Family("phi3", hf("Phi3ForCausalLM", "Phi3Config", **_DEC), tokens()),
        Family("olmo", hf("OlmoForCausalLM", "OlmoConfig", **_DEC), tokens()),
        Family("falcon", hf("FalconForCausalLM", "FalconConfig", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=LAYERS,
                            num_attention_heads=2, use_cache=False, bos_token_id=1, eos_token_id=2), tokens()),
        Family("mixtral", hf("MixtralForCausalLM", "MixtralConfig", **_DEC, num_local_experts=4, num_experts_per_tok=2),
               tokens(), note="MoE, 4 experts, top-2"),
        Family("qwen2_moe", hf("Qwen2MoeForCausalLM", "Qwen2MoeConfig", **_DEC, num_experts=4, num_experts_per_tok=2,
                               moe_intermediate_size=32, shared_expert_intermediate_size=32), tokens(),
               note="MoE, 4 experts, top-2, shared expert"),
        Family("mamba", hf("MambaForCausalLM", "MambaConfig", vocab_size=VOCAB, hidden_size=32, state_size=8,
                           num_hidden_layers=LAYERS, expand=2, conv_kernel=4, use_cache=False, **_SPECIAL), tokens(),
               note="state-space model (slow path on CPU)"),
        # encoder-decoder
        Family("t5", hf("T5ForConditionalGeneration", "T5Config", vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64,
                        num_layers=LAYERS, num_heads=2, decoder_start_token_id=0, use_cache=False, pad_token_id=0,
                        eos_token_id=1), seq2seq()),
        Family("bart", hf("BartForConditionalGeneration", "BartConfig", vocab_size=VOCAB, d_model=32, encoder_layers=LAYERS,
                          decoder_layers=LAYERS, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                          decoder_ffn_dim=64, max_position_embeddings=64, use_cache=False, decoder_start_token_id=2,
                          forced_eos_token_id=2, **_SPECIAL), seq2seq()),
        # speech
        Family("whisper", hf("WhisperForConditionalGeneration", "WhisperConfig", vocab_size=VOCAB, num_mel_bins=16,
                             d_model=32, encoder_layers=LAYERS, decoder_layers=LAYERS, encoder_attention_heads=2,
                             decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=16,
                             max_target_positions=32, use_cache=False, decoder_start_token_id=1, suppress_tokens=[],
                             begin_suppress_tokens=[], **_SPECIAL), audio_features(mel=16, frames=32),
               note="input_features (B, 16 mel, 32 frames)"),
        Family("wav2vec2", hf("Wav2Vec2Model", "Wav2Vec2Config", vocab_size=32, hidden_size=32, num_hidden_layers=LAYERS,
                              num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
                              conv_kernel=(10, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2),
               waveform(400), note="raw waveform (B, 400); SpecAugment masking at its default (train mode)"),
        # vision
        Family("vit", hf("ViTModel", "ViTConfig", **_VIT, image_size=16, patch_size=4), pixels(size=16)),
        Family("clip_vision", hf("CLIPVisionModel", "CLIPVisionConfig", **_VIT, image_size=16, patch_size=4), pixels(size=16)),
        Family("swin", hf("SwinModel", "SwinConfig", image_size=32, patch_size=4, embed_dim=16, depths=[2, 2],
                          num_heads=[2, 2], window_size=4), pixels(size=32), note="2 stages of 2 blocks"),
        Family("convnext", hf("ConvNextModel", "ConvNextConfig", num_stages=2, hidden_sizes=[16, 32], depths=[2, 2], image_size=32),
               pixels(size=32), note="LayerScale 1e-6 at init"),
        Family("resnet", hf("ResNetModel", "ResNetConfig", embedding_size=16, hidden_sizes=[16, 32], depths=[2, 2],
                            layer_type="basic"), pixels(size=32)),
    ]


# ---------------------------------------------------------------- running

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _num(value: Any) -> Any:
    """JSON-safe float (NaN/Inf as strings)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    return value


def run_family(family: Family, seed: int = 0) -> dict[str, Any]:
    """Build, analyse and summarise one family. Never raises: failures are recorded with the stage."""
    import torch

    from gradcheck_cli import analyze

    row: dict[str, Any] = {"name": family.name, "note": family.note, "status": "ok", "error": None}
    t0 = time.perf_counter()
    try:
        torch.manual_seed(seed)
        model = family.build()
        torch.manual_seed(seed + 1)
        inputs = family.inputs()
    except Exception as exc:  # noqa: BLE001 -- a family that cannot be built is reported, not fatal
        row.update(status="build_failed", error=_first_line(exc), traceback=traceback.format_exc(limit=4))
        return row
    row["build_seconds"] = round(time.perf_counter() - t0, 3)
    row["model_type"] = type(model).__name__
    row["parameters"] = sum(p.numel() for p in model.parameters())
    row["attn_implementation"] = getattr(getattr(model, "config", None), "_attn_implementation", None)
    row["inputs"] = {k: list(v.shape) for k, v in inputs.items()} if isinstance(inputs, dict) else [list(v.shape) for v in inputs]
    t1 = time.perf_counter()
    try:
        report = analyze(model, inputs, mode="train")
    except Exception as exc:  # noqa: BLE001
        row.update(status="analyze_failed", error=_first_line(exc), traceback=traceback.format_exc(limit=6),
                   seconds=round(time.perf_counter() - t1, 3))
        return row
    row["seconds"] = round(time.perf_counter() - t1, 3)
    row["over_budget"] = row["seconds"] > TIME_BUDGET_S
    row["verdict"] = report.summary.verdict
    row["status_gradcheck"] = report.summary.status
    row["counts"] = dict(report.summary.findings)
    row["n_layers"] = len(report.layers)
    row["kinds"] = sorted({f.kind for f in report.findings})
    row["findings"] = [{"kind": f.kind, "severity": f.severity, "layer": f.layer, "value": _num(f.value),
                        "threshold": _num(f.threshold), "message": f.message} for f in report.findings]
    row["notes"] = list(report.notes)
    row["layers"] = [{"name": l.name, "kind": l.kind, "type": l.type,
                      "grad_output_rms": _num(l.grad.output_rms) if l.grad else None,
                      "act_std": _num(l.activation.std) if l.activation else None} for l in report.layers]
    return row


def _kinds_by_severity(row: dict[str, Any]) -> str:
    parts = []
    for sev, tag in (("error", "E"), ("warning", "W"), ("info", "I")):
        kinds = sorted({f["kind"] for f in row.get("findings", []) if f["severity"] == sev})
        if kinds:
            parts.append(f"{tag}: " + ", ".join(kinds))
    return "; ".join(parts) or "-"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| family | #layers | #error | #warning | #info | kinds found | time (s) |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | - | - | - | - | {r['status']}: {r['error']} | - |")
            continue
        c = r["counts"]
        lines.append(f"| {r['name']} | {r['n_layers']} | {c.get('error', 0)} | {c.get('warning', 0)} | {c.get('info', 0)} "
                     f"| {_kinds_by_severity(r)} | {r['seconds']:.2f}{' (!)' if r['over_budget'] else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import source_state

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--only", default=None, help="comma list of family names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--findings", action="store_true", help="also print every error/warning finding")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: stable timings)")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    import gradcheck_cli

    table_rows = families()
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = wanted - {f.name for f in table_rows}
        if unknown:
            parser.error(f"unknown families: {', '.join(sorted(unknown))}")
        table_rows = [f for f in table_rows if f.name in wanted]
    t_import = time.perf_counter() - t_start

    rows = []
    for fam in table_rows:
        row = run_family(fam, seed=args.seed)
        rows.append(row)
        print(f"  {fam.name:<12} {row['status']:<15} {row.get('seconds', 0):6.2f}s  {row.get('verdict') or row.get('error')}",
              file=sys.stderr, flush=True)
    total = time.perf_counter() - t_start

    doc = {"meta": {"torch": torch.__version__, "transformers": transformers.__version__,
                    "gradcheck": gradcheck_cli.__version__, "source": source_state(Path(gradcheck_cli.__file__).parent), "seed": args.seed, "loss": "projection (default)",
                    "mode": "train", "import_seconds": round(t_import, 2), "total_seconds": round(total, 2),
                    "families": len(rows), "failed": [r["name"] for r in rows if r["status"] != "ok"]},
           "families": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")

    print(table(rows))
    if args.findings:
        print("\nerror/warning findings:")
        for r in rows:
            for f in r.get("findings", []):
                if f["severity"] in ("error", "warning"):
                    print(f"  {r['name']:<12} {f['severity']:<7} {f['kind']:<22} {f['layer']:<45} {f['value']!s:.10}  {f['message'][:140]}")
    print(f"\n{len(rows)} families, {len(doc['meta']['failed'])} failed; total {total:.1f}s "
          f"(imports {t_import:.1f}s); JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
