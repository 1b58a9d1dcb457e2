"""The linear probe's regularization path: where it stops, where it extends, what it fits."""

import numpy as np
import pytest

from exlm_chem.moleculenet.probes import (
    REGULARIZATION,
    REGULARIZATION_LIMITS,
    LinearPath,
    choose_regularization,
)


def counted(values):
    """``values`` as value(C), and the list of C values asked for."""
    asked = []

    def value(c):
        asked.append(c)
        return values(c)

    return value, asked


def peak_at(best: float, later: float | None = None):
    """Validation values that fall away from ``best``; ``later``: a higher second peak."""

    def values(c: float) -> float:
        if later is not None and c == later:
            return 1.0
        return -abs(np.log10(c) - np.log10(best))

    return values


def test_the_walk_stops_once_patience_values_past_the_best_do_not_beat_it():
    value, asked = counted(peak_at(0.01))
    assert choose_regularization(value, patience=2) == 0.01
    assert asked == [1e-4, 1e-3, 0.01, 0.1, 1.0]  # 10 and 100, the slowest fits, skipped


def test_without_patience_the_whole_grid_is_walked_and_a_later_peak_is_found():
    values = peak_at(0.01, later=100.0)
    value, asked = counted(values)
    assert choose_regularization(value, patience=None) == 100.0
    assert asked[: len(REGULARIZATION)] == list(REGULARIZATION)
    # The patience trades that second peak for time: measured rare on the shared sets.
    assert choose_regularization(counted(values)[0], patience=2) == 0.01


@pytest.mark.parametrize("best", [1e-6, 1e3])
def test_the_grid_extends_past_the_edge_that_holds_the_best(best):
    value, asked = counted(peak_at(best))
    assert choose_regularization(value, patience=2) == pytest.approx(best)
    assert min(asked) < REGULARIZATION[0] or max(asked) > REGULARIZATION[-1]
    assert REGULARIZATION_LIMITS[0] <= min(asked) and max(asked) <= REGULARIZATION_LIMITS[1]


def test_linear_path_fits_each_regularization_once_and_keeps_its_model():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 10))
    y = (X[:, 0] + 0.5 * rng.standard_normal(300) > 0).astype(float)
    path = LinearPath(True, X[:200], y[:200], X[200:], y[200:])
    first = path.value(0.1)
    assert path.value(0.1) == first and len(path.models) == 1
    path.value(1e-4)
    assert path.models[1e-4].C == 1e-4 and path.models[0.1].C == 0.1
    # Strong regularization shrinks the weights: the kept models are distinct fits.
    assert np.abs(path.models[1e-4].coef_).sum() < np.abs(path.models[0.1].coef_).sum()
