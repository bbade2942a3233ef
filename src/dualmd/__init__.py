"""dualmd: dual-model defenses (DualMD, DistillMD) for diffusion models against membership inference."""

__version__ = "0.1.0"
