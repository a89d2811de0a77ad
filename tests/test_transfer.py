"""Transferability metrics: known answers for eps_g / eps_a and the table built from files on disk."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from thermocg import io, observables, transfer

R = np.arange(0.001, 0.78, 0.002)  # bin centres of 0.002 nm bins (nm)
THETA = np.arange(0.5, 180.0, 1.0)  # 1 deg bins


def synthetic_rdf(temperature, shift=0.0):
    """A water-like COM RDF: zero inside 0.24 nm, one peak near 0.28 nm that softens with T."""
    height = 2.5 * 300.0 / temperature
    g = 1.0 + (height - 1.0) * np.exp(-((R - 0.28) / 0.025) ** 2) - 0.3 * np.exp(-((R - 0.34) / 0.03) ** 2)
    g[R < 0.24] = 0.0
    return np.where(R >= 0.24, g + shift, g)


def synthetic_adf(temperature, width=1.0):
    p = np.exp(-(((THETA - 105.0) / (20.0 * width * temperature / 300.0)) ** 2)) + 0.4 * np.exp(-(((THETA - 55.0) / 10.0) ** 2))
    return p / p.sum()


def write_observables(directory, temperature, rdf_shift=0.0, adf_width=1.0, diffusion=2.5e-3, summary=True):
    """One temperature's observable tables as the observables rules write them."""
    io.write_table(directory / "rdf_com.tsv", pd.DataFrame({"r_nm": R, "g": synthetic_rdf(temperature, rdf_shift)}))
    io.write_table(directory / "adf.tsv", pd.DataFrame({"theta_deg": THETA, "p_per_deg": synthetic_adf(temperature, adf_width)}))
    lag = np.linspace(0.0, 10.0, 51)
    io.write_table(directory / "msd.tsv", pd.DataFrame({"lag_ps": lag, "msd_nm2": 6 * diffusion * lag}))
    if summary:
        io.write_json(directory / "summary.json", {
            "temperature_K": float(temperature), "n_beads": 128, "n_frames": 40,
            "diffusion": {"D_nm2_per_ps": diffusion, "intercept_nm2": 0.0, "fit_start_ps": 2.0, "fit_end_ps": 8.0},
            "potential_energy": {"mean_per_molecule_kJ_per_mol": -45.0, "sem_kJ_per_mol": 10.0},
            "noise_floor": {"eps_g": 1e-4 * temperature, "eps_a": 1e-7 * temperature},
        })


MODELS = {
    "fm_ref": {"kind": "fm_ref", "trained_at": [300]},
    "mtfm": {"kind": "mtfm", "trained_at": [280, 300, 320]},
    "fm_oracle": {"kind": "fm_oracle", "trained_at": [280, 300, 320, 360]},
    "mtfm_diffsim": {"kind": "mtfm", "trained_at": [280, 300, 320], "refined_from": "mtfm"},
}
TEMPERATURES = [280, 300, 320, 360]
SETTINGS = {"rdf_bin_width": 0.002, "adf_shell": 0.33, "adf_bin_width": 1.0}


def write_results(root, skip=()):
    """Synthetic FG and CG observables for MODELS at TEMPERATURES: errors grow away from 300 K.

    ``skip``: (model, T) pairs whose CG files are not written (model "fg": the FG files).
    Returns (fg_dir, cg_dir).
    """
    fg_dir, cg_dir = root / "observables" / "fg", root / "observables" / "cg"
    for t in TEMPERATURES:
        if ("fg", t) not in skip:
            write_observables(fg_dir / f"T{t}", t, diffusion=2.5e-3 * t / 300)
        for model in MODELS:
            if (model, t) in skip:
                continue
            distance = abs(t - 300) / 20
            shift = {"fm_oracle": 0.02, "fm_ref": 0.02 + 0.05 * distance, "mtfm": 0.03,
                     "mtfm_diffsim": 0.01}[model]
            write_observables(cg_dir / model / f"T{t}", t, rdf_shift=shift, adf_width=1.0 + shift,
                              diffusion=2.5e-3 * (1 + shift) * t / 300)
    return fg_dir, cg_dir


def forces_table():
    rows = []
    for t in TEMPERATURES:
        for model, spec in MODELS.items():
            if model.endswith("_diffsim"):
                continue  # force metrics do not cover refined models
            rows.append({"model": model, "kind": spec["kind"], "T_K": float(t),
                         "trained_at": ",".join(str(x) for x in spec["trained_at"]),
                         "force_rmse": 100.0 + abs(t - 300) + (model == "fm_oracle") * -5,
                         "force_rmse_oracle": 95.0 + abs(t - 300), "n_frames": 10})
    return pd.DataFrame(rows)


def test_identical_profiles_give_zero():
    g = synthetic_rdf(300)
    assert transfer.rdf_error(R, g, R, g) == 0.0
    p = synthetic_adf(300)
    assert transfer.adf_error(THETA, p, THETA, p) == 0.0


def test_constant_offset_in_window_gives_the_offset():
    g = synthetic_rdf(300)
    window = R >= 0.2
    assert transfer.rdf_error(R, np.where(window, g + 0.07, g), R, g) == pytest.approx(0.07)
    # outside the window nothing counts: an offset only below r_min gives zero
    assert transfer.rdf_error(R, np.where(window, g, g + 5.0), R, g) == 0.0
    # an explicit r_max cuts the window on the other side
    assert transfer.rdf_error(R, np.where(R > 0.5, g + 1.0, g + 0.03), R, g, r_max=0.5) == pytest.approx(0.03)
    p = synthetic_adf(300)
    assert transfer.adf_error(THETA, p + 1e-3, THETA, p) == pytest.approx(1e-3)


def test_different_grids_interpolate_and_cut_at_the_shorter():
    r_cg = np.arange(0.0005, 0.6, 0.001)  # finer and shorter CG grid
    g_fg = 1.0 + 0.5 * R  # linear: interpolation is exact
    g_cg = 1.0 + 0.5 * r_cg + 0.02
    # beyond r = 0.6 nm the FG grid continues; with the default r_max those bins must not count
    assert transfer.rdf_error(r_cg, g_cg, R, g_fg) == pytest.approx(0.02)


def test_empty_window_raises():
    with pytest.raises(ValueError, match="no FG bins"):
        transfer.rdf_error(R, R, R, R, r_min=1.0)


def noisy_replicas(profile, n, noise, generator):
    """n independent estimates of ``profile``: Gaussian noise of sd ``noise`` in every bin."""
    return profile + noise * generator.standard_normal((n, len(profile)))


def test_excess_error_removes_the_noise_that_eps_carries():
    generator = np.random.default_rng(5)
    p_fg = synthetic_adf(300)
    offset, noise, n_cg, n_fg = 4e-4, 6e-4, 4, 3
    draws = [transfer.excess_error(THETA, noisy_replicas(p_fg + offset, n_cg, noise, generator),
                                   THETA, noisy_replicas(p_fg, n_fg, noise, generator), "a") for _ in range(400)]
    eps2, noise2, excess2 = (np.array([d[key] ** 2 * np.sign(d[key]) for d in draws]) for key in ("eps", "noise", "excess"))
    expected_noise2 = noise**2 * (1 / n_cg + 1 / n_fg)
    # eps^2 holds the offset and the noise of both means; the excess only the offset
    assert eps2.mean() == pytest.approx(offset**2 + expected_noise2, rel=0.02)
    assert noise2.mean() == pytest.approx(expected_noise2, rel=0.02)
    assert excess2.mean() == pytest.approx(offset**2, rel=0.05)
    assert np.median([d["excess"] for d in draws]) == pytest.approx(offset, rel=0.05)
    assert np.median([d["eps"] for d in draws]) > 1.5 * offset


def test_excess_error_of_one_profile_within_the_noise_is_zero_on_average():
    generator = np.random.default_rng(6)
    g = synthetic_rdf(300)
    excess2 = [np.sign(d["excess"]) * d["excess"] ** 2 for d in (
        transfer.excess_error(R, noisy_replicas(g, 3, 0.02, generator), R, noisy_replicas(g, 3, 0.02, generator), "g")
        for _ in range(400))]
    assert abs(np.mean(excess2)) < 3 * np.std(excess2) / np.sqrt(len(excess2))
    assert min(excess2) < 0 < max(excess2)  # a draw may fall below the noise: the sign says so


def test_excess_error_uses_each_metrics_window_and_needs_two_replicas():
    g = synthetic_rdf(300)
    fg = np.stack([g, g, g])
    below = np.where(R < transfer.RDF_MIN_NM, g + 5.0, g)  # a difference outside eps_g's window
    outside = transfer.excess_error(R, np.stack([below, below]), R, fg, "g")
    assert outside == pytest.approx({"eps": 0.0, "noise": 0.0, "excess": 0.0}, abs=1e-12)
    shifted = transfer.excess_error(R, np.stack([g + 0.03, g + 0.03]), R, fg, "g")
    assert shifted["excess"] == pytest.approx(0.03) and shifted["eps"] == pytest.approx(0.03)
    with pytest.raises(ValueError, match="two replicas"):
        transfer.excess_error(R, g[None], R, fg, "g")


def test_jackknife_standard_error_of_means_is_the_textbook_one():
    generator = np.random.default_rng(8)
    a, b = generator.normal(size=5), generator.normal(2.0, 3.0, size=7)
    assert transfer.jackknife_standard_error(np.mean, [a]) == pytest.approx(a.std(ddof=1) / np.sqrt(5))
    both = np.sqrt(a.var(ddof=1) / 5 + b.var(ddof=1) / 7)  # independent groups: the variances add
    assert transfer.jackknife_standard_error(lambda x, y: x.mean() - y.mean(), [a, b]) == pytest.approx(both)
    with pytest.raises(ValueError, match="at least 3"):
        transfer.jackknife_standard_error(np.mean, [a[:2]])


def test_jackknife_standard_error_of_the_excess_matches_its_spread_over_draws():
    generator = np.random.default_rng(9)
    p_fg = synthetic_adf(300)

    def excess(cg, fg):
        return transfer.excess_error(THETA, cg, THETA, fg, "a")["excess"]

    draws, errors = [], []
    for _ in range(150):
        groups = [noisy_replicas(p_fg + 5e-4, 4, 6e-4, generator), noisy_replicas(p_fg, 4, 6e-4, generator)]
        draws.append(excess(*groups))
        errors.append(transfer.jackknife_standard_error(excess, groups))
    assert np.median(errors) == pytest.approx(np.std(draws), rel=0.35)


def test_the_table_gives_the_excess_over_the_noise_of_both_runs_halves(tmp_path):
    """Halves p +- n: their mean is p, and the noise each run's mean carries is n^2 per bin; a CG
    profile off by delta everywhere has eps_a = delta and an excess of sqrt(delta^2 - n_CG^2 - n_FG^2)."""
    fg_dir, cg_dir = write_results(tmp_path)
    p = synthetic_adf(320)
    g = synthetic_rdf(320)
    delta, noise_fg, noise_cg = 3e-4, 1e-4, 1.5e-4
    sign = np.where(np.arange(len(THETA)) % 2 == 0, 1.0, -1.0)  # the halves' difference changes sign bin to bin
    for directory, offset, noise in ((fg_dir / "T320", 0.0, noise_fg), (cg_dir / "fm_ref" / "T320", delta, noise_cg)):
        io.write_table(directory / "adf.tsv", pd.DataFrame({"theta_deg": THETA, "p_per_deg": p + offset}))
        io.write_table(directory / "adf_halves.tsv", pd.DataFrame(
            {"theta_deg": THETA, "p_first": p + offset + noise * sign, "p_second": p + offset - noise * sign}))
        io.write_table(directory / "rdf_halves.tsv", pd.DataFrame({"r_nm": R, "g_first": g, "g_second": g}))
    table = transfer.transferability_table(MODELS, TEMPERATURES, fg_dir, cg_dir).set_index(["model", "T_K"])
    row = table.loc[("fm_ref", 320.0)]
    assert row["eps_a"] == pytest.approx(delta)
    assert row["eps_a_excess"] == pytest.approx(np.sqrt(delta**2 - noise_fg**2 - noise_cg**2))
    assert row["eps_g_excess"] == pytest.approx(0.0, abs=1e-12)  # identical halves, one RDF
    assert np.isnan(table.loc[("fm_ref", 280.0), "eps_a_excess"])  # no halves written there


def test_table_values_ratios_and_forces(tmp_path):
    fg_dir, cg_dir = write_results(tmp_path)
    table = transfer.transferability_table(MODELS, TEMPERATURES, fg_dir, cg_dir, forces_table())
    assert list(table.columns) == transfer.COLUMNS
    assert len(table) == len(MODELS) * len(TEMPERATURES)
    row = table.set_index(["model", "T_K"]).loc[("fm_ref", 320.0)]
    # the shift applies to every bin with r >= 0.24 nm, bins 0.2-0.24 nm are zero in both
    window = (R >= 0.2) & (R <= R[-1])
    expected = 0.02 + 0.05 * 1.0
    assert row["eps_g"] == pytest.approx(expected * np.sqrt(np.mean(R[window] >= 0.24)), rel=1e-6)
    oracle = table.set_index(["model", "T_K"]).loc[("fm_oracle", 320.0)]
    assert row["eps_g_ratio_oracle"] == pytest.approx(row["eps_g"] / oracle["eps_g"])
    assert row["eps_g_ratio_oracle"] == pytest.approx(expected / 0.02, rel=1e-6)
    assert row["eps_a_ratio_oracle"] == pytest.approx(row["eps_a"] / oracle["eps_a"])
    assert row["eps_g_floor"] == pytest.approx(0.032) and row["eps_a_floor"] == pytest.approx(3.2e-5)  # FG's, at 320 K
    assert row["D_ratio"] == pytest.approx(1 + expected)
    assert row["D_fg"] == pytest.approx(2.5e-3 * 320 / 300)
    assert row["force_rmse"] == 120.0 and row["force_rmse_oracle"] == 115.0
    assert row["trained_at"] == "300" and not row["trained_here"]
    assert table.set_index(["model", "T_K"]).loc[("fm_ref", 300.0), "trained_here"]
    oracle_rows = table[table["model"] == "fm_oracle"]
    assert np.allclose(oracle_rows["eps_g_ratio_oracle"], 1.0)
    refined = table[table["model"] == "mtfm_diffsim"]
    assert refined["force_rmse"].isna().all() and refined["force_rmse_oracle"].notna().all()


def test_missing_files_are_skipped(tmp_path):
    skip = {("fg", 360), ("fm_ref", 280), ("fm_oracle", 320)}
    fg_dir, cg_dir = write_results(tmp_path, skip)
    (cg_dir / "mtfm" / "T280" / "summary.json").unlink()  # observables without a summary: D is NaN
    table = transfer.transferability_table(MODELS, TEMPERATURES, fg_dir, cg_dir)
    keys = set(zip(table["model"], table["T_K"]))
    assert (("fm_ref", 280.0) not in keys) and not any(t == 360.0 for _, t in keys)
    assert ("fm_ref", 300.0) in keys and len(table) == 4 * 3 - 2
    at_320 = table[table["T_K"] == 320.0]
    assert at_320["eps_g_ratio_oracle"].isna().all()  # no oracle row there
    assert table["force_rmse"].isna().all() and table["force_rmse_oracle"].isna().all()
    assert math.isnan(table.set_index(["model", "T_K"]).loc[("mtfm", 280.0), "D_cg"])
    # labels work as well as numbers, and nothing on disk gives an empty table with the columns
    assert len(transfer.transferability_table(MODELS, ["300"], fg_dir, cg_dir)) == 4
    empty = transfer.transferability_table(MODELS, TEMPERATURES, tmp_path / "none", cg_dir)
    assert empty.empty and list(empty.columns) == transfer.COLUMNS


def test_the_reference_is_the_model_of_kind_fm_oracle_whatever_its_name(tmp_path):
    fg_dir, cg_dir = write_results(tmp_path)
    (cg_dir / "fm_oracle").rename(cg_dir / "oracle")  # the oracle entry named "oracle" ...
    (cg_dir / "fm_ref").rename(cg_dir / "fm_oracle")  # ... and an fm_ref model named "fm_oracle"
    models = {"oracle": MODELS["fm_oracle"], "fm_oracle": MODELS["fm_ref"], "mtfm": MODELS["mtfm"]}
    table = transfer.transferability_table(models, TEMPERATURES, fg_dir, cg_dir).set_index(["model", "T_K"])
    assert len(table) == 3 * len(TEMPERATURES)
    for ratio in ("eps_g_ratio_oracle", "eps_a_ratio_oracle"):
        assert np.isfinite(table[ratio]).all()
        np.testing.assert_allclose(table.loc["oracle", ratio], 1.0)
    row = table.loc[("fm_oracle", 320.0)]  # compared with the oracle, as fm_ref is in test_table_values_ratios_and_forces
    assert row["kind"] == "fm_ref" and row["eps_g_ratio_oracle"] == pytest.approx(0.07 / 0.02, rel=1e-6)


def test_the_ratios_to_fm_ref_are_to_the_unrefined_model_of_that_kind(tmp_path):
    """A DiffSim refinement keeps its model's kind: refining fm_ref must not give a second reference."""
    fg_dir, cg_dir = write_results(tmp_path)
    (cg_dir / "mtfm_diffsim").rename(cg_dir / "fm_ref_diffsim")  # its files: an RDF shifted by 0.01
    models = {name: spec for name, spec in MODELS.items() if name != "mtfm_diffsim"}
    models["fm_ref_diffsim"] = {"kind": "fm_ref", "trained_at": [300, 320], "refined_from": "fm_ref"}
    table = transfer.transferability_table(models, TEMPERATURES, fg_dir, cg_dir).set_index(["model", "T_K"])
    np.testing.assert_allclose(table.loc["fm_ref", ["eps_g_ratio_fm_ref", "eps_a_ratio_fm_ref"]], 1.0)
    # eps_g is the shift of the RDF beyond 0.24 nm times one factor: the ratio is that of the shifts
    fm_ref_shift_at_320 = 0.02 + 0.05 * 1.0
    assert table.loc[("mtfm", 320.0), "eps_g_ratio_fm_ref"] == pytest.approx(0.03 / fm_ref_shift_at_320, rel=1e-6)
    assert table.loc[("fm_ref_diffsim", 320.0), "eps_g_ratio_fm_ref"] == pytest.approx(0.01 / fm_ref_shift_at_320, rel=1e-6)
    assert table.loc[("mtfm", 320.0), "eps_a_ratio_fm_ref"] == pytest.approx(
        table.loc[("mtfm", 320.0), "eps_a"] / table.loc[("fm_ref", 320.0), "eps_a"])
    models["fm_ref_diffsim"].pop("refined_from")
    with pytest.raises(ValueError, match="one reference model"):
        transfer.transferability_table(models, TEMPERATURES, fg_dir, cg_dir)


def test_a_shared_run_is_measured_and_named_for_the_model_that_shares_it(tmp_path):
    """fm_oracle at 300 K shares fm_ref's run (as the pipeline does at T0): it has no files of its own there."""
    fg_dir, cg_dir = write_results(tmp_path, {("fm_oracle", 300)})
    shared = {"fm_oracle": {"300": "fm_ref"}}
    table = transfer.transferability_table(MODELS, TEMPERATURES, fg_dir, cg_dir, shared_runs=shared)
    table = table.set_index(["model", "T_K"])
    assert len(table) == 4 * len(TEMPERATURES)
    for column in ("eps_g", "eps_a", "D_cg"):
        assert table.loc[("fm_oracle", 300.0), column] == table.loc[("fm_ref", 300.0), column]
    assert table.loc[("fm_oracle", 300.0), "cg_run"] == "fm_ref"
    assert (table.drop(("fm_oracle", 300.0))["cg_run"] == table.drop(("fm_oracle", 300.0)).index.get_level_values(0)).all()
    assert table.loc[("fm_oracle", 320.0), "eps_g"] != table.loc[("fm_ref", 320.0), "eps_g"]  # only at 300 K


def test_write_and_read_back(tmp_path):
    fg_dir, cg_dir = write_results(tmp_path, {("fm_oracle", 320)})
    table = transfer.transferability_table(MODELS, TEMPERATURES, fg_dir, cg_dir, forces_table())
    transfer.write_transferability(table, tmp_path / "t.tsv", tmp_path / "t.json")
    document = json.loads((tmp_path / "t.json").read_text())  # strict JSON: NaN written as null
    assert set(document["units"]) == set(transfer.COLUMNS)
    assert document["units"]["eps_a"] == "1/deg"
    assert any(r["eps_g_ratio_oracle"] is None for r in document["records"])
    for back in (transfer.read_transferability(tmp_path / "t.json"), io.read_table(tmp_path / "t.tsv")):
        pd.testing.assert_frame_equal(back.drop(columns="trained_at"), table.drop(columns="trained_at"),
                                      check_exact=False, rtol=1e-7, check_dtype=False)
    assert "eps_g: 1 (g is dimensionless)" in (tmp_path / "t.tsv").read_text()


def test_a_blown_up_run_gives_an_unstable_row_without_values(tmp_path):
    fg_dir, cg_dir = write_results(tmp_path)
    directory = cg_dir / "fm_ref" / "T360"
    for name, table in observables.empty_tables().items():  # as observables_cg writes it
        io.write_table(directory / f"{name}.tsv", table)
    io.write_json(directory / "summary.json", {"cgmd": {"stable": False, "blow_up_step": 120, "reason": "r"}})
    table = transfer.transferability_table(MODELS, TEMPERATURES, fg_dir, cg_dir, forces_table())
    row = table.set_index(["model", "T_K"]).loc[("fm_ref", 360.0)]
    assert not row["stable"] and np.isnan(row["eps_g"]) and np.isnan(row["eps_a"]) and np.isnan(row["D_cg"])
    assert row["force_rmse"] == 160.0  # the force metrics do not depend on the MD
    assert table.drop(index=table.index[(table["model"] == "fm_ref") & (table["T_K"] == 360.0)])["stable"].all()
    transfer.write_transferability(table, tmp_path / "t.tsv", tmp_path / "t.json")
    back = transfer.read_transferability(tmp_path / "t.json")
    assert back["stable"].dtype == bool and (~back["stable"]).sum() == 1


def noise_floor(beads):
    tables = {name: pd.DataFrame(dict(zip(observables.TABLE_COLUMNS[name], values)))
              for name, values in observables.halves(beads["positions"], beads["box"], SETTINGS).items()}
    return transfer.halves_spread(tables["rdf_halves"], tables["adf_halves"])


def test_spread_over_halves_is_the_sd_of_each_halfs_eps():
    r = np.linspace(0.001, 0.999, 500)
    theta = np.arange(0.5, 180.0)
    rdf_halves = pd.DataFrame({"r_nm": r, "g_first": np.ones_like(r) * 1.3, "g_second": np.ones_like(r) * 1.1})
    adf_halves = pd.DataFrame({"theta_deg": theta, "p_first": np.full(180, 1 / 180), "p_second": np.full(180, 1 / 180)})
    reference = pd.DataFrame({"r_nm": r, "g": np.ones_like(r)}), pd.DataFrame({"theta_deg": theta, "p_per_deg": np.full(180, 1 / 180)})
    spread = transfer.halves_spread(rdf_halves, adf_halves, *reference)
    assert spread["eps_g"] == pytest.approx((0.3 - 0.1) / np.sqrt(2)) and spread["eps_a"] == 0.0
    assert transfer.halves_spread(rdf_halves, adf_halves)["eps_g"] == pytest.approx(0.2)


def test_noise_floor_of_identical_halves_is_zero():
    rng = np.random.default_rng(0)
    half = rng.uniform(0.0, 2.0, size=(5, 100, 3))
    beads = {"positions": np.concatenate([half, half]), "box": np.full((10, 3), 2.0)}
    floor = noise_floor(beads)
    assert floor["eps_g"] == 0.0 and floor["eps_a"] == 0.0


def test_noise_floor_of_an_ideal_gas_is_its_counting_noise():
    """Uniform random frames: pair counts per bin are Poisson, so each half's g has variance
    1/(frames x expected pairs per frame in the bin), and eps_g^2 is the mean of twice that."""
    rng = np.random.default_rng(1)
    n_frames, n, length = 40, 200, 2.5
    beads = {"positions": rng.uniform(0.0, length, size=(n_frames, n, 3)), "box": np.full((n_frames, 3), length)}
    floor = noise_floor(beads)
    r, _ = observables.rdf(beads["positions"][:1], beads["box"][:1], SETTINGS["rdf_bin_width"])
    r = r[r >= 0.2]
    pairs_per_frame = n * (n - 1) / 2 * 4 * np.pi * r**2 * SETTINGS["rdf_bin_width"] / length**3
    expected = np.sqrt(np.mean(2 / (n_frames / 2 * pairs_per_frame)))
    assert floor["eps_g"] == pytest.approx(expected, rel=0.1)
    assert floor["eps_a"] > 0
