// Decoding selected attention test cases: random problems (layouts, batches, draft tokens, paged
// caches with shuffled and spare pages, selections with empty and duplicate slots, strided views),
// their tensors (inputs random, outputs poisoned, bytes nobody may read poisoned with NaN or
// garbage), and the reference comparison.
#pragma once

#include <string>
#include <vector>

#include "ops/select_attention_infer/problem.hpp"
#include "ops/select_attention_infer/reference.hpp"
#include "support.hpp"

namespace sai = opennsa::detail::select_attention_infer;

namespace nsa_test {

// An N-d tensor (rank 1..4) in its own buffer. Storage modes: 0 dense; 1 the first two dimensions
// swapped in memory and the rows padded by 3 elements (gaps); 2 element stride 2 along the last
// dimension (gaps between elements).
struct HostNd {
    std::vector<unsigned char> bytes;
    TensorView view;

    static HostNd make(DType dtype, std::vector<std::int64_t> shape, int storage);
    std::int64_t numel() const;
    std::int64_t offset(const std::vector<std::int64_t>& idx) const;  // in elements
    double get(const std::vector<std::int64_t>& idx) const;
    void set(const std::vector<std::int64_t>& idx, double v);  // rounds to the dtype (int32 exact)
    // Calls fn(idx) for every element of the view, row-major.
    template <class Fn>
    void for_each(Fn&& fn) const {
        std::vector<std::int64_t> idx(static_cast<std::size_t>(view.rank), 0);
        if (numel() == 0) return;
        for (;;) {
            fn(idx);
            int d = view.rank - 1;
            while (d >= 0 && ++idx[static_cast<std::size_t>(d)] == view.shape[d]) idx[static_cast<std::size_t>(d--)] = 0;
            if (d < 0) return;
        }
    }
    void poison();  // every byte 0xFF (NaN in every float dtype)
    // Every element of the view was written (no element keeps the poison), no byte outside it was.
    ::testing::AssertionResult fully_written() const;
};

struct SelInferCase {
    DType dtype = DType::bf16;
    std::string layout = "BSND";
    std::int64_t N1 = 4, N2 = 2, Dk = 16, Dv = 16, sel = 8, k = 4, P = 16;
    std::vector<std::int64_t> q_lens{1}, kv_lens{40};
    std::int64_t Q = 0;          // BSND / BSH query.shape[1]; 0: the largest q_len
    bool pass_q_lens = true;     // false: actualQSeqLen absent (every Q_b = 1)
    bool topk3 = false;          // BSND / BSH topk as [B, N2, k] (needs Q = 1)
    bool cache_rank4 = false;    // key / value [pages, P, N2, D], else [pages, P, N2*D]
    int storage = 0;             // HostNd storage of query, topk, out and the caches
    std::int64_t spare_pages = 3, spare_cols = 2;  // pages no batch uses; table columns past the last used
    bool shuffle_pages = true;
    double empty_slot = 0.1, duplicate = 0.1;
    double scale = 0.0;  // 0: 1/sqrt(Dk)
    std::uint64_t seed = 1;

    std::int64_t B() const { return static_cast<std::int64_t>(kv_lens.size()); }
    std::int64_t rows_Q() const;  // query.shape[1] (BSND / BSH)
    std::int64_t T() const;       // sum of q_lens (TND)
    std::string describe() const;
};

SelInferCase random_sel_infer_case(std::mt19937_64& rng, DType dtype);

// All tensors of a case: inputs random, outputs poisoned. Cache rows no batch may read (spare
// pages, rows past a batch's length) hold NaN; block-table entries past a batch's pages and topk
// rows s >= Q_b hold out-of-range garbage; query rows s >= Q_b hold NaN.
struct SelInferTensors {
    SelInferCase c;
    opennsa::SelectAttentionInferParams params;
    HostNd q, k, v, topk, table, out;
    std::vector<std::vector<std::int32_t>> pages;  // pages[b][j]: the page of block j of batch b

    explicit SelInferTensors(const SelInferCase& c);
    opennsa::SelectAttentionInferArgs args();
    // Block index x of (b, s, n2, slot j); the position of its element in topk.
    std::vector<std::int64_t> topk_index(std::int64_t b, std::int64_t s, std::int64_t n2, std::int64_t j) const;
    void set_slot(std::int64_t b, std::int64_t s, std::int64_t n2, std::int64_t j, std::int32_t x);
    // The output as a dense [rows][N1][Dv] array, reference indexing (sai::reference::output_row).
    std::vector<double> dense_out() const;
    // Copies of the inputs' bytes, to check they stay unchanged.
    std::vector<std::vector<unsigned char>> input_bytes() const;
};

// Runs the native operator and compares with the float64 reference: accuracy, every output element
// written, rows s >= Q_b zero, inputs bitwise unchanged.
::testing::AssertionResult run_and_check(SelInferTensors& t);

}  // namespace nsa_test
