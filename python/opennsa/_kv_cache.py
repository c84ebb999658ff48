"""PagedKVCache: the decoding state of one NativeSparseAttention layer, in the paged form the
decoding operators read (docs/spec/decoding.md, "Paged caches"): raw K and V pages, compressed K
and V pages, a block table for each, and each sequence's length. Pages come from one pool per
cache, handed out as sequences grow, so sequences of very different lengths share it; release(b)
returns a finished sequence's pages."""

import operator
from typing import List, Optional

import torch


def compressed_count(length: int, compress_block_size: int, compress_stride: int) -> int:
    """C(L): the complete compression windows of L raw tokens."""
    return (length - compress_block_size) // compress_stride + 1 if length >= compress_block_size else 0


class _PagePool:
    """Pages [num_pages, page_size, heads, dim] for keys and for values, one block table
    [batch, columns] int32 (-1: no page), the free list, and each sequence's pages as a Python
    list (a sequence holds columns 0 .. len - 1), so that a step's bookkeeping is plain Python."""

    def __init__(self, what: str, batch: int, columns: int, num_pages: int, page_size: int, heads: int,
                 key_dim: int, value_dim: int, dtype, device):
        self.what, self.page_size = what, page_size
        self.key = torch.zeros(num_pages, page_size, heads, key_dim, dtype=dtype, device=device)
        self.value = torch.zeros(num_pages, page_size, heads, value_dim, dtype=dtype, device=device)
        self.block_table = torch.full((batch, columns), -1, dtype=torch.int32, device=device)
        self.pages: List[List[int]] = [[] for _ in range(batch)]
        self.free: List[int] = list(range(num_pages - 1, -1, -1))   # pop() hands out page 0 first

    def missing(self, b: int, tokens: int) -> int:
        """How many pages sequence b lacks for `tokens` rows."""
        return max(0, -(-tokens // self.page_size) - len(self.pages[b]))

    def reserve(self, b: int, tokens: int):
        """Pages for the first `tokens` rows of sequence b (already held pages are kept)."""
        needed = -(-tokens // self.page_size)
        if needed > self.block_table.shape[1]:
            raise ValueError(f"PagedKVCache: sequence {b} would need {needed} {self.what} pages; its block "
                             f"table has {self.block_table.shape[1]} columns (raise max_seq_len)")
        if needed - len(self.pages[b]) > len(self.free):
            raise RuntimeError(f"PagedKVCache: out of {self.what} pages (all {self.key.shape[0]} are in use; "
                               f"release finished sequences or raise the pool)")
        held = self.pages[b]
        first = len(held)
        while len(held) < needed:
            held.append(self.free.pop())
        if len(held) > first:
            self.block_table[b, first:len(held)] = torch.tensor(held[first:], dtype=torch.int32)

    def slot(self, b: int, row: int) -> int:
        return self.pages[b][row // self.page_size] * self.page_size + row % self.page_size

    def slots(self, b: int, rows: torch.Tensor) -> torch.Tensor:
        """Flat row index page * page_size + offset of rows `rows` of sequence b."""
        pages = torch.tensor(self.pages[b], dtype=torch.long)[torch.div(rows, self.page_size, rounding_mode="floor")]
        return pages * self.page_size + rows % self.page_size

    def write(self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor):
        self.key.view(-1, *self.key.shape[2:])[slots] = keys
        self.value.view(-1, *self.value.shape[2:])[slots] = values

    def release(self, b: int):
        self.free.extend(reversed(self.pages[b]))
        self.pages[b] = []
        self.block_table[b].fill_(-1)


class PagedKVCache:
    """Decoding state of `layer` for `batch_size` sequences of at most `max_seq_len` tokens.

    key / value [num_pages, page_size, N2, Dk / Dv] and block_table [batch_size, ceil(max_seq_len /
    page_size)] int32: the raw cache. compressed_key / compressed_value [num_compressed_pages,
    compressed_page_size, N2, Dk / Dv] and compressed_block_table: the compressed cache (row c of
    sequence b is compressed token c, the window [c*d, c*d + l)). lengths[b]: tokens held.
    num_pages defaults to every sequence at max_seq_len (a smaller pool serves sequences of
    different lengths: pages are taken as sequences grow, RuntimeError when none is left).
    Filled by layer.prefill(x, cache, cu_seqlens) and layer.step(x_t, cache).
    """

    def __init__(self, layer, batch_size: int, max_seq_len: int, page_size: int = 64,
                 compressed_page_size: int = 64, num_pages: Optional[int] = None,
                 num_compressed_pages: Optional[int] = None, dtype=None, device=None):
        for name, value in dict(batch_size=batch_size, max_seq_len=max_seq_len, page_size=page_size,
                                compressed_page_size=compressed_page_size).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PagedKVCache: {name} = {value!r} must be an int >= 1")
        self.layer_config = layer.cache_config()
        dtype = layer.q_proj.weight.dtype if dtype is None else dtype
        device = layer.q_proj.weight.device if device is None else device
        l, d = layer.compress_block_size, layer.compress_stride
        columns = -(-max_seq_len // page_size)
        compressed_columns = max(1, -(-compressed_count(max_seq_len, l, d) // compressed_page_size))
        num_pages = batch_size * columns if num_pages is None else num_pages
        num_compressed_pages = batch_size * compressed_columns if num_compressed_pages is None else num_compressed_pages
        for name, value in dict(num_pages=num_pages, num_compressed_pages=num_compressed_pages).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PagedKVCache: {name} = {value!r} must be an int >= 1")
        n2, dk, dv = layer.num_kv_heads, layer.head_dim, layer.value_head_dim
        self.batch_size, self.max_seq_len = batch_size, max_seq_len
        self.compress_block_size, self.compress_stride = l, d
        self.raw = _PagePool("raw", batch_size, columns, num_pages, page_size, n2, dk, dv, dtype, device)
        self.compressed = _PagePool("compressed", batch_size, compressed_columns, num_compressed_pages,
                                    compressed_page_size, n2, dk, dv, dtype, device)
        self.lengths: List[int] = [0] * batch_size

    # The tensors the operators take.
    key = property(lambda self: self.raw.key)
    value = property(lambda self: self.raw.value)
    block_table = property(lambda self: self.raw.block_table)
    page_size = property(lambda self: self.raw.page_size)
    compressed_key = property(lambda self: self.compressed.key)
    compressed_value = property(lambda self: self.compressed.value)
    compressed_block_table = property(lambda self: self.compressed.block_table)
    compressed_page_size = property(lambda self: self.compressed.page_size)
    dtype = property(lambda self: self.raw.key.dtype)

    @property
    def compressed_lengths(self) -> List[int]:
        return [compressed_count(n, self.compress_block_size, self.compress_stride) for n in self.lengths]

    def check_layer(self, layer):
        if layer.cache_config() != self.layer_config:
            raise ValueError(f"PagedKVCache: made for a layer with {self.layer_config}, used with one with "
                             f"{layer.cache_config()}")

    def check_room(self, new_tokens: List[int]):
        """Raises unless each sequence b can take new_tokens[b] more tokens (max_seq_len, and both
        pools' free pages for all of them together); changes nothing."""
        l, d = self.compress_block_size, self.compress_stride
        for b, n in enumerate(new_tokens):
            if self.lengths[b] + n > self.max_seq_len:
                raise ValueError(f"PagedKVCache: sequence {b} would hold {self.lengths[b] + n} tokens; max_seq_len "
                                 f"is {self.max_seq_len}")
        totals = [n + extra for n, extra in zip(self.lengths, new_tokens)]
        for pool, rows in ((self.raw, totals), (self.compressed, [compressed_count(n, l, d) for n in totals])):
            needed = sum(pool.missing(b, n) for b, n in enumerate(rows))
            if needed > len(pool.free):
                raise RuntimeError(f"PagedKVCache: out of {pool.what} pages ({needed} more needed, "
                                   f"{len(pool.free)} free; release finished sequences or raise the pool)")

    def append(self, b: int, keys: torch.Tensor, values: torch.Tensor):
        """Stores the K and V rows [n, N2, D] of n new tokens of sequence b."""
        start, n = self.lengths[b], keys.shape[0]
        self.check_room([n if i == b else 0 for i in range(self.batch_size)])
        self.raw.reserve(b, start + n)
        self.raw.write(self.raw.slots(b, torch.arange(start, start + n)), keys, values)
        self.lengths[b] = start + n

    def append_compressed(self, b: int, keys: torch.Tensor, values: torch.Tensor):
        """Stores the compressed rows of a prefill: sequence b's compressed tokens 0 .. n - 1."""
        n = keys.shape[0]
        self.compressed.reserve(b, n)
        self.compressed.write(self.compressed.slots(b, torch.arange(n)), keys, values)

    def sequence_list(self, sequences) -> List[int]:
        """The sequences a step serves: all (None), or distinct indices in [0, batch_size)."""
        if sequences is None:
            return list(range(self.batch_size))
        try:
            seqs = [int(operator.index(b)) for b in (sequences.tolist() if isinstance(sequences, torch.Tensor)
                                                     else sequences)]
        except TypeError:
            raise ValueError(f"PagedKVCache: sequences must be a list of sequence indices, got {sequences!r}") from None
        bad = [b for b in seqs if not 0 <= b < self.batch_size]
        if bad or len(set(seqs)) != len(seqs) or not seqs:
            raise ValueError(f"PagedKVCache: sequences = {seqs} must be distinct indices in [0, {self.batch_size}), "
                             f"at least one")
        return seqs

    def append_step(self, keys: torch.Tensor, values: torch.Tensor, sequences: List[int]) -> torch.Tensor:
        """One decoding step's K and V rows [len(sequences), N2, D], one new token for each listed
        sequence. Checks that each has room and that both pools have the pages the step needs
        before it writes anything. Returns the slot_mapping for npu_nsa_compress_infer, one int32
        per listed sequence: the flat row of the compressed cache for the window it just completed
        (its page reserved), -1 where it completed none."""
        l, d = self.compress_block_size, self.compress_stride
        listed = set(sequences)
        self.check_room([1 if b in listed else 0 for b in range(self.batch_size)])
        rows = [self.lengths[b] for b in sequences]                     # the new tokens' positions
        for b, n in zip(sequences, rows):
            self.raw.reserve(b, n + 1)
        self.raw.write(torch.tensor([self.raw.slot(b, n) for b, n in zip(sequences, rows)]), keys, values)
        slots = [-1] * len(sequences)
        for i, (b, n) in enumerate(zip(sequences, rows)):
            self.lengths[b] = n + 1
            if n + 1 >= l and (n + 1 - l) % d == 0:
                c = (n + 1 - l) // d
                self.compressed.reserve(b, c + 1)
                slots[i] = self.compressed.slot(b, c)
        return torch.tensor(slots, dtype=torch.int32)

    def window_blocks(self, window_size: int, kv_heads: int, sequences: List[int]) -> torch.Tensor:
        """[len(sequences), N2, w] int32: the positions L_b - w .. L_b - 1 of each listed sequence's
        window as one-key blocks for npu_nsa_select_attention_infer (select_block_size 1), -1 below
        position 0."""
        newest = torch.tensor([self.lengths[b] for b in sequences], dtype=torch.int64).view(-1, 1)
        positions = newest - window_size + torch.arange(window_size).view(1, -1)
        blocks = torch.where(positions >= 0, positions, -1).to(torch.int32)
        return blocks.view(len(sequences), 1, window_size).expand(len(sequences), kv_heads, window_size)

    def tables(self, sequences: List[int]):
        """(block_table, compressed_block_table, lengths, compressed_lengths) of the listed
        sequences, in their order: what the decoding operators take for a step over them."""
        l, d = self.compress_block_size, self.compress_stride
        lengths = [self.lengths[b] for b in sequences]
        if sequences == list(range(self.batch_size)):
            raw, cmp = self.block_table, self.compressed_block_table
        else:
            index = torch.tensor(sequences)
            raw, cmp = self.block_table[index], self.compressed_block_table[index]
        return raw, cmp, lengths, [compressed_count(n, l, d) for n in lengths]

    def release(self, b: int):
        """Frees sequence b's pages and empties it (a new sequence may be prefilled in its place)."""
        self.raw.release(b)
        self.compressed.release(b)
        self.lengths[b] = 0

    def __repr__(self) -> str:
        return (f"PagedKVCache(batch_size={self.batch_size}, lengths={self.lengths}, pages "
                f"{self.key.shape[0] - len(self.raw.free)}/{self.key.shape[0]} raw, "
                f"{self.compressed_key.shape[0] - len(self.compressed.free)}/{self.compressed_key.shape[0]} "
                f"compressed, dtype={self.dtype})")
