"""Synthetic layer rows for rule tests: the numbers a rule reads, nothing run."""

from __future__ import annotations

from gradcheck_cli.report.model import ActivationStats, GradStats, InitAdvice, LayerReport


def activation(std: float = 1.0, *, mean: float = 0.0, signal: float | None = None, zero: float | None = None,
               dead: float | None = None, units: int | None = None, samples: float | None = None,
               saturation: float | None = None, nonfinite_units: int = 0) -> ActivationStats:
    centring = abs(mean) / std if std > 0 else 0.0
    return ActivationStats(mean=mean, std=std, signal_std=std if signal is None else signal, centring=centring,
                           min=mean - 3 * std, max=mean + 3 * std, zero_fraction=zero, nonfinite_units=nonfinite_units,
                           dead_ratio=dead, units=units, samples_per_unit=samples, saturation=saturation)


def init(ratio: float, *, activation_after: str = "relu", normalized: bool = False, recommended: float = 0.1) -> InitAdvice:
    return InitAdvice(fan_in=200, fan_out=200, activation_after=activation_after, normalized_after=normalized,
                      scheme="he", gain=2**0.5, current_std=ratio * recommended, recommended_std=recommended,
                      ratio=ratio, current_scheme="custom")


def row(index: int, kind: str = "linear", *, name: str | None = None, std: float = 1.0, grad: float | None = 1.0,
        shape: tuple[int, ...] = (32, 64), act: ActivationStats | None = None, advice: InitAdvice | None = None,
        grad_nonfinite: bool = False) -> LayerReport:
    return LayerReport(index=index, name=name or str(index), kind=kind, type=kind, observed=True, shape=list(shape),
                       activation=act or activation(std), grad=GradStats(grad, grad_nonfinite, None, None, None, None),
                       init=advice, note=None)


def chain(grads: list[float], stds: list[float] | None = None, shape: tuple[int, ...] = (32, 64)) -> list[LayerReport]:
    """Weight layers in forward order with the given backward (and forward) signals."""
    stds = stds or [1.0] * len(grads)
    return [row(i, grad=g, std=s, shape=shape) for i, (g, s) in enumerate(zip(grads, stds))]
