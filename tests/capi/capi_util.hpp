// C API test helpers: the native test problems (tests/support.hpp) mirrored into aclTensors, so the
// same data runs through opennsa::forward/backward and through aclnnNsaSelectedAttention[Grad].
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_nsa_selected_attention.h"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"
#include "ops/select_attention/cases.hpp"

namespace capi_test {

using nsa_test::HostTensor;
using nsa_test::Tensors;
using opennsa::DType;

inline aclDataType acl_dtype(DType t) {
    switch (t) {
        case DType::f16: return ACL_FLOAT16;
        case DType::bf16: return ACL_BF16;
        case DType::f32: return ACL_FLOAT;
        case DType::i32: return ACL_INT32;
        case DType::u8: return ACL_UINT8;
        case DType::boolean: return ACL_BOOL;
        default: return ACL_DT_UNDEFINED;
    }
}

// The last error message contains `what` (a parameter name or a phrase).
inline ::testing::AssertionResult message_names(const char* what) {
    const std::string msg = aclGetRecentErrMsg();
    if (msg.find(what) != std::string::npos && msg.find('\n') == std::string::npos)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "aclGetRecentErrMsg() = \"" << msg << "\" does not name " << what;
}

// A copy of a host tensor's buffer behind `pad` leading elements, viewed through an aclTensor with
// offset = pad and the host view's strides: results must not depend on where the view starts.
class AclMirror {
public:
    // H: any host tensor with `bytes` and a `view` over them (HostTensor, the decoding tests' HostNd).
    template <class H>
    AclMirror(const H& h, std::int64_t pad) : pad_(pad), elt_(opennsa::dtype_size(h.view.dtype)) {
        buf_.assign(static_cast<std::size_t>(pad) * elt_, 0xEE);
        buf_.insert(buf_.end(), h.bytes.begin(), h.bytes.end());
        const opennsa::TensorView& v = h.view;
        const std::int64_t storage[1] = {static_cast<std::int64_t>(buf_.size() / elt_)};
        // The view may start inside its buffer (guard bytes before it, negative strides).
        const std::int64_t start = (static_cast<const unsigned char*>(v.data) - h.bytes.data()) / static_cast<std::int64_t>(elt_);
        tensor_ = aclCreateTensor(v.shape, static_cast<std::uint64_t>(v.rank), acl_dtype(v.dtype), v.strides,
                                  pad + start, ACL_FORMAT_ND, storage, 1, buf_.data());
    }
    AclMirror(const AclMirror&) = delete;
    AclMirror& operator=(const AclMirror&) = delete;
    ~AclMirror() { aclDestroyTensor(tensor_); }

    aclTensor* get() const { return tensor_; }
    void poison() { std::memset(payload(), 0xFF, buf_.size() - lead()); }
    // The payload equals the host tensor's buffer byte for byte, and the lead is untouched.
    template <class H>
    ::testing::AssertionResult same_bits(const H& h, const char* what) const {
        for (std::size_t i = 0; i < lead(); ++i)
            if (buf_[i] != 0xEE) return ::testing::AssertionFailure() << what << ": byte before the view written";
        if (std::memcmp(buf_.data() + lead(), h.bytes.data(), h.bytes.size()) != 0)
            return ::testing::AssertionFailure() << what << ": bits differ from the native API's";
        return ::testing::AssertionSuccess();
    }
    ::testing::AssertionResult untouched(const char* what) const {
        for (std::size_t i = lead(); i < buf_.size(); ++i)
            if (buf_[i] != 0xFF) return ::testing::AssertionFailure() << what << ": byte " << i << " was written";
        return ::testing::AssertionSuccess();
    }
    unsigned char* payload() { return buf_.data() + lead(); }

private:
    std::size_t lead() const { return static_cast<std::size_t>(pad_) * elt_; }
    std::vector<unsigned char> buf_;
    std::int64_t pad_;
    std::size_t elt_;
    aclTensor* tensor_ = nullptr;
};

// All tensors of a problem as aclTensors (with distinct view offsets), plus its parameters.
struct AclProblem {
    Tensors& t;
    AclMirror q, k, v, topk, out, smax, ssum, dO, dq, dk, dv;
    aclIntArray* cq = nullptr;
    aclIntArray* ckv = nullptr;
    char layout[4] = "TND";

    explicit AclProblem(Tensors& host)
        : t(host), q(host.q, 1), k(host.k, 2), v(host.v, 3), topk(host.topk, 4), out(host.out, 5), smax(host.smax, 6),
          ssum(host.ssum, 7), dO(host.dO, 8), dq(host.dq, 9), dk(host.dk, 10), dv(host.dv, 11) {
        if (host.params.cu_seqlens_q) {
            cq = aclCreateIntArray(host.params.cu_seqlens_q->data(), host.params.cu_seqlens_q->size());
            ckv = aclCreateIntArray(host.params.cu_seqlens_kv->data(), host.params.cu_seqlens_kv->size());
        }
    }
    ~AclProblem() {
        aclDestroyIntArray(cq);
        aclDestroyIntArray(ckv);
    }

    aclnnStatus forward_workspace(std::uint64_t* ws, aclOpExecutor** ex) {
        const opennsa::Params& p = t.params;
        return aclnnNsaSelectedAttentionGetWorkspaceSize(q.get(), k.get(), v.get(), topk.get(), nullptr, cq, ckv,
                                                         p.scale, p.head_num, layout, p.sparse_mode, p.block_size,
                                                         p.block_count, smax.get(), ssum.get(), out.get(), ws, ex);
    }
    aclnnStatus backward_workspace(std::uint64_t* ws, aclOpExecutor** ex) {
        const opennsa::Params& p = t.params;
        return aclnnNsaSelectedAttentionGradGetWorkspaceSize(
            q.get(), k.get(), v.get(), out.get(), dO.get(), smax.get(), ssum.get(), topk.get(), cq, ckv, nullptr,
            p.scale, p.block_size, p.block_count, p.head_num, layout, p.sparse_mode, dq.get(), dk.get(), dv.get(), ws,
            ex);
    }
};

// Both phases with a workspace from aclrtMalloc, on `stream`.
template <class Prepare, class Launch>
aclnnStatus two_phase(Prepare&& prepare, Launch&& launch, aclrtStream stream = nullptr) {
    std::uint64_t ws_size = 0;
    aclOpExecutor* ex = nullptr;
    if (aclnnStatus s = prepare(&ws_size, &ex)) return s;
    void* ws = nullptr;
    if (ws_size > 0 && aclrtMalloc(&ws, ws_size, ACL_MEM_MALLOC_HUGE_FIRST) != ACL_SUCCESS) return ACLNN_ERR_INNER;
    const aclnnStatus s = launch(ws, ws_size, ex, stream);
    if (ws) aclrtFree(ws);
    return s;
}

inline aclnnStatus run_forward(AclProblem& a, aclrtStream stream = nullptr) {
    return two_phase([&](std::uint64_t* w, aclOpExecutor** e) { return a.forward_workspace(w, e); },
                     aclnnNsaSelectedAttention, stream);
}

inline aclnnStatus run_backward(AclProblem& a, aclrtStream stream = nullptr) {
    return two_phase([&](std::uint64_t* w, aclOpExecutor** e) { return a.backward_workspace(w, e); },
                     aclnnNsaSelectedAttentionGrad, stream);
}

}  // namespace capi_test
