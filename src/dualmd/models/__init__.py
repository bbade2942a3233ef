"""UNet factory and the noise-predictor adapter every attack and sampler goes through."""
