"""thermocg: temperature-transferable machine-learned coarse-grained models of water.

Units everywhere are OpenMM's: nm, ps, kJ/mol, amu, K, kJ/(mol nm) for forces.
"""

__version__ = "0.1.0"
