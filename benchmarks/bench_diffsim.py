"""Benchmark of DiffSim refinement (thermocg.diffsim.refine): seconds per refinement step.

One refinement step = one differentiable window of BAOAB steps per temperature (frames every
10 steps into the smeared RDF and ADF, METHOD.md bins: 0.002 nm up to L/2, 1 degree), backward
through the whole window, gradient clipping and one Adam update.

System: 512 beads at water density (0.997 g/cm^3, box 2.483 nm), 300 K, dt 2 fs, friction 1/ps,
window 200 steps, one temperature, float32, torch.set_num_threads(2). Potentials (factories):
"lj_water+correction" (water-like shifted-force LJ plus a PairCorrection whose a and b are
refined) and "nn" (thermocg.nn.CGModel, 128 features, cutoff 0.6 nm, W1/W2 heads refined).
Reports the median seconds per step over ``--repeats`` steps after one warm-up step, the peak
resident memory of the process, and ms per differentiable MD step.

    python benchmarks/bench_diffsim.py [--potentials lj_water+correction nn] [--window 200]

Writes benchmarks/results/bench_diffsim.tsv and prints the table.
"""

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_md import TEMPERATURE, equilibrated, nn_model  # noqa: E402

from thermocg.diffsim import SmoothObservables, make_target, refine, select_parameters  # noqa: E402
from thermocg.pair import LennardJones, PairCorrection  # noqa: E402
import results_table  # noqa: E402


def lj_with_correction():
    # Shifted-force LJ: DiffSim needs continuous forces (see thermocg.pair.LennardJones).
    lj = LennardJones(epsilon=2.0, sigma=0.29, cutoff=0.6, shift="force")
    return lj + PairCorrection(cutoff=0.6, n_basis=24, r_min=0.2)


POTENTIALS = {
    "lj_water+correction": (lj_with_correction, ["terms.1.a", "terms.1.b"]),
    "nn": (nn_model, ["heads.W1.*", "heads.W2.*"]),
}


def bench(name, device, dtype, window, repeats, lambda_adf):
    factory, params = POTENTIALS[name]
    sim = equilibrated(factory, device, dtype)
    frames = []
    for _ in range(10):
        sim.run(50)
        frames.append(sim.positions.cpu().double().numpy())
    observables = SmoothObservables()
    target = make_target(np.array(frames), sim.box.cpu().numpy(), TEMPERATURE, observables=observables)
    start = time.perf_counter()
    _, history = refine(sim.potential, [target], params=params, n_iterations=repeats + 1, window=window,
                        sample_every=10, warmup_steps=0, dt=0.002, friction=1.0, reference_temperature=280.0,
                        lambda_adf=lambda_adf, observables=observables, lr=1e-4, skin=0.1, dtype=dtype,
                        device=device)
    total = time.perf_counter() - start
    seconds = statistics.median(history.seconds.iloc[1:])
    n_parameters = sum(p.numel() for _, p in select_parameters(sim.potential, params))
    return {
        "potential": name,
        "refined_parameters": n_parameters,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "n_beads": sim.n_beads,
        "window_steps": window,
        "frames_per_window": window // 10,
        "lambda_adf": lambda_adf,
        "seconds_per_refinement_step": seconds,
        "ms_per_differentiable_md_step": 1e3 * seconds / window,
        "peak_rss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "total_s": total,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--potentials", nargs="+", default=["lj_water+correction", "nn"], choices=sorted(POTENTIALS))
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lambda-adf", type=float, default=1.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(results_table.RESULTS / "bench_diffsim.tsv"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.potentials:
        try:
            dtype = getattr(torch, args.dtype)
            rows.append(bench(name, args.device, dtype, args.window, args.repeats, args.lambda_adf))
        except ImportError as error:
            print(f"skipping {name}: {error}", file=sys.stderr)
    table = pd.DataFrame(rows)
    results_table.write(table, args.output)
    return table


if __name__ == "__main__":
    main()
