"""Membership-inference attacks: one module per attack, registered by name.

Modules:
    base         the `Attack` classes, the score convention ("higher = more likely a member"), `register`, and
                 the per-sample score files
    run          the registry by name (`MODULES`, `registry`, `build_attack`) and the entry point of each kind of
                 access (`attack_model`, `attack_samples`, `attack_sampler`, `attack_pair`)
    loss, secmi, secmi_nn, pia, sima, gsa, recon, nn_distance, teacher_max, lira, pang_wang
                 one attack each (its paper in the module's docstring)
"""
