# The resolved config of one stage, e.g. results/configs/rep0/train.1a2b3c4d5e6f.yaml: the stage's input and its
# provenance record. The name carries the digest of the content, so a changed section is a new input file and
# reruns exactly the stages that read it; older configs of the same stage are removed once the new one exists.
rule write_stage_config:
    output:
        "results/configs/{scope}/{stage}.{digest}.yaml",
    log:
        "logs/write_stage_config/{scope}/{stage}.{digest}.log",
    localrule: True
    conda:
        "../envs/dualmd.yaml"
    params:
        text=stage_text,
    shell:
        "printf '%s' {params.text:q} > {output} && "
        "find results/configs/{wildcards.scope} -maxdepth 1 -name '{wildcards.stage}.*.yaml' "
        "! -name '{wildcards.stage}.{wildcards.digest}.yaml' -delete 2> {log}"


# The dataset as one uint8 NCHW array (results/data/images.npz) with a sidecar naming source and SHA-256; shared
# by every replicate.
use rule stage_job as prepare_data with:
    input:
        config=config_file("data", scope=SHARED),
        code=stage_code("data"),
    output:
        images="results/data/images.npz",
        meta="results/data/images.json",
    log:
        "logs/prepare_data.log",
    benchmark:
        "results/benchmarks/prepare_data.tsv"
    params:
        command=stage_command("prepare-data", out="{output.images}"),


# Members / non-members and the two disjoint member halves D1 (half1) and D2 (half2), with hashes.
use rule stage_job as make_split with:
    input:
        config=config_file("split"),
        images="results/data/images.npz",
        code=stage_code("data"),
    output:
        split="results/split/{run}/split.npz",
        meta="results/split/{run}/split.json",
    log:
        "logs/{run}/make_split.log",
    benchmark:
        "results/benchmarks/{run}/make_split.tsv"
    params:
        command=stage_command("split", out="{output.split}"),
