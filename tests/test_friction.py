"""Friction laws (thermocg.friction, docs/dynamics.md): each estimator against a known answer."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from thermocg import cgmd, friction, io, observables
from thermocg.units import KB, WATER_MASS

REPO = Path(__file__).resolve().parents[1]


def langevin_harmonic(gamma, n=200, steps=4000, dt=0.002, temperature=300.0, k=500.0, seed=1):
    """BAOAB particles in a harmonic well (mean force -k x, known): the total force on each
    particle over each step, m (v' - v) / dt, minus the mean force at the step's mid-point, is the
    force fluctuation about the mean force. Returns it (steps, n, 3)."""
    rng = np.random.default_rng(seed)
    kt, m = KB * temperature, WATER_MASS
    c1 = np.exp(-gamma * dt)
    sigma = np.sqrt((1 - c1**2) * kt / m)
    x = rng.normal(size=(n, 3)) * np.sqrt(kt / k)
    v = rng.normal(size=(n, 3)) * np.sqrt(kt / m)
    force = -k * x
    out = np.empty((steps, n, 3))
    for step in range(steps):
        x0, v0 = x, v
        v = v + 0.5 * dt * force / m
        x = x + 0.5 * dt * v
        v = c1 * v + sigma * rng.normal(size=(n, 3))
        x = x + 0.5 * dt * v
        force = -k * x
        v = v + 0.5 * dt * force / m
        out[step] = m * (v - v0) / dt + k * 0.5 * (x + x0)
    return out


@pytest.mark.parametrize("gamma", [5.0, 20.0])
def test_force_autocorrelation_gives_back_the_langevin_friction(gamma):
    dt = 0.002
    result = friction.friction_from_force_autocorrelation(langevin_harmonic(gamma, dt=dt), dt, 300.0, WATER_MASS,
                                                          t_max=0.5)
    # BAOAB's discrete noise has strength (1 - exp(-gamma dt)) / dt, gamma to O(gamma dt)
    expected = (1 - np.exp(-gamma * dt)) / dt
    assert result["friction_per_ps"] == pytest.approx(expected, rel=0.01)
    assert abs(result["friction_per_ps"] - gamma) < 0.03 * gamma
    assert 0 < result["error_per_ps"] < 0.01 * gamma


def test_force_autocorrelation_of_a_coloured_force_integrates_its_correlation_time():
    """An Ornstein-Uhlenbeck force of variance s2 per component and time tau, not fed back into
    the motion: gamma = beta s2 tau / m (the running integral's plateau)."""
    rng = np.random.default_rng(3)
    dt, tau, s2, n, steps = 0.002, 0.02, 400.0, 100, 6000
    a = np.exp(-dt / tau)
    f = np.empty((steps, n, 3))
    f[0] = rng.normal(size=(n, 3)) * np.sqrt(s2)
    for step in range(1, steps):
        f[step] = a * f[step - 1] + np.sqrt((1 - a**2) * s2) * rng.normal(size=(n, 3))
    result = friction.friction_from_force_autocorrelation(f, dt, 300.0, WATER_MASS, t_max=0.3)
    expected = s2 * tau / (KB * 300.0 * WATER_MASS)
    assert result["friction_per_ps"] == pytest.approx(expected, rel=0.08)


def test_excess_heat_capacity_from_the_energy_fluctuation():
    rng = np.random.default_rng(0)
    n, temperature, c = 256, 300.0, 7.0  # c_v,ex / k_B per molecule
    energy = rng.normal(scale=np.sqrt(c * n) * KB * temperature, size=20000)
    value, error = friction.excess_heat_capacity(energy, n, temperature)
    assert value == pytest.approx(c, rel=0.03)
    assert abs(value - c) < 4 * error


@pytest.mark.parametrize("form", ["constant", "rosenfeld_tarazona"])
def test_excess_entropy_change_integrates_cv_over_t(form):
    """ds/dT = c_v,ex(T) / T, zero at T0, with c_v,ex of the stated form."""
    t = np.linspace(250.0, 700.0, 2001)
    s = friction.excess_entropy_change(t, 300.0, 6.0, form)
    cv = 6.0 * (1.0 if form == "constant" else (t / 300.0) ** -0.4)
    np.testing.assert_allclose(np.gradient(s, t), cv / t, rtol=1e-3)
    assert friction.excess_entropy_change(300.0, 300.0, 6.0, form) == pytest.approx(0.0)


def test_entropy_scaled_diffusion_is_rosenfeld_scaling():
    d = friction.entropy_scaled_diffusion(np.array([300.0, 450.0]), 300.0, 0.0025, 6.0, alpha=0.8, form="constant")
    assert d[0] == pytest.approx(0.0025)
    assert d[1] == pytest.approx(0.0025 * np.sqrt(1.5) * 1.5 ** (0.8 * 6.0))


def line(gamma_int, temperature=300.0, trials=(2.0, 20.0)):
    """Trial runs on the exact overdamped law D = k_B T / (m (gamma + gamma_int))."""
    return [{"friction_per_ps": g, "D_nm2_per_ps": KB * temperature / (WATER_MASS * (g + gamma_int))} for g in trials]


def test_friction_for_diffusion_inverts_the_line():
    target = KB * 300.0 / (WATER_MASS * (26.0 + 4.0))
    gamma, fitted = friction.friction_for_diffusion(line(4.0), target)
    assert gamma == pytest.approx(26.0) and fitted == pytest.approx(26.0)
    assert friction.diffusion_for_friction(line(4.0), 26.0) == pytest.approx(target)
    with pytest.raises(RuntimeError, match="does not grow"):
        friction.friction_for_diffusion(line(4.0)[::-1] and [{"friction_per_ps": 2.0, "D_nm2_per_ps": 0.001},
                                                              {"friction_per_ps": 20.0, "D_nm2_per_ps": 0.002}], 0.001)


def exact_lines(temperatures, gamma_int=4.0):
    return {"reference_temperature_K": 300.0,
            "lines": {f"{t:g}": {"stable": True, "trials": line(gamma_int, t)} for t in temperatures}}


def test_each_law_gives_its_stated_gamma_of_t():
    temperatures = [250.0, 300.0, 450.0]
    true_gamma = {250.0: 40.0, 300.0: 26.0, 450.0: 8.0}
    fg = {f"{t:g}": KB * t / (WATER_MASS * (true_gamma[t] + 4.0)) for t in temperatures}
    lines = exact_lines(temperatures)
    oracle = friction.friction_law("oracle", temperatures, 300.0, lines, fg, {})
    for t in temperatures:
        assert oracle["friction_by_temperature"][f"{t:g}"] == pytest.approx(true_gamma[t])
    # a predictive law sees the FG diffusion at T0 only
    only_t0 = {"300": fg["300"]}
    constant = friction.friction_law("constant", temperatures, 300.0, lines, only_t0, {})
    assert list(constant["friction_by_temperature"].values()) == pytest.approx([26.0] * 3)
    rng = np.random.default_rng(0)
    energy = rng.normal(scale=np.sqrt(6.0 * 256) * KB * 300.0, size=5000)
    entropy = friction.friction_law("entropy", temperatures, 300.0, lines, only_t0,
                                    {"alpha": 0.8, "heat_capacity_form": "constant"}, fg_energy=energy, n_molecules=256)
    c = entropy["entropy"]["c_v_ex_per_kB"]
    for t in temperatures:
        target = friction.entropy_scaled_diffusion(t, 300.0, fg["300"], c, 0.8, "constant")
        expected = KB * t / (WATER_MASS * target) - 4.0
        assert entropy["friction_by_temperature"][f"{t:g}"] == pytest.approx(max(expected, 0.01))
    # rescaling: gamma proportional to the model's own caging friction gamma_int(T)
    caging = {250.0: 8.0, 300.0: 4.0, 450.0: 1.0}
    varying = {"reference_temperature_K": 300.0,
               "lines": {f"{t:g}": {"stable": True, "trials": line(caging[t], t)} for t in temperatures}}
    rescaling = friction.friction_law("rescaling", temperatures, 300.0, varying, only_t0, {})
    for t in temperatures:
        assert rescaling["friction_by_temperature"][f"{t:g}"] == pytest.approx(26.0 * caging[t] / 4.0)
    acf = friction.friction_law("force_acf", temperatures, 300.0, lines, only_t0, {},
                                force_acf={"friction_per_ps": 12.0, "error_per_ps": 0.5, "plateau_lag_ps": 0.03})
    assert set(acf["friction_by_temperature"].values()) == {12.0}


@pytest.mark.parametrize("form", ["rosenfeld_tarazona", "constant"])
def test_laws_said_to_share_t0_give_the_constant_gamma_there_to_the_last_bit(form):
    # the dynamics comparison runs these laws once at T0 (friction.SAME_AS_CONSTANT_AT_T0)
    temperatures = [250.0, 300.0, 450.0]
    fg = {"250": 0.0006, "300": 0.0021, "450": 0.0105}  # D_FG of SPC/E, nm^2/ps
    lines = {"reference_temperature_K": 300.0, "lines": {f"{t:g}": {"stable": True, "trials": [
        {"friction_per_ps": 2.0, "D_nm2_per_ps": 0.0106 * t / 300.0},
        {"friction_per_ps": 20.0, "D_nm2_per_ps": 0.00246 * t / 300.0}]} for t in temperatures}}
    energy = np.random.default_rng(1).normal(scale=np.sqrt(3.1 * 256) * KB * 300.0, size=300)
    extra = {"entropy": {"fg_energy": energy, "n_molecules": 256}}
    constant = friction.friction_law("constant", temperatures, 300.0, lines, {"300": fg["300"]}, {})["friction_per_ps"]
    assert constant > 20.0, "the T0 target lies beyond the trials, as in the default run"
    for law in friction.SAME_AS_CONSTANT_AT_T0:
        record = friction.friction_law(law, temperatures, 300.0, lines, fg if law == "oracle" else {"300": fg["300"]},
                                       {"alpha": 0.8, "heat_capacity_form": form}, **extra.get(law, {}))
        assert record["friction_by_temperature"]["300"] == constant, law


def test_cgmd_reads_the_gamma_of_its_temperature(tmp_path):
    record = friction.friction_law("oracle", [300.0, 450.0], 300.0, exact_lines([300.0, 450.0]),
                                   {"300": 0.002, "450": 0.008}, {})
    io.write_json(tmp_path / "friction.json", record)
    assert cgmd.read_friction(tmp_path / "friction.json", 450.0) == record["friction_by_temperature"]["450"]
    assert cgmd.read_friction(tmp_path / "friction.json", 300) == record["friction_by_temperature"]["300"]
    # an old record (one constant) still reads
    io.write_json(tmp_path / "old.json", {"friction_per_ps": 5.0})
    assert cgmd.read_friction(tmp_path / "old.json", 450.0) == 5.0


def test_velocity_autocorrelation_of_an_ornstein_uhlenbeck_velocity():
    rng = np.random.default_rng(2)
    dt, gamma, steps, n = 0.002, 10.0, 5000, 200
    a = np.exp(-gamma * dt)
    v = np.empty((steps, n, 3))
    v[0] = rng.normal(size=(n, 3))
    for step in range(1, steps):
        v[step] = a * v[step - 1] + np.sqrt(1 - a**2) * rng.normal(size=(n, 3))
    positions = np.concatenate([np.zeros((1, n, 3)), np.cumsum(v * dt, axis=0)])
    box = np.full((steps + 1, 3), 1000.0)
    lag, c, v2 = observables.velocity_autocorrelation(positions, box, dt * np.arange(steps + 1), max_lag=0.3)
    np.testing.assert_allclose(c[:80], np.exp(-gamma * lag[:80]), atol=0.02)
    assert v2 == pytest.approx(3.0, rel=0.03)


def test_diffusion_error_covers_the_truth():
    """Brownian walkers with D = 0.003 nm^2/ps: the estimate is within a few standard errors."""
    rng = np.random.default_rng(5)
    dt, d, steps, n = 0.1, 0.003, 300, 256
    steps_xyz = rng.normal(scale=np.sqrt(2 * d * dt), size=(steps, n, 3))
    positions = np.concatenate([np.zeros((1, n, 3)), np.cumsum(steps_xyz, axis=0)])
    result = observables.diffusion_with_error(positions, np.full((steps + 1, 3), 100.0), dt * np.arange(steps + 1),
                                              2.0, 10.0)
    assert 0 < result["D_error_nm2_per_ps"] < 0.1 * d
    assert abs(result["D_nm2_per_ps"] - d) < 4 * result["D_error_nm2_per_ps"]


def test_dynamics_table_ratio_and_error():
    fg = [{"temperature_K": 300.0, "diffusion": {"D_nm2_per_ps": 0.002, "D_error_nm2_per_ps": 0.0001}}]
    cg = [{"temperature_K": 300.0, "model": "m", "law": "oracle", "stable": True, "friction_per_ps": 20.0,
           "diffusion": {"D_nm2_per_ps": 0.003, "D_error_nm2_per_ps": 0.0003}, "timestep_ps": 0.004},
          {"temperature_K": 300.0, "model": "m", "law": "constant", "stable": False, "friction_per_ps": 20.0}]
    table = friction.dynamics_table(fg, cg).set_index("law")
    assert table.loc["oracle", "timestep_ps"] == 0.004
    assert table.loc["oracle", "ratio"] == pytest.approx(1.5)
    assert table.loc["oracle", "ratio_error"] == pytest.approx(1.5 * np.hypot(0.1, 0.05))
    assert table.loc["constant", "ratio"] is None or np.isnan(table.loc["constant", "ratio"])


@pytest.mark.parametrize("law", ["constant", "oracle", "entropy", "rescaling", "force_acf"])
def test_the_configured_law_is_the_one_cgmd_uses(tmp_path, law):
    """Tiny config with cgmd.friction fit: fit_friction (whose record every cgmd job reads) gets the
    law of the config and exactly the data that law may use."""
    merged = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    merged["cgmd"].update(friction="fit", friction_law=law)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(merged))
    dag = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--cores", "1",
         "--configfile", str(config_path), "--", "results/cgmd/trf1/friction.json"],
        capture_output=True, text=True, cwd=tmp_path)
    assert dag.returncode == 0, dag.stderr[-3000:]
    text = dag.stdout + dag.stderr

    def inputs(rule):
        block = text[text.index(f"rule {rule}:"):]
        return block[block.index("input:"):].splitlines()[0]

    fit = inputs("fit_friction")
    assert ("results/observables/fg/T320/diffusion.json" in fit) == (law == "oracle")
    assert "results/observables/fg/T300/diffusion.json" in fit and "summary.json" not in fit  # the diffusion alone
    assert ("results/cg/T300/beads.npz" in fit) == (law == "entropy")
    assert ("results/fg/T300/fine/frames.npz" in fit) == (law == "force_acf")
    # trial runs at T0 only are fm_ref's: trf1 has its force field there (t0_twin in workflow/rules/common.smk)
    lines_of = "trf1" if law in friction.PER_TEMPERATURE_LAWS else "fm_ref"
    assert f"results/cgmd/{lines_of}/friction_lines.json" in fit
    assert f"wildcards: model={lines_of}" in text[text.index("rule friction_lines:"):]
    assert ("results/cg/T320/beads.npz" in inputs("friction_lines")) == (law in friction.PER_TEMPERATURE_LAWS)
    script = (REPO / "workflow" / "scripts" / "fit_friction.py").read_text()
    assert 'snakemake.wildcards.get("law", params.friction_law)' in script
    assert "read_friction(snakemake.input.friction, float(snakemake.wildcards.T))" in (
        REPO / "workflow" / "scripts" / "cgmd.py").read_text()


def test_the_dynamics_rows_of_the_configured_law_are_the_cg_md_runs(tmp_path):
    """Default config: the rows of cgmd.friction_law read the compared model's CG MD run (fm_ref's at T0,
    where trf1 has its force field), which records every step; no dynamics run of their own."""
    targets = [f"results/dynamics/trf1/constant/T{t}/summary.json" for t in (300, 450)]
    dag = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--cores", "1",
         "--configfile", str(REPO / "config" / "config.yaml"), "--", *targets],
        capture_output=True, text=True, cwd=tmp_path)
    assert dag.returncode == 0, dag.stderr[-3000:]
    text = dag.stdout + dag.stderr
    blocks = [block for block in text.split("\nrule ")[1:] if block.startswith("dynamics_of_cgmd:")]
    inputs = sorted(block[block.index("input:"):].splitlines()[0] for block in blocks)
    assert len(inputs) == 2 and "rule dynamics_cg:" not in text
    assert "results/cgmd/fm_ref/T300/trajectory.dcd" in inputs[0] and "results/cgmd/fm_ref/friction.json" in inputs[0]
    assert "results/cgmd/trf1/T450/trajectory.dcd" in inputs[1] and "results/cgmd/trf1/friction.json" in inputs[1]


def test_dynamics_figure(tmp_path, drawn):
    import pandas as pd

    from thermocg import plots

    rows = [{"model": "trf2", "law": law, "temperature_K": t, "gamma_per_ps": g * t / 300, "D_FG": 0.002,
             "D_FG_error": 1e-4, "D_CG": 0.002 * r * t / 300, "D_CG_error": 1e-4, "ratio": r * t / 300,
             "ratio_error": 0.05, "stable": True}
            for law, g, r in (("constant", 26.0, 0.5), ("oracle", 10.0, 1.0)) for t in (300.0, 450.0)]
    lag = np.linspace(0, 1, 11)
    vacf = {t: pd.DataFrame({"lag_ps": lag, "vacf": np.exp(-rate * lag)}) for t, rate in (("300", 5.0), ("450", 8.0))}
    cg_vacf = {("trf2", law, t): pd.DataFrame({"lag_ps": lag, "vacf": np.exp(-(k + 2) * 3.0 * lag)})
               for k, law in enumerate(("constant", "oracle")) for t in ("300", "450")}
    plots.plot_dynamics(pd.DataFrame(rows), vacf, cg_vacf, tmp_path / "d.png", tmp_path / "d.pdf")
    assert (tmp_path / "d.png").stat().st_size > 0 and (tmp_path / "d.pdf").exists()
    # what is drawn is the table's: the ratio and gamma per law against T, and each law's VACFs
    ratio_ax, gamma_ax, *vacf_axes = [ax for ax in drawn[-1]["figure"].axes if ax.get_visible()]
    for law, g, r in (("constant", 26.0, 0.5), ("oracle", 10.0, 1.0)):
        (ratio,) = [c for c in ratio_ax.containers if c.get_label() == f"trf2: {law}"]
        np.testing.assert_allclose(np.asarray(ratio.lines[0].get_ydata(), dtype=float), [r, r * 1.5])
        (gamma,) = [line for line in gamma_ax.get_lines() if line.get_label() == law]
        np.testing.assert_allclose(np.asarray(gamma.get_ydata(), dtype=float), [g, g * 1.5])
    for k, ax in enumerate(vacf_axes):
        fg_lines = [line for line in ax.get_lines() if line.get_label().startswith("FG")]
        cg_lines = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        np.testing.assert_allclose(fg_lines[1].get_ydata(), vacf["450"]["vacf"])
        np.testing.assert_allclose(cg_lines[0].get_ydata(), cg_vacf[("trf2", ("constant", "oracle")[k], "300")]["vacf"])


def test_a_blow_up_in_a_trial_run_gives_no_friction_there(tmp_path):
    lines = exact_lines([300.0, 450.0])
    lines["lines"]["450"] = {"stable": False, "reason": "blew up at step 3: beads 0.05 nm apart"}
    fg = {"300": 0.002, "450": 0.008}
    record = friction.friction_law("oracle", [300.0, 450.0], 300.0, lines, fg, {})
    assert record["friction_by_temperature"]["450"] is None and record["friction_by_temperature"]["300"] > 0
    lines["lines"]["300"] = {"stable": False, "reason": "blew up at step 0"}
    record = friction.friction_law("constant", [300.0, 450.0], 300.0, lines, fg, {})
    io.write_json(tmp_path / "friction.json", record)
    assert record["stable"] is False and cgmd.read_friction(tmp_path / "friction.json", 450.0) is None
