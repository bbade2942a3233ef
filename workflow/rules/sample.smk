# Generated images of one sampler: a single model, or a pair alternating its models (DualMD). An .npz of images
# in [-1, 1], the sampling provenance and a PNG grid for the report.
use rule stage_job as sample_images with:
    input:
        config=config_file("sample"),
        models=sampler_dirs,
        code=stage_code("sample"),
    output:
        samples="results/samples/{run}/{sampler}/samples.npz",
        info="results/samples/{run}/{sampler}/info.json",
        grid=in_report(
            "results/samples/{run}/{sampler}/grid.png",
            "Samples",
            caption="samples",
            sampler="{sampler}",
        ),
    log:
        "logs/{run}/sample_images/{sampler}.log",
    benchmark:
        "results/benchmarks/{run}/sample_images/{sampler}.tsv"
    # generated images feed several stages: draw them as soon as a model exists
    priority: 20
    resources:
        gpu=0,
        mem_mb=4000,
    params:
        command=stage_command("sample", models=sampler_models, out="{output.samples}"),
