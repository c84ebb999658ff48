// aclnnNsaSelectedAttentionGrad the way a CANN program calls it: aclInit, device, stream, device
// buffers, host->device copies, aclTensors, the two-phase call, synchronize, copy back, clean up.
// It uses the CANN headers only; with OpenNSA it builds with -lopennsa and runs on the CPU.
//
//   g++ -std=c++17 nsa_grad_example.cpp -I<prefix>/include -L<prefix>/lib -lopennsa
//
// The forward (aclnnNsaSelectedAttention) runs first to produce the backward's inputs
// attentionOut, softmaxMax and softmaxSum.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_nsa_selected_attention.h"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"

#define CHECK_RET(cond, ...)              \
    do {                                  \
        if (!(cond)) {                    \
            std::printf(__VA_ARGS__);     \
            std::printf("  (%s)\n", aclGetRecentErrMsg()); \
            return 1;                     \
        }                                 \
    } while (0)

namespace {

std::int64_t element_count(const std::vector<std::int64_t>& shape) {
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    return n;
}

// Device memory for `shape`, filled from host (when given), and a dense aclTensor over it.
template <class T>
int create_acl_tensor(const std::vector<T>* host, const std::vector<std::int64_t>& shape, aclDataType dtype,
                      void** device, aclTensor** tensor) {
    const std::size_t bytes = static_cast<std::size_t>(element_count(shape)) * sizeof(T);
    aclError ret = aclrtMalloc(device, bytes, ACL_MEM_MALLOC_HUGE_FIRST);
    CHECK_RET(ret == ACL_SUCCESS, "aclrtMalloc failed: %d\n", ret);
    if (host != nullptr) {
        ret = aclrtMemcpy(*device, bytes, host->data(), bytes, ACL_MEMCPY_HOST_TO_DEVICE);
        CHECK_RET(ret == ACL_SUCCESS, "aclrtMemcpy failed: %d\n", ret);
    }
    std::vector<std::int64_t> strides(shape.size(), 1);
    for (std::size_t i = shape.size() - 1; i > 0; --i) strides[i - 1] = shape[i] * strides[i];
    *tensor = aclCreateTensor(shape.data(), shape.size(), dtype, strides.data(), 0, ACL_FORMAT_ND, shape.data(),
                              shape.size(), *device);
    CHECK_RET(*tensor != nullptr, "aclCreateTensor failed\n");
    return 0;
}

}  // namespace

int main() {
    // Sizes: one batch of T tokens, N1 query heads sharing N2 kv heads, selected blocks of bs keys.
    const std::int64_t T = 256, N1 = 4, N2 = 1, Dk = 64, Dv = 64, bs = 16, C = 4;
    const double scale = 1.0 / std::sqrt(static_cast<double>(Dk));
    char layout[] = "TND";
    const std::int64_t sparse_mode = 2;  // causal

    // 1. Runtime setup.
    int32_t device_id = 0;
    aclrtStream stream = nullptr;
    aclError ret = aclInit(nullptr);
    CHECK_RET(ret == ACL_SUCCESS, "aclInit failed: %d\n", ret);
    ret = aclrtSetDevice(device_id);
    CHECK_RET(ret == ACL_SUCCESS, "aclrtSetDevice failed: %d\n", ret);
    ret = aclrtCreateStream(&stream);
    CHECK_RET(ret == ACL_SUCCESS, "aclrtCreateStream failed: %d\n", ret);

    // 2. Host inputs (fp16): random q, k, v, dO; a causal NSA-like selection per token: block 0,
    //    its own (local) block, then earlier blocks, -1 for unused slots.
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto random_fp16 = [&](std::int64_t n) {
        std::vector<aclFloat16> x(static_cast<std::size_t>(n));
        for (auto& e : x) e = aclFloatToFloat16(normal(rng));
        return x;
    };
    const std::vector<std::int64_t> q_shape{T, N1, Dk}, k_shape{T, N2, Dk}, v_shape{T, N2, Dv}, o_shape{T, N1, Dv},
        topk_shape{T, N2, C}, stat_shape{T, N1, 8};
    std::vector<aclFloat16> q = random_fp16(element_count(q_shape)), k = random_fp16(element_count(k_shape)),
                            v = random_fp16(element_count(v_shape)), dout = random_fp16(element_count(o_shape));
    std::vector<std::int32_t> topk(static_cast<std::size_t>(element_count(topk_shape)), -1);
    for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t n = 0; n < N2; ++n) {
            std::int32_t* slots = &topk[static_cast<std::size_t>((t * N2 + n) * C)];
            const auto local = static_cast<std::int32_t>(t / bs);
            std::int64_t used = 0;
            for (std::int32_t b = local; b >= 0 && used < C; --b)  // local block and the ones before it
                if (b == 0 || b == local || used < C - 1) slots[used++] = b;
        }

    // 3. Device tensors.
    void *q_dev = nullptr, *k_dev = nullptr, *v_dev = nullptr, *o_dev = nullptr, *do_dev = nullptr,
         *max_dev = nullptr, *sum_dev = nullptr, *topk_dev = nullptr, *dq_dev = nullptr, *dk_dev = nullptr,
         *dv_dev = nullptr;
    aclTensor *q_t = nullptr, *k_t = nullptr, *v_t = nullptr, *o_t = nullptr, *do_t = nullptr, *max_t = nullptr,
              *sum_t = nullptr, *topk_t = nullptr, *dq_t = nullptr, *dk_t = nullptr, *dv_t = nullptr;
    const std::vector<aclFloat16>* none16 = nullptr;
    const std::vector<float>* none32 = nullptr;
    if (create_acl_tensor(&q, q_shape, ACL_FLOAT16, &q_dev, &q_t) || create_acl_tensor(&k, k_shape, ACL_FLOAT16, &k_dev, &k_t) ||
        create_acl_tensor(&v, v_shape, ACL_FLOAT16, &v_dev, &v_t) ||
        create_acl_tensor(&dout, o_shape, ACL_FLOAT16, &do_dev, &do_t) ||
        create_acl_tensor(&topk, topk_shape, ACL_INT32, &topk_dev, &topk_t) ||
        create_acl_tensor(none16, o_shape, ACL_FLOAT16, &o_dev, &o_t) ||
        create_acl_tensor(none32, stat_shape, ACL_FLOAT, &max_dev, &max_t) ||
        create_acl_tensor(none32, stat_shape, ACL_FLOAT, &sum_dev, &sum_t) ||
        create_acl_tensor(none16, q_shape, ACL_FLOAT16, &dq_dev, &dq_t) ||
        create_acl_tensor(none16, k_shape, ACL_FLOAT16, &dk_dev, &dk_t) ||
        create_acl_tensor(none16, v_shape, ACL_FLOAT16, &dv_dev, &dv_t))
        return 1;

    // 4. Forward, for attentionOut / softmaxMax / softmaxSum: phase one sizes the workspace,
    //    phase two launches on the stream.
    uint64_t workspace_size = 0;
    aclOpExecutor* executor = nullptr;
    aclnnStatus st = aclnnNsaSelectedAttentionGetWorkspaceSize(q_t, k_t, v_t, topk_t, nullptr, nullptr, nullptr,
                                                               scale, N1, layout, sparse_mode, bs, C, max_t, sum_t,
                                                               o_t, &workspace_size, &executor);
    CHECK_RET(st == ACLNN_SUCCESS, "aclnnNsaSelectedAttentionGetWorkspaceSize failed: %d\n", st);
    void* workspace = nullptr;
    if (workspace_size > 0) {
        ret = aclrtMalloc(&workspace, workspace_size, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, "aclrtMalloc (workspace) failed: %d\n", ret);
    }
    st = aclnnNsaSelectedAttention(workspace, workspace_size, executor, stream);
    CHECK_RET(st == ACLNN_SUCCESS, "aclnnNsaSelectedAttention failed: %d\n", st);
    if (workspace != nullptr) aclrtFree(workspace);

    // 5. Backward.
    st = aclnnNsaSelectedAttentionGradGetWorkspaceSize(q_t, k_t, v_t, o_t, do_t, max_t, sum_t, topk_t, nullptr,
                                                       nullptr, nullptr, scale, bs, C, N1, layout, sparse_mode, dq_t,
                                                       dk_t, dv_t, &workspace_size, &executor);
    CHECK_RET(st == ACLNN_SUCCESS, "aclnnNsaSelectedAttentionGradGetWorkspaceSize failed: %d\n", st);
    workspace = nullptr;
    if (workspace_size > 0) {
        ret = aclrtMalloc(&workspace, workspace_size, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, "aclrtMalloc (workspace) failed: %d\n", ret);
    }
    st = aclnnNsaSelectedAttentionGrad(workspace, workspace_size, executor, stream);
    CHECK_RET(st == ACLNN_SUCCESS, "aclnnNsaSelectedAttentionGrad failed: %d\n", st);
    ret = aclrtSynchronizeStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, "aclrtSynchronizeStream failed: %d\n", ret);

    // 6. Results back to the host.
    int bad = 0;
    struct Grad {
        const char* name;
        void* dev;
        std::int64_t count;
    } grads[] = {{"dq", dq_dev, element_count(q_shape)}, {"dk", dk_dev, element_count(k_shape)},
                 {"dv", dv_dev, element_count(v_shape)}};
    for (const Grad& g : grads) {
        std::vector<aclFloat16> host(static_cast<std::size_t>(g.count));
        const std::size_t bytes = host.size() * sizeof(aclFloat16);
        ret = aclrtMemcpy(host.data(), bytes, g.dev, bytes, ACL_MEMCPY_DEVICE_TO_HOST);
        CHECK_RET(ret == ACL_SUCCESS, "aclrtMemcpy (device to host) failed: %d\n", ret);
        double norm = 0;
        for (aclFloat16 h : host) {
            const double x = aclFloat16ToFloat(h);
            norm += x * x;
        }
        std::printf("%s: %lld elements, L2 norm %.6f\n", g.name, static_cast<long long>(g.count), std::sqrt(norm));
        if (!std::isfinite(norm) || norm == 0) bad = 1;
    }

    // 7. Clean up: tensors, device memory, stream, device, runtime.
    for (aclTensor* t : {q_t, k_t, v_t, o_t, do_t, max_t, sum_t, topk_t, dq_t, dk_t, dv_t}) aclDestroyTensor(t);
    for (void* p : {q_dev, k_dev, v_dev, o_dev, do_dev, max_dev, sum_dev, topk_dev, dq_dev, dk_dev, dv_dev}) aclrtFree(p);
    if (workspace != nullptr) aclrtFree(workspace);
    aclrtDestroyStream(stream);
    aclrtResetDevice(device_id);
    aclFinalize();
    std::printf(bad ? "FAILED: a gradient is zero or not finite\n" : "OK\n");
    return bad;
}
