"""Benchmark of the exported model (thermocg.export) next to thermocg's own engine: one energy + force call.

System: beads on a jittered simple cubic lattice at water density (0.997 g/cm^3, 18.015 amu per
bead), 300 K model at 320 K (dbeta != 0, so every head is evaluated), float32, torch on --threads
CPU threads (default 1). Networks: "nn_default" (config/config.yaml's network with trf2's heads:
what the pipeline runs) and "nn" (128 features, cutoff 0.6 nm); weights do not change the cost.

Columns (milliseconds per energy + force call, medians over --repeats blocks of --calls calls):
- thermocg_ms: thermocg.md.ForceField as MD calls it between neighbour-list rebuilds (Verlet list
  with skin thermocg.md.DEFAULT_SKIN, checked but not rebuilt);
- thermocg_rebuild_ms: the same with the list rebuilt on every call (vesin + layout);
- export_ms: the exported TorchScript module, which searches its neighbours itself on every call
  (O(N^2) minimum image) and is what openmm-torch would run;
- export_vs_thermocg: export_ms / thermocg_ms;
- max_dF: largest force difference between the two, kJ/(mol nm) (float32 round-off).
- openmm_ms: OpenMM (Reference platform) getState(forces, energy) with the exported file, where an
  openmm-torch build is importable; empty otherwise.

    python benchmarks/bench_export.py [--potentials nn_default nn] [--beads 512 2048] [--threads 1] [--clock cpu]

Writes benchmarks/results/bench_export.tsv and prints the table.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from thermocg import export, md, nn
from thermocg.units import cubic_box_length
import results_table

TEMPERATURE, T0, DENSITY = 320.0, 300.0, 0.997
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def nn_model():
    return nn.CGModel(n_features=128, cutoff=0.6)


def default_network():
    from thermocg import config, train

    settings = config.check(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    return train.build_model("trf2", settings)


POTENTIALS = {"nn_default": default_network, "nn": nn_model}


def lattice(n_beads, seed=0):
    length = cubic_box_length(n_beads, DENSITY)
    side = int(np.ceil(n_beads ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_beads]
    positions = (grid + 0.5) * length / side + np.random.default_rng(seed).uniform(-0.05, 0.05, (n_beads, 3))
    return positions, np.full(3, length)


#: Wall clock by default; "--clock cpu" takes this process's CPU time, which on a shared machine
#: measures the work rather than the waiting (with --threads 1).
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def ms_per_call(function, calls, repeats):
    function()  # warm-up (TorchScript profiles its first calls)
    function()
    times = []
    for _ in range(repeats):
        start = clock()
        for _ in range(calls):
            function()
        times.append(1e3 * (clock() - start) / calls)
    return statistics.median(times)


def openmm_timing(path, positions, box, calls, repeats):
    """ms per OpenMM energy + force evaluation of the exported file, or NaN without openmm-torch."""
    try:
        import openmm

        system = export.openmm_system(path, len(positions), box)
    except ImportError as error:
        print(f"no OpenMM timing: {error}", file=sys.stderr)
        return float("nan")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    context.setParameter(export.TEMPERATURE_PARAMETER, TEMPERATURE)
    return ms_per_call(lambda: context.getState(getEnergy=True, getForces=True), calls, repeats)


def bench(name, n_beads, calls, repeats, folder):
    torch.manual_seed(0)
    model = POTENTIALS[name]().eval()
    nn.save_model(folder / f"{name}.pt", model, {"name": name, "kind": "trf2", "T0_K": T0})
    export.export_model(folder / f"{name}.pt", folder / f"{name}_export.pt")
    module, _ = export.load_exported(folder / f"{name}_export.pt")
    positions, box = lattice(n_beads)
    x = torch.as_tensor(positions, dtype=torch.float32)
    force_field = md.ForceField(model, torch.as_tensor(box, dtype=torch.float32), md.dbeta_for(TEMPERATURE, T0))
    _, forces = force_field(x)
    _, forces_x = export.energy_and_forces(module, positions, box, TEMPERATURE)
    thermocg_ms = ms_per_call(lambda: force_field(x), calls, repeats)
    rebuild_ms = ms_per_call(lambda: (force_field.rebuild(x), force_field(x)), calls, repeats)
    export_ms = ms_per_call(lambda: export.energy_and_forces(module, x, box, TEMPERATURE), calls, repeats)
    return {
        "potential": name, "n_beads": n_beads, "n_pairs": len(force_field.pairs(x)[0]),
        "thermocg_ms": thermocg_ms, "thermocg_rebuild_ms": rebuild_ms, "export_ms": export_ms,
        "export_vs_thermocg": export_ms / thermocg_ms, "max_dF": float((forces - forces_x).abs().max()),
        "openmm_ms": openmm_timing(folder / f"{name}_export.pt", positions, box, calls, repeats),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--potentials", nargs="+", default=["nn_default", "nn"], choices=sorted(POTENTIALS))
    parser.add_argument("--beads", type=int, nargs="+", default=[512, 2048], help="system sizes (beads)")
    parser.add_argument("--calls", type=int, default=5, help="calls per timed block")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks (the median is reported)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCK), default="wall")
    parser.add_argument("--output", default=str(results_table.RESULTS / "bench_export.tsv"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    nn.tune_cpu_allocator()
    global clock
    clock = CLOCK[args.clock]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(name, n, args.calls, args.repeats, Path(tmp)) for name in args.potentials for n in args.beads]
    table = pd.DataFrame(rows)
    results_table.write(table, args.output)
    return table


if __name__ == "__main__":
    main()
