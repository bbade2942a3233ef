"""Typed configuration of every pipeline stage.

`config/config.yaml` is validated against `workflow/schemas/config.schema.yaml` (types, choices, bounds) when the
workflow starts. Inside the package each section is a frozen dataclass that refuses unknown keys, so a stage
started by hand (``python -m dualmd <stage> --config file.yaml``) gets the same checks. The dataclasses hold the
one copy of every default: the workflow fills its ``config`` from them.

A stage config file is a mapping with a subset of the top-level sections of the experiment config
(``dataset``, ``split``, ``model``, ``diffusion``, ``train``, ...); sections a stage does not need may be
absent, and absent keys take the defaults of the dataclasses.

Modules:
    base        ConfigError, the `Section` base class (strict construction, type checks), `require`
    sections    data, split, model, diffusion, training, distillation and sampling sections
    attacks     the attack section and the nested section of each attack
    evaluation  metrics, set inference, memorization, utility and held-out loss sections
    text2image  the text-to-image section and its memorized prompts
    experiment  the run dimension and controls, every section together, checks across sections, `load_config`
    stages      the sections each stage reads, its resolved config and digest, replicates
"""
