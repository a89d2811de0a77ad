"""The HTML report: figures and tables marked report() are bundled with their captions and render.

A throwaway workflow (its own Snakefile, synthetic inputs) draws every evaluation figure with
thermocg.plots under the pipeline's real captions (workflow/report/*.rst), plus the
transferability table; ``snakemake --report`` bundles them and headless Chromium opens the result
(tests/report_browser.py clicks through it like a user).
"""

import base64
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import report_browser
from conftest import REPO
from test_transfer import MODELS, TEMPERATURES, forces_table, write_results
from thermocg import io

CAPTIONS = REPO / "workflow" / "report"

# figure file -> (category, caption, call that draws it from the synthetic inputs)
FIGURES = {
    "rdf_adf_overlays": ("Structure", "plots.rdf_adf_overlays(DATA / 'observables/fg', DATA / 'observables/cg', MODELS, TEMPERATURES, output.rdf_adf_overlays)"),
    "force_errors": ("Forces", "plots.force_errors(DATA / 'forces.tsv', output.force_errors)"),
    "thermal_response": ("Forces", "plots.thermal_response(DATA / 'thermal_response.tsv', output.thermal_response)"),
    "diffusion": ("Dynamics", "plots.diffusion(table, output.diffusion)"),
    "diffsim_curves": ("Structure", "plots.diffsim_curves({'mtfm_diffsim': DATA / 'loss_curve.tsv'}, table, output.diffsim_curves)"),
    "timings": ("Cost", "plots.timings(plots.collect_timings(DATA / 'no_results'), output.timings)"),
    "transferability": ("Transferability", "plots.transferability(table, output.transferability)"),  # last: stays on screen
}
TABLE = "results/metrics/transferability.tsv"

SNAKEFILE = """
from pathlib import Path

DATA = Path({data!r})
MODELS = {models!r}
TEMPERATURES = {temperatures!r}


report: {workflow_caption!r}


rule all:
    input:
        {all_inputs}


rule figures:
    output:
        {outputs}
        table=report({table!r}, caption={table_caption!r}, category="Transferability"),
        json="results/metrics/transferability.json",
    run:
        from thermocg import plots, transfer

        table = transfer.transferability_table(MODELS, TEMPERATURES, DATA / "observables/fg", DATA / "observables/cg", DATA / "forces.tsv")
        transfer.write_transferability(table, output.table, output.json)
        {calls}
"""


def write_inputs(data):
    """Synthetic inputs of every figure (see tests/test_transfer.py and tests/test_plots.py)."""
    write_results(data)
    io.write_table(data / "forces.tsv", forces_table())
    io.write_table(data / "thermal_response.tsv", pd.DataFrame({
        "model": ["trf1", "trf1_global", "em"], "kind": ["trf1", "trf1", "em"], "estimator": ["local", "global", ""],
        "rel_rmse": [0.6, 1.3, 0.9], "cosine": [0.8, 0.1, 0.4], "truth_rms": 200.0, "T_minus_K": 280.0,
        "T_plus_K": 320.0, "n_frames": 10,
    }))
    iteration = np.arange(30)
    io.write_table(data / "loss_curve.tsv", pd.DataFrame({"iteration": iteration, "loss": 1.0 / (1 + iteration)}))


def png_size(path):
    """(width, height) in pixels from a PNG header."""
    return struct.unpack(">II", Path(path).read_bytes()[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Run the throwaway workflow and build its report; return (workdir, results of the report)."""
    workdir = tmp_path_factory.mktemp("report")
    write_inputs(workdir / "data")
    outputs = "\n        ".join(
        f'{name}=report("results/figures/{name}.png", caption={str(CAPTIONS / f"{name}.rst")!r}, category="{category}"),'
        for name, (category, _) in FIGURES.items()
    )
    (workdir / "Snakefile").write_text(SNAKEFILE.format(
        data=str(workdir / "data"), models=MODELS, temperatures=TEMPERATURES,
        workflow_caption=str(workdir / "workflow.rst"), table=TABLE, table_caption=str(CAPTIONS / "transferability_table.rst"),
        all_inputs=",\n        ".join(repr(f"results/figures/{name}.png") for name in FIGURES) + f",\n        {TABLE!r},",
        outputs=outputs, calls="\n        ".join(call for _, call in FIGURES.values()),
    ))
    (workdir / "workflow.rst").write_text("Throwaway workflow of tests/test_report.py.\n")
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for args in (["--cores", "1"], ["--report", "report.html"]):
        done = subprocess.run([str(bin_dir / "snakemake"), *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    text = (workdir / "report.html").read_text()
    start = text.index("var results = ", text.index('<script id="results">')) + len("var results = ")
    results = json.loads(text[start:text.index("</script>", start)].strip().rstrip(";"))
    return workdir, results


def test_report_bundles_every_figure_the_table_and_captions(report):
    workdir, results = report
    for name in FIGURES:
        entry = results[f"results/figures/{name}.png"]
        assert entry["mime_type"] == "image/png"
        embedded = base64.b64decode(entry["data_uri"].split("base64,", 1)[1])
        assert embedded == (workdir / f"results/figures/{name}.png").read_bytes()
        # the caption is the rst file rendered to HTML, without docutils error messages
        first_words = " ".join((CAPTIONS / f"{name}.rst").read_text().split()[:4])
        assert first_words in entry["caption"] and "System Message" not in entry["caption"]
    assert results[TABLE]["mime_type"] == "text/tab-separated-values"
    assert "System Message" not in results[TABLE]["caption"]


def test_report_renders_in_headless_chromium(report, tmp_path):
    if report_browser.chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): cannot check that the report renders")
    workdir, results = report
    wanted = [[category, f"results/figures/{name}.png"] for name, (category, _) in FIGURES.items()]
    wanted.insert(0, ["Transferability", TABLE])
    screenshot = tmp_path / "report.png"
    found = report_browser.probe(workdir / "report.html", wanted, tmp_path, screenshot=screenshot)
    assert found["errors"] == []
    for name in FIGURES:
        path = f"results/figures/{name}.png"
        seen = found["results"][path]
        # the browser decoded the embedded PNG at its full size and shows it on screen
        assert (seen["naturalWidth"], seen["naturalHeight"]) == png_size(workdir / path)
        assert seen["shownWidth"] > 300 and seen["shownHeight"] > 100
        assert " ".join((CAPTIONS / f"{name}.rst").read_text().split()[:4]) in " ".join(seen["info_text"].split())
    table = found["results"][TABLE]
    assert table["download"] == "transferability.tsv"
    assert base64.b64decode(table["href"].split("base64,", 1)[1]) == (workdir / TABLE).read_bytes()
    # The screenshot shows the last figure (transferability): not blank, and with the figure's
    # own lines in it (tab:blue is fm_ref's colour; the report's own palette has no such blue).
    import matplotlib.image

    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.std() > 0.1
    fm_ref_blue = np.array([31, 119, 180]) / 255
    assert np.sum(np.abs(pixels - fm_ref_blue).max(axis=-1) < 0.06) > 300
