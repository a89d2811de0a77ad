"""The ``thermocg`` command: use a trained CG model outside the pipeline.

    thermocg info MODEL                      what a model file holds (kind, T0, cutoff, data, metrics)
    thermocg md MODEL -T 320 ... -o DIR      CG MD at any temperature from a start frame
    thermocg observables TRAJ --top PDB ...  RDF, ADF, MSD and D of a CG trajectory
    thermocg export MODEL -o FILE            TorchScript file for OpenMM (openmm-torch) or torch alone

Units: K, nm, ps, g/cm^3, amu, kJ/mol. ``thermocg COMMAND --help`` lists each command's options.
The temperature reference T0 comes from the model file. docs/usage.md shows the Python equivalent.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("thermocg")

#: Names of the files ``thermocg md`` writes in its output folder.
RUN_FILES = {"trajectory": "trajectory.dcd", "topology": "topology.pdb", "thermo": "thermo.tsv",
             "checkpoint": "checkpoint.npz"}
RUN_RECORD = "run.json"


def fail(message):
    """Stop with a one-line error (no traceback): the user's input was wrong."""
    raise SystemExit(f"thermocg: error: {message}")


def existing(path):
    path = Path(path)
    if not path.exists():
        fail(f"no such file: {path}")
    return path


def load_model_file(path):
    from thermocg import io, nn

    try:
        return nn.load_model(existing(path))
    except (ValueError, io.DamagedFileError) as error:
        fail(str(error))


# --- info ---------------------------------------------------------------------------------------
def find_metrics_table(model_path):
    """results/metrics/forces.tsv of the pipeline run a model file belongs to, or None."""
    for folder in Path(model_path).resolve().parents:
        candidate = folder / "metrics" / "forces.tsv"
        if candidate.exists():
            return candidate
    return None


def describe(model_path, metrics_path=None):
    """A plain dict describing a model file (what ``thermocg info`` prints)."""
    from thermocg import io

    model, metadata = load_model_file(model_path)
    config = model.config
    description = {
        "file": str(model_path),
        "name": metadata.get("name"),
        "kind": metadata.get("kind"),
        "T0_K": metadata.get("T0_K"),
        "beta0_mol_per_kJ": metadata.get("beta0_mol_per_kJ"),
        "trained_at_K": metadata.get("trained_at_K"),
        "cutoff_nm": config["cutoff"],
        "heads": config["heads"],
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": config["dtype"],
        "network": {k: v for k, v in config.items() if k not in ("cutoff", "heads", "dtype")},
        "training": metadata.get("training"),
        "data_sha256": metadata.get("data_sha256"),
    }
    metrics = {}
    if "metrics" in metadata:
        metrics["model file"] = metadata["metrics"]
    metrics_path = metrics_path or find_metrics_table(model_path)
    if metrics_path is not None:
        table = io.read_table(existing(metrics_path))
        rows = table[table["model"] == metadata.get("name")] if "model" in table else table.iloc[0:0]
        if metadata.get("kind") == "fm_oracle" and "T_K" in rows:  # one file per temperature: only its own rows
            rows = rows[rows["T_K"].isin(metadata.get("trained_at_K") or [])]
        metrics[str(metrics_path)] = rows.drop(columns=[c for c in ("model", "kind") if c in rows]).to_dict("records")
    description["metrics"] = metrics
    return description


def command_info(args):
    from thermocg import units

    description = describe(args.model, args.metrics)
    if args.json:
        print(json.dumps(description, indent=2, default=str))
        return
    t0 = description["T0_K"]
    lines = [
        ("model file", description["file"]),
        ("name", description["name"]),
        ("kind", description["kind"]),
        ("T0", "not stored (pass --reference-temperature to md)" if t0 is None
         else f"{t0:g} K (beta0 {float(units.beta(t0)):.5f} mol/kJ)"),
        ("trained at", ", ".join(f"{t:g} K" for t in description["trained_at_K"] or []) or "unknown"),
        ("cutoff", f"{description['cutoff_nm']:g} nm"),
        ("heads", ", ".join(description["heads"])),
        ("parameters", f"{description['n_parameters']} ({description['dtype']})"),
        ("network", ", ".join(f"{k}={v}" for k, v in description["network"].items())),
        ("data sha256", description["data_sha256"] or "unknown"),
    ]
    if description["training"]:
        lines.append(("training", ", ".join(f"{k}={v}" for k, v in description["training"].items())))
    if not description["metrics"]:
        lines.append(("metrics", "none found (give --metrics results/metrics/forces.tsv)"))
    for source, rows in description["metrics"].items():
        lines.append(("metrics", f"from {source}" if rows else f"no row for {description['name']} in {source}"))
        for row in rows if isinstance(rows, list) else [rows]:
            lines.append(("", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())))
    for key, value in lines:
        print(f"{key:<12} {value}")


# --- md -----------------------------------------------------------------------------------------
def lattice(n_beads, density):
    """n_beads on a simple cubic lattice filling the cubic box of that density (g/cm^3): positions, box (nm)."""
    from thermocg.units import cubic_box_length

    if n_beads < 1 or density <= 0:
        fail(f"a lattice needs --n-beads >= 1 and --density > 0 g/cm^3, got {n_beads}, {density}")
    length = cubic_box_length(n_beads, density)
    side = int(np.ceil(n_beads ** (1 / 3) - 1e-9))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_beads]
    return (grid + 0.5) * length / side, np.full(3, length)


def start_frame(path, frame, mass):
    """(positions (N, 3) nm, box (3,) nm, masses (N,) amu, description) of a start file.

    .npz: a bead archive (thermocg.io; e.g. results/cg/T300/beads.npz), frame ``frame``. Anything
    mdtraj reads with a box (PDB with CRYST1, GRO, ...): one bead per residue at its centre of mass
    (residues of one atom, e.g. a thermocg topology.pdb, are beads of mass ``mass``).
    """
    from thermocg import io

    path = existing(path)
    if path.suffix == ".npz":
        try:
            beads = io.load_frames(path)
        except (io.DamagedFileError, KeyError) as error:
            fail(f"{path}: {error}")
        if "positions" not in beads or "box" not in beads:
            fail(f"{path} is not a bead archive (needs positions and box)")
        if "molecule_index" in beads:  # an atomistic frame archive (results/fg/T<T>/frames.npz)
            fail(f"{path} holds atoms, not beads: start from its bead archive, results/cg/T<T>/beads.npz")
        n_frames = len(beads["positions"])
        if not -n_frames <= frame < n_frames:
            fail(f"{path} has {n_frames} frames; --frame {frame} is out of range")
        masses = beads["masses"] if "masses" in beads else np.full(beads["positions"].shape[1], mass)
        return beads["positions"][frame], beads["box"][frame], masses, f"{path} frame {frame}"
    import mdtraj

    try:
        traj = mdtraj.load(str(path))[frame]
    except (OSError, ValueError, IndexError) as error:
        fail(f"cannot read a start frame from {path}: {error}")
    if traj.unitcell_lengths is None:
        fail(f"{path} has no periodic box (a PDB needs a CRYST1 line)")
    if not np.allclose(traj.unitcell_angles, 90.0):
        fail(f"{path}: only orthorhombic boxes are supported, angles {traj.unitcell_angles[0]}")
    residues = list(traj.topology.residues)
    if all(residue.n_atoms == 1 for residue in residues):
        positions, masses = traj.xyz[0].astype(np.float64), np.full(len(residues), mass)
    else:  # an atomistic frame: one bead per residue (molecule) at its centre of mass
        atom_mass = np.array([a.element.mass if a.element is not None else 0.0 for a in traj.topology.atoms])
        positions, masses = np.zeros((len(residues), 3)), np.zeros(len(residues))
        for k, residue in enumerate(residues):
            index = [a.index for a in residue.atoms]
            masses[k] = atom_mass[index].sum()
            positions[k] = (atom_mass[index, None] * traj.xyz[0, index]).sum(0) / masses[k]
    return positions, traj.unitcell_lengths[0].astype(np.float64), masses, f"{path} frame {frame}"


def steps_of(duration, dt, name):
    """Whole steps of dt in ``duration`` ps, or an error if it is not a multiple."""
    steps = int(round(duration / dt))
    if duration < 0 or abs(steps * dt - duration) > 1e-6 * max(dt, duration):
        fail(f"{name} ({duration} ps) must be a non-negative multiple of --dt ({dt} ps)")
    return steps


def command_md(args):
    import torch

    from thermocg import md, nn

    if args.threads:
        torch.set_num_threads(args.threads)
    model, metadata = load_model_file(args.model)
    t0 = args.reference_temperature if args.reference_temperature is not None else metadata.get("T0_K")
    if t0 is None:
        fail(f"{args.model} stores no T0: give --reference-temperature (K)")
    if t0 <= 0:
        fail(f"--reference-temperature must be > 0 K, got {t0}")
    try:
        nn.check_reference_temperature(model, t0)
    except ValueError as error:
        fail(f"--reference-temperature: {error}")
    if args.temperature <= 0:
        fail(f"--temperature must be > 0 K, got {args.temperature}")
    if args.start is not None:
        positions, box, masses, source = start_frame(args.start, args.frame, args.mass)
    elif args.density is not None and args.n_beads is not None:
        positions, box = lattice(args.n_beads, args.density)
        masses, source = np.full(args.n_beads, args.mass), f"cubic lattice, {args.n_beads} beads at {args.density} g/cm^3"
    else:
        fail("give a start frame: --start FILE (beads .npz, PDB, ...) or --density G_CM3 with --n-beads N")
    if 2 * model.cutoff > float(np.min(box)):
        fail(f"the box {np.round(box, 4)} nm is smaller than twice the model's cutoff ({model.cutoff} nm): use more beads")
    every = steps_of(args.frame_interval, args.dt, "--frame-interval")
    equilibration = steps_of(args.equilibration, args.dt, "--equilibration")
    production = steps_of(args.time, args.dt, "--time")
    if every < 1 or production < every:
        fail("--time must hold at least one --frame-interval, which must be at least one --dt")
    total = equilibration + production
    report = max(every, every * round(total / every / 20))  # about 20 progress lines
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / file for name, file in RUN_FILES.items()}
    log.info("%s (%s, T0 = %g K) at %g K from %s: %d beads, box %s nm, %g ps equilibration + %g ps production",
             metadata.get("name"), metadata.get("kind"), t0, args.temperature, source, len(positions),
             np.round(box, 4), args.equilibration, args.time)
    try:
        summary = md.run_md(
            model, positions, box, args.temperature, total, dt=args.dt, friction=args.friction, masses=masses,
            reference_temperature=t0, frame_interval=every, report_interval=report, equilibration_steps=equilibration,
            checkpoint_interval=max(every, round(args.checkpoint_interval / args.dt)), seed=args.seed,
            dtype=next(model.parameters()).dtype, device=args.device, inputs={"model": args.model}, **files)
    except md.BlowUpError as error:
        fail(f"{error} (outputs up to then are in {out})")
    record = {
        "model": str(args.model), "name": metadata.get("name"), "kind": metadata.get("kind"),
        "temperature_K": args.temperature, "reference_temperature_K": t0,
        "dbeta_mol_per_kJ": md.dbeta_for(args.temperature, t0), "start": source, "n_beads": len(positions),
        "dt_ps": args.dt, "friction_per_ps": args.friction, "seed": args.seed,
        "equilibration_ps": args.equilibration, "production_ps": args.time,
        "first_frame_time_ps": summary["first_frame_time_ps"], "frame_interval_ps": summary["frame_interval_ps"],
        "n_frames": summary["n_frames"], "mean_T_kin_K": summary["mean_T_kin_K"], "ns_per_day": summary["ns_per_day"],
        "files": {name: file for name, file in RUN_FILES.items() if name != "checkpoint"},
        "note": "DCD stores no times: frame k is at first_frame_time_ps + k frame_interval_ps (ps from the start, "
                "equilibration excluded from the trajectory); thermo.tsv covers the whole run",
    }
    (out / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {summary['n_frames']} frames ({args.time:g} ps every {args.frame_interval:g} ps) to "
          f"{files['trajectory']}, topology {files['topology']}, thermo {files['thermo']}, record {out / RUN_RECORD}; "
          f"mean T_kin {summary['mean_T_kin_K']:.1f} K, {summary['ns_per_day']:.3g} ns/day")


# --- observables --------------------------------------------------------------------------------
def trajectory_times(trajectory, n_frames, frame_interval, record_path):
    """(frame times (ps), the run record's temperature (K) or None): the times from --frame-interval, else
    from the run record that ``thermocg md`` wrote."""
    if frame_interval is not None:
        if frame_interval <= 0:
            fail(f"--frame-interval must be > 0 ps, got {frame_interval}")
        return frame_interval * np.arange(n_frames), None
    record_path = Path(record_path) if record_path else Path(trajectory).parent / RUN_RECORD
    if not record_path.exists():
        fail(f"DCD stores no times: give --frame-interval (ps) or --run (the {RUN_RECORD} thermocg md wrote; "
             f"{record_path} does not exist)")
    record = json.loads(record_path.read_text())
    return record["first_frame_time_ps"] + record["frame_interval_ps"] * np.arange(n_frames), record.get("temperature_K")


def command_observables(args):
    import mdtraj

    from thermocg import io, observables

    trajectory = existing(args.trajectory)
    try:
        frames = mdtraj.load(str(trajectory), top=str(existing(args.top)))
    except (OSError, ValueError, IndexError) as error:
        fail(f"cannot read {trajectory} with the topology {args.top}: {error}")
    if frames.unitcell_lengths is None:
        fail(f"{trajectory} has no box")
    if any(residue.n_atoms > 1 for residue in frames.topology.residues):
        fail(f"{args.top} has residues of several atoms: observables takes a bead trajectory (one atom per "
             "residue, as thermocg md and the pipeline's CG MD write); map an atomistic one to beads first")
    time, recorded_temperature = trajectory_times(trajectory, frames.n_frames, args.frame_interval, args.run_record)
    temperature = args.temperature if args.temperature is not None else recorded_temperature
    keep = time >= time[0] + args.skip - 1e-9
    if keep.sum() < 3:
        fail(f"only {keep.sum()} frames after --skip {args.skip} ps: need at least 3")
    beads = {"positions": frames.xyz[keep].astype(np.float64), "box": frames.unitcell_lengths[keep].astype(np.float64),
             "time": time[keep], "temperature": np.float64(np.nan if temperature is None else temperature)}
    span = beads["time"][-1] - beads["time"][0]
    fit = args.msd_fit or (0.1 * span, 0.5 * span)
    settings = {"rdf_bin_width": args.rdf_bin, "adf_shell": args.adf_shell, "adf_bin_width": args.adf_bin,
                "msd_fit_start": fit[0], "msd_fit_end": fit[1]}
    log.info("%d frames over %g ps, %d beads: RDF, ADF, MSD (fit %g-%g ps)", keep.sum(), span, frames.n_atoms, *fit)
    try:
        tables, summary = observables.compute_all(beads, settings)
    except ValueError as error:
        fail(str(error))
    out = Path(args.output)
    for name, table in tables.items():
        io.write_table(out / f"{name}.tsv", table)
    peak = tables["rdf_com"]["g"].idxmax()
    summary["rdf_first_peak"] = {"r_nm": float(tables["rdf_com"]["r_nm"][peak]), "g": float(tables["rdf_com"]["g"][peak])}
    summary["adf_peak_deg"] = float(tables["adf"]["theta_deg"][tables["adf"]["p_per_deg"].idxmax()])
    summary["time_span_ps"] = float(span)
    summary["temperature_K"] = temperature  # None (JSON null) where neither --temperature nor the run record gives it
    io.write_json(out / "summary.json", summary)
    print(f"{keep.sum()} frames, {span:g} ps: D = {summary['diffusion']['D_nm2_per_ps']:.4g} nm^2/ps "
          f"(MSD fit {fit[0]:g}-{fit[1]:g} ps); RDF peak g = {summary['rdf_first_peak']['g']:.3f} at "
          f"{summary['rdf_first_peak']['r_nm']:.3f} nm; ADF peak at {summary['adf_peak_deg']:.0f} deg; "
          f"tables {', '.join(f'{name}.tsv' for name in tables)} and summary.json in {out}")


# --- export -------------------------------------------------------------------------------------
def command_export(args):
    import torch

    from thermocg import export, md

    model, metadata = load_model_file(args.model)
    try:
        info = export.export_model(args.model, args.output, args.reference_temperature)
    except (ValueError, OSError) as error:
        fail(str(error))
    # check the file against thermocg's own engine on a lattice at water density, at T0 + 20 K
    n_side = int(np.ceil(2 * model.cutoff / 0.31)) + 1
    positions, box = lattice(n_side**3, 0.997)
    positions = positions + np.random.default_rng(0).uniform(-0.03, 0.03, positions.shape)
    dtype = next(model.parameters()).dtype
    temperature = info["T0_K"] + 20.0
    box_t = torch.as_tensor(box, dtype=dtype)
    energy, forces = md.ForceField(model, box_t, md.dbeta_for(temperature, info["T0_K"]), skin=0.0)(
        torch.as_tensor(positions, dtype=dtype))
    module, _ = export.load_exported(args.output)
    energy_x, forces_x = export.energy_and_forces(module, positions, box, temperature)
    error = float((forces - forces_x).abs().max())
    print(f"wrote {args.output}: {metadata.get('name')} ({metadata.get('kind')}), T0 {info['T0_K']:g} K, cutoff "
          f"{info['cutoff_nm']:g} nm, {info['dtype']}; energy = module(positions nm, box_vectors nm, temperature K); "
          f"OpenMM global parameter {export.TEMPERATURE_PARAMETER!r} (K). Check at {temperature:g} K, {n_side**3} "
          f"beads: W {float(energy_x):.6g} vs {float(energy):.6g} kJ/mol (thermocg), max |dF| {error:.2g} kJ/(mol nm)")


# --- the parser ---------------------------------------------------------------------------------
def parser():
    main = argparse.ArgumentParser(prog="thermocg", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    main.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="describe a model file: kind, T0, cutoff, training data, metrics")
    info.add_argument("model", help="model file (results/models/<name>/model.pt)")
    info.add_argument("--metrics", help="force-metrics table to read (default: metrics/forces.tsv in a folder above the model)")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(handler=command_info)

    run = commands.add_parser("md", help="CG MD of a model at any temperature; writes DCD + PDB + thermo + run.json",
                              description="Langevin (BAOAB) CG MD of a model at --temperature; dbeta from the "
                                          "model file's T0. Writes trajectory.dcd (production frames only), "
                                          "topology.pdb, thermo.tsv and run.json (frame times) in --output; "
                                          "a killed run resumes from its checkpoint when rerun.")
    run.add_argument("model", help="model file")
    run.add_argument("-T", "--temperature", type=float, required=True, help="temperature (K)")
    run.add_argument("-o", "--output", required=True, help="output folder")
    start = run.add_argument_group("start frame (one of)")
    start.add_argument("--start", help="bead archive (.npz, e.g. results/cg/T300/beads.npz), or a PDB/GRO with a "
                                       "box (atomistic residues are mapped to their centres of mass)")
    start.add_argument("--frame", type=int, default=-1, help="frame of --start (default: the last)")
    start.add_argument("--density", type=float, help="cubic lattice at this density (g/cm^3), with --n-beads")
    start.add_argument("--n-beads", type=int, help="number of beads of the lattice")
    run.add_argument("--mass", type=float, default=18.015, help="bead mass where the start file has none (amu)")
    run.add_argument("--time", type=float, default=20.0, help="production time (ps, default 20)")
    run.add_argument("--equilibration", type=float, default=2.0,
                     help="equilibration before the production (ps, default 2), not written to the trajectory")
    run.add_argument("--dt", type=float, default=0.008, help="time step (ps, default 0.008)")
    run.add_argument("--friction", type=float, default=1.0, help="Langevin friction (1/ps, default 1)")
    run.add_argument("--frame-interval", type=float, default=0.08, help="time between frames (ps, default 0.08)")
    run.add_argument("--checkpoint-interval", type=float, default=100.0, help="time between checkpoints (ps)")
    run.add_argument("--reference-temperature", type=float,
                     help="T0 (K); default: the model file's (overriding it changes the model's physics; "
                          "a model of the reduced expansion takes only its own)")
    run.add_argument("--seed", type=int, default=0, help="random seed (velocities and noise)")
    run.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    run.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    run.set_defaults(handler=command_md)

    obs = commands.add_parser("observables", help="RDF, ADF, MSD and D of a CG trajectory",
                              description="Observables of a bead trajectory as the pipeline computes them "
                                          "(thermocg.observables). Frame times come from --frame-interval or the "
                                          "run.json beside the trajectory (DCD stores none).")
    obs.add_argument("trajectory", help="trajectory (DCD or any format mdtraj reads)")
    obs.add_argument("--top", required=True, help="topology (the PDB written beside the trajectory)")
    obs.add_argument("-o", "--output", required=True, help="output folder for the tables and summary.json")
    obs.add_argument("--frame-interval", type=float, help="time between frames (ps); default: from run.json")
    obs.add_argument("--run", dest="run_record", help="run record with the frame times (default: run.json beside the trajectory)")
    obs.add_argument("--skip", type=float, default=0.0, help="leave out the first SKIP ps (default 0)")
    obs.add_argument("--temperature", type=float, help="temperature (K), recorded in the summary")
    obs.add_argument("--msd-fit", type=float, nargs=2, metavar=("START", "END"),
                     help="MSD fit window of lag times (ps); default: 10%% to 50%% of the trajectory's span")
    obs.add_argument("--rdf-bin", type=float, default=0.002, help="RDF bin width (nm, default 0.002)")
    obs.add_argument("--adf-shell", type=float, default=0.33, help="ADF neighbour shell (nm, default 0.33)")
    obs.add_argument("--adf-bin", type=float, default=1.0, help="ADF bin width (deg, default 1)")
    obs.set_defaults(handler=command_observables)

    exp = commands.add_parser("export", help="TorchScript file of a model for OpenMM (openmm-torch) or torch alone",
                              description="energy kJ/mol = module(positions (N,3) nm, box_vectors (3,3) nm, "
                                          "temperature K); one file serves every temperature. Checks the file "
                                          "against thermocg's forces before it returns.")
    exp.add_argument("model", help="model file")
    exp.add_argument("-o", "--output", required=True, help="exported file (.pt)")
    exp.add_argument("--reference-temperature", type=float, help="T0 (K); default: the model file's")
    exp.set_defaults(handler=command_export)
    return main


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
