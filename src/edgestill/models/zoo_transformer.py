"""Small transformers for the zoo: a ViT for 224×224 images and a two-layer text classifier.

Attention is written with plain matmul + softmax (no nn.MultiheadAttention, no scaled_dot_product_attention)
so torch.onnx, litert_torch and openvino.convert_model all see the same few ops: Linear, reshape,
transpose, matmul, softmax, LayerNorm, GELU (tanh form), add, mean, embedding (gather).
"""

from __future__ import annotations

from typing import Any

from edgestill.models.builtin import MODELS
from edgestill.models.zoo_cnn import _no_options

# ViT: patch 16 on 224×224 (196 patches + a class token), width 192, 4 layers, 3 heads, MLP 768.
VIT_IMAGE_SIZE, VIT_PATCH, VIT_DIM, VIT_DEPTH, VIT_HEADS, VIT_MLP = 224, 16, 192, 4, 3, 768
# Text: vocabulary 8000 ids, sequences of 128, width 128, 2 layers, 4 heads, feed-forward 512.
TEXT_VOCAB, TEXT_SEQ_LEN, TEXT_DIM, TEXT_DEPTH, TEXT_HEADS, TEXT_FF = 8000, 128, 128, 2, 4, 512


def _encoder_layer(dim: int, heads: int, hidden: int):
    """Pre-norm transformer encoder layer: x + attn(LN(x)), then x + MLP(LN(x)); no dropout."""
    import torch.nn as nn

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)
            self.proj = nn.Linear(dim, dim)
            self.scale = (dim // heads) ** -0.5

        def forward(self, x):
            b, t, _ = x.shape
            qkv = self.qkv(x).reshape(b, t, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (b, heads, t, head_dim)
            weights = (q * self.scale).matmul(k.transpose(-2, -1)).softmax(dim=-1)
            return self.proj(weights.matmul(v).transpose(1, 2).reshape(b, t, dim))

    class EncoderLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim)
            self.attn = SelfAttention()
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    return EncoderLayer()


def _init_transformer(model) -> None:
    import torch.nn as nn

    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)


@MODELS.register("vit_small")
def vit_small(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """A small ViT for 224×224 images: 16×16 patches, class token, learned positions, 4 pre-norm layers, width 192."""
    import torch
    import torch.nn as nn

    _no_options("vit_small", kwargs)
    tokens = (VIT_IMAGE_SIZE // VIT_PATCH) ** 2 + 1

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Conv2d(in_channels, VIT_DIM, VIT_PATCH, VIT_PATCH)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, VIT_DIM))
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, VIT_DIM))
            self.layers = nn.Sequential(*[_encoder_layer(VIT_DIM, VIT_HEADS, VIT_MLP) for _ in range(VIT_DEPTH)])
            self.norm = nn.LayerNorm(VIT_DIM)
            self.head = nn.Linear(VIT_DIM, num_classes)

        def forward(self, x):
            x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (b, 196, dim)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
            return self.head(self.norm(self.layers(x))[:, 0])

    model = ViT()
    _init_transformer(model)
    nn.init.trunc_normal_(model.pos_embed, std=0.02)
    nn.init.trunc_normal_(model.cls_token, std=0.02)
    nn.init.normal_(model.head.weight, std=VIT_DIM ** -0.5)  # logits of order one
    return model


@MODELS.register("text_transformer")
def text_transformer(*, num_classes: int, in_channels: int = 3, **kwargs: Any):
    """A two-layer text classifier: token embedding + learned positions, 2 encoder layers, mean pool, linear.

    Takes int64 token ids shaped (batch, 128) with ids in [0, 8000). ``in_channels`` is accepted for the
    common create_model signature and ignored (the input is a sequence of ids, not an image).
    """
    import torch
    import torch.nn as nn

    _no_options("text_transformer", kwargs)

    class TextTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(TEXT_VOCAB, TEXT_DIM)
            self.pos_embed = nn.Parameter(torch.zeros(1, TEXT_SEQ_LEN, TEXT_DIM))
            self.layers = nn.Sequential(*[_encoder_layer(TEXT_DIM, TEXT_HEADS, TEXT_FF) for _ in range(TEXT_DEPTH)])
            self.norm = nn.LayerNorm(TEXT_DIM)
            self.head = nn.Linear(TEXT_DIM, num_classes)

        def forward(self, ids):
            x = self.embed(ids) + self.pos_embed[:, : ids.shape[1]]
            return self.head(self.norm(self.layers(x)).mean(dim=1))

    model = TextTransformer()
    _init_transformer(model)
    nn.init.normal_(model.pos_embed, std=0.02)
    nn.init.normal_(model.head.weight, std=TEXT_DIM ** -0.5)  # logits of order one
    return model
