"""The map's colour scales: plotly's interpolation, computed without re-parsing the scale per element."""

from __future__ import annotations

import numpy as np
import pytest

from app.mapview import SCALES, loading_color, voltage_color


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])


@pytest.mark.parametrize("name", sorted(SCALES))
def test_scale_colours_are_plotlys_within_one_step(name) -> None:
    from plotly.colors import sample_colorscale, unlabel_rgb

    scale = SCALES[name]
    span = scale.vmax - scale.vmin
    for value in np.linspace(scale.vmin - 0.1 * span, scale.vmax + 0.1 * span, 801):
        ours = _rgb(scale.color(float(value)))
        ref = np.array([round(c) for c in unlabel_rgb(sample_colorscale(list(scale.colorscale),
                                                                        [scale.position(float(value))])[0])])
        assert np.abs(ours - ref).max() <= 1, (value, ours, ref)
    # the ends are the scale's end colours, and values beyond the bar take them
    assert scale.color(scale.vmin - span) == scale.color(scale.vmin)
    assert scale.color(scale.vmax + span) == scale.color(scale.vmax)


def test_the_map_colours_follow_the_quantity() -> None:
    assert loading_color(10.0) != loading_color(95.0)
    assert voltage_color(0.96) != voltage_color(1.04)
