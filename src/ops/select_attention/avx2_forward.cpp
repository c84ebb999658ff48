// Forward pass, AVX2 + FMA path. Same tasks as the generic forward (kv head x kQueryTokens query
// tokens; each (token, head) row computed by one task), but the G heads of a kv head form one
// matrix: for every selected block, S[G x bs] = Q[G x Dk] K_blk^T from a transposed K panel,
// then a vectorised softmax over all slots, then O[G x Dv] = sum_slots P_blk V_blk, so each
// block's K and V are read once for all G heads. For bf16 inputs on CPUs with AVX512_BF16
// (use_bf16_dot()) both matmuls run on the bf16 dot tiles: the K panels and the V blocks are
// stored pair-interleaved, and P is rounded to bf16 as the operand of P V (SPEC 7); the row sums
// stay those of the fp32 P.
#include "ops/select_attention/avx2.hpp"

#if defined(__x86_64__)
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/avx2/core.hpp"
#include "ops/select_attention/plan.hpp"

namespace opennsa::detail::select_attention::avx2 {
namespace {

using namespace opennsa::detail::avx2;

struct ForwardLayout {
    KeyBlocks blocks;
    std::int64_t nb, bsp, Dkp, Dvp;
    std::int64_t Dk2;  // (Dk + 1) / 2: the bf16 pairs of a q or k row
    explicit ForwardLayout(const Problem& p)
        : blocks(make_key_blocks(p)), nb(blocks.total()), bsp(padded(p.block_len)), Dkp(padded(p.Dk)), Dvp(padded(p.Dv)),
          Dk2((p.Dk + 1) / 2) {}
};

// K and V of the kv head being computed (heads run one after another, so this is one head's).
struct ForwardPacked {
    std::span<float> kt;  // [nb][Dkp][bsp] transposed key panels (bf16 dot: [nb][Dkp / 2][bsp] pair words)
    std::span<float> v;   // [T2][Dvp] value rows (bf16 dot: [nb][bsp / 2][Dvp] key-pair words)
};

ForwardPacked carve_forward(const Problem& p, const ForwardLayout& l, Carver& c) {
    // Sized for either form, so the workspace does not depend on the CPU.
    const std::int64_t v_rows = std::max(p.T2, checked_product({l.nb, l.bsp / 2}, "the value blocks"));
    return {c.take<float>({l.nb, l.Dkp, l.bsp}), c.take<float>({v_rows, l.Dvp})};
}

// A visible slot of the token being computed: its K panel, its V rows, how many keys it shows.
struct Slot {
    const void* kt;  // fp32 panel, or pair words with the bf16 dot
    const void* v;   // fp32 rows, or the block's key-pair words with the bf16 dot
    std::int64_t vis;
};

struct ForwardScratch {
    float* q;    // [G][Dkp]
    float* s;    // [G][C * bsp] scores, then probabilities
    float* o;    // [G][Dvp]
    float* inv;  // [G] 1 / sum
    std::uint32_t* qpairs;  // [G][Dk2] the q rows as bf16 pairs (bf16 dot only)
    std::uint32_t* ppairs;  // [G][C * bsp / 2] P rounded to bf16 pairs (bf16 dot only)
    std::uint32_t* vedge;   // [C][Dvp] a slot's key pair whose second key is invisible (bf16 dot only)
    Slot* slots; // [C]
    const float** vrows;  // [C * bsp] (bf16 dot: the first C * bsp / 2 as pair-row pointers)
    const float* zero;    // [Dvp] zeros
};

// Softmax of one row over its slots, in place: returns the row max and sum (SPEC 5).
NSA_AVX2 void softmax_row(float* s, const Slot* slots, int nslots, std::int64_t bsp, float scale, float* mx_out,
                          float* sum_out) {
    const __m256 vscale = _mm256_set1_ps(scale);
    const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    NanMax mx = nanmax_init();
    for (int k = 0; k < nslots; ++k)
        for (std::int64_t j0 = 0; j0 < bsp; j0 += kLanes) {
            float* at = s + k * bsp + j0;
            const __m256 v = _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_loadu_ps(at), vscale),
                                              lanes_below(j0, slots[k].vis));
            _mm256_storeu_ps(at, v);
            nanmax_add(mx, v);
        }
    const float m = nanmax_value(mx);
    const __m256 vm = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (int k = 0; k < nslots; ++k)
        for (std::int64_t j0 = 0; j0 < bsp; j0 += kLanes) {
            float* at = s + k * bsp + j0;
            const __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(_mm256_loadu_ps(at), vm)), lanes_below(j0, slots[k].vis));
            _mm256_storeu_ps(at, e);
            sum = _mm256_add_ps(sum, e);
        }
    *mx_out = m;
    *sum_out = hsum(sum);
}

template <class S>
NSA_AVX2 void forward_tokens(const Problem& p, const ForwardLayout& l, const ForwardPacked& pk, std::int64_t n2,
                             std::int64_t t0, const ForwardScratch& w, bool bf16_dot) {
    const std::int64_t panel_words = bf16_dot ? l.Dkp / 2 * l.bsp : l.Dkp * l.bsp;
    const float scale = static_cast<float>(p.scale);
    for (std::int64_t t = t0; t < std::min(t0 + kQueryTokens, p.T1); ++t) {
        const QueryRow row = locate_query(p, t);
        int nslots = 0;
        if (row.batch >= 0)
            for (std::int64_t j = 0; j < p.C; ++j) {
                const std::int32_t x = *element<const std::int32_t>(p.topk, t, n2, j);
                if (x < 0) continue;
                const Segment seg = visible_part(p, row, x);
                if (seg.end == seg.begin) continue;
                const std::int64_t gb = l.blocks.first[row.batch] + x;
                const float* v = bf16_dot ? pk.v.data() + gb * (l.bsp / 2) * l.Dvp
                                          : pk.v.data() + (row.kv0 + x * p.bs) * l.Dvp;
                w.slots[nslots++] = {pk.kt.data() + gb * panel_words, v, seg.end - seg.begin};
            }
        if (nslots == 0) {  // padding row or nothing visible: out = max = sum = 0
            for (std::int64_t h = n2 * p.G; h < (n2 + 1) * p.G; ++h) {
                store_zero_row<S>(p.out, t, h, p.Dv);
                store_stat(p.softmax_max, t, h, 0.0f);
                store_stat(p.softmax_sum, t, h, 0.0f);
            }
            continue;
        }
        for (std::int64_t g = 0; g < p.G; ++g) {
            float* q = w.q + g * l.Dkp;
            load_row_padded<S>(p.q, t, n2 * p.G + g, q, p.Dk, l.Dkp);
        }
        const std::int64_t lds = nslots * l.bsp;
        if (bf16_dot) {
            for (std::int64_t g = 0; g < p.G; ++g) pair_row(w.q + g * l.Dkp, p.Dk, w.qpairs + g * l.Dk2);
            for (int k = 0; k < nslots; ++k)
                gemm_bf16_tiles(p.G, l.bsp, l.Dk2, PairedA{w.qpairs, l.Dk2, 1},
                                PairedB{static_cast<const std::uint32_t*>(w.slots[k].kt), l.bsp},
                                StridedC{w.s + k * l.bsp, lds});
        } else {
            for (int k = 0; k < nslots; ++k)
                gemm_tiles(p.G, l.bsp, p.Dk, StridedA{w.q, l.Dkp, 1},
                           StridedB{static_cast<const float*>(w.slots[k].kt), l.bsp}, StridedC{w.s + k * l.bsp, lds},
                           false);
        }
        for (std::int64_t g = 0; g < p.G; ++g) {
            float mx = 0, sum = 0;
            softmax_row(w.s + g * lds, w.slots, nslots, l.bsp, scale, &mx, &sum);
            const std::int64_t h = n2 * p.G + g;
            store_stat(p.softmax_max, t, h, mx);
            store_stat(p.softmax_sum, t, h, sum);
            w.inv[g] = 1.0f / sum;
        }
        // O = P V as one matmul over all slots' keys (C stays in registers): the B rows are the
        // slots' V rows, a zero row where the key is invisible (its P is 0 too), so a NaN or Inf in
        // a key the row does not see never reaches it.
        if (bf16_dot) {
            const std::int64_t lds2 = lds / 2, bsp2 = l.bsp / 2;
            for (std::int64_t g = 0; g < p.G; ++g) pair_row(w.s + g * lds, lds, w.ppairs + g * lds2);
            const auto** rows = reinterpret_cast<const std::uint32_t**>(w.vrows);
            const auto* zero = reinterpret_cast<const std::uint32_t*>(w.zero);
            for (int k = 0; k < nslots; ++k) {
                const auto* blk = static_cast<const std::uint32_t*>(w.slots[k].v);
                const std::int64_t vis = w.slots[k].vis;
                for (std::int64_t m = 0; m < bsp2; ++m) {
                    const std::uint32_t*& r = rows[k * bsp2 + m];
                    if (2 * m + 1 < vis) {
                        r = blk + m * l.Dvp;
                    } else if (2 * m < vis) {  // keep the first key's halves only
                        std::uint32_t* edge = w.vedge + k * l.Dvp;
                        for (std::int64_t d = 0; d < l.Dvp; ++d) edge[d] = blk[m * l.Dvp + d] & 0xffffu;
                        r = edge;
                    } else {
                        r = zero;
                    }
                }
            }
            gemm_bf16_tiles(p.G, l.Dvp, lds2, PairedA{w.ppairs, lds2, 1}, GatheredPairedB{rows},
                            StridedC{w.o, l.Dvp});
        } else {
            for (int k = 0; k < nslots; ++k)
                for (std::int64_t i = 0; i < l.bsp; ++i)
                    w.vrows[k * l.bsp + i] =
                        i < w.slots[k].vis ? static_cast<const float*>(w.slots[k].v) + i * l.Dvp : w.zero;
            gemm_tiles(p.G, l.Dvp, lds, StridedA{w.s, lds, 1}, GatheredB{w.vrows}, StridedC{w.o, l.Dvp}, false);
        }
        for (std::int64_t g = 0; g < p.G; ++g)
            store_row_f32<S>(p.out, t, n2 * p.G + g, w.o + g * l.Dvp, w.inv[g], p.Dv);
    }
}

// Transposed block panels of head n: out[block][d][0, bsp) = src[key0 + i, n, d] for the block's
// keys and d < Dp, zero for i past the block or past its batch (and for d >= D). The microkernel
// reads them as B rows of S = Q K^T. With the bf16 dot each panel is stored as its pair words,
// out[block][d / 2][i] (half the size).
template <class S>
void pack_panels(const Problem& p, const KeyBlocks& blocks, const TensorView& src, std::int64_t n, std::int64_t D,
                 std::int64_t Dp, std::int64_t bsp, float* out, int threads, bool bf16_dot) {
    const std::int64_t per_worker = checked_product({2, bsp, Dp}, "the panel scratch");
    std::vector<float> scratch(static_cast<std::size_t>(checked_product({threads, per_worker}, "the panel scratch")));
    parallel_for(blocks.total(), threads, [&](std::int64_t gb, int worker) {
        const KeyBlock blk = locate_block(p, blocks, gb);
        float* rows = scratch.data() + worker * per_worker;
        if (!bf16_dot) return block_rows_and_panel<S>(src, blk.key0, blk.keys, n, D, Dp, bsp, rows, out + gb * Dp * bsp);
        float* panel = rows + bsp * Dp;
        block_rows_and_panel<S>(src, blk.key0, blk.keys, n, D, Dp, bsp, rows, panel);
        pair_panel(panel, Dp / 2, bsp, reinterpret_cast<std::uint32_t*>(out) + gb * (Dp / 2) * bsp);
    });
}

// Head n's value blocks in key-pair form: out[block][m][d] = (v[key0 + 2m, d], v[key0 + 2m + 1,
// d]), zero for keys past the block or its batch (and for d >= Dv): the B rows of P V.
template <class S>
void pack_value_pairs(const Problem& p, const KeyBlocks& blocks, std::int64_t n, std::int64_t Dvp, std::int64_t bsp,
                      std::uint32_t* out, int threads) {
    const std::int64_t per_worker = checked_product({bsp, Dvp}, "the value block scratch");
    std::vector<float> scratch(static_cast<std::size_t>(checked_product({threads, per_worker}, "the value block scratch")));
    parallel_for(blocks.total(), threads, [&](std::int64_t gb, int worker) {
        const KeyBlock blk = locate_block(p, blocks, gb);
        float* rows = scratch.data() + worker * per_worker;
        for (std::int64_t i = 0; i < blk.keys; ++i) load_row_padded<S>(p.v, blk.key0 + i, n, rows + i * Dvp, p.Dv, Dvp);
        std::fill(rows + blk.keys * Dvp, rows + bsp * Dvp, 0.0f);
        for (std::int64_t m = 0; m < bsp / 2; ++m)
            pair_two_rows(rows + 2 * m * Dvp, rows + (2 * m + 1) * Dvp, Dvp, out + (gb * (bsp / 2) + m) * Dvp);
    });
}

template <class S>
void forward_typed(const Problem& p, std::span<std::byte> workspace) {
    const ForwardLayout l(p);
    Carver carver(workspace.data());
    const ForwardPacked pk = carve_forward(p, l, carver);
    const int threads = thread_count();

    const std::int64_t slot_keys = checked_product({p.C, l.bsp}, "the scores of a row");
    // Per head: q, scores, o, 1/sum, then the q pairs (Dk2 <= Dkp words, carved as floats) and the
    // P pairs (C bsp / 2 words); per worker the C edge rows of Dvp words.
    const std::int64_t per_worker = checked_add(
        checked_product({p.G, checked_add(slot_keys + slot_keys / 2, 2 * l.Dkp + l.Dvp + 1, "the row scratch")},
                        "the row scratch"),
        checked_product({p.C, l.Dvp}, "the row scratch"), "the row scratch");
    std::vector<float> scratch(static_cast<std::size_t>(checked_product({threads, per_worker}, "the row scratch")));
    std::vector<Slot> slots(static_cast<std::size_t>(threads * p.C));
    std::vector<const float*> vrows(static_cast<std::size_t>(checked_product({threads, slot_keys}, "the row scratch")));
    const std::vector<float> zero(static_cast<std::size_t>(l.Dvp), 0.0f);
    const std::int64_t groups = (p.T1 + kQueryTokens - 1) / kQueryTokens;
    const bool bf16_dot = std::is_same_v<S, bf16_t> && use_bf16_dot();
    // One kv head at a time: its panels (10.5 MB at T2 = 8192) stay in L3 while every task of the
    // head reads them, and the packed copy is one head's, not N2 heads'.
    for (std::int64_t n2 = 0; n2 < p.N2; ++n2) {
        pack_panels<S>(p, l.blocks, p.k, n2, p.Dk, l.Dkp, l.bsp, pk.kt.data(), threads, bf16_dot);
        if (bf16_dot)
            pack_value_pairs<S>(p, l.blocks, n2, l.Dvp, l.bsp, reinterpret_cast<std::uint32_t*>(pk.v.data()), threads);
        else
            pack_rows<S>(p.v, p.T2, n2, p.Dv, l.Dvp, pk.v.data(), threads);
        parallel_for(groups, threads, [&](std::int64_t group, int worker) {
            float* base = scratch.data() + worker * per_worker;
            float* o = base + p.G * (l.Dkp + p.C * l.bsp);
            float* inv = o + p.G * l.Dvp;
            auto* qpairs = reinterpret_cast<std::uint32_t*>(inv + p.G);
            std::uint32_t* ppairs = qpairs + p.G * l.Dkp;
            std::uint32_t* vedge = ppairs + p.G * (slot_keys / 2);
            const ForwardScratch w{base,
                                   base + p.G * l.Dkp,
                                   o,
                                   inv,
                                   qpairs,
                                   ppairs,
                                   vedge,
                                   slots.data() + worker * p.C,
                                   vrows.data() + worker * p.C * l.bsp,
                                   zero.data()};
            forward_tokens<S>(p, l, pk, n2, group * kQueryTokens, w, bf16_dot);
        });
    }
}

}  // namespace

std::size_t forward_workspace(const Problem& p) {
    Carver c;
    carve_forward(p, ForwardLayout(p), c);
    return c.size();
}

void run_forward(const Problem& p, std::span<std::byte> workspace) {
    with_float_storage(p.dtype, [&](auto* tag) { forward_typed<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

}  // namespace opennsa::detail::select_attention::avx2

#endif  // __x86_64__
