"""Shared paths and helpers for the test suite."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The local Slurm cluster's runs, which start with the session (tests/slurm_cluster.py).
pytest_plugins = ["slurm_cluster"]


def session_basetemp(config):
    """The basetemp of the whole session, shared by its processes: pytest's own, or under
    pytest-xdist the controller's (each worker's basetemp is a folder inside it)."""
    basetemp = config._tmp_path_factory.getbasetemp()
    return basetemp.parent if hasattr(config, "workerinput") else basetemp


# pytest-xdist (pyproject.toml: -n 2): which tests run in one worker. {node id: group} in the
# session's basetemp, written by the workers, which know each test's fixtures, and read by the
# controller's scheduler, which knows only node ids. (xdist's --dist loadgroup, which carries the
# group in the node id, no longer groups with pytest 9.2: pytest-xdist issue 1386.)
GROUPS_FILE = "xdist_groups.json"


def worker_group(item):
    """The tests of one file run in one worker, so that a module's fixtures are made once; and
    every test of the tiny run (a session fixture of several files) runs in one worker, so that
    the pipeline runs once."""
    return "tiny_run" if "tiny_run" in item.fixturenames else item.path.name


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):
        root = session_basetemp(config)
        part = root / f"{GROUPS_FILE}.{config.workerinput['workerid']}"
        part.write_text(json.dumps({item.nodeid: worker_group(item) for item in items}))
        part.replace(root / GROUPS_FILE)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        """xdist's scheduling by scope, the scope of a test being its worker_group."""

        def _split_scope(self, nodeid):
            if not hasattr(self, "groups"):  # all workers have collected (and written) by now
                self.groups = json.loads((session_basetemp(config) / GROUPS_FILE).read_text())
            return self.groups[nodeid]

    return SharedFixtureScheduling(config, log)


def shared_dir():
    """The project's shared/ folder: beside the checkout, or where THERMOCG_SHARED points."""
    candidates = [os.environ.get("THERMOCG_SHARED"), REPO.parent / "shared"]
    for candidate in filter(None, candidates):
        if Path(candidate).is_dir():
            return Path(candidate)
    pytest.fail("shared/ not found beside the repository (set THERMOCG_SHARED)")


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for the tests of a module (restored afterwards)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def snakemake_command(workdir, *args):
    """(command, environment) that run the pipeline's Snakefile with the test environment's snakemake."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return [str(bin_dir / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args], env


def run_snakemake(workdir, *args, check=True, timeout=1800):
    """Run the pipeline's Snakefile with the test environment's snakemake, in ``workdir``."""
    command, env = snakemake_command(workdir, *args)
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config run end to end once per session (a few minutes); tests that change it work on a copy."""
    workdir = tmp_path_factory.mktemp("tiny")
    run_snakemake(workdir, "--cores", "2", "--configfile", str(REPO / "config" / "test.yaml"))
    return workdir


@pytest.fixture
def drawn(monkeypatch):
    """Record, for every figure thermocg.plots saves, its panels' titles, labels, texts and whether it has a legend."""
    from thermocg import plots

    figures = []
    save = plots._save

    def recording_save(figure, png, pdf=None):
        figures.append({
            "figure": figure,  # closed, but its axes, lines and legends can still be read
            "suptitle": figure._suptitle.get_text() if figure._suptitle else "",
            "legend": any(ax.get_legend() for ax in figure.axes) or bool(figure.legends),
            "panels": [{
                "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                "texts": " ".join(t.get_text() for t in ax.texts),
                "has_data": bool(ax.lines or ax.patches),
            } for ax in figure.axes],
        })
        save(figure, png, pdf)

    monkeypatch.setattr(plots, "_save", recording_save)
    return figures
