"""Text-to-image membership inference: a Stable-Diffusion-shaped pipeline (VAE, CLIP text encoder, conditional
UNet, scheduler), its fine-tuning and DistillMD distillation through the package's one training loop, the DualMD
text-to-image pipeline, the white-box attacks on latents with the caption as condition, the black-box attack
that prompts the samplers, and memorization on prompts.

Modules:
    captions    template captions of the digits, `metadata.jsonl` captions, prompt diversification
    blip        alternative captions of an image from a local BLIP captioning model (the authors' settings)
    tokenizer   the tiny CLIP BPE vocabulary shipped in `tiny_tokenizer/` and the builder that writes it
    components  tiny SD-shaped components built in code, and saving/loading a pipeline folder
    batches     batch sources of VAE latents with the states of the drawn captions
    pretrain    VAE and conditional-UNet pretraining on the population outside the private set
    finetune    baseline/teacher fine-tuning and the DistillMD student in latent space
    pipeline    `DualMDStableDiffusionPipeline`: two fine-tuned UNets alternating at every DDIM step
    generate    images of a sampler (one model, or the DualMD pair) through that pipeline's loop
    attack      the conditional noise-predictor adapter and the white-box attacks run through it
    blackbox    Pang & Wang's black-box attack: generations from each candidate's caption, image encoders
    report      the Table 3 (white-box), Table 4 (black-box) and utility reports
    memorized   memorized prompts: images of one half repeated in training, chosen and recorded per run
    prompt_memorization  t-error and Wen et al.'s noise magnitude per prompt, copies of its generations
    memorization_report  memorized vs other prompts: detector AUCs, copy rates, histograms (Fig. 3, Table 5)
"""
