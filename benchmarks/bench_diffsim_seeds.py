"""DiffSim's own spread: a model of a finished default run refined again with other seeds.

The refinement is stochastic (the Langevin noise of its MD windows and their starting frames come
from the seed), so one refined model is one draw. For each --seeds s this makes the refinement the
pipeline's refine_diffsim makes (thermocg.diffsim.refine_model_file: the config's diffsim settings,
the run's FG targets at diffsim.temperatures) of --model with seed s, and saves it as
results/models/<model>_diffsim_s<s>/model.pt, with the friction of the run's own <model>_diffsim
(or, if the run did not refine that model, the model's own) in results/cgmd/<model>_diffsim_s<s>/,
where bench_excess_error.py finds it:

    python benchmarks/bench_diffsim_seeds.py --seeds 1 2
    python benchmarks/bench_excess_error.py --models fm_ref trf2 trf2_diffsim trf2_diffsim_s1 trf2_diffsim_s2

--model: a config entry (default: the first of diffsim.models). --set KEY=YAML changes one key of
the diffsim section for these refinements (e.g. --set 'parameters=["heads.W0.*"]'), checked
against the schema as the pipeline checks a config; with --set, --tag names the variant
(<model>_diffsim_<tag>_s<s>). The config's own seed reproduces the run's <model>_diffsim to the last bit.
"""

import argparse
import copy
import shutil
import sys
from multiprocessing import Pool
from pathlib import Path

import yaml

from thermocg import config as configuration
from thermocg import diffsim
from thermocg.config import temperature_label


def refine(args):
    """One refinement: (name, seed) -> the refined model's name."""
    results, config, model, name, seed = args
    settings = config["diffsim"]
    out = results / f"models/{name}"
    out.mkdir(parents=True, exist_ok=True)
    beads = [str(results / f"cg/T{temperature_label(t)}/beads.npz") for t in settings["temperatures"]]
    diffsim.refine_model_file(str(results / f"models/{model}/model.pt"), beads, settings["temperatures"],
                              config["reference_temperature"], settings, str(out / "model.pt"),
                              str(out / "loss_curve.tsv"), seed=seed, threads=settings["threads"])
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="a finished default run's results directory")
    parser.add_argument("--config", default="config/config.yaml", help="the config that made it")
    parser.add_argument("--model", help="the config entry to refine (default: the first of diffsim.models)")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="a diffsim key for these refinements")
    parser.add_argument("--tag", help="the variant's name part (required with --set)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    if args.set and not args.tag:
        parser.error("--set changes the refinement: name the variant with --tag")
    config = configuration.load(args.config)
    results = Path(args.results)
    model = args.model or config["diffsim"]["models"][0]
    if model not in config["models"]:
        parser.error(f"{model!r} is not a model of {args.config}")
    variant = copy.deepcopy(config)
    for item in args.set:
        key, _, value = item.partition("=")
        variant["diffsim"][key] = yaml.safe_load(value)
    variant = configuration.check(variant)
    suffix = f"_{args.tag}" if args.tag else ""
    names = {seed: f"{model}_diffsim{suffix}_s{seed}" for seed in args.seeds}
    friction = results / f"cgmd/{model}_diffsim/friction.json"
    if not friction.exists():
        friction = results / f"cgmd/{model}/friction.json"
    missing = [str(p) for p in (results / f"models/{model}/model.pt", friction) if not p.exists()]
    if missing:
        parser.error("not in the results: " + ", ".join(missing))
    with Pool(args.jobs) as pool:
        tasks = [(results, variant, model, names[seed], seed) for seed in args.seeds]
        for name in pool.imap_unordered(refine, tasks):
            (results / f"cgmd/{name}").mkdir(parents=True, exist_ok=True)
            shutil.copy(friction, results / f"cgmd/{name}/friction.json")
            print(f"{name}: {results / 'models' / name / 'model.pt'} (friction from {friction})", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
