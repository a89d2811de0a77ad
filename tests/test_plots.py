"""Evaluation figures: each draws a labelled PNG and PDF from synthetic tables, and a 'not run'
panel instead of crashing when its inputs are missing."""


import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.container import BarContainer, ErrorbarContainer

from test_transfer import MODELS, TEMPERATURES, forces_table, write_results
from thermocg import io, metrics, plots, transfer


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
    # the synthetic files have no halves, so the table's excess is NaN: give it one, positive and below eps
    table = table.assign(eps_g_excess=0.8 * table["eps_g"] - 0.002, eps_a_excess=0.7 * table["eps_a"] - 1e-5)
    response = pd.DataFrame({
        "model": ["em", "trf1", "trf1_global", "trf2", "mtfm"], "kind": ["em", "trf1", "trf1", "trf2", "mtfm"],
        "estimator": ["", "local", "global", "local", ""],
        "score": [1.2e4, 3.5e4, -8e3, 4e4, 5e3], "score_se": [3e3, 4e3, 9e3, 4.5e3, 3.5e3],
        "score_below_best": [2.8e4, 5e3, 4.8e4, 0.0, 3.5e4], "score_below_best_se": [2e3, 1e3, 8e3, 0.0, 2.5e3],
        "centring_model": "fm_oracle", "score_r_loc_nm": 0.5, "n_frames": 10,
    })
    io.write_table(root / "thermal_response.tsv", response)  # the estimator column reads back as NaN
    iteration = np.arange(40)
    curve = pd.DataFrame({"iteration": iteration, "loss_rdf_T280": np.exp(-iteration / 10) + 0.1,
                          "loss_adf_T280": 1e-4 * np.exp(-iteration / 10) + 1e-5,
                          "loss_rdf_T320": 2 * np.exp(-iteration / 15) + 0.05,
                          "loss_adf_T320": 2e-4 * np.exp(-iteration / 15) + 1e-5, "averaged": iteration >= 30})
    curve["loss"] = curve["loss_rdf_T280"] + curve["loss_rdf_T320"] + 1e4 * (curve["loss_adf_T280"] + curve["loss_adf_T320"])
    io.write_table(root / "loss_curve.tsv", curve)
    return {"root": root, "fg": fg_dir, "cg": cg_dir, "table": table}


def test_rdf_adf_overlays(tmp_path, synthetic, drawn):
    plots.rdf_adf_overlays(synthetic["fg"], synthetic["cg"], MODELS, TEMPERATURES, tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    assert len(drawn[-1]["panels"]) == 2 * len(TEMPERATURES)
    figure = drawn[-1]["figure"]  # one legend beside the panels, none on a panel's curves
    assert len(figure.legends) == 1 and not any(ax.get_legend() for ax in figure.axes)
    # each column draws its own temperature's files: the FG profile and every model's CG one
    n = len(TEMPERATURES)
    for column, t in enumerate(TEMPERATURES):
        for row, (name, y) in enumerate((("rdf_com", "g"), ("adf", "p_per_deg"))):
            lines = {line.get_label(): line for line in figure.axes[row * n + column].get_lines()}
            fg = io.read_table(synthetic["fg"] / f"T{t}" / f"{name}.tsv")
            np.testing.assert_array_equal(lines["FG (atomistic)"].get_ydata(), fg[y])
            for model in MODELS:
                cg = io.read_table(transfer.cg_run_directory(synthetic["cg"], model, str(t)) / f"{name}.tsv")
                np.testing.assert_array_equal(lines[model].get_ydata(), cg[y])
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
    no_halves = synthetic["table"].drop(columns=["eps_g_excess", "eps_a_excess"])  # a table from before the columns
    plots.transferability(no_halves, tmp_path / "d.png", tmp_path / "d.pdf")
    check_readable(drawn[-1], expect_not_run=2)
    assert all("no halves" in panel["texts"] for panel in drawn[-1]["panels"][4:])
    plots.transferability(pd.DataFrame(), tmp_path / "c.png", tmp_path / "c.pdf")
    check_written(tmp_path, "c", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=6)


def test_transferability_draws_the_excess_over_the_noise_with_its_zero(tmp_path, synthetic, drawn):
    plots.transferability(synthetic["table"], tmp_path / "a.png", tmp_path / "a.pdf")
    table = synthetic["table"].set_index(["model", "T_K"]).sort_index()
    for ax, column in zip(drawn[-1]["figure"].axes[4:], ("eps_g_excess", "eps_a_excess")):
        (line,) = [line for line in ax.lines if line.get_label() == "fm_ref"]
        assert list(line.get_ydata()) == pytest.approx(list(table.loc["fm_ref", column]))
        assert any(list(line.get_ydata()) == [0.0, 0.0] and line.get_linestyle() == ":" for line in ax.lines)


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
    table.loc[blown, ["eps_g", "eps_a", "eps_g_ratio_oracle", "eps_a_ratio_oracle", "eps_g_excess", "eps_a_excess"]] = np.nan
    table["stable"] = ~blown
    plots.transferability(table, tmp_path / "a.png", tmp_path / "a.pdf")
    figure = drawn[-1]["figure"]
    for ax in figure.axes:  # one x per panel, at 360 K, at the top edge
        crosses = [line for line in ax.lines if line.get_marker() == "x"]
        assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [360.0]
    (legend,) = figure.legends  # beside the panels
    assert any("blew up" in text.get_text() for text in legend.get_texts())


def test_diffusion_and_diffsim_panels_mark_runs_that_blew_up(tmp_path, synthetic, drawn):
    """A blown-up run has no D and no eps: an x at the top edge of every panel that would draw it."""
    table = synthetic["table"].copy()
    blown = (table["model"] == "mtfm_diffsim") & (table["T_K"] == 360.0)
    table.loc[blown, ["D_cg", "eps_g", "eps_a", "eps_g_spread", "eps_a_spread"]] = np.nan
    table["stable"] = ~blown
    plots.diffusion(table, tmp_path / "a.png", tmp_path / "a.pdf")
    plots.diffsim_curves({}, table, tmp_path / "b.png", tmp_path / "b.pdf")
    diffusion, diffsim = (drawn[-2]["figure"], drawn[-1]["figure"])
    for ax in diffusion.axes[:2] + diffsim.axes[1:3]:  # D and D ratio; eps_g and eps_a
        crosses = [line for line in ax.lines if line.get_marker() == "x"]
        assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [360.0], ax.get_title()
    for figure in (diffusion, diffsim):
        (legend,) = figure.legends
        assert any("blew up" in text.get_text() for text in legend.get_texts())


def test_dynamics_marks_runs_that_blew_up(tmp_path, drawn):
    """A run without D (it blew up) is an x on the top edge of the D ratio panel, in its law's colour."""
    rows = [{"model": "trf1", "law": law, "temperature_K": t, "gamma_per_ps": 20.0, "D_FG": 0.002, "D_FG_error": 1e-4,
             "D_CG": 0.002, "D_CG_error": 1e-4, "ratio": 1.0, "ratio_error": 0.05, "stable": True}
            for law in ("constant", "entropy") for t in (300.0, 450.0, 700.0)]
    rows[-1].update(D_CG=None, D_CG_error=None, ratio=None, ratio_error=None, stable=False)  # entropy at 700 K
    vacf = pd.DataFrame({"lag_ps": np.linspace(0, 1, 11), "vacf": np.exp(-np.linspace(0, 5, 11))})
    plots.plot_dynamics(pd.DataFrame(rows), {t: vacf for t in ("300", "450", "700")},
                        {("trf1", law, t): vacf for law in ("constant", "entropy") for t in ("300", "450")},
                        tmp_path / "d.png")
    ratio_panel = drawn[-1]["figure"].axes[0]
    (cross,) = [line for line in ratio_panel.lines if line.get_marker() == "x"]
    entropy = [c for c in ratio_panel.containers if c.get_label() == "trf1: entropy"][0]
    assert list(cross.get_xdata()) == [700.0] and cross.get_color() == entropy.lines[0].get_color()
    assert any("blew up" in text.get_text() for text in ratio_panel.get_legend().get_texts())


def test_dynamics_draws_the_friction_floor_only_where_a_law_reaches_it(tmp_path, drawn):
    """gamma at the floor is not a fitted value: the gamma panel draws the floor as a labelled line."""
    from thermocg.friction import MINIMUM_FRICTION

    vacf = pd.DataFrame({"lag_ps": np.linspace(0, 1, 11), "vacf": np.exp(-np.linspace(0, 5, 11))})

    def gamma_panel(entropy_gammas):
        rows = [{"model": "trf1", "law": law, "temperature_K": t, "gamma_per_ps": gamma, "D_FG": 0.002,
                 "D_FG_error": 1e-4, "D_CG": 0.002, "D_CG_error": 1e-4, "ratio": 1.0, "ratio_error": 0.05,
                 "stable": True}
                for law, gammas in (("constant", (20.0, 20.0)), ("entropy", entropy_gammas))
                for t, gamma in zip((300.0, 700.0), gammas)]
        plots.plot_dynamics(pd.DataFrame(rows), {t: vacf for t in ("300", "700")}, {}, tmp_path / "d.png")
        ax = drawn[-1]["figure"].axes[1]
        return [line for line in ax.get_lines() if list(line.get_ydata()) == [MINIMUM_FRICTION] * 2], ax

    floors, ax = gamma_panel((20.0, MINIMUM_FRICTION))
    assert len(floors) == 1 and "floor" in floors[0].get_label()
    assert any("floor" in text.get_text() for text in ax.get_legend().get_texts())
    assert gamma_panel((20.0, 5.0))[0] == []


def test_transferability_draws_the_spreads_as_error_bars(tmp_path, synthetic, drawn):
    plots.transferability(synthetic["table"], tmp_path / "a.png", tmp_path / "a.pdf")
    assert not any(isinstance(c, ErrorbarContainer) for ax in drawn[-1]["figure"].axes for c in ax.containers)
    table = synthetic["table"].assign(eps_g_spread=0.1 * synthetic["table"]["eps_g"],
                                      eps_a_spread=0.2 * synthetic["table"]["eps_a"])
    plots.transferability(table, tmp_path / "b.png", tmp_path / "b.pdf")
    figure = drawn[-1]["figure"]
    n_models = table["model"].nunique()
    for ax, fraction in zip(figure.axes, (0.1, 0.2, 0.1, 0.2)):  # top: eps; bottom: ratios, the same fraction
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.get_label() == "_spread"]
        assert len(bars) == n_models
        for container in bars:  # each bar: value +- fraction x value
            _, _, (segments,) = container.lines
            half, middle = np.array([((top[1] - bottom[1]) / 2, (top[1] + bottom[1]) / 2)
                                     for bottom, top in segments.get_segments()]).T
            assert len(half) and half == pytest.approx(fraction * middle)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert plots.SPREAD_LABEL in legend and "FG noise floor" in legend


def test_log_axis_labels_only_two_and_five_between_decades(tmp_path):
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots()
    ax.plot([1, 2], [0.3, 5.0])
    plots._log_y(ax)
    figure.canvas.draw()
    labels = [tick.label1.get_text() for tick in ax.yaxis.get_minor_ticks() if tick.label1.get_text()]
    plt.close(figure)
    assert labels and {float(label) for label in labels} <= {0.2, 0.5, 2.0, 5.0}
    # less than a factor 3: a log axis would label one tick or none, a linear one does better
    figure, ax = plt.subplots()
    ax.plot([1, 2], [0.93, 1.17])
    plots._log_y(ax)
    assert ax.get_yscale() == "linear"
    plt.close(figure)


def test_temperature_colours_read_on_white():
    colours = plots._temperature_colours([450, 280, 320, 300, 360])
    assert list(colours) == [280, 300, 320, 360, 450]  # cold to hot
    for colour in colours.values():  # no near-white colour (coolwarm gave the middle T one, luminance 0.87)
        assert 0.2126 * to_rgb(colour)[0] + 0.7152 * to_rgb(colour)[1] + 0.0722 * to_rgb(colour)[2] < 0.7
    assert len({tuple(c) for c in colours.values()}) == 5


def test_force_errors(tmp_path, drawn):
    plots.force_errors(forces_table(), tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    # each model's RMSE and its ratio to the oracle's at the same T
    table = forces_table().sort_values("T_K")
    ax_rmse, ax_ratio = drawn[-1]["figure"].axes[:2]
    for model in set(table["model"]) - {"fm_oracle"}:
        rows = table[table["model"] == model]
        for ax, values in ((ax_rmse, rows["force_rmse"]), (ax_ratio, rows["force_rmse"] / rows["force_rmse_oracle"])):
            (line,) = [line for line in ax.get_lines() if line.get_label() == model]
            np.testing.assert_allclose(line.get_ydata(), values, rtol=1e-12)
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
    assert "10 held-out T0 frames" in drawn[-1]["suptitle"] and "centred with fm_oracle" in drawn[-1]["suptitle"]
    # what metrics.response_table writes without models: columns, no rows
    io.write_table(tmp_path / "empty.tsv", pd.DataFrame(columns=metrics.RESPONSE_COLUMNS))
    plots.thermal_response(tmp_path / "empty.tsv", tmp_path / "b.png", tmp_path / "b.pdf")
    check_written(tmp_path, "b", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=2)


def test_thermal_response_draws_the_score_and_the_paired_gap_with_their_standard_errors(tmp_path, synthetic, drawn):
    table = io.read_table(synthetic["root"] / "thermal_response.tsv")
    plots.thermal_response(table, tmp_path / "a.png", tmp_path / "a.pdf")
    assert "fm_oracle" in drawn[-1]["suptitle"] and "0.5 nm" in drawn[-1]["suptitle"]
    for panel, column in zip(drawn[-1]["figure"].axes, ("score", "score_below_best")):
        (bars,) = [c for c in panel.containers if isinstance(c, BarContainer)]
        assert [bar.get_height() for bar in bars] == pytest.approx(list(table[column]))
        error_bars = bars.errorbar.lines[2][0].get_segments()  # one vertical segment per model: value +- SE
        assert [(top[1] - bottom[1]) / 2 for bottom, top in error_bars] == pytest.approx(list(table[f"{column}_se"]))
    # no T0 energies or centring model: no score, both panels say so
    plots.thermal_response(table.assign(score=np.nan, score_se=np.nan), tmp_path / "b.png", tmp_path / "b.pdf")
    check_readable(drawn[-1], expect_not_run=2)
    assert "energies" in drawn[-1]["panels"][0]["texts"]


def test_thermal_response_units_and_legend(tmp_path, synthetic, drawn):
    table = io.read_table(synthetic["root"] / "thermal_response.tsv")
    # fm_ref predicts dF/dbeta = 0: score 0, a bar of zero height with its label
    fm_ref = table.iloc[[0]].assign(model="fm_ref", kind="fm_ref", estimator=np.nan, score=0.0, score_se=0.0)
    table = pd.concat([fm_ref, table], ignore_index=True)
    plots.thermal_response(table, tmp_path / "a.png", tmp_path / "a.pdf")
    figure = drawn[-1]["figure"]
    assert "0" in [text.get_text() for text in figure.axes[0].texts]
    # units written out, no '(1)' on a dimensionless label, the legend below the bars rather than on them
    assert all("kJ$^4$ mol$^{-4}$ nm$^{-2}$" in panel["ylabel"] for panel in drawn[-1]["panels"])
    assert not any(panel["ylabel"].endswith("(1)") for panel in drawn[-1]["panels"])
    assert not any(ax.get_legend() for ax in figure.axes)
    (legend,) = figure.legends
    assert "local energy target" in [text.get_text() for text in legend.get_texts()]
    # scores of millions: the power of ten in the unit of the axis label, not as '1e6' under the title
    plots.thermal_response(table.assign(score=100 * table["score"], score_se=100 * table["score_se"]),
                           tmp_path / "b.png", tmp_path / "b.pdf")
    assert "(10$^{6}$ kJ$^4$" in drawn[-1]["panels"][0]["ylabel"]


def test_sweep_draws_each_combinations_score_and_paired_gap_with_their_errors(tmp_path, drawn):
    table = pd.DataFrame({"order": [1, 2], "estimator": ["local", "global"], "r_loc": [0.4, 0.5], "frame_stride": 2,
                          "kind": ["trf1", "trf2"], "n_training_frames": 14, "score": [2.1e4, -3e3],
                          "score_se": [3e3, 4e3], "score_below_best": [0.0, 2.4e4], "score_below_best_se": [0.0, 2e3],
                          "force_rmse": [235.0, 236.0]})
    plots.sweep(table, tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    figure = drawn[-1]["figure"]
    for ax, column in zip(figure.axes, ("score", "score_below_best", "force_rmse")):
        (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert [bar.get_width() for bar in bars] == pytest.approx(list(table[column]))
        texts = [text.get_text() for text in ax.texts]
        assert len(texts) == 2 and all(("±" in t) == (column != "force_rmse") for t in texts)
        low, high = ax.get_xlim()  # every bar, error bar and label inside the panel
        assert low <= min(0.0, (table[column] - table.get(f"{column}_se", 0.0)).min())
        assert high >= (table[column] + table.get(f"{column}_se", 0.0)).max()
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == [
        "trf1 local, r_loc 0.4 nm, 14 frames", "trf2 global, r_loc 0.5 nm, 14 frames"]


def test_diffusion(tmp_path, synthetic, drawn):
    plots.diffusion(synthetic["table"], tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    figure = drawn[-1]["figure"]  # one legend beside the panels, none on a panel's curves
    assert len(figure.legends) == 1 and not any(ax.get_legend() for ax in figure.axes)
    assert not any(panel["ylabel"].endswith("(1)") for panel in drawn[-1]["panels"])
    # each model's line is its D_cg (in 1e-5 cm^2/s) and D_cg / D_fg, the FG line D_fg, at every T
    table = synthetic["table"].sort_values("T_K")
    ax_d, ax_ratio = figure.axes[:2]
    for ax, values in ((ax_d, 1e3 * table["D_cg"]), (ax_ratio, table["D_cg"] / table["D_fg"])):
        for model in table["model"].unique():
            (line,) = [line for line in ax.get_lines() if line.get_label() == model]
            np.testing.assert_allclose(line.get_ydata(), values[table["model"] == model], rtol=1e-12)
    (fg,) = [line for line in ax_d.get_lines() if line.get_label() == "FG (atomistic)"]
    np.testing.assert_allclose(fg.get_ydata(), 1e3 * table.groupby("T_K")["D_fg"].first(), rtol=1e-12)
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
                      "mtfm_diffsim: RDF 320 K", "mtfm_diffsim: ADF 320 K (x lambda_adf = 10000)",
                      "mtfm_diffsim: kept the mean of these 10 iterations"]
    (shade,) = loss_panel.patches  # over the averaged iterations 30-39, no further
    assert shade.get_extents().x0 == pytest.approx(loss_panel.transData.transform((29.5, 1))[0])
    assert shade.get_extents().x1 == pytest.approx(loss_panel.transData.transform((39.5, 1))[0])
    lines = loss_panel.get_lines()  # the weighted terms add up to the total
    np.testing.assert_allclose(sum(line.get_ydata() for line in lines[1:]), lines[0].get_ydata(), rtol=1e-6)
    # no two terms look alike: colour for the temperature, line style for the term
    looks = {(to_rgb(line.get_color()), line.get_linestyle()) for line in lines}
    assert len(looks) == len(lines)
    # the legend lies below the panel, off the curves
    figure = drawn[-1]["figure"]
    figure.canvas.draw()
    assert loss_panel.get_legend().get_window_extent().y1 < loss_panel.get_window_extent().y0
    # no refinement in this configuration: three 'not run' panels
    unrefined = synthetic["table"][~synthetic["table"]["model"].str.endswith("_diffsim")]
    plots.diffsim_curves({}, unrefined, tmp_path / "b.png", tmp_path / "b.pdf")
    check_written(tmp_path, "b", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=3)


def learning_curve(epochs, scale=1.0):
    """A network's learning curve as thermocg.train writes it."""
    epoch = np.arange(epochs)
    force = scale * (0.5 + 0.5 * np.exp(-epoch / 5))
    return pd.DataFrame({"epoch": epoch, "learning_rate": 1e-3, "validation_force": force, "validation_total": force})


def closed_form_fit(chosen_ridge):
    """A closed-form fit's table as thermocg.response writes it: heads e and W1, ridges inf and 1e-3..1."""
    rows = []
    for head, no_term in (("e", 100.0), ("W1", 1000.0)):
        for ridge, relative in ((float("inf"), 1.0), (1e-3, 0.95), (1e-2, 0.96), (1.0, 0.99)):
            rows.append({"relative_ridge": ridge, "train_mse": relative * no_term, "cross_validation_mse": relative * no_term,
                         "gain_se": 0.01 * no_term, "chosen": ridge == chosen_ridge, "head": head})
    return pd.DataFrame(rows)


def test_learning_curves(tmp_path, drawn):
    io.write_table(tmp_path / "trf1.tsv", closed_form_fit(1e-2))
    curves = {("fm_ref", None): learning_curve(12), ("trf1", None): tmp_path / "trf1.tsv",
              ("em", None): tmp_path / "not_there.tsv", ("trf2", None): closed_form_fit(float("inf")),
              **{("fm_oracle", t): learning_curve(8, scale=s) for t, s in (("280", 1.0), ("300", 0.9))}}
    plots.learning_curves(curves, tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    figure = drawn[-1]["figure"]
    networks, thermal = figure.axes[0], figure.axes[1]
    assert [line.get_label() for line in networks.get_lines() if not line.get_label().startswith("_")] == [
        "fm_oracle (280 K)", "fm_oracle (300 K)", "fm_ref"]
    stars = [line for line in networks.get_lines() if line.get_marker() == "*"]
    assert sorted(star.get_xdata()[0] for star in stars) == [7, 7, 11]  # the lowest validation loss
    oracles = [line for line in networks.get_lines() if line.get_label().startswith("fm_oracle")]
    assert oracles[0].get_color() == oracles[1].get_color() and oracles[0].get_linestyle() != oracles[1].get_linestyle()
    # closed-form fits: one curve per model and head with error bars, a star where a ridge was chosen,
    # "no term" written where none was
    assert [c.get_label() for c in thermal.containers] == ["trf1 e", "trf1 W1", "trf2 e", "trf2 W1"]
    stars = [line for line in thermal.get_lines() if line.get_marker() == "*"]
    assert len(stars) == 2 and all(star.get_xdata()[0] == 1e-2 for star in stars)
    assert sorted(text.get_text() for text in thermal.texts) == ["W1: no term", "e: no term"]
    assert thermal.get_xscale() == "log"
    # nothing to draw: two 'not run' panels
    plots.learning_curves({}, tmp_path / "b.png", tmp_path / "b.pdf")
    check_written(tmp_path, "b", min_png_bytes=5_000)
    check_readable(drawn[-1], expect_not_run=2)


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


def test_radial_response(tmp_path, drawn):
    r = np.arange(0.23, 0.9, 0.02)
    truth = -100.0 * np.sin(10 * r)
    rows = [pd.DataFrame({"model": name, "kind": kind, "trained_at": trained, "r_nm": r, "response": truth + offset,
                          "error": offset, "error_se": 3.0, "T_minus_K": 250.0, "T_plus_K": 450.0})
            for name, kind, trained, offset in (("FG", "", "", 0.0), ("trf1", "trf1", "300", 10.0),
                                                ("mtfm", "mtfm", "250,300,450", -5.0))]
    io.write_table(tmp_path / "radial.tsv", pd.concat(rows, ignore_index=True))
    plots.radial_response(tmp_path / "radial.tsv", tmp_path / "a.png", tmp_path / "a.pdf")
    check_written(tmp_path, "a")
    check_readable(drawn[-1])
    assert "250 and 450 K" in drawn[-1]["suptitle"]
    labels = [line.get_label() for line in drawn[-1]["figure"].axes[1].get_lines()]
    assert any(label.startswith("trf1: rms 10 (noise 3)") for label in labels)
    assert any("mtfm" in label and "trained on 250 and 450 K frames" in label for label in labels)
    # what force_metrics writes without sampled temperatures on both sides of T0: columns, no rows
    io.write_table(tmp_path / "empty.tsv", pd.DataFrame(columns=list(rows[0].columns)))
    plots.radial_response(tmp_path / "empty.tsv", tmp_path / "b.png", tmp_path / "b.pdf")
    check_readable(drawn[-1], expect_not_run=2)
