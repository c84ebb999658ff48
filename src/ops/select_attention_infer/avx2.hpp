// Entry points of the decoding selected attention's AVX2 + FMA pass (x86-64; fp16, bf16, fp32).
// The same rows, chunks, sub-blocks and folds as the generic pass (plan.hpp), computed with the
// register-tiled fp32 microkernels: per sub-block S^T = K Q^T and O = P V, the G query heads of a
// kv head being the columns (resp. rows) of one small matmul, so each cached key and value row is
// read once for all G heads.
#pragma once

#include <cstddef>
#include <span>

#include "ops/select_attention_infer/problem.hpp"

namespace opennsa::detail::select_attention_infer::avx2 {

std::size_t forward_workspace(const Problem& p);
void run_forward(const Problem& p, std::span<std::byte> workspace);

}  // namespace opennsa::detail::select_attention_infer::avx2
