"""The Explorer's tile controls: a slider that steps through the values a tile allows, and a
box to type any other allowed value, which refuses (snaps back, says why) what Tiles refuses.

The sliders are `SelectionSlider`s over `tile_choices(field)`: the powers of two and the
multiples of 16 that are 3 x a power of two (48, 96, 192, ...), within the field's range
and step (engine.Tiles.field_range), and 0 ("auto") for block_rows. So one notch is one
allowed value, not one integer out of 4096 (a 2 px drag used to jump 1 -> 38), and a
slider can never hold a value the engine refuses. A value typed in the box that Tiles
accepts but the slider does not list (pointwise_pixels 20) is added to the slider's
choices; one Tiles refuses (pointwise_channels 20) is refused there and then: the box goes
back to the slider's value and the `refused` callback gets the reason.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import ipywidgets as widgets

import engine


def tile_choices(field: str) -> list[int]:
    """The values the slider of Tiles field `field` steps through, ascending: powers of two
    and multiples of 16 that are 3 x a power of two, within engine.Tiles.field_range(field)
    and a multiple of its step; 0 first when the range starts at 0 (block_rows: auto)."""
    low, high, step = engine.Tiles.field_range(field)
    values = set()
    power = 1
    while power <= high:
        values.update(v for v in (power, 3 * power) if v % 16 == 0 or v == power)
        power *= 2
    chosen = sorted(v for v in values if max(low, 1) <= v <= high and v % step == 0)
    return ([0] if low == 0 else []) + chosen


def choice_label(field: str, value: int) -> str:
    """The slider's readout of a value: "auto" for block_rows 0, else the number."""
    return "auto" if field == "block_rows" and value == 0 else str(value)


def tile_refusal(field: str, value) -> str | None:
    """Why Tiles refuses `value` for `field` (its ValueError's text), or None if it accepts it."""
    try:
        engine.Tiles(**{field: value})
    except (ValueError, TypeError) as error:
        return str(error)
    return None


def _options(field: str, values) -> list[tuple[str, int]]:
    return [(choice_label(field, v), v) for v in sorted(set(int(v) for v in values))]


def make_tile_slider(field: str, value: int, description: str) -> widgets.SelectionSlider:
    """A SelectionSlider over tile_choices(field) (plus `value` if it is not one of them)."""
    return widgets.SelectionSlider(options=_options(field, [*tile_choices(field), value]), value=int(value),
                                   description=description, continuous_update=False,
                                   style={"description_width": "initial"}, layout=widgets.Layout(width="360px"))


def ensure_choice(slider: widgets.SelectionSlider, field: str, value: int) -> None:
    """Add `value` (one Tiles accepts) to the slider's choices, in order, if it is missing.
    Replacing the options moves the slider's value to the first and back: call it where
    the slider's observers are held."""
    values = [v for _, v in slider.options]
    if int(value) in values:
        return
    current = slider.value
    slider.options = _options(field, [*values, value])
    slider.value = current


def make_typed_box(field: str, slider: widgets.SelectionSlider, refused: Callable[[str, int, int, str], None],
                   hold: Callable[[], contextlib.AbstractContextManager]) -> widgets.IntText:
    """A box beside `slider` to type a value: an allowed one moves the slider there (adding
    it to the choices, within `hold()` since replacing a SelectionSlider's options moves its
    value), a refused one snaps the box back to the slider's value and calls
    refused(field, typed value, kept value, reason). The box follows the slider."""
    box = widgets.IntText(value=slider.value, continuous_update=False, layout=widgets.Layout(width="80px"),
                          tooltip=f"type a {field.replace('_', ' ')} value")
    box.add_class(f"tile-typed-{field}")            # a stable handle for the browser test

    def typed(change) -> None:
        value = change["new"]
        if value == slider.value:
            return
        reason = tile_refusal(field, value)
        if reason is not None:
            kept = slider.value
            box.value = kept                       # snap back first: the box never shows a refused value
            refused(field, value, kept, reason)
            return
        with hold():
            ensure_choice(slider, field, value)
        slider.value = value                       # the slider's observer measures

    def follow(change) -> None:
        if box.value != change["new"]:
            box.value = change["new"]
    box.observe(typed, names="value")
    slider.observe(follow, names="value")
    return box
