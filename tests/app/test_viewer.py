"""The large slice view's pictures (sequence views, window, zoom, filled/outlined layers in the
palette's colours, PNG) on tiny arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medseg.app.viewer import (
    SEQUENCE_CHANNELS,
    compose,
    error_layers,
    png_bytes,
    prediction_layers,
    sequence_view,
    upscale,
    window,
)
from medseg.imaging.palette import (
    ERROR_KINDS,
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    PREDICTED,
    TRUE_POSITIVE,
)
from medseg.predict import mask_picture

RED = (255, 0, 0)


def test_sequences_pick_the_kaggle_channels():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # pre-contrast, FLAIR, post
    assert list(SEQUENCE_CHANNELS) == ["FLAIR", "Pre-contrast", "Post-contrast", "RGB composite"]
    assert sequence_view(image, "Pre-contrast")[0, 0].tolist() == [10, 10, 10]
    assert sequence_view(image, "FLAIR")[0, 0].tolist() == [20, 20, 20]
    assert sequence_view(image, "Post-contrast")[0, 0].tolist() == [30, 30, 30]
    assert sequence_view(image, "RGB composite")[0, 0].tolist() == [10, 20, 30]
    with pytest.raises(KeyError):
        sequence_view(image, "T2")


def test_palette_colours_are_distinct_and_named():
    assert len({TRUE_POSITIVE.rgb, FALSE_POSITIVE.rgb, FALSE_NEGATIVE.rgb}) == 3
    assert FALSE_POSITIVE.hex == "#ff00ff" and PREDICTED.rgb == TRUE_POSITIVE.rgb == (255, 221, 0)
    assert ERROR_KINDS == {"tp": TRUE_POSITIVE, "fp": FALSE_POSITIVE, "fn": FALSE_NEGATIVE}


def test_window_is_linear_between_low_and_high_and_clipped_outside():
    grey = np.array([[0, 100, 101, 140, 199, 200, 255]], np.uint8)
    # (v - 100) * 255 / 100: 101 -> 2.55 -> 3, 140 -> 102, 199 -> 252.45 -> 252
    assert window(grey, 100, 200).tolist() == [[0, 0, 3, 102, 252, 255, 255]]
    assert window(grey, 100, 200).dtype == np.uint8
    rgb = np.stack([grey, grey // 2, grey], axis=-1)
    assert window(rgb, 100, 200).shape == (1, 7, 3)
    assert window(rgb, 100, 200)[0, 3].tolist() == [102, 0, 102]  # 70 is below low
    for low, high in ((100, 100), (200, 100)):
        with pytest.raises(ValueError, match="must be above low"):
            window(grey, low, high)


def test_upscale_repeats_each_pixel_factor_times_both_ways():
    grey = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    assert upscale(grey, 2).tolist() == [
        [1, 1, 2, 2, 3, 3],
        [1, 1, 2, 2, 3, 3],
        [4, 4, 5, 5, 6, 6],
        [4, 4, 5, 5, 6, 6],
    ]
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = upscale(rgb, 3)
    assert big.shape == (6, 9, 3)
    assert big[5, 8].tolist() == rgb[1, 2].tolist() and big[2, 3].tolist() == rgb[0, 1].tolist()
    assert np.array_equal(upscale(rgb, 1), rgb)
    for factor in (0, -1, 1.5):
        with pytest.raises(ValueError, match="integer >= 1"):
            upscale(grey, factor)  # type: ignore[arg-type]


def test_fill_blends_with_opacity_and_leaves_the_rest_alone():
    background = np.full((2, 2, 3), 100, np.uint8)
    mask = np.array([[1, 0], [0, 0]])
    half = compose(background, [(mask, RED)], style="fill", opacity=0.5)
    assert half[0, 0].tolist() == [178, 50, 50]  # (100 + 255) / 2 = 177.5 -> 178, 100 / 2
    assert half[0, 1].tolist() == half[1, 0].tolist() == half[1, 1].tolist() == [100, 100, 100]
    assert compose(background, [(mask, RED)], style="fill", opacity=0.0).tolist() == (
        background.tolist()
    )
    assert background[0, 0].tolist() == [100, 100, 100]  # input not modified


def test_layers_paint_in_order_and_zoom_before_painting():
    background = np.zeros((2, 2, 3), np.uint8)
    first, second = np.array([[1, 1], [0, 0]]), np.array([[0, 1], [0, 0]])
    solid = compose(background, [(first, RED), (second, (0, 0, 255))], style="fill", opacity=1.0)
    assert solid[0].tolist() == [[255, 0, 0], [0, 0, 255]]  # the later layer wins
    big = compose(background, [(second, RED)], style="fill", opacity=1.0, factor=3)
    assert big.shape == (6, 6, 3)
    assert big[:3, 3:].reshape(-1, 3).tolist() == [list(RED)] * 9
    assert not big[:, :3].any() and not big[3:].any()


def test_outline_is_the_inner_boundary_one_pixel_thick_after_zooming():
    background = np.zeros((4, 4, 3), np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 1  # zoomed x2: rows and columns 2..5 of an 8x8 picture
    big = compose(background, [(mask, RED)], style="outline", opacity=1.0, factor=2)
    painted = big.any(axis=-1)
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    expected[3:5, 3:5] = False  # the inside of the 4x4 zoomed square stays
    assert np.array_equal(painted, expected)
    assert big[2, 2].tolist() == list(RED)
    half = compose(np.full((4, 4, 3), 100, np.uint8), [(mask, RED)], style="outline",
                   opacity=0.5, factor=2)
    assert half[2, 3].tolist() == [178, 50, 50] and half[3, 3].tolist() == [100, 100, 100]


def test_outline_closes_along_the_picture_edge():
    full = np.ones((3, 3), np.uint8)
    painted = compose(np.zeros((3, 3, 3), np.uint8), [(full, RED)], style="outline",
                      opacity=1.0).any(axis=-1)
    assert painted.tolist() == [[True] * 3, [True, False, True], [True] * 3]


def test_compose_refuses_bad_input_with_the_shapes():
    background = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(ValueError, match=r"mask \(3, 2\) and background \(2, 3\)"):
        compose(background, [(np.zeros((3, 2)), RED)], style="fill", opacity=1.0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\), got shape \(2, 3\)"):
        compose(np.zeros((2, 3)), [], style="fill", opacity=1.0)
    for opacity in (-0.1, 1.5):
        with pytest.raises(ValueError, match="opacity"):
            compose(background, [], style="fill", opacity=opacity)
    with pytest.raises(ValueError, match="style"):
        compose(background, [], style="dotted", opacity=1.0)  # type: ignore[arg-type]


def test_error_layers_split_the_masks_in_the_legend_colours():
    pred = np.array([[1, 1], [0, 0]])
    target = np.array([[1, 0], [1, 0]])
    layers = error_layers(pred, target)
    assert [rgb for _, rgb in layers] == [TRUE_POSITIVE.rgb, FALSE_POSITIVE.rgb, FALSE_NEGATIVE.rgb]
    assert [mask.tolist() for mask, _ in layers] == [
        [[True, False], [False, False]],
        [[False, True], [False, False]],
        [[False, False], [True, False]],
    ]
    only = error_layers(pred, target, shown=("fn", "fp"))
    assert [rgb for _, rgb in only] == [FALSE_POSITIVE.rgb, FALSE_NEGATIVE.rgb]
    assert error_layers(pred, target, shown=()) == []
    with pytest.raises(ValueError, match="unknown layers"):
        error_layers(pred, target, shown=("tn",))
    with pytest.raises(ValueError, match="differ in size"):
        error_layers(pred, np.zeros((2, 3)))
    (mask, rgb), = prediction_layers(np.array([[0, 3]]))
    assert (mask.tolist(), rgb) == ([[False, True]], PREDICTED.rgb)


def test_filled_error_layers_colour_each_outcome():
    background = np.full((2, 2, 3), 100, np.uint8)
    pred = np.array([[1, 1], [0, 0]])
    target = np.array([[1, 0], [1, 0]])
    solid = compose(background, error_layers(pred, target), style="fill", opacity=1.0)
    assert solid[0, 0].tolist() == list(TRUE_POSITIVE.rgb)
    assert solid[0, 1].tolist() == list(FALSE_POSITIVE.rgb)
    assert solid[1, 0].tolist() == list(FALSE_NEGATIVE.rgb)
    assert solid[1, 1].tolist() == [100, 100, 100]  # true negative: untouched
    half = compose(background, error_layers(pred, target), style="fill", opacity=0.5)
    assert half[0, 1].tolist() == [178, 50, 178]  # (100 + 255) / 2 rounded, (100 + 0) / 2
    assert half[1, 0].tolist() == [50, 164, 178]  # (100 + 229) / 2 = 164.5: to even, 164


def test_png_round_trip_is_exact():
    rng = np.random.default_rng(1)
    mask = mask_picture(rng.integers(0, 2, (5, 7)))
    rgb = rng.integers(0, 256, (6, 4, 3), dtype=np.uint8)
    for picture in (mask, rgb):
        data = png_bytes(picture)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        decoded = np.asarray(Image.open(io.BytesIO(data)))
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, picture)
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((2, 2, 4), np.uint8))
