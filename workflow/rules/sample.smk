# Generated images of one sampler: a single model (baseline, teacher1, teacher2, student) or DualMD (both
# teachers alternating). An .npz of images in [-1, 1] and a PNG grid for the report.
rule sample_images:
    input:
        cfg="results/configs/sample.yaml",
        models=sampler_models,
        code=package_files("sample", "defense/dualmd", "models"),
    output:
        samples="results/samples/{sampler}/samples.npz",
        info="results/samples/{sampler}/info.json",
        grid=report(
            "results/samples/{sampler}/grid.png",
            caption="../report/samples.rst",
            category="Samples",
            labels={"sampler": "{sampler}"},
        ),
    log:
        "logs/sample_images/{sampler}.log",
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
    params:
        models=sampler_model_args,
    shell:
        "OMP_NUM_THREADS={threads} python -m dualmd sample --config {input.cfg} --sampler {wildcards.sampler} "
        "{params.models} --out {output.samples} --info {output.info} --grid {output.grid} "
        "--threads {threads} > {log} 2>&1"
