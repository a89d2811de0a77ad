"""thermocg: temperature-transferable machine-learned coarse-grained models of water.

Units everywhere are OpenMM's: nm, ps, kJ/mol, amu, K, kJ/(mol nm) for forces.

Using a trained model (docs/usage.md; the ``thermocg`` command does the same from a shell):

    import thermocg
    model, meta = thermocg.load_model("results/models/trf2/model.pt")   # meta["T0_K"]: its T0
    ff = thermocg.ForceField(model, box, thermocg.dbeta_for(320.0, meta["T0_K"]))
    energy, forces = ff(positions)                                      # kJ/mol, kJ/(mol nm) at 320 K
    thermocg.run_md("results/models/trf2/model.pt", positions, box, 320.0, 10_000, trajectory="t.dcd",
                    topology="t.pdb", thermo="thermo.tsv", checkpoint="c.npz")  # T0 from the file
    thermocg.export_model("results/models/trf2/model.pt", "trf2_openmm.pt")     # OpenMM / TorchScript

The API is imported on first use (``import thermocg`` stays light).
"""

__version__ = "0.1.0"

#: Public names -> the module that defines them.
_API = {
    "load_model": "thermocg.nn", "save_model": "thermocg.nn", "CGModel": "thermocg.nn",
    "energy_and_forces": "thermocg.nn",
    "ForceField": "thermocg.md", "Simulation": "thermocg.md", "run_md": "thermocg.md", "dbeta_for": "thermocg.md",
    "BlowUpError": "thermocg.md",
    "NeighborList": "thermocg.neighbors",
    "rdf": "thermocg.observables", "adf": "thermocg.observables", "msd": "thermocg.observables",
    "diffusion_coefficient": "thermocg.observables", "compute_all": "thermocg.observables",
    "load_frames": "thermocg.io", "cg_topology": "thermocg.io",
    "export_model": "thermocg.export", "load_exported": "thermocg.export", "openmm_system": "thermocg.export",
    "KB": "thermocg.units", "WATER_MASS": "thermocg.units", "cubic_box_length": "thermocg.units",
}
__all__ = sorted(_API)


def __getattr__(name):
    # lazy: the pipeline's scripts import submodules only, and torch is slow to import
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'thermocg' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
