"""Seeded mutations of small real model files (byte flips, truncations, zeroed ranges): whatever the
damage, ``gradcheck analyze`` ends with a documented exit code (0-3), never 4 (internal error) and
never a traceback.

Run with ``-s`` to see the case count and the exit-code histogram (also in ``RESULTS`` afterwards).
"""

from __future__ import annotations

import random
import time
from collections import Counter

from robust_helpers import export_bytes, onnx_bytes, state_dict_bytes, torchscript_bytes, write_factory

SEED = 20240611
FLIPS = 14
"""Per format: 1-8 bytes XOR-ed with a random non-zero value at random offsets."""
TRUNCATIONS = 12
"""Per format: the file cut at a random length (0 .. len-1)."""
ZEROED = 11
"""Per format: a random range of 1-256 bytes set to zero."""

RESULTS: dict[str, object] = {}
"""Filled by the test: ``cases``, ``histogram`` (exit code -> count), ``by_format``, ``seconds``."""


def mutations(data: bytes, rng: random.Random):
    """(label, mutated bytes): deterministic for a given ``rng`` state."""
    for i in range(FLIPS):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
        yield f"flip{i}", bytes(buf)
    for i in range(TRUNCATIONS):
        yield f"truncate{i}", data[: rng.randrange(len(data))]
    for i in range(ZEROED):
        start = rng.randrange(len(data))
        buf = bytearray(data)
        stop = min(len(buf), start + rng.randint(1, 256))
        buf[start:stop] = bytes(stop - start)
        yield f"zero{i}", bytes(buf)


def test_mutated_model_files_never_cause_an_internal_error(invoke, tmp_path, capfd):
    factory = write_factory(tmp_path)
    originals = {  # format -> (suffix, bytes, extra CLI arguments)
        "torchscript": (".ts", torchscript_bytes(), []),
        "export": (".pt2", export_bytes(), []),
        "state_dict": (".pt", state_dict_bytes(), ["--factory", f"{factory}:build"]),
        "onnx": (".onnx", onnx_bytes(), []),
    }
    for name, (suffix, data, extra) in originals.items():  # the unmutated files are fine
        path = tmp_path / f"ok{suffix}"
        path.write_bytes(data)
        result = invoke("analyze", path, "-s", "4,8", *extra, "-q")
        assert result.exit_code == 0, (name, result.output)

    rng = random.Random(SEED)
    histogram: Counter[int] = Counter()
    by_format: dict[str, Counter[int]] = {}
    bad: list[str] = []
    started = time.perf_counter()
    for name, (suffix, data, extra) in originals.items():
        for label, mutated in mutations(data, rng):
            path = tmp_path / f"{name}-{label}{suffix}"
            path.write_bytes(mutated)
            try:
                result = invoke("analyze", path, "-s", "4,8", *extra, "-q")
                code, output, lines = result.exit_code, result.output, len(result.stderr.strip().splitlines())
            except BaseException as exc:  # noqa: BLE001 - escaped the CLI's boundary: a finding of this test
                code, output, lines = -1, f"{type(exc).__name__}: {exc}", 0
            stray = capfd.readouterr().err  # what libraries wrote past the CLI (loggers hold the real stderr)
            if "Traceback" in stray:
                bad.append(f"{name}-{label}{suffix}: a library printed a traceback: {stray.strip()[-300:]}")
            histogram[code] += 1
            by_format.setdefault(name, Counter())[code] += 1
            if code not in (0, 1, 2, 3) or "Traceback" in output or lines > 1:
                bad.append(f"{path.name}: exit {code}: {output.strip()[:300]}")
            path.unlink()
    seconds = time.perf_counter() - started
    RESULTS.update(cases=sum(histogram.values()), histogram=dict(sorted(histogram.items())),
                   by_format={k: dict(sorted(v.items())) for k, v in by_format.items()}, seconds=round(seconds, 1))
    print(f"\nfuzz: {RESULTS['cases']} cases in {seconds:.1f}s, exit codes {RESULTS['histogram']}, "
          f"by format {RESULTS['by_format']}")
    assert RESULTS["cases"] == len(originals) * (FLIPS + TRUNCATIONS + ZEROED)
    assert not bad, "\n".join(bad)
