"""The decoding compression's torch operator (CPU kernel: python/csrc/compress_with_cache.cpp):
its fake kernel and the torch_npu-named function npu_nsa_compress_infer."""

from typing import Optional, Sequence

import torch

from ._compress import _seq_list
from ._library import register_fake

compress_infer = torch.ops.opennsa.compress_infer.cache


@register_fake("compress_infer.cache")
def _compress_infer_fake(input, weight, slot_mapping, compress_block_size, compress_stride, page_block_size, *,
                         block_table=None, actual_seq_len=None, cache):
    # The operator writes some rows of cache in place and returns nothing.
    torch._check(input.dim() == 4,
                 lambda: f"opennsa: input has shape {tuple(input.shape)}; expected [numBlocks, P, N, D]")


def npu_nsa_compress_infer(input: torch.Tensor, weight: torch.Tensor, slot_mapping: torch.Tensor,
                           compress_block_size: int, compress_stride: int, page_block_size: int, *,
                           block_table: Optional[torch.Tensor] = None,
                           actual_seq_len: Optional[Sequence[int]] = None, cache: torch.Tensor) -> torch.Tensor:
    """Decoding compression, in place: for each sequence b whose length L_b = actual_seq_len[b]
    has just completed a window (L_b >= l and (L_b - l) % d == 0),
    cache[slot_mapping[b], h, :] = sum_r weight[r, h] * K(b, L_b - l + r, h, :), where K is read
    from the paged input [numBlocks, page_block_size, N, D] through block_table [B, maxBlocks]
    (int32). Every other row of cache [R, N, D] keeps its contents; slots of sequences that are
    not triggered are not read (may be -1). One dtype for input, weight and cache (float16,
    bfloat16; also float32, float64). Returns cache. Not differentiable. Raises ValueError with
    the library's message on bad input (nothing is written then)."""
    # None reaches the kernel, which names the missing argument.
    lens = None if actual_seq_len is None else _seq_list("npu_nsa_compress_infer", actual_seq_len)
    # The torch operator mutates cache and returns nothing (a custom operator's output may not alias
    # an input under functionalization); the function returns the cache, as torch_npu's does.
    compress_infer(input, weight, slot_mapping, int(compress_block_size), int(compress_stride), int(page_block_size),
                   block_table=block_table, actual_seq_len=lens, cache=cache)
    return cache
