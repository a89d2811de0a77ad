"""The GPU measurements of issue 15 in one run, and from them the wall time of config/paper.yaml.

Parts (``--parts``, all by default), each kept from stopping the others:

- ``fg``: atomistic MD, bare OpenMM stepping of SPC/E water (PME 0.9 nm, Ewald tolerance 5e-4,
  rigid, LangevinMiddle 2 fs, 300 K; thermocg.fg.build_water_box and the pipeline's platform
  properties: CUDA mixed precision, deterministic forces) for each of ``--sizes`` molecules: set-up
  seconds (box, System, Context), ms per step and ns/day after a damped relaxation and a warm-up.
- ``cg``: CG MD (thermocg.md.Simulation: Langevin BAOAB, 8 fs, skin 0.15 nm, float32) of the
  default network (config/config.yaml's, trf2 heads) for each size from a lattice at water
  density, and of the paper network (config/paper.yaml's) at the paper's molecule count.
  Simulation.run only: no trajectory output or blow-up guard (bench_md.py: run_md adds 3-11% on CPU).
  On CUDA also kernels per step and the GPU's busy time per step (torch.profiler, 20 more steps).
- ``ratio``: CG ns/day of the default network over FG ns/day, per size (from the two parts).
- ``train``: training frames/s of one optimiser step as thermocg.train.fit takes it (the kind's
  Objective, backward, clipping, Adam) and of a validation pass, for every network-trained model
  (fm_ref, fm_oracle, mtfm) of config/paper.yaml, on synthetic 512-bead frames (batch of
  ``training.batch_frames``), with the paper network (and, unless --quick, the default one).
- ``diffsim``: seconds per DiffSim refinement iteration at one temperature (thermocg.diffsim.refine
  of the paper network's W1/W2 heads, the paper's window, sample_every and time step).
- ``estimate``: jobs per rule of ``snakemake -n --configfile config/paper.yaml`` times per-job
  costs from the parts above scaled to the paper's sizes; the assumptions are printed and written
  with the table.

    python benchmarks/bench_gpu.py                          # GPU machine: 512, 4096, 32768
    python benchmarks/bench_gpu.py --sizes 512 --quick      # CPU check of the code paths

Writes fg.tsv, cgmd.tsv, cg_fg_ratio.tsv, train.tsv, diffsim.tsv, paper_jobs.tsv and
paper_estimate.tsv (with paper_estimate.txt, the assumptions) to ``--out-dir``
(default benchmarks/results/gpu) and prints them.
"""

import argparse
import copy
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import results_table  # noqa: E402

from thermocg import config as tconfig  # noqa: E402
from thermocg import kinds, nn, train, units  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
PAPER_CONFIG = REPO / "config" / "paper.yaml"
TEMPERATURE = 300.0
DENSITY = 0.997


def gpu_rules():
    """The rules the Slurm profile gives a GPU: its ``set-resources`` entries made by ``?gpu_rule(...)``."""
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    return sorted(rule for rule, value in profile["set-resources"].items()
                  if isinstance(value, str) and value.startswith("?gpu_rule("))


GPU_RULES = gpu_rules()


def load_config(path):
    return tconfig.check(yaml.safe_load(Path(path).read_text()))


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(function, device):
    sync(device)
    start = time.perf_counter()
    result = function()
    sync(device)
    return time.perf_counter() - start, result


def lattice(n_beads, seed=0, jitter=0.02):
    """Beads on a simple cubic lattice at water density, jittered (nm); returns positions, box."""
    side = round(n_beads ** (1 / 3))
    if side**3 != n_beads:
        raise ValueError(f"{n_beads} is not a cube")
    length = units.cubic_box_length(n_beads, DENSITY)
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions = (grid + 0.5) * length / side + np.random.default_rng(seed).uniform(-jitter, jitter, (n_beads, 3))
    return positions % length, np.full(3, length)


# --- fg ---------------------------------------------------------------------------------------
def bench_fg(size, args):
    import openmm
    from openmm import unit

    from thermocg import fg

    settings = fg.SamplingSettings(
        model="spce", n_molecules=size, density=DENSITY, cutoff=0.9, ewald_tolerance=5e-4, temperature=TEMPERATURE,
        seed=1, timestep=0.002, equilibration=0.0, equilibration_friction=1.0, production=1.0, friction=0.1,
        frame_interval=0.1, checkpoint_interval=5.0, platform=args.fg_platform, threads=args.threads,
    )
    start = time.perf_counter()
    topology, positions, forcefield = fg.build_water_box(settings.model, size, settings.density, settings.seed)
    system = fg.create_system(topology, forcefield, settings.cutoff, settings.ewald_tolerance)
    integrator = openmm.LangevinMiddleIntegrator(settings.temperature, settings.friction, settings.timestep)
    simulation = fg.create_simulation(topology, system, integrator, settings.platform, settings.threads)
    simulation.context.setPositions(positions * unit.nanometer)
    simulation.context.applyConstraints(1e-8)
    fg._relax(integrator, settings)  # noqa: SLF001 (the pipeline's melt of the lattice, as in bench_fg.py)
    integrator.setFriction(settings.friction / unit.picosecond)
    integrator.step(args.fg_warmup)
    simulation.context.getState(getEnergy=True)  # waits for the device
    setup = time.perf_counter() - start
    start = time.perf_counter()
    integrator.step(args.fg_steps)
    state = simulation.context.getState(getEnergy=True)
    seconds = time.perf_counter() - start
    context_platform = simulation.context.getPlatform()
    name = context_platform.getName()
    precision = context_platform.getPropertyValue(simulation.context, "Precision") if name == "CUDA" else ""
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    del simulation, integrator
    return {
        "molecules": size, "atoms": system.getNumParticles(), "platform": name, "precision": precision,
        "threads": args.threads if name == "CPU" else "", "setup_s": setup, "steps": args.fg_steps,
        "ms_per_step": 1e3 * seconds / args.fg_steps, "ns_per_day": args.fg_steps * 0.002 / seconds * 86400 / 1000,
        "finite": bool(np.isfinite(energy)),
    }


# --- cg ---------------------------------------------------------------------------------------
def network(config_path, kind="trf2"):
    return train.build_model(kind, load_config(config_path))


def bench_cg(name, config_path, size, args):
    from thermocg.md import DEFAULT_SKIN, Simulation

    torch.manual_seed(0)
    positions, box = lattice(size)
    start = time.perf_counter()
    sim = Simulation(network(config_path), positions, box, TEMPERATURE, dt=0.008, friction=5.0, seed=0,
                     dtype=torch.float32, device=args.device)
    sim.run(args.cg_warmup)
    sync(args.device)
    setup = time.perf_counter() - start
    builds = sim.force_field.neighbor_list.n_builds
    seconds, _ = timed(lambda: sim.run(args.cg_steps), args.device)
    row = {
        "potential": name, "beads": size, "device": str(sim.device), "dtype": "float32", "dt_ps": 0.008,
        "skin_nm": DEFAULT_SKIN, "pairs_fixed_layout": bool(sim.force_field.fixed_pair_layout),
        "setup_s": setup, "steps": args.cg_steps, "ms_per_step": 1e3 * seconds / args.cg_steps,
        "ns_per_day": args.cg_steps * 0.008 / seconds * 86400 / 1000,
        "rebuilds_per_step": (sim.force_field.neighbor_list.n_builds - builds) / args.cg_steps,
        "finite": bool(torch.isfinite(sim.positions).all()),
        "T_kin_K": sim.kinetic_temperature(),
    }
    if sim.device.type == "cuda":
        row["peak_gpu_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
        row.update(gpu_activity(sim, args.cg_profile_steps))
    return row


def gpu_activity(sim, steps):
    """Kernels per step and the GPU's busy time per step (sum of kernel durations, ms) over
    ``steps`` profiled steps: busy time far below the wall time per step means the step is
    bound by the host (launches, Python), not by the GPU."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CUDA]) as profiler:
            sim.run(steps)
            torch.cuda.synchronize()
        kernels = [e for e in profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        return {"kernels_per_step": len(kernels) / steps,
                "gpu_busy_ms_per_step": sum(e.time_range.elapsed_us() for e in kernels) / 1e3 / steps}
    except Exception as error:  # a profiler that does not run here leaves the row as measured
        print(f"profiling the CG step failed: {error!r}", file=sys.stderr)
        return {}


# --- train ------------------------------------------------------------------------------------
def synthetic_frames(n_frames, n_beads, cutoff, r_loc, dbetas, dtype, device):
    """Water-like frames with random forces and energies (the cost does not depend on the values)."""
    from thermocg import targets
    from thermocg.neighbors import NeighborList

    rng = np.random.default_rng(0)
    frames = []
    for k in range(n_frames):
        positions, box = lattice(n_beads, seed=k, jitter=0.05)
        positions = torch.as_tensor(positions, dtype=dtype, device=device)
        box = torch.as_tensor(box, dtype=dtype, device=device)
        energies = rng.normal(-41.0, 5.0, n_beads)
        frames.append(train.Frame(
            positions=positions,
            forces=torch.as_tensor(rng.normal(0.0, 500.0, (n_beads, 3)), dtype=dtype, device=device),
            energy=torch.tensor(float(energies.sum()), dtype=torch.float64, device=device),
            bead_energies=torch.as_tensor(energies, dtype=torch.float64, device=device),
            pairs=NeighborList(cutoff)(positions, box),
            local_pairs=targets.local_pairs(positions, box, r_loc)[:2] if r_loc else None,
            dbeta=float(dbetas[k % len(dbetas)]),
        ))
    return frames


def bench_train(network_name, config_path, name, spec, args):
    config = load_config(config_path)
    training = config["training"]
    kind = spec["kind"]
    estimator = spec.get("estimator", "local")
    r_loc = spec.get("r_loc", 0.5) if kind in kinds.RESPONSE_KINDS and estimator == "local" else None
    beta0 = float(units.beta(config["reference_temperature"]))
    dbetas = [float(units.beta(t)) - beta0 for t in kinds.training_temperatures(
        spec, config, config["reference_temperature"] if kind == "fm_oracle" else None)]
    torch.manual_seed(0)
    model = train.build_model(kind, config).to(args.device)
    dtype = next(model.parameters()).dtype
    batch = training["batch_frames"]
    frames = synthetic_frames(2 * batch, args.train_beads, model.cutoff, r_loc, dbetas, dtype, args.device)
    objective = train.Objective(kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=training["learning_rate"])

    def step(k):
        chunk = frames[(k % 2) * batch:(k % 2 + 1) * batch]
        terms = objective(model, chunk, epoch=1)
        optimizer.zero_grad()
        sum(terms.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), training["gradient_clip"])
        optimizer.step()
        return len(terms)

    def evaluate(k):
        chunk = frames[(k % 2) * batch:(k % 2 + 1) * batch]
        return [float(v) for v in objective(model, chunk, epoch=1, create_graph=False).values()]

    for k in range(args.train_warmup):
        step(k)
    step_s = [timed(lambda: step(k), args.device)[0] for k in range(args.train_steps)]
    evaluate(0)
    eval_s = [timed(lambda: evaluate(k), args.device)[0] for k in range(args.train_steps)]
    return {
        "network": network_name, "model": name, "kind": kind, "estimator": estimator if kind in kinds.RESPONSE_KINDS else "",
        "beads": args.train_beads, "batch_frames": batch, "device": args.device, "dtype": str(dtype).removeprefix("torch."),
        "loss_terms": step(0), "train_step_ms": 1e3 * statistics.median(step_s),
        "train_frames_per_s": batch / statistics.median(step_s),
        "eval_frames_per_s": batch / statistics.median(eval_s),
    }


# --- diffsim ----------------------------------------------------------------------------------
def bench_diffsim(network_name, config_path, args):
    from thermocg.diffsim import make_target, refine
    from thermocg.md import Simulation

    config = load_config(config_path)
    settings = dict(config["diffsim"])
    window = args.diffsim_window or settings["window"]
    torch.manual_seed(0)
    model = network(config_path)
    positions, box = lattice(args.diffsim_beads)
    sim = Simulation(copy.deepcopy(model), positions, box, TEMPERATURE, dt=0.004, friction=5.0, seed=0,
                     dtype=torch.float32, device=args.device)
    frames = []
    for _ in range(4):
        sim.run(args.diffsim_equilibration // 4)
        frames.append(sim.positions.double().cpu().numpy())
    target = make_target(np.array(frames), box, TEMPERATURE)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    _, history = refine(model, [target], params=settings["parameters"], n_iterations=args.diffsim_repeats + 1,
                        window=window, sample_every=settings["sample_every"], warmup_steps=0,
                        dt=settings["timestep"], friction=settings["friction"], reference_temperature=280.0,
                        lambda_adf=settings["lambda_adf"], lr=settings["learning_rate"],
                        max_grad_norm=settings["max_grad_norm"], dtype=torch.float32, device=args.device)
    total = time.perf_counter() - start
    seconds = statistics.median(history.seconds.iloc[1:]) if len(history) > 1 else float(history.seconds.iloc[-1])
    row = {
        "network": network_name, "beads": args.diffsim_beads, "device": args.device, "window_steps": window,
        "sample_every": settings["sample_every"], "dt_ps": settings["timestep"], "iterations_timed": len(history) - 1,
        "s_per_iteration_per_temperature": seconds, "ms_per_differentiable_step": 1e3 * seconds / window,
        "total_s": total,
    }
    if args.device == "cuda":
        row["peak_gpu_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return row


# --- estimate ---------------------------------------------------------------------------------
def job_counts(config_path):
    """Jobs per rule of ``snakemake -n`` for a config (in a scratch directory)."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", scratch, "-n",
                   "--quiet", "rules", "--configfile", str(config_path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake -n failed ({result.returncode}):\n{result.stderr[-3000:]}")
    counts = {}
    lines = (result.stdout + result.stderr).splitlines()
    start = max(k for k, line in enumerate(lines) if line.strip().startswith("job") and "count" in line)
    for line in lines[start + 2:]:
        match = re.fullmatch(r"\s*(\w+)\s+(\d+)\s*", line)
        if not match:
            break
        counts[match[1]] = int(match[2])
    counts.pop("total", None)
    return counts


def startup_seconds(device):
    """Wall time of a fresh job process up to a usable device (python, torch, thermocg, OpenMM)."""
    code = ("import torch, openmm, thermocg.md, thermocg.train; "
            f"torch.zeros(1, device='{device}'); torch.cuda.synchronize() if '{device}' == 'cuda' else None")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    return time.perf_counter() - start


def nearest(table, column, value):
    """The row of ``table`` whose ``column`` is closest to ``value`` (log scale)."""
    distance = (np.log(table[column].astype(float)) - math.log(value)).abs()
    return table.loc[distance.idxmin()]


def cpu_rule_seconds(tiny_run, rule):
    """Mean s of a rule's jobs in a finished tiny run's benchmark files (None if it has none)."""
    if tiny_run is None:
        return None
    names = {"fit_oracle": "fit.tsv"}
    files = [p for p in (Path(tiny_run) / "results" / "benchmarks").rglob(names.get(rule, f"{rule}.tsv"))]
    if rule in ("fit", "fit_oracle"):
        oracle = [p for p in files if re.fullmatch(r"T[\d.]+", p.parent.name)]
        files = oracle if rule == "fit_oracle" else [p for p in files if p not in oracle]
    if not files:
        return None
    return float(np.mean([pd.read_csv(p, sep="\t")["s"].iloc[0] for p in files]))


def estimate(tables, args):
    paper = load_config(PAPER_CONFIG)
    tiny = load_config(REPO / "config" / "test.yaml")
    counts = job_counts(PAPER_CONFIG)
    jobs = pd.DataFrame([{"rule": r, "jobs": n, "gpu_rule": r in GPU_RULES} for r, n in counts.items()])
    startup = startup_seconds(args.device)
    n = paper["water"]["n_molecules"]
    fgc, cgc, tr, ds = paper["fg"], paper["cgmd"], paper["training"], paper["diffsim"]
    assumptions = [
        f"device {args.device}; each job also pays {startup:.1f} s of process start-up (python, torch, OpenMM, "
        "first device call), measured once; Snakemake's own overhead is left out",
        "GPU rules run one after another on the one GPU (no two jobs share it); CPU-only rules run on the "
        f"{args.cores} cores and are added as their summed time / {args.cores}, as if they never overlapped "
        "the GPU jobs (an upper bound; the DAG lets most of them overlap)",
    ]
    rows = []

    def add(rule, per_job, basis, epochs=None, jobs=None):
        count = counts.get(rule, 0) if jobs is None else jobs
        if count:
            rows.append({"rule": rule, "jobs": count, "gpu": rule in GPU_RULES,
                         "s_per_job": per_job + startup if per_job is not None and np.isfinite(per_job) else np.nan,
                         "basis": basis, "epochs": epochs})

    fg_table = tables.get("fg")
    if fg_table is not None and len(fg_table):
        row = nearest(fg_table, "molecules", n)
        scale = n / float(row["molecules"])
        for rule, production in (("sample_fg", fgc["production"]), ("sample_fg_score", fgc["score_production"])):
            ps = fgc["equilibration"] + production
            add(rule, row["setup_s"] + ps / 1000 / (row["ns_per_day"] / scale) * 86400,
                f"{ps:g} ps at {row['ns_per_day'] / scale:.4g} ns/day ({row['platform']}, {int(row['molecules'])} "
                f"molecules{'' if scale == 1 else f', scaled linearly to {n}'}) + set-up; bare stepping (recording "
                f"every {fgc['frame_interval']:g} ps left out)")

    cg_table = tables.get("cg")
    paper_cg = None if cg_table is None else cg_table[cg_table.potential == "nn_paper"]
    if paper_cg is not None and len(paper_cg):
        row = nearest(paper_cg, "beads", n)
        ms = row["ms_per_step"] * n / float(row["beads"])
        steps = (cgc["equilibration"] + cgc["production"]) / cgc["timestep"]
        add("cgmd", row["setup_s"] + steps * ms / 1e3, f"{steps:.0f} steps x {ms:.3g} ms (paper network, "
            f"{int(row['beads'])} beads, Simulation.run without output)")
        trial_steps = (cgc["equilibration"] + cgc["friction_fit_time"]) / cgc["timestep"]
        n_trials = len(cgc["friction_trials"])
        add("friction_lines", n_trials * (row["setup_s"] + trial_steps * ms / 1e3),
            f"{n_trials} trial runs x {trial_steps:.0f} steps x {ms:.3g} ms, at T0 only (MSD analysis left out)")

    train_table = tables.get("train")
    paper_train = None if train_table is None else train_table[train_table.network == "paper"]
    if paper_train is not None and len(paper_train):
        frames_per_t = round(fgc["production"] / fgc["frame_interval"])
        split = train.split_indices(frames_per_t, tr["validation_fraction"], tr["test_fraction"], tr["frame_stride"])
        n_train, n_val = len(split["train"]), len(split["validation"])
        speeds = {r.model: r for r in paper_train.itertuples()}

        def epoch_seconds(name, spec, temperature=None):
            r = speeds.get(name)
            if r is None:
                return np.nan
            n_t = len(kinds.training_temperatures(spec, paper, temperature))
            return n_t * (n_train / r.train_frames_per_s + n_val / r.eval_frames_per_s)

        fit_epochs = [epoch_seconds(name, spec) for name, spec in paper["models"].items()
                      if spec["kind"] != "fm_oracle" and spec["kind"] not in kinds.SHARED_W0]
        oracle = [(name, spec) for name, spec in paper["models"].items() if spec["kind"] == "fm_oracle"]
        for label, epochs in (("max_epochs", tr["max_epochs"]), ("assumed", args.assume_epochs)):
            add("fit", epochs * float(np.mean(fit_epochs)),
                f"{epochs} epochs x mean over the trained kinds of (training frames / train frames/s + "
                f"validation frames / eval frames/s); {n_train} + {n_val} frames per temperature; the other "
                f"{counts.get('fit', 0) - len(fit_epochs)} fit jobs (thermal terms in closed form on the shared W0) "
                "left out", f"{label}={epochs}", jobs=len(fit_epochs))
            if oracle:
                add("fit_oracle", epochs * epoch_seconds(*oracle[0], paper["reference_temperature"]),
                    f"{epochs} epochs of fm_oracle at one temperature", f"{label}={epochs}")
        assumptions.append(
            f"training: synthetic {args.train_beads}-bead frames; every epoch trains on all {n_train} training frames "
            f"per temperature (frame_stride {tr['frame_stride']}) and evaluates {n_val}; two rows per training rule: "
            f"at max_epochs ({tr['max_epochs']}, an upper bound) and at {args.assume_epochs} epochs (an assumed early "
            f"stop, patience {tr['early_stopping_patience']}); the total uses the assumed count")

    ds_table = tables.get("diffsim")
    paper_ds = None if ds_table is None else ds_table[ds_table.network == "paper"]
    if paper_ds is not None and len(paper_ds):
        row = paper_ds.iloc[0]
        per_t = row["s_per_iteration_per_temperature"] * ds["window"] / row["window_steps"] * n / row["beads"]
        add("refine_diffsim", ds["iterations"] * len(ds["temperatures"]) * per_t,
            f"{ds['iterations']} iterations x {len(ds['temperatures'])} temperatures x {per_t:.3g} s "
            f"(one {ds['window']}-step window; targets from the mapped frames left out)")

    # A GPU rule of the paper's DAG that no part above could price is listed as not estimated.
    for rule in sorted(set(counts) & set(GPU_RULES) - {row["rule"] for row in rows}):
        add(rule, None, "not estimated (its part is missing, or no part measures it)")

    # CPU-only rules: a finished tiny run's benchmark files, scaled to the paper's sizes.
    fg_scale = (fgc["production"] / fgc["frame_interval"] * n) / (
        tiny["fg"]["production"] / tiny["fg"]["frame_interval"] * tiny["water"]["n_molecules"])
    for rule in counts:
        if rule in GPU_RULES or rule == "all":
            continue
        seconds = cpu_rule_seconds(args.tiny_run, rule)
        if seconds is None:
            add(rule, None, "no benchmark file in the tiny run" if args.tiny_run else "no tiny run given (--tiny-run)")
        elif rule in ("observables_fg", "energies_per_molecule"):
            add(rule, seconds * fg_scale, f"tiny run's {seconds:.3g} s x {fg_scale:.3g} (FG frames x molecules; "
                "linear, a lower bound for pair terms)")
        else:
            add(rule, seconds, f"tiny run's {seconds:.3g} s, not scaled")
    assumptions.append(
        "CPU-only rules without a benchmark file in the Snakefile (map_cg, observables_cg, plot_fg_observables, "
        "transferability, figures) are left out of the total")

    table = pd.DataFrame(rows)
    table["total_s"] = table.jobs * table.s_per_job
    chosen = table[table.epochs.isna() | table.epochs.astype(str).str.startswith("assumed")]
    gpu_s = chosen[chosen.gpu].total_s.sum(min_count=1)
    cpu_s = chosen[~chosen.gpu].total_s.sum(min_count=1)
    cpu_s = 0.0 if np.isnan(cpu_s) else cpu_s
    missing = sorted(set(chosen[chosen.s_per_job.isna()].rule))
    wall_h = (gpu_s + cpu_s / args.cores) / 3600
    upper = table[table.epochs.isna() | table.epochs.astype(str).str.startswith("max_epochs")]
    upper_h = (upper[upper.gpu].total_s.sum() + cpu_s / args.cores) / 3600
    summary = (f"paper.yaml on one {args.device_name}: about {wall_h:.1f} h ({gpu_s / 3600:.1f} h of GPU jobs in series "
               f"+ {cpu_s / args.cores / 3600:.2f} h of CPU rules on {args.cores} cores) with "
               f"{args.assume_epochs} training epochs; {upper_h:.1f} h if every fit runs to max_epochs"
               + (f"; not estimated: {', '.join(missing)}" if missing else ""))
    return jobs, table, assumptions, summary


# --- main -------------------------------------------------------------------------------------
PARTS = ["fg", "cg", "ratio", "train", "diffsim", "estimate"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096, 32768], help="molecules = CG beads (cubes)")
    parser.add_argument("--quick", action="store_true", help="few steps, paper network only for training (CPU check)")
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fg-platform", default=None, help="OpenMM platform (default: CUDA on cuda, else CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenMM CPU threads")
    parser.add_argument("--fg-steps", type=int, default=None)
    parser.add_argument("--cg-steps", type=int, default=None)
    parser.add_argument("--assume-epochs", type=int, default=300, help="training epochs assumed in the estimate")
    parser.add_argument("--tiny-run", default=None, help="finished tiny-config run directory (CPU rules' costs)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="CPU cores beside the GPU, for the estimate")
    parser.add_argument("--out-dir", default=str(results_table.RESULTS / "gpu"))
    args = parser.parse_args(argv)
    args.fg_platform = args.fg_platform or ("CUDA" if args.device == "cuda" else "CPU")
    quick = args.quick
    args.fg_warmup = 20 if quick else 200
    args.fg_steps = args.fg_steps or (100 if quick else 1000)
    args.cg_warmup = 10 if quick else 50
    args.cg_steps = args.cg_steps or (30 if quick else 300)
    args.cg_profile_steps = 5 if quick else 20
    args.train_beads = 512
    args.train_warmup, args.train_steps = (1, 2) if quick else (3, 10)
    args.diffsim_beads = 512
    args.diffsim_window = 20 if quick else None  # None: the paper's window
    args.diffsim_equilibration = 40 if quick else 400
    args.diffsim_repeats = 1 if quick else 2
    args.device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({args.threads} thread{'s' if args.threads > 1 else ''})"
    torch.set_num_threads(args.threads)
    nn.tune_cpu_allocator()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    print(f"bench_gpu: torch {torch.__version__} on {args.device_name}; python {platform.python_version()}; "
          f"sizes {args.sizes}; quick {quick}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}", flush=True)
    if args.device == "cuda":
        print("note: the machine's torch, not the pinned torch 2.13.0 (whose CUDA build is too large to carry)")
    tables, failed = {}, []

    def part(name, function):
        if name not in args.parts:
            return
        print(f"\n== {name}", flush=True)
        start = time.perf_counter()
        try:
            function()
        except Exception:  # one part's failure must not stop the others
            traceback.print_exc()
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - start:.1f} s{' FAILED' if name in failed else ''}", flush=True)

    def rows_to_table(name, rows, file):
        tables[name] = pd.DataFrame(rows)
        results_table.write(tables[name], out / file)

    def run_rows(function, items, name, file):
        rows, errors = [], []
        for item in items:
            try:
                rows.append(function(*item))
                print(json.dumps(rows[-1], default=str), flush=True)
                # written row by row, so that a time-out keeps what was measured
                pd.DataFrame(rows).to_csv(out / file, sep="\t", index=False, float_format="%.4g")
            except Exception as error:  # e.g. out of memory at the largest size: keep the smaller ones
                traceback.print_exc()
                errors.append(f"{item[:-1]}: {error}")
        if rows:
            rows_to_table(name, rows, file)
        if errors:
            raise RuntimeError("; ".join(errors))

    part("fg", lambda: run_rows(bench_fg, [(size, args) for size in args.sizes], "fg", "fg.tsv"))
    paper_n = load_config(PAPER_CONFIG)["water"]["n_molecules"]
    cg_items = [("nn_default", DEFAULT_CONFIG, size, args) for size in args.sizes]
    cg_items.append(("nn_paper", PAPER_CONFIG, paper_n, args))
    part("cg", lambda: run_rows(bench_cg, cg_items, "cg", "cgmd.tsv"))

    def ratio():
        fg_table, cg_table = tables["fg"], tables["cg"]
        default = cg_table[cg_table.potential == "nn_default"]
        merged = fg_table[["molecules", "platform", "ns_per_day", "ms_per_step"]].merge(
            default[["beads", "device", "ns_per_day", "ms_per_step"]], left_on="molecules", right_on="beads",
            suffixes=("_fg", "_cg")).drop(columns="beads")
        merged["cg_over_fg_ns_per_day"] = merged.ns_per_day_cg / merged.ns_per_day_fg
        merged["cg_over_fg_ms_per_step"] = merged.ms_per_step_cg / merged.ms_per_step_fg
        rows_to_table("ratio", merged.to_dict("records"), "cg_fg_ratio.tsv")

    part("ratio", ratio)

    paper_models = load_config(PAPER_CONFIG)["models"]
    # em, trf1 and trf2 are closed-form fits on fm_ref's W0 (seconds), not trained: no rate to measure
    trained = lambda models: {name: spec for name, spec in models.items() if spec["kind"] not in kinds.SHARED_W0}  # noqa: E731
    train_items = [("paper", PAPER_CONFIG, name, spec, args) for name, spec in trained(paper_models).items()]
    if not quick:
        default_models = load_config(DEFAULT_CONFIG)["models"]
        train_items += [("default", DEFAULT_CONFIG, name, spec, args) for name, spec in trained(default_models).items()]
    part("train", lambda: run_rows(bench_train, train_items, "train", "train.tsv"))
    ds_items = [("paper", PAPER_CONFIG, args)] + ([] if quick else [("default", DEFAULT_CONFIG, args)])
    part("diffsim", lambda: run_rows(bench_diffsim, ds_items, "diffsim", "diffsim.tsv"))

    def paper_estimate():
        # The tables of parts run earlier (--parts fg cg ... then --parts estimate), from --out-dir.
        for name, file in (("fg", "fg.tsv"), ("cg", "cgmd.tsv"), ("train", "train.tsv"), ("diffsim", "diffsim.tsv")):
            if name not in tables and (out / file).exists():
                tables[name] = pd.read_csv(out / file, sep="\t")
                print(f"{name}: read from {out / file}")
        jobs, table, assumptions, summary = estimate(tables, args)
        results_table.write(jobs, out / "paper_jobs.tsv")
        with pd.option_context("display.max_colwidth", 200, "display.width", 250):
            results_table.write(table, out / "paper_estimate.tsv")
        text = "\n".join(["Assumptions:"] + [f"- {a}" for a in assumptions] + ["", summary])
        (out / "paper_estimate.txt").write_text(text + "\n")
        print(text)

    part("estimate", paper_estimate)
    print(f"\nbench_gpu: tables in {out}; parts failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
