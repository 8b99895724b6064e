"""workbench.tables: the one rule for numbers in the notebooks' and the CLI's tables (ms with
3 significant digits, per cent for shares, units in the headers, no duplicated columns)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from workbench.tables import format_number, format_table, roofs_table, significant
from tests.conftest import hand_made_ceilings


@pytest.mark.parametrize("value, text", [
    (0.000122, "0.000122"), (0.12345, "0.123"), (1.5, "1.50"), (12.345, "12.3"), (123.45, "123"), (1234.4, "1230"), (26667, "26700"), (999_999, "1000000"),
    (9.996, "10.0"), (0.9996, "1.00"), (0, "0"), (-2.5, "-2.50"), (math.inf, "inf"), (None, ""), (math.nan, ""),
])
def test_significant_gives_three_digits_without_an_exponent(value, text):
    assert significant(value) == text


def test_units_convert_seconds_to_ms_fractions_to_per_cent_and_count_with_separators():
    assert format_number(0.000122, "s→ms") == "0.122"
    assert format_number(0.3726, "%") == "37.3%"
    assert format_number(1.72, "%") == "172%"
    assert format_number(2_450_000, "bytes→MB") == "2.45"
    assert format_number(12_345_678, "FLOP") == "12,345,678"
    assert format_number(1.234, "×") == "×1.23"


def test_format_table_formats_each_column_by_unit_and_names_the_unit_in_its_header():
    frame = pd.DataFrame({"layer": ["a", "b"], "seconds": [0.000122, 0.0151], "share_of_time": [0.3725, 0.6275],
                          "gflops": [12.345, 1.5]})
    html = format_table(frame, {"seconds": "s→ms", "share_of_time": "%", "gflops": "GFLOP/s"},
                        names={"seconds": "time", "share_of_time": "share"}).to_html()
    for text in ("time (ms)", "share", "GFLOP/s", ">0.122<", ">15.1<", "%<", ">12.3<", ">1.50<"):
        assert text in html, text
    assert "0.000122" not in html and "0.3725" not in html


def test_format_table_refuses_duplicated_headers_unknown_units_and_missing_columns():
    frame = pd.DataFrame({"block_rows": [4], "value": [4], "ms": [1.0]})
    with pytest.raises(ValueError, match="twice"):
        format_table(frame, {}, names={"value": "block_rows"})
    with pytest.raises(ValueError, match="unit"):
        format_table(frame, {"ms": "minutes"})
    with pytest.raises(ValueError, match="no column"):
        format_table(frame, {"seconds": "s→ms"})


def test_roofs_table_lists_the_levels_in_memory_order_then_the_fma_peak():
    table = roofs_table(hand_made_ceilings())
    assert [label.split()[0] for label in table.index] == ["L1", "L2", "L3", "DRAM", "fp32_fma"]
    assert table.index[0].endswith("(GB/s)") and table.index[-1].endswith("(GFLOP/s)")
    assert list(table.columns)[0] == "1 thread"
