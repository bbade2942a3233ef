# The resolved config of one stage, e.g. results/configs/train.yaml. It is the stage's input and its provenance
# record: Snakemake's params trigger rewrites it when its sections change, and the checksum of the (small) file
# then reruns exactly the rules that read it.
rule write_stage_config:
    output:
        "results/configs/{stage}.yaml",
    log:
        "logs/write_stage_config/{stage}.log",
    localrule: True
    params:
        cfg=stage_config,
    run:
        import yaml

        Path(output[0]).write_text(yaml.safe_dump(params.cfg, sort_keys=True))


# The dataset as one uint8 NCHW array (results/data/images.npz) with a sidecar naming source and SHA-256.
rule prepare_data:
    input:
        cfg="results/configs/data.yaml",
        code=package_files("data/datasets"),
    output:
        images="results/data/images.npz",
        meta="results/data/images.json",
    log:
        "logs/prepare_data.log",
    conda:
        "../envs/train.yaml"
    threads: 1
    shell:
        "python -m dualmd prepare-data --config {input.cfg} --out {output.images} --meta {output.meta} "
        "> {log} 2>&1"


# Members / non-members and the two disjoint member halves D1 (half1) and D2 (half2), with hashes.
rule make_split:
    input:
        cfg="results/configs/split.yaml",
        images="results/data/images.npz",
        code=package_files("data/splits"),
    output:
        split="results/split/split.npz",
        meta="results/split/split.json",
    log:
        "logs/make_split.log",
    conda:
        "../envs/train.yaml"
    threads: 1
    shell:
        "python -m dualmd split --config {input.cfg} --images {input.images} "
        "--out {output.split} --meta {output.meta} > {log} 2>&1"
