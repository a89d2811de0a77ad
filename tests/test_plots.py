"""Evaluation figures: each draws a labelled PNG and PDF from synthetic tables, and a 'not run'
panel instead of crashing when its inputs are missing."""


import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from test_transfer import MODELS, TEMPERATURES, forces_table, write_results
from thermocg import io, metrics, plots, transfer


@pytest.fixture
def drawn(monkeypatch):
    """Record, for every figure saved, its panels' titles, labels, texts and whether it has a legend."""
    figures = []
    save = plots._save

    def recording_save(figure, png, pdf=None):
        figures.append({
            "figure": figure,  # closed, but its axes, lines and legends can still be read
            "suptitle": figure._suptitle.get_text() if figure._suptitle else "",
            "legend": any(ax.get_legend() for ax in figure.axes),
            "panels": [{
                "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                "texts": " ".join(t.get_text() for t in ax.texts),
                "has_data": bool(ax.lines or ax.patches),
            } for ax in figure.axes],
        })
        save(figure, png, pdf)

    monkeypatch.setattr(plots, "_save", recording_save)
    return figures


def check_written(tmp_path, name, min_png_bytes=20_000):
    png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
    assert png.stat().st_size > min_png_bytes and png.read_bytes()[:4] == b"\x89PNG"
    assert pdf.stat().st_size > 1_000 and pdf.read_bytes()[:4] == b"%PDF"


def check_readable(figure, expect_not_run=0, legend=True):
    """Titles everywhere, axis labels on every panel with data, a legend; 'not run' panels counted."""
    assert figure["suptitle"]
    not_run = 0
    for panel in figure["panels"]:
        assert panel["title"], panel
        if "not run" in panel["texts"]:
            not_run += 1
            assert not panel["has_data"]
        else:
            assert panel["xlabel"] and panel["ylabel"], panel
    assert not_run == expect_not_run
    if legend and not_run < len(figure["panels"]):
        assert figure["legend"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Observables on disk, the transferability table, response table, loss curve."""
    root = tmp_path_factory.mktemp("synthetic")
    fg_dir, cg_dir = write_results(root)
    table = transfer.transferability_table(MODELS, TEMPERATURES, fg_dir, cg_dir, forces_table())
    response = pd.DataFrame({
        "model": ["em", "trf1", "trf1_global", "trf2", "mtfm"], "kind": ["em", "trf1", "trf1", "trf2", "mtfm"],
        "estimator": ["", "local", "global", "local", ""], "rel_rmse": [0.9, 0.5, 1.4, 0.45, 0.7],
        "cosine": [0.3, 0.85, -0.05, 0.88, 0.6], "truth_rms": 250.0, "T_minus_K": 280.0, "T_plus_K": 320.0,
        "score": [1.2e4, 3.5e4, -8e3, 4e4, 5e3], "score_se": [3e3, 4e3, 9e3, 4.5e3, 3.5e3], "centring_model": "fm_oracle",
        "score_r_loc_nm": 0.5, "n_frames": 10,
    })
    io.write_table(root / "thermal_response.tsv", response)  # the estimator column reads back as NaN
    iteration = np.arange(40)
    curve = pd.DataFrame({"iteration": iteration, "loss_rdf_T280": np.exp(-iteration / 10) + 0.1,
                          "loss_adf_T280": 1e-4 * np.exp(-iteration / 10) + 1e-5,
                          "loss_rdf_T320": 2 * np.exp(-iteration / 15) + 0.05,
                          "loss_adf_T320": 2e-4 * np.exp(-iteration / 15) + 1e-5})
    curve["loss"] = curve["loss_rdf_T280"] + curve["loss_rdf_T320"] + 1e4 * (curve["loss_adf_T280"] + curve["loss_adf_T320"])
    io.write_table(root / "loss_curve.tsv", curve)
    return {"root": root, "fg": fg_dir, "cg": cg_dir, "table": table}


def test_rdf_adf_overlays(tmp_path, synthetic, drawn):
    plots.rdf_adf_overlays(synthetic["fg"], synthetic["cg"], MODELS, TEMPERATURES, tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    assert len(drawn[-1]["panels"]) == 2 * len(TEMPERATURES)
    # a temperature without FG observables, and no temperatures at all
    plots.rdf_adf_overlays(synthetic["fg"], synthetic["cg"], MODELS, [300, 999], tmp_path / "b.png", tmp_path / "b.pdf")
    check_readable(drawn[-1], expect_not_run=2)
    plots.rdf_adf_overlays(synthetic["fg"], synthetic["cg"], MODELS, [], tmp_path / "c.png", tmp_path / "c.pdf")
    check_written(tmp_path, "c", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=2)


def test_transferability(tmp_path, synthetic, drawn):
    transfer.write_transferability(synthetic["table"], tmp_path / "t.tsv", tmp_path / "t.json")
    plots.transferability(tmp_path / "t.tsv", tmp_path / "a.png", tmp_path / "a.pdf")  # from the TSV
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    no_oracle = synthetic["table"][synthetic["table"]["model"] != "fm_oracle"].assign(
        eps_g_ratio_oracle=np.nan, eps_a_ratio_oracle=np.nan)
    plots.transferability(no_oracle, tmp_path / "b.png", tmp_path / "b.pdf")
    check_readable(drawn[-1], expect_not_run=2)
    plots.transferability(pd.DataFrame(), tmp_path / "c.png", tmp_path / "c.pdf")
    check_written(tmp_path, "c", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=4)


def test_transferability_draws_the_fg_noise_floor(tmp_path, synthetic, drawn):
    plots.transferability(synthetic["table"], tmp_path / "a.png", tmp_path / "a.pdf")
    top = drawn[-1]["figure"].axes[:2]
    for ax, column in zip(top, ("eps_g_floor", "eps_a_floor")):
        bands = [c for c in ax.collections if c.get_label() == "FG noise floor"]
        assert len(bands) == 1
        upper = bands[0].get_paths()[0].vertices[:, 1].max()
        assert upper == pytest.approx(synthetic["table"][column].max())


def test_transferability_marks_runs_that_blew_up(tmp_path, synthetic, drawn):
    table = synthetic["table"].copy()
    blown = (table["model"] == "fm_ref") & (table["T_K"] == 360.0)
    table.loc[blown, ["eps_g", "eps_a", "eps_g_ratio_oracle", "eps_a_ratio_oracle"]] = np.nan
    table["stable"] = ~blown
    plots.transferability(table, tmp_path / "a.png", tmp_path / "a.pdf")
    figure = drawn[-1]["figure"]
    for ax in figure.axes:  # one x per panel, at 360 K, at the top edge
        crosses = [line for line in ax.lines if line.get_marker() == "x"]
        assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [360.0]
    legend = figure.axes[0].get_legend()
    assert any("blew up" in text.get_text() for text in legend.get_texts())


def test_force_errors(tmp_path, drawn):
    plots.force_errors(forces_table(), tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    plots.force_errors(forces_table().assign(force_rmse_oracle=np.nan), tmp_path / "b.png", tmp_path / "b.pdf")
    check_readable(drawn[-1], expect_not_run=1)
    plots.force_errors(tmp_path / "missing.tsv", tmp_path / "c.png", tmp_path / "c.pdf")
    check_written(tmp_path, "c", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=2)


def test_force_errors_take_the_oracle_by_kind(tmp_path, drawn):
    # the fm_oracle entry named "oracle", and an fm_ref model named "fm_oracle"
    forces = forces_table().replace({"model": {"fm_oracle": "oracle", "fm_ref": "fm_oracle"}})
    plots.force_errors(forces, tmp_path / "a.png", tmp_path / "a.pdf")
    check_readable(drawn[-1], expect_not_run=0)
    for ax in drawn[-1]["figure"].axes:  # the oracle is the floor (dashed black), not a model's line
        names = {line.get_label() for line in ax.get_lines()} - {"fm_oracle (noise floor)"}
        assert {"fm_oracle", "mtfm"} <= names and "oracle" not in names


def test_thermal_response(tmp_path, synthetic, drawn):
    plots.thermal_response(synthetic["root"] / "thermal_response.tsv", tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    assert "280 K" in drawn[-1]["suptitle"] and "320 K" in drawn[-1]["suptitle"]
    # what metrics.response_table writes without models: columns, no rows
    io.write_table(tmp_path / "empty.tsv", pd.DataFrame(columns=metrics.RESPONSE_COLUMNS))
    plots.thermal_response(tmp_path / "empty.tsv", tmp_path / "b.png", tmp_path / "b.pdf")
    check_written(tmp_path, "b", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=3)


def test_thermal_response_draws_the_score_with_its_standard_error(tmp_path, synthetic, drawn):
    table = io.read_table(synthetic["root"] / "thermal_response.tsv")
    plots.thermal_response(table, tmp_path / "a.png", tmp_path / "a.pdf")
    score_panel = drawn[-1]["figure"].axes[0]
    assert "fm_oracle" in score_panel.get_title() and "0.5 nm" in score_panel.get_title()
    (bars,) = [c for c in score_panel.containers if isinstance(c, BarContainer)]
    assert [bar.get_height() for bar in bars] == pytest.approx(list(table["score"]))
    error_bars = bars.errorbar.lines[2][0].get_segments()  # one vertical segment per model: score +- SE
    assert [(top[1] - bottom[1]) / 2 for bottom, top in error_bars] == pytest.approx(list(table["score_se"]))
    # T0 without oracles on both sides: the score alone; a table from before the score: the old panels alone
    no_truth = table.assign(rel_rmse=np.nan, cosine=np.nan, truth_rms=np.nan, T_minus_K=np.nan, T_plus_K=np.nan)
    plots.thermal_response(no_truth, tmp_path / "b.png", tmp_path / "b.pdf")
    check_readable(drawn[-1], expect_not_run=2)
    assert drawn[-1]["panels"][0]["has_data"]
    plots.thermal_response(table.drop(columns=["score", "score_se"]), tmp_path / "c.png", tmp_path / "c.pdf")
    check_readable(drawn[-1], expect_not_run=1)
    assert "not run" in drawn[-1]["panels"][0]["texts"]


def test_diffusion(tmp_path, synthetic, drawn):
    plots.diffusion(synthetic["table"], tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    plots.diffusion(synthetic["table"].assign(D_cg=np.nan), tmp_path / "b.png", tmp_path / "b.pdf")
    check_readable(drawn[-1], expect_not_run=2)


def test_diffsim_curves(tmp_path, synthetic, drawn):
    curves = {"mtfm_diffsim": synthetic["root"] / "loss_curve.tsv", "trf1_diffsim": tmp_path / "not_there.tsv"}
    plots.diffsim_curves(curves, synthetic["table"], tmp_path / "a.png", tmp_path / "a.pdf", lambda_adf=1e4)
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    loss_panel = drawn[-1]["figure"].axes[0]
    labels = [text.get_text() for text in loss_panel.get_legend().get_texts()]
    assert labels == ["mtfm_diffsim: total", "mtfm_diffsim: RDF 280 K", "mtfm_diffsim: ADF 280 K (x lambda_adf = 10000)",
                      "mtfm_diffsim: RDF 320 K", "mtfm_diffsim: ADF 320 K (x lambda_adf = 10000)"]
    lines = loss_panel.get_lines()  # the weighted terms add up to the total
    np.testing.assert_allclose(sum(line.get_ydata() for line in lines[1:]), lines[0].get_ydata(), rtol=1e-6)
    # no refinement in this configuration: three 'not run' panels
    unrefined = synthetic["table"][~synthetic["table"]["model"].str.endswith("_diffsim")]
    plots.diffsim_curves({}, unrefined, tmp_path / "b.png", tmp_path / "b.pdf")
    check_written(tmp_path, "b", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=3)


def write_benchmark(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\tmax_vms\n{seconds}\t0:00:{seconds:02.0f}\t100.0\t200.0\n")


def test_collect_timings_and_figure(tmp_path, drawn):
    results = tmp_path / "results"
    for t, speed in ((280, 30.0), (300, 40.0), (320, 50.0)):
        io.write_json(results / f"fg/T{t}/sampling_stats.json", {"ns_per_day": speed})
        io.write_table(results / f"cgmd/fm_ref/T{t}/thermo.tsv", pd.DataFrame({"step": [0, 1, 2, 3], "ns_per_day": [np.nan, speed * 10, 1e9, speed * 10]}))
        write_benchmark(results / f"benchmarks/fg/T{t}/sample_fg.tsv", 10.0)
        write_benchmark(results / f"benchmarks/models/fm_oracle/T{t}/fit.tsv", 5.0)
    write_benchmark(results / "benchmarks/models/fm_ref/fit.tsv", 7.0)
    write_benchmark(results / "benchmarks/metrics/force_metrics.tsv", 3.0)
    stages = plots.collect_timings(results).set_index("stage")
    assert stages.loc["FG MD (OpenMM)", "value"] == 40.0 and stages.loc["FG MD (OpenMM)", "unit"] == "ns/day"
    assert stages.loc["CG MD fm_ref", "value"] == 400.0  # median per run, then over T: outliers ignored
    assert stages.loc["sample_fg", "value"] == 30.0 and stages.loc["sample_fg", "n_jobs"] == 3
    assert stages.loc["fit fm_oracle", "value"] == 15.0 and stages.loc["fit fm_ref", "value"] == 7.0
    assert stages.loc["force_metrics", "unit"] == "s"
    plots.timings(stages.reset_index(), tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1], legend=False)  # one unit per panel, stages named on the axis
    empty = plots.collect_timings(tmp_path / "nothing")
    assert empty.empty and list(empty.columns) == ["stage", "value", "unit", "n_jobs"]
    plots.timings(empty, tmp_path / "b.png", tmp_path / "b.pdf")
    check_written(tmp_path, "b", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=1)


def test_model_styles_are_stable():
    assert plots._model_style("trf1") == (plots.MODEL_COLOURS["trf1"], "-")
    assert plots._model_style("trf1_diffsim") == (plots.MODEL_COLOURS["trf1"], "--")
    assert plots._model_style("custom") == plots._model_style("custom_diffsim")[:1] + ("-",)
