"""workbench.report: the header's memory-bound count agrees with the time bars at every
level, the layers table is formatted, sortable and filterable and says why a step is above
its roof, and the images are for slides. Profiles are test_roofline's synthetic ones."""
from __future__ import annotations

import re

import pytest

from test_roofline import LEVELS, make_ceilings, make_profile
from workbench.profile import bound_at
from workbench.report import _figures, memory_bound_counts, summary_line, write_report
from workbench.time_bars import BOUND_COLORS


@pytest.fixture(scope="module")
def ceilings():
    return make_ceilings()


@pytest.fixture(scope="module")
def profile(ceilings):
    return make_profile(ceilings=ceilings, speedup=4.0)      # the classifier above its DRAM roof


def _bars(figures):
    (bars,) = [f for f in figures if str(f.data[0].meta).startswith("bound:")]
    return bars


@pytest.mark.parametrize("level", LEVELS)
def test_the_header_counts_what_the_time_bars_colour_at_every_level(profile, ceilings, level):
    bars = _bars(_figures(profile, ceilings, None, level))
    memory = len(next(t for t in bars.data if t.meta == "bound:memory").y)
    header = summary_line(profile, ceilings, level)
    count = int(re.search(rf"(\d+) of \d+ steps memory bound at {level}", header).group(1))
    assert count == memory == int((bound_at(profile, ceilings, level) == "memory").sum())
    # the other levels' counts in the header are what the bars' buttons show
    counts = memory_bound_counts(profile, ceilings)
    for other, button in zip(LEVELS, bars.layout.updatemenus[0].buttons):
        shown = len(button.args[0]["y"][list(BOUND_COLORS).index("memory")])
        assert shown == counts[other]
        if other != level:
            assert f"{other}: {counts[other]}" in header
    assert len(set(counts.values())) > 1


def test_the_report_table_is_formatted_sortable_and_flags_steps_above_their_roof(profile, ceilings, tmp_path):
    write_report(profile, tmp_path, ceilings=ceilings, level="DRAM", images=False)
    page = (tmp_path / "report.html").read_text()
    table = page[page.index('<table id="layers"'):page.index("</table>")]
    headers = re.findall(r"<th>(.*?)</th>", table)
    assert headers == ["layer", "op", "input", "output", "ms", "% time", "GFLOP/s", "AI at DRAM", "GB/s at DRAM",
                       "% of roof at DRAM", "bound at DRAM"]
    assert len(headers) == len(set(headers))                  # no duplicated column
    cells = re.findall(r'<td data-value="([^"]*)"[^>]*>([^<]*)</td>', table)
    ms = [text for _, text in cells[4::len(headers)]]
    assert all(re.fullmatch(r"\d+(\.\d+)?(e-?\d+)?", m) and len(m.replace(".", "").lstrip("0")) <= 3 for m in ms)
    shares = [text for _, text in cells[5::len(headers)]]
    assert all(s.endswith("%") for s in shares)
    assert "above roof*" in table and "the bytes model undercounts this step" in page
    assert "layers-filter" in page and "localeCompare" in page            # filter box and sorting script
    assert "(1, 3, 224, 224)" in table and "(1, 32, 112, 112)" in table      # NCHW, never blocked
    assert "(1, 4, 112, 112, 8)" not in table


def test_the_report_header_and_bars_agree_at_the_level_it_was_asked_for(profile, ceilings, tmp_path):
    write_report(profile, tmp_path, ceilings=ceilings, level="L1", images=False)
    page = (tmp_path / "report.html").read_text()
    counts = memory_bound_counts(profile, ceilings)
    assert f"{counts['L1']} of " in re.search(r'<p id="summary">(.*?)</p>', page).group(1)
