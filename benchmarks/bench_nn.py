"""Speed of the HIP-NN-TS CG model (thermocg.nn) on a water-like box of 512 beads.

Run: .venv/bin/python benchmarks/bench_nn.py   (writes benchmarks/results/nn.tsv, prints the table)

Per configuration (float32/float64, 1 or 2 interaction layers, 128 features, 20 sensitivities,
r_c = 0.6 nm, 2 threads): median ms of an energy-only call (no autograd), of an energy+force call
(forces by autograd) and of the same through TorchScript; frames/s of a force-matching training
step (batch of frames, loss on forces with create_graph=True, backward, Adam step). The vesin
neighbour list is timed on its own. The machine is shared: medians are noisy, compare within a run.
"""

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from thermocg.io import write_table
from thermocg.neighbors import NeighborList
from thermocg.nn import CGModel, batch_frames, energy_and_forces, tune_cpu_allocator
from thermocg.units import cubic_box_length

N_BEADS = 512
DENSITY = 0.997  # g/cm^3
CUTOFF = 0.6  # nm
MIN_SEPARATION = 0.25  # nm


def water_like_positions(n_beads, box_length, min_separation, seed):
    """Jittered cubic lattice disordered by hard-sphere Monte Carlo sweeps (no pair closer than min_separation)."""
    rng = np.random.default_rng(seed)
    per_side = int(round(n_beads ** (1 / 3)))
    assert per_side**3 == n_beads, "n_beads must be a cube"
    grid = (np.arange(per_side) + 0.5) * box_length / per_side
    positions = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    for _ in range(30):
        for bead in rng.permutation(n_beads):
            trial = (positions[bead] + rng.uniform(-0.06, 0.06, 3)) % box_length
            delta = positions - trial
            delta -= box_length * np.round(delta / box_length)
            distance = np.sqrt((delta**2).sum(axis=1))
            distance[bead] = np.inf
            if distance.min() >= min_separation:
                positions[bead] = trial
    return positions


def call_times(function, repeats, warmup=3):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def median_ms(function, repeats, warmup=3):
    return 1e3 * statistics.median(call_times(function, repeats, warmup))


def min_ms(function, repeats):
    """Fastest call: a less noisy estimate than the median on a shared machine."""
    return 1e3 * min(call_times(function, repeats, warmup=0))


def bench_config(dtype, n_layers, frames, args):
    torch.manual_seed(0)
    model = CGModel(
        n_features=args.features, n_interaction_layers=n_layers, cutoff=CUTOFF,
        dtype=str(dtype).removeprefix("torch."),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; it still works
        scripted = torch.jit.script(model)
    positions, i, j, shift = (x.to(dtype) if x.is_floating_point() else x for x in frames[0])
    dbeta = torch.tensor(0.05, dtype=dtype)

    def energy_only():
        with torch.no_grad():
            model(positions, i, j, shift, dbeta)

    row = {
        "dtype": str(dtype).removeprefix("torch."),
        "interaction_layers": n_layers,
        "features": args.features,
        "energy_ms": median_ms(energy_only, args.repeats),
        "energy_force_ms": median_ms(lambda: energy_and_forces(model, positions, i, j, shift, dbeta), args.repeats),
        "energy_force_min_ms": min_ms(lambda: energy_and_forces(model, positions, i, j, shift, dbeta), args.repeats),
        "energy_force_script_ms": median_ms(
            lambda: energy_and_forces(scripted, positions, i, j, shift, dbeta), args.repeats
        ),
    }

    batch = [tuple(x.to(dtype) if x.is_floating_point() else x for x in frame) for frame in frames[: args.batch]]
    batch_positions, batch_i, batch_j, batch_shift, _ = batch_frames(batch)
    target = torch.randn_like(batch_positions) * 500.0  # kJ/(mol nm), the size of mapped forces
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def training_step():
        optimizer.zero_grad(set_to_none=True)
        _, forces = energy_and_forces(model, batch_positions, batch_i, batch_j, batch_shift, dbeta, create_graph=True)
        loss = (forces - target).square().mean()
        loss.backward()
        optimizer.step()

    step_ms = median_ms(training_step, max(args.repeats // 2, 3), warmup=2)
    row["train_step_ms"] = step_ms
    row["train_frames_per_s"] = args.batch / (step_ms / 1e3)
    row["batch_frames"] = args.batch
    row["pairs_per_frame"] = int(i.numel())
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=4, help="frames per training step")
    parser.add_argument("--default-allocator", action="store_true", help="skip thermocg.nn.tune_cpu_allocator()")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "nn.tsv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = "glibc default" if args.default_allocator else f"tuned={tune_cpu_allocator()}"

    box_length = cubic_box_length(N_BEADS, DENSITY)
    box = torch.full((3,), box_length, dtype=torch.float64)
    neighbor_list = NeighborList(CUTOFF)  # no skin: rebuilt on every call
    frames = []
    for seed in range(args.batch):
        positions = torch.as_tensor(water_like_positions(N_BEADS, box_length, MIN_SEPARATION, seed))
        frames.append((positions, *neighbor_list(positions, box)))
    neighbor_ms = median_ms(lambda: neighbor_list(frames[0][0], box), args.repeats)

    rows = [
        bench_config(dtype, n_layers, frames, args)
        for dtype in (torch.float32, torch.float64)
        for n_layers in (1, 2)
    ]
    table = pd.DataFrame(rows)
    table["neighbor_list_ms"] = neighbor_ms
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    comment = (
        f"bench_nn: {N_BEADS} beads, box {box_length:.4f} nm ({DENSITY} g/cm^3), r_c {CUTOFF} nm, "
        f"{args.threads} threads, torch {torch.__version__}, allocator {allocator}; "
        f"medians over {args.repeats} calls (ms); load average {load} on {os.cpu_count()} cores"
    )
    write_table(args.output, table, comment=comment)
    print(comment)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(2).to_string(index=False))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
