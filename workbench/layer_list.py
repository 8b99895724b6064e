"""The Explorer's layer table: every step of the profile as a row of formatted numbers,
sortable, filterable, with a "memory bound only" switch; picking a row picks the step.

An ipywidgets Select is the table's body (one option per row, the step's name as its
value), under a header line; the rows come from workbench.layer_table at the Explorer's
level, formatted as every other view formats them (ms with 3 significant digits, % of
time, GB/s, % of roof with "above roof*").
"""
from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets
import pandas as pd

from workbench.layer_table import layer_table
from workbench.tables import format_number, significant

# Sort choices: (label, layer_table column, descending).
SORTS = (("execution order", "step", False), ("time", "ms", True), ("GFLOP/s", "gflops", True),
         ("AI", "ai", False), ("% of roof", "roof", True), ("GB/s", "gbs", True))
COLUMNS = (("layer", 26), ("op", 9), ("ms", 7), ("% time", 7), ("GFLOP/s", 8), ("AI", 7), ("GB/s", 7),
           ("% roof", 14), ("bound", 8))          # (header, width in characters)
ROWS_SHOWN = 12


def _cells(row) -> list[str]:
    """One row's cells as text (workbench.tables' rule for the numbers)."""
    name = row["name"] if len(row["name"]) <= 26 else "…" + row["name"][-25:]
    roof = format_number(row["roof"], "%") + ("*above" if row["note"] else "") if pd.notna(row["roof"]) else ""
    return [name, row["op"], significant(row["ms"]), format_number(row["share"], "%"), significant(row["gflops"]),
            significant(row["ai"]), significant(row["gbs"]), roof, row["bound"].replace("n/a", "-")]


def _line(cells) -> str:
    return " ".join(str(text).ljust(width)[:width] for text, (_, width) in zip(cells, COLUMNS))


def visible_rows(table: pd.DataFrame, text: str, sort: str, memory_only: bool) -> pd.DataFrame:
    """The rows of a layer_table that contain `text` (in name, op, shapes, bound or
    activation; any case), memory bound only if asked, sorted by the SORTS entry labelled
    `sort`. "op:<op>" ("op:conv", "op:se", "op:maxpool", "op:activation", ...) keeps
    exactly the steps of that op (plain "pool" also finds the maxpool steps)."""
    shown = table
    if memory_only:
        shown = shown[shown["bound"] == "memory"]
    if text:
        needle = text.lower()
        if needle.startswith("op:"):                 # one op kind exactly
            shown = shown[shown["op"].str.lower() == needle.removeprefix("op:").strip()]
        else:
            activation = shown["activation"] if "activation" in shown.columns else ""
            haystack = (shown["layer"] + " " + shown["op"] + " " + shown["input"] + " " + shown["output"] + " "
                        + shown["bound"] + " " + activation).str.lower()
            shown = shown[haystack.str.contains(needle, regex=False)]
    _, column, descending = next(s for s in SORTS if s[0] == sort)
    return shown.sort_values(column, ascending=not descending, kind="stable", na_position="last")


class LayerList:
    """The widgets of the layer table. `rows` (the Select: value = a step's layer name, or
    None), `filter_box`, `sort`, `memory_only`, `header`; `box` lays them out. on_pick(name)
    is called when a row is picked by the user; `refresh(frame, ceilings, level)` refills it,
    `show(name)` marks a row without calling on_pick."""

    def __init__(self, on_pick: Callable[[str], None], on_memory_only: Callable[[bool], None]):
        self._on_pick, self._quiet = on_pick, 0
        self._table: pd.DataFrame | None = None
        self._level = ""
        self.filter_box = widgets.Text(placeholder="filter: name, op (op:se: that op only), shape, bound",
                                       continuous_update=True, layout=widgets.Layout(width="260px"))
        self.sort = widgets.Dropdown(options=[s[0] for s in SORTS], value="time", description="sort by",
                                     layout=widgets.Layout(width="200px"))
        self.memory_only = widgets.Checkbox(value=False, description="memory bound only", indent=False,
                                            layout=widgets.Layout(width="170px"))
        self.header = widgets.HTML(value="")
        self.rows = widgets.Select(options=[], rows=ROWS_SHOWN, layout=widgets.Layout(width="100%"))
        self.rows.add_class("roofline-layer-rows")
        self.filter_box.observe(lambda _: self._fill(), names="value")
        self.sort.observe(lambda _: self._fill(), names="value")
        self.memory_only.observe(lambda change: (self._fill(), on_memory_only(change["new"])), names="value")
        self.rows.observe(self._picked, names="value")
        style = widgets.HTML("<style>.roofline-layer-rows select{font-family:monospace;font-size:12px}</style>")
        self.box = widgets.VBox([widgets.HBox([self.filter_box, self.sort, self.memory_only]), self.header,
                                 self.rows, style], layout=widgets.Layout(width="62%"))

    def refresh(self, frame: pd.DataFrame, ceilings, level: str) -> None:
        """Rows of `frame` at `level` (the picked row stays picked if it is still shown)."""
        self._table, self._level = layer_table(frame, ceilings, level), level
        self._fill()

    def shown(self) -> list[str]:
        """The layer names of the rows shown, in order."""
        return [value for _, value in self.rows.options]

    def show(self, name: str | None) -> None:
        """Mark `name`'s row (None: none) without calling on_pick."""
        self._quiet += 1
        try:
            self.rows.value = name if name in self.shown() else None
        finally:
            self._quiet -= 1

    def _fill(self) -> None:
        if self._table is None:
            return
        picked = self.rows.value
        shown = visible_rows(self._table, self.filter_box.value.strip(), self.sort.value, self.memory_only.value)
        header = _line([name for name, _ in COLUMNS])
        self.header.value = (f"<pre style='margin:0;font-size:12px'><b>{html.escape(header)}</b></pre>"
                             f"<span style='font-size:11px'>{len(shown)} of {len(self._table)} steps; "
                             f"ms: median; AI, GB/s (modelled bytes), % roof and bound at {html.escape(self._level)} "
                             f"(*above: the bytes model undercounts)</span>")
        self._quiet += 1
        try:
            self.rows.options = [(_line(_cells(row)), row["layer"]) for _, row in shown.iterrows()]
            self.rows.value = picked if picked in set(shown["layer"]) else None
        finally:
            self._quiet -= 1

    def _picked(self, change) -> None:
        if not self._quiet and change["new"] is not None:
            self._on_pick(change["new"])
