"""Defenses against membership inference: DistillMD (training time) and DualMD (sampling time)."""
