# Stage configs: each stage's section of the experiment, written to a file named by the digest of its content
# (`results/configs/{scope}/{stage}.{digest}.yaml`), so that a changed section reruns exactly the stage's jobs.


def run_experiment(scope):
    return EXPERIMENT if scope == SHARED else replicate(EXPERIMENT, int(scope.removeprefix("rep")))


def stage_text(wildcards):
    """The YAML text of a stage config (what `results/configs/{scope}/{stage}.{digest}.yaml` holds)."""
    cfg = stage_config(run_experiment(wildcards.scope), wildcards.stage)
    if config_digest(cfg) != wildcards.digest:
        raise ValueError(
            f"{wildcards.stage}.{wildcards.digest}.yaml is not the current {wildcards.stage} config "
            f"(digest {config_digest(cfg)}); request `all` or the stage's outputs instead"
        )
    return dump_stage_config(cfg)


def config_path(stage, scope):
    """The config file of `stage` in `scope` ("shared" or a replicate), named by the digest of its content."""
    digest = config_digest(stage_config(run_experiment(scope), stage))
    return f"results/configs/{scope}/{stage}.{digest}.yaml"


def config_file(stage, scope="{run}"):
    """Input function: `config_path` of `stage` (which may hold wildcards, e.g. "attack_{attack}").

    A changed section gives a new file name. `rule all` requests every current config file, so a new one is
    written and, being newer than every output, reruns exactly its readers whether or not Snakemake's metadata
    (.snakemake/) is present; a dry run only plans the write.
    """

    def path(wildcards):
        values = dict(wildcards.items())
        return config_path(stage.format(**values), scope.format(**values))

    return path


def current_configs():
    """Every stage config file the run reads (stale ones are replaced when their stage config is written)."""
    files = [config_path("data", SHARED)]
    stages = [stage for stage in STAGE_SECTIONS if stage != "data"]
    for run in RUNS:
        files += [config_path(stage, run) for stage in stages + [f"attack_{a}" for a in ATTACKS]]
    return files
