"""The HTML report: figures and tables marked report() are bundled with their captions and render.

A throwaway workflow (its own Snakefile, synthetic inputs) draws every evaluation figure with
thermocg.plots under the pipeline's real captions (workflow/report/*.rst), plus the
transferability table as HTML; ``snakemake --report`` bundles them and headless Chromium opens the
result (tests/report_browser.py clicks through it like a user). The report of the real pipeline
is built from the tiny run.
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
from conftest import REPO, run_snakemake
from test_transfer import MODELS, TEMPERATURES, forces_table, write_results
from thermocg import io, reporting

CAPTIONS = REPO / "workflow" / "report"

# figure file -> (category, as in the pipeline; call that draws it from the synthetic inputs)
FIGURES = {
    "rdf_adf_overlays": ("Structure", "plots.rdf_adf_overlays(DATA / 'observables/fg', DATA / 'observables/cg', MODELS, TEMPERATURES, output.rdf_adf_overlays)"),
    "force_errors": ("Thermal response", "plots.force_errors(DATA / 'forces.tsv', output.force_errors)"),
    "thermal_response": ("Thermal response", "plots.thermal_response(DATA / 'thermal_response.tsv', output.thermal_response)"),
    "diffusion": ("Dynamics", "plots.diffusion(table, output.diffusion)"),
    "diffsim_curves": ("DiffSim", "plots.diffsim_curves({'mtfm_diffsim': DATA / 'loss_curve.tsv'}, table, output.diffsim_curves)"),
    "timings": ("Performance", "plots.timings(plots.collect_timings(DATA / 'no_results'), output.timings)"),
    "transferability": ("Structure", "plots.transferability(table, output.transferability)"),  # last: stays on screen
}
TABLE = "results/metrics/transferability.html"

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
        table=report({table!r}, caption={table_caption!r}, category="Structure"),
        tsv="results/metrics/transferability.tsv",
        json="results/metrics/transferability.json",
    run:
        from thermocg import plots, reporting, transfer

        table = transfer.transferability_table(MODELS, TEMPERATURES, DATA / "observables/fg", DATA / "observables/cg", DATA / "forces.tsv")
        transfer.write_transferability(table, output.tsv, output.json)
        reporting.html_table(output.tsv, output.table, "Transferability")
        {calls}
"""


def write_inputs(data):
    """Synthetic inputs of every figure (see tests/test_transfer.py and tests/test_plots.py)."""
    write_results(data)
    io.write_table(data / "forces.tsv", forces_table())
    io.write_table(data / "thermal_response.tsv", pd.DataFrame({
        "model": ["trf1", "trf1_global", "em"], "kind": ["trf1", "trf1", "em"], "estimator": ["local", "global", ""],
        "score": [3e4, -1e4, -2e5], "score_se": [4e3, 5e3, 2e4], "score_below_best": [0.0, 4e4, 2.3e5],
        "score_below_best_se": [0.0, 3e3, 2e4], "centring_model": "fm_oracle", "score_r_loc_nm": 0.5, "n_frames": 10,
    }))
    iteration = np.arange(30)
    io.write_table(data / "loss_curve.tsv", pd.DataFrame({"iteration": iteration, "loss": 1.0 / (1 + iteration)}))


def summary_table(path):
    """A transferability table of two models (fm_ref trained at 300 K only; its 340 K run blew up)."""
    io.write_table(path, pd.DataFrame({
        "model": ["fm_ref", "fm_ref", "fm_ref", "mtfm", "mtfm", "mtfm"],
        "T_K": [260.0, 300.0, 340.0] * 2,
        "trained_here": [False, True, False, True, True, False],
        "stable": [True, True, False, True, True, True],
        "eps_g": [0.05, 0.01, np.nan, 0.02, 0.04, 0.08],
        "eps_g_floor": [0.004, 0.005, 0.006] * 2,
    }), comment="units: eps_g 1")


def test_run_summary_gives_mean_eps_g_at_trained_and_other_temperatures(tmp_path):
    summary_table(tmp_path / "transferability.tsv")
    text = reporting.run_summary(tmp_path / "transferability.tsv")
    assert "snakemake --report results/report.html" in text and "results/figures/" in text
    assert "FG noise floor 0.005" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("    ")}
    assert rows["fm_ref"] == ["0.01", "0.05", "1"]  # the unstable 340 K run has no eps_g
    assert rows["mtfm"] == ["0.03", "0.08", "0"]


def test_run_summary_without_a_table_says_where_things_are(tmp_path):
    text = reporting.run_summary(tmp_path / "missing.tsv")
    assert "snakemake --report results/report.html" in text and "eps_g" not in text


def test_html_table_has_every_row_and_the_units(tmp_path):
    summary_table(tmp_path / "transferability.tsv")
    reporting.html_table(tmp_path / "transferability.tsv", tmp_path / "table.html", "Transferability <test>")
    page = (tmp_path / "table.html").read_text()
    assert page.count("<tr") == 7 and page.count("<td>fm_ref</td>") == 3
    assert "<li>units: eps_g 1</li>" in page and "Transferability &lt;test&gt;" in page
    assert "<td>n/a</td>" in page  # the unstable run's eps_g


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
    return workdir, report_variable(workdir / "report.html", "results")


def report_variable(report_html, name):
    """A variable of the report's page: "results" ({path: {caption, mime_type, data_uri, ...}}) or
    "workflow_desc" (the front page, HTML)."""
    text = Path(report_html).read_text()
    script = text.index(f'<script id="{name.replace("_", "-")}">')
    start = text.index(f"var {name} = ", script) + len(f"var {name} = ")
    return json.loads(text[start:text.index("</script>", start)].strip().rstrip(";"))


def embedded(entry):
    """The bytes of a file embedded in the report."""
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1])


def test_report_bundles_every_figure_the_table_and_captions(report):
    workdir, results = report
    for name in FIGURES:
        entry = results[f"results/figures/{name}.png"]
        assert entry["mime_type"] == "image/png"
        assert embedded(entry) == (workdir / f"results/figures/{name}.png").read_bytes()
        # the caption is the rst file rendered to HTML, without docutils error messages
        first_words = " ".join((CAPTIONS / f"{name}.rst").read_text().split()[:4])
        assert first_words in entry["caption"] and "System Message" not in entry["caption"]
    assert results[TABLE]["mime_type"] == "text/html"
    assert "System Message" not in results[TABLE]["caption"]
    page = embedded(results[TABLE]).decode()
    assert page.count("<tr") == 1 + len(MODELS) * len(TEMPERATURES)  # header and one row per (model, T)


def test_report_renders_in_headless_chromium(report, tmp_path):
    if report_browser.chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): cannot check that the report renders")
    workdir, results = report
    wanted = [[category, f"results/figures/{name}.png"] for name, (category, _) in FIGURES.items()]
    wanted.insert(0, ["Structure", TABLE])
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
    assert table["href"] == "#" and table["download"] is None  # shown in the page, not offered as a download
    assert "The transferability table" in table["info_text"]
    # The screenshot shows the last figure (transferability): not blank, and with the figure's
    # own lines in it (tab:blue is fm_ref's colour; the report's own palette has no such blue).
    import matplotlib.image

    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.std() > 0.1
    fm_ref_blue = np.array([31, 119, 180]) / 255
    assert np.sum(np.abs(pixels - fm_ref_blue).max(axis=-1) < 0.06) > 300


# The real pipeline's report: every figure of the tiny run in its category, and the table.
PIPELINE_FIGURES = {
    "fg_observables": "Structure", "transferability": "Structure", "rdf_adf_overlays": "Structure",
    "force_errors": "Thermal response", "thermal_response": "Thermal response",
    "radial_response": "Thermal response", "diffusion": "Dynamics",
    "diffsim_curves": "DiffSim", "timings": "Performance", "sweep": "Parameter sweep",
    "learning_curves": "Training",
}


@pytest.mark.slow
def test_report_of_the_tiny_run_has_every_figure_the_table_and_a_summary(tiny_run, tmp_path):
    report_html = tmp_path / "report.html"
    run_snakemake(tiny_run, "--report", str(report_html), "--configfile", str(REPO / "config" / "test.yaml"))
    results = report_variable(report_html, "results")
    shown = {path for path, entry in results.items() if entry["mime_type"] == "image/png"}
    assert shown == {f"results/figures/{name}.png" for name in PIPELINE_FIGURES}
    for name in PIPELINE_FIGURES:
        entry = results[f"results/figures/{name}.png"]
        assert embedded(entry) == (tiny_run / f"results/figures/{name}.png").read_bytes()
        assert " ".join((CAPTIONS / f"{name}.rst").read_text().split()[:4]) in entry["caption"]
    for entry in results.values():
        assert entry["caption"] and "System Message" not in entry["caption"]
    table = results["results/metrics/transferability.html"]
    assert table["mime_type"] == "text/html"
    rows = io.read_table(tiny_run / "results/metrics/transferability.tsv")
    assert embedded(table).decode().count("<tr") == 1 + len(rows) == 1 + 8 * 3  # 8 simulated models at 3 T
    # the front page summarises the run and links the headline figure and table
    front = report_variable(report_html, "workflow_desc")
    assert "System Message" not in front and "trf1_global" in front and "280, 300, 320 K" in front
    assert "app.showResultInfo('results/figures/transferability.png')" in front
    assert "app.showResultInfo('results/metrics/transferability.html')" in front
    if report_browser.chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): cannot check that the report renders")
    wanted = [["Structure", "results/metrics/transferability.html"]]
    wanted += [[category, f"results/figures/{name}.png"] for name, category in PIPELINE_FIGURES.items()]
    found = report_browser.probe(report_html, wanted, tmp_path)
    assert found["errors"] == []
    for name in PIPELINE_FIGURES:
        path = f"results/figures/{name}.png"
        assert (found["results"][path]["naturalWidth"], found["results"][path]["naturalHeight"]) == png_size(tiny_run / path)
        assert found["results"][path]["shownWidth"] > 300
    assert found["results"]["results/metrics/transferability.html"]["href"] == "#"  # shown in the page
