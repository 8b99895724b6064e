"""The notebooks run top to bottom, and JupyterLab has what they need to render.

Notebooks are stored as jupytext "percent" .py files (readable diffs, no outputs); each
test converts one with jupytext and executes it with nbclient in a kernel of this
interpreter (the project's venv), with ROOFLINE_FAST=1 for small sweeps. A notebook fails
on any error, any traceback and any output written to stderr (warnings included).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
NOTEBOOK_TIMEOUT = 600    # seconds per cell: generous for a cold numba cache
LAB_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "anywidget", "jupyterlab-plotly")


def _jupyter() -> str:
    return str(Path(sys.executable).parent / "jupyter")


def test_there_are_four_notebooks_in_the_order_of_the_story():
    assert [p.stem for p in NOTEBOOKS] == ["01_quickstart", "02_why_mobilenet_is_memory_bound", "03_tuning_tiles",
                                           "04_compute_bound_vs_memory_bound"]


def test_jupyterlab_lists_the_widget_anywidget_and_plotly_extensions_enabled():
    result = subprocess.run([_jupyter(), "labextension", "list"], capture_output=True, text=True, timeout=120)
    listing = result.stdout + result.stderr          # jupyter prints the list on stderr
    assert result.returncode == 0, listing
    for extension in LAB_EXTENSIONS:
        lines = [line for line in listing.splitlines() if line.split() and line.split()[0] == extension]
        assert lines, f"{extension} is not installed in JupyterLab:\n{listing}"
        assert "enabled" in lines[0] and "OK" in lines[0], lines[0]


def _save_as_jupyterlab_does(root: Path, name: str) -> None:
    """Open notebooks/<name> through the jupytext contents manager JupyterLab's server uses,
    give it what a session adds (outputs, execution counts, the kernel's language_info and
    widget state, JupyterLab's cell metadata) and save it."""
    from jupyter_server.services.contents.largefilemanager import LargeFileManager
    from jupytext.sync_contentsmanager import build_sync_jupytext_contents_manager_class

    manager = build_sync_jupytext_contents_manager_class(LargeFileManager)(root_dir=str(root))
    model = manager.get(name)
    notebook = model["content"]
    notebook.metadata["language_info"] = {"name": "python", "version": sys.version.split()[0]}
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for cell in notebook.cells:
        cell.metadata.update({"scrolled": True, "execution": {"iopub.status.idle": "2026-01-01T00:00:00Z"}})
        if cell.cell_type == "code":
            cell.execution_count = 7
            cell.outputs = [{"output_type": "stream", "name": "stdout", "text": "ran\n"}]
    manager.save(model, name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_running_and_saving_a_notebook_leaves_its_py_file_byte_for_byte(path, tmp_path):
    """The jupytext header's filters (cell_metadata_filter -all, no jupytext or format
    version) make a save in JupyterLab write back exactly the tracked file."""
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    _save_as_jupyterlab_does(tmp_path, path.name)
    assert copy.read_text() == path.read_text()


def test_the_save_check_sees_a_notebook_without_the_filters_change():
    """Without the header's filters, jupytext writes its version into the file on save."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "plain.py"
        text = NOTEBOOKS[0].read_text()
        text = "".join(line for line in text.splitlines(keepends=True) if "metadata_filter" not in line)
        copy.write_text(text)
        _save_as_jupyterlab_does(Path(folder), copy.name)
        assert "jupytext_version" in copy.read_text()


def test_notebook_outputs_and_new_notebooks_are_kept_out_of_git():
    """A .ipynb (a pairing, a "Save As", the launcher's Untitled.ipynb) and JupyterLab's
    side files in notebooks/ are ignored, so running a session leaves `git status` clean."""
    names = ["notebooks/Untitled.ipynb", "notebooks/Untitled1.ipynb", "notebooks/01_quickstart.ipynb",
             "notebooks/untitled.py", "notebooks/Untitled.py",
             "notebooks/.ipynb_checkpoints/01_quickstart-checkpoint.py",
             "notebooks/.virtual_documents/01_quickstart.py"]
    result = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert sorted(result.stdout.split()) == sorted(names), result.stdout + result.stderr
    tracked = subprocess.run(["git", "check-ignore", "--no-index", *map(str, NOTEBOOKS)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert tracked.stdout.strip() == ""


@pytest.fixture(scope="module")
def kernel_name():
    """A kernel that runs this interpreter: the venv's own "python3" kernelspec if it runs
    `python` (jupyter_client swaps that for sys.executable), else one installed into the
    venv (python -m ipykernel install --sys-prefix)."""
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        if spec.argv[0] in ("python", "python3", sys.executable):
            return "python3"
    except Exception:      # no such kernelspec: install one below
        pass
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
                   check=True, capture_output=True, timeout=120)
    return "python3"


@pytest.fixture(scope="module")
def warm_ceilings():
    """Measure (or load) the cached ceilings here, so no notebook measures them and warns
    on stderr about a busy machine."""
    import workbench

    return workbench.measure_ceilings()


def _problems(notebook) -> list[str]:
    problems = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                problems.append(f"cell {index} wrote to stderr: {output.get('text', '')[:500]}")
            text = str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
            if "Traceback (most recent call last)" in text:
                problems.append(f"cell {index} printed a traceback")
            html = str(output.get("data", {}).get("text/html", ""))
            if "cdn.plot.ly" in html or "cdn.jsdelivr" in html:
                problems.append(f"cell {index} loads plotly.js from a CDN")
    return problems


TABLE_CELL = re.compile(r"<td[^>]*>\s*([^<]*?)\s*</td>")
NUMBER = re.compile(r"^[-×]?(\d+\.?\d*)%?$")
MOST_DIGITS = 4          # 3 significant digits, 4 for a time of 1000 ms or more ("1234")


def _raw_numbers(notebook) -> list[str]:
    """Numbers in the notebook's HTML tables with more significant digits than a person
    reads (pandas' raw 0.015100 or 12345678), by cell and value. Counts with thousands
    separators and values that are not numbers are left alone; an integer's trailing
    zeros are not significant ("26700")."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            html = str(output.get("data", {}).get("text/html", ""))
            if "<table" not in html:
                continue
            for text in TABLE_CELL.findall(html):
                match = NUMBER.match(text.strip())
                digits = match.group(1) if match else ""
                digits = digits.replace(".", "").lstrip("0") if "." in digits else digits.strip("0")
                if len(digits) > MOST_DIGITS:
                    found.append(f"cell {index}: {text}")
    return found


def test_the_table_check_catches_raw_pandas_numbers_and_passes_formatted_ones():
    import nbformat
    import pandas as pd

    from workbench.tables import format_table

    frame = pd.DataFrame({"layer": ["a", "b"], "seconds": [0.000122134, 0.0151], "share": [0.3725, 0.6275],
                          "flops": [12_345_678, 9]})
    raw = nbformat.v4.new_code_cell("t", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/html": frame.to_html()}, execution_count=1)])
    formatted = nbformat.v4.new_code_cell("t", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/html": format_table(frame, {"seconds": "s→ms", "share": "%",
                                                                  "flops": "FLOP"}).to_html()},
        execution_count=1)])
    assert sorted(_raw_numbers(nbformat.v4.new_notebook(cells=[raw]))) == ["cell 0: 0.015100", "cell 0: 12345678"]
    assert _raw_numbers(nbformat.v4.new_notebook(cells=[formatted])) == []


def test_the_output_check_catches_errors_stderr_tracebacks_and_cdn_plotly():
    import nbformat

    clean = nbformat.v4.new_code_cell("1", outputs=[nbformat.v4.new_output("stream", name="stdout", text="ok\n")])
    cells = [
        nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("error", ename="ValueError", evalue="bad",
                                                                       traceback=[])]),
        nbformat.v4.new_code_cell("w", outputs=[nbformat.v4.new_output("stream", name="stderr", text="warning\n")]),
        nbformat.v4.new_code_cell("t", outputs=[nbformat.v4.new_output(
            "stream", name="stdout", text="Traceback (most recent call last):\n")]),
        nbformat.v4.new_code_cell("f", outputs=[nbformat.v4.new_output(
            "display_data", data={"text/html": '<script src="https://cdn.plot.ly/plotly-3.0.1.min.js"></script>'})]),
    ]
    assert _problems(nbformat.v4.new_notebook(cells=[clean])) == []
    for cell in cells:
        assert len(_problems(nbformat.v4.new_notebook(cells=[clean, cell]))) == 1, cell.source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_without_errors(path, kernel_name, warm_ceilings, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    monkeypatch.setenv("ROOFLINE_FAST", "1")            # the kernel inherits this environment
    notebook = jupytext.read(path)
    assert len(notebook.cells) >= 8 and any(c.cell_type == "markdown" for c in notebook.cells)
    client = NotebookClient(notebook, kernel_name=kernel_name, timeout=NOTEBOOK_TIMEOUT, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - started
    assert not _problems(notebook), "\n".join(_problems(notebook))
    assert not _raw_numbers(notebook), "tables with raw numbers:\n" + "\n".join(_raw_numbers(notebook)[:20])
    shown = [o for c in notebook.cells for o in c.get("outputs", [])]
    mimetypes = {m for o in shown for m in o.get("data", {})}
    assert "application/vnd.plotly.v1+json" in mimetypes, "no plotly figure was displayed"
    assert "application/vnd.jupyter.widget-view+json" in mimetypes, "no widget (the Explorer) was displayed"
    print(f"{path.name}: executed in {elapsed:.1f} s")
