"""Training of one diffusion model: the baseline, the teachers and (through `dualmd.defense.distill`) the student.

Modules:
    run         `train_model` and `run_and_save`: train from tensors, write the model directory, probe losses
    loop        the optimisation loop (`fit`), its batch sources and fast paths
    checkpoint  the resumable training state
    dp          DP-SGD: per-sample clipping and noise through Opacus
"""
