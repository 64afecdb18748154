from .transformer import TokenTransformer, shift_right
from .vqvae import VQVAE, codebook_stats

__all__ = ["VQVAE", "TokenTransformer", "codebook_stats", "shift_right"]
