"""A tiny random CLIPModel with its processor, built in code, and a way to hand-set its embeddings."""

import torch

from dualmd.text2image.tokenizer import load_tokenizer

WIDTH = 8  # hidden size of both towers and projection size


def tiny_clip(folder, *, seed=0):
    """A random two-tower CLIPModel (16 px images, the shipped tiny tokenizer) and its processor in `folder`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = load_tokenizer()
    common = {"hidden_size": WIDTH, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **common,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": tokenizer.model_max_length,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**common, "image_size": 16, "patch_size": 8},
        projection_dim=WIDTH,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    size = {"shortest_edge": 16}
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size=size, crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer,
    )
    return model, processor


def save(model, processor, folder):
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def constant_towers(model, image_direction, text_direction):
    """Make every image embed to `image_direction` and every prompt to `text_direction`: each tower's final
    layer norm outputs its bias alone (weight 0), and the projections are the identity."""
    with torch.no_grad():
        model.vision_model.post_layernorm.weight.zero_()
        model.vision_model.post_layernorm.bias.copy_(torch.as_tensor(image_direction, dtype=torch.float32))
        model.text_model.final_layer_norm.weight.zero_()
        model.text_model.final_layer_norm.bias.copy_(torch.as_tensor(text_direction, dtype=torch.float32))
        model.visual_projection.weight.copy_(torch.eye(WIDTH))
        model.text_projection.weight.copy_(torch.eye(WIDTH))
    return model
