// Consumer check: one forward through the C API and the same call through the native C++ API must
// agree bit for bit; exits non-zero otherwise.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_nsa_selected_attention.h"
#include "opennsa/opennsa.hpp"

int main() {
    const std::int64_t T = 40, N = 2, D = 8, bs = 8, C = 3;
    std::vector<float> q(T * N * D), k(T * D), v(T * D), o_c(T * N * D), o_n(T * N * D), m(T * N * 8), s(T * N * 8);
    std::vector<std::int32_t> topk(T * C, -1);
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = std::sin(0.37f * static_cast<float>(i));
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = std::cos(0.11f * static_cast<float>(i));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.05f * static_cast<float>(i) + 1.0f);
    for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t j = 0; j <= t / bs && j < C; ++j) topk[t * C + j] = static_cast<std::int32_t>(t / bs - j);

    if (aclInit(nullptr) != ACL_SUCCESS) return 1;
    auto tensor = [](std::vector<std::int64_t> dims, aclDataType dt, void* data) {
        return aclCreateTensor(dims.data(), dims.size(), dt, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, data);
    };
    aclTensor *tq = tensor({T, N, D}, ACL_FLOAT, q.data()), *tk = tensor({T, 1, D}, ACL_FLOAT, k.data()),
              *tv = tensor({T, 1, D}, ACL_FLOAT, v.data()), *tt = tensor({T, 1, C}, ACL_INT32, topk.data()),
              *to = tensor({T, N, D}, ACL_FLOAT, o_c.data()), *tm = tensor({T, N, 8}, ACL_FLOAT, m.data()),
              *ts = tensor({T, N, 8}, ACL_FLOAT, s.data());
    char layout[] = "TND";
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    if (aclnnNsaSelectedAttentionGetWorkspaceSize(tq, tk, tv, tt, nullptr, nullptr, nullptr, 0.35, N, layout, 2, bs, C,
                                                  tm, ts, to, &ws, &ex) != ACLNN_SUCCESS) {
        std::printf("GetWorkspaceSize: %s\n", aclGetRecentErrMsg());
        return 1;
    }
    void* w = nullptr;
    if (ws > 0 && aclrtMalloc(&w, ws, ACL_MEM_MALLOC_HUGE_FIRST) != ACL_SUCCESS) return 1;
    if (aclnnNsaSelectedAttention(w, ws, ex, nullptr) != ACLNN_SUCCESS) {
        std::printf("launch: %s\n", aclGetRecentErrMsg());
        return 1;
    }
    if (w) aclrtFree(w);
    for (aclTensor* t : {tq, tk, tv, tt, to, tm, ts}) aclDestroyTensor(t);
    aclFinalize();

    using opennsa::DType;
    using opennsa::TensorView;
    // Built field by field: TensorView's helper functions are not exported from libopennsa.so yet.
    auto view = [](void* data, DType dt, std::int64_t d0, std::int64_t d1, std::int64_t d2) {
        TensorView t;
        t.data = data;
        t.dtype = dt;
        t.rank = 3;
        t.shape[0] = d0, t.shape[1] = d1, t.shape[2] = d2;
        t.strides[0] = d1 * d2, t.strides[1] = d2, t.strides[2] = 1;
        return t;
    };
    opennsa::Params p;
    p.scale = 0.35;
    p.head_num = N;
    p.block_size = bs;
    p.block_count = C;
    std::vector<float> m2(m.size()), s2(s.size());
    opennsa::forward({.query = view(q.data(), DType::f32, T, N, D),
                      .key = view(k.data(), DType::f32, T, 1, D),
                      .value = view(v.data(), DType::f32, T, 1, D),
                      .topk = view(topk.data(), DType::i32, T, 1, C),
                      .atten_mask = {},
                      .out = view(o_n.data(), DType::f32, T, N, D),
                      .softmax_max = view(m2.data(), DType::f32, T, N, 8),
                      .softmax_sum = view(s2.data(), DType::f32, T, N, 8)},
                     p);
    const bool same = std::memcmp(o_c.data(), o_n.data(), o_c.size() * sizeof(float)) == 0;
    std::printf("OpenNSA %s consumer: C API and native API %s\n", opennsa::version(), same ? "agree" : "DIFFER");
    return same ? 0 : 1;
}
