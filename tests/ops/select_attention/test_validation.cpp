// Every rule of SPEC.md: the right error code, a one-line message naming the parameter, and no
// output touched (they stay poisoned).
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "ops/select_attention/cases.hpp"

using namespace nsa_test;
using opennsa::DType;
using opennsa::ErrorCode;

namespace {

struct Rule {
    const char* name;
    ErrorCode code;
    const char* message_part;
    std::function<void(Tensors&, opennsa::ForwardArgs&, opennsa::BackwardArgs&, opennsa::Params&)> mutate;
    bool forward = true, backward = true;
};

Case small() {
    Case c;
    c.dtype = DType::bf16;
    c.N1 = 4;
    c.N2 = 2;
    c.Dk = 8;
    c.Dv = 6;
    c.bs = 4;
    c.C = 3;
    c.q_lens = {10, 7};
    c.kv_lens = {12, 9};
    c.pad_q = 2;
    c.varlen = true;
    c.seed = case_seed(5);
    return c;
}

bool untouched(const Tensors& t, bool forward) {
    auto poisoned = [](const HostTensor& h) {
        for (unsigned char b : h.bytes)
            if (b != 0xFF) return false;
        return true;
    };
    return forward ? poisoned(t.out) && poisoned(t.smax) && poisoned(t.ssum)
                   : poisoned(t.dq) && poisoned(t.dk) && poisoned(t.dv);
}

void expect_rejected(const Rule& r) {
    for (bool forward : {true, false}) {
        if ((forward && !r.forward) || (!forward && !r.backward)) continue;
        SCOPED_TRACE(std::string(r.name) + (forward ? " (forward)" : " (backward)"));
        Tensors t(small());
        if (!forward) {
            t.set_forward_from_reference();
            t.dq.poison();
            t.dk.poison();
            t.dv.poison();
        }
        auto fa = t.forward_args();
        auto ba = t.backward_args();
        auto params = t.params;
        r.mutate(t, fa, ba, params);
        try {
            if (forward)
                opennsa::forward(fa, params);
            else
                opennsa::backward(ba, params);
            ADD_FAILURE() << "no error raised";
        } catch (const opennsa::Error& e) {
            EXPECT_EQ(e.code(), r.code) << e.what();
            EXPECT_NE(std::string(e.what()).find(r.message_part), std::string::npos)
                << "message '" << e.what() << "' does not mention '" << r.message_part << "'";
            EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message is not one line";
        }
        EXPECT_TRUE(untouched(t, forward)) << "an output was written before the error";
    }
}

using FA = opennsa::ForwardArgs;
using BA = opennsa::BackwardArgs;
using P = opennsa::Params;

// Applies f to the same-named tensor in both argument structs.
#define BOTH(field, ...) [](Tensors&, FA& fa, BA& ba, P&) { auto f = [](opennsa::TensorView& x) { __VA_ARGS__; }; f(fa.field); f(ba.field); }
#define PARAMS(...) [](Tensors&, FA&, BA&, P& p) { __VA_ARGS__; }

}  // namespace

TEST(Validation, RequiredTensors) {
    expect_rejected({"query absent", ErrorCode::null_pointer, "query", BOTH(query, x = {})});
    expect_rejected({"key null data", ErrorCode::null_pointer, "key", BOTH(key, x.data = nullptr)});
    expect_rejected({"value absent", ErrorCode::null_pointer, "value", BOTH(value, x = {})});
    expect_rejected({"topk absent", ErrorCode::null_pointer, "topkIndices", BOTH(topk, x = {})});
    expect_rejected({"out absent", ErrorCode::null_pointer, "attentionOut", BOTH(out, x = {})});
    expect_rejected({"softmax max absent", ErrorCode::null_pointer, "softmaxMax", BOTH(softmax_max, x.data = nullptr)});
    expect_rejected({"softmax sum absent", ErrorCode::null_pointer, "softmaxSum", BOTH(softmax_sum, x = {})});
    expect_rejected({"out grad absent", ErrorCode::null_pointer, "attentionOutGrad",
                     [](Tensors&, FA&, BA& b, P&) { b.out_grad = {}; }, false});
    expect_rejected({"dq absent", ErrorCode::null_pointer, "dqOut", [](Tensors&, FA&, BA& b, P&) { b.query_grad = {}; }, false});
    expect_rejected({"dk null", ErrorCode::null_pointer, "dkOut",
                     [](Tensors&, FA&, BA& b, P&) { b.key_grad.data = nullptr; }, false});
    expect_rejected({"dv absent", ErrorCode::null_pointer, "dvOut", [](Tensors&, FA&, BA& b, P&) { b.value_grad = {}; }, false});
}

TEST(Validation, Dtypes) {
    expect_rejected({"query int32", ErrorCode::invalid_argument, "query: dtype int32", BOTH(query, x.dtype = DType::i32)});
    expect_rejected({"key differs", ErrorCode::invalid_argument, "key: dtype fp16", BOTH(key, x.dtype = DType::f16)});
    expect_rejected({"value differs", ErrorCode::invalid_argument, "value: dtype", BOTH(value, x.dtype = DType::f16)});
    expect_rejected({"topk int64", ErrorCode::invalid_argument, "topkIndices: dtype int64", BOTH(topk, x.dtype = DType::i64)});
    expect_rejected({"stats fp16", ErrorCode::invalid_argument, "softmaxMax", BOTH(softmax_max, x.dtype = DType::f16)});
    expect_rejected({"out differs", ErrorCode::invalid_argument, "attentionOut: dtype", BOTH(out, x.dtype = DType::f16)});
    expect_rejected({"dk differs", ErrorCode::invalid_argument, "dkOut: dtype",
                     [](Tensors&, FA&, BA& b, P&) { b.key_grad.dtype = DType::f16; }, false});
}

TEST(Validation, RanksAndShapes) {
    expect_rejected({"query rank 2", ErrorCode::invalid_argument, "query: rank 2", BOTH(query, x.rank = 2)});
    expect_rejected({"negative dim", ErrorCode::invalid_argument, "key.shape[0] = -1", BOTH(key, x.shape[0] = -1)});
    expect_rejected({"Dk mismatch", ErrorCode::invalid_argument, "key.shape[2]", BOTH(key, x.shape[2] = 7)});
    expect_rejected({"T2 mismatch", ErrorCode::invalid_argument, "value.shape[0]", BOTH(value, x.shape[0] = 20)});
    expect_rejected({"N2 mismatch", ErrorCode::invalid_argument, "value.shape[1]", BOTH(value, x.shape[1] = 1)});
    expect_rejected({"topk T1", ErrorCode::invalid_argument, "topkIndices.shape[0]", BOTH(topk, x.shape[0] = 18)});
    expect_rejected({"topk N2", ErrorCode::invalid_argument, "topkIndices.shape[1]", BOTH(topk, x.shape[1] = 1)});
    expect_rejected({"topk C", ErrorCode::invalid_argument, "topkIndices.shape[2]", BOTH(topk, x.shape[2] = 2)});
    expect_rejected({"out Dv", ErrorCode::invalid_argument, "attentionOut.shape[2]", BOTH(out, x.shape[2] = 5)});
    expect_rejected({"stats width", ErrorCode::invalid_argument, "softmaxSum", BOTH(softmax_sum, x.shape[2] = 7)});
    expect_rejected({"dq shape", ErrorCode::invalid_argument, "dqOut.shape[1]",
                     [](Tensors&, FA&, BA& b, P&) { b.query_grad.shape[1] = 2; }, false});
    expect_rejected({"dv shape", ErrorCode::invalid_argument, "dvOut.shape[2]",
                     [](Tensors&, FA&, BA& b, P&) { b.value_grad.shape[2] = 8; }, false});
    expect_rejected({"dO shape", ErrorCode::invalid_argument, "attentionOutGrad.shape[0]",
                     [](Tensors&, FA&, BA& b, P&) { b.out_grad.shape[0] = 3; }, false});
    expect_rejected({"zero heads", ErrorCode::invalid_argument, "N2", BOTH(key, x.shape[1] = 0)});
}

TEST(Validation, Parameters) {
    expect_rejected({"headNum", ErrorCode::invalid_argument, "headNum = 8", PARAMS(p.head_num = 8)});
    expect_rejected({"block size", ErrorCode::invalid_argument, "selectedBlockSize = 0", PARAMS(p.block_size = 0)});
    expect_rejected({"block count", ErrorCode::invalid_argument, "selectedBlockCount = -3", PARAMS(p.block_count = -3)});
    expect_rejected({"sparse mode", ErrorCode::invalid_argument, "sparseMode = 1", PARAMS(p.sparse_mode = 1)});
    expect_rejected({"scale", ErrorCode::invalid_argument, "scaleValue",
                     PARAMS(p.scale = std::numeric_limits<double>::quiet_NaN())});
    expect_rejected({"N1 % N2", ErrorCode::invalid_argument, "multiple of key.shape[1] = 3",
                     [](Tensors&, FA& f, BA& b, P&) {
                         for (auto* v : {&f.key, &f.value, &f.topk, &b.key, &b.value, &b.topk, &b.key_grad, &b.value_grad}) v->shape[1] = 3;
                     }});
}

TEST(Validation, SequenceLengths) {
    expect_rejected({"only q", ErrorCode::invalid_argument, "actualSeqKvLenOptional is absent", PARAMS(p.cu_seqlens_kv.reset())});
    expect_rejected({"empty", ErrorCode::invalid_argument, "actualSeqQLenOptional: length 0",
                     PARAMS(p.cu_seqlens_q = std::vector<std::int64_t>{}; p.cu_seqlens_kv = std::vector<std::int64_t>{})});
    expect_rejected({"length differs", ErrorCode::invalid_argument, "actualSeqKvLenOptional: length 3",
                     PARAMS(p.cu_seqlens_kv = std::vector<std::int64_t>{1, 2, 3})});
    expect_rejected({"decreasing", ErrorCode::invalid_argument, "non-decreasing",
                     PARAMS(p.cu_seqlens_q = std::vector<std::int64_t>{10, 4})});
    expect_rejected({"negative", ErrorCode::invalid_argument, "actualSeqKvLenOptional[0] = -1 is negative",
                     PARAMS(p.cu_seqlens_kv = std::vector<std::int64_t>{-1, 4})});
    expect_rejected({"past T1", ErrorCode::invalid_argument, "exceeds T1",
                     PARAMS(p.cu_seqlens_q = std::vector<std::int64_t>{10, 20})});
    expect_rejected({"past T2", ErrorCode::invalid_argument, "exceeds T2",
                     PARAMS(p.cu_seqlens_kv = std::vector<std::int64_t>{12, 22})});
}

TEST(Validation, AttentionMask) {
    expect_rejected({"mask dtype", ErrorCode::invalid_argument, "attenMaskOptional: dtype fp32",
                     [](Tensors& t, FA& f, BA& b, P&) {
                         static HostTensor m = HostTensor::make2d(DType::u8, 4, 4);
                         m.view.dtype = DType::f32;
                         (void)t;
                         f.atten_mask = b.atten_mask = m.view;
                     }});
    expect_rejected({"mask rank", ErrorCode::invalid_argument, "attenMaskOptional: rank 3",
                     [](Tensors& t, FA& f, BA& b, P&) { f.atten_mask = b.atten_mask = t.q.view; f.atten_mask.dtype = b.atten_mask.dtype = DType::boolean; }});
}

TEST(Validation, TopkValues) {
    // Row 3 of batch 0 (S2 = 12, bs = 4: blocks [0, 3)).
    expect_rejected({"too large", ErrorCode::invalid_argument,
                     "topkIndices[3, 1, 2] = 40 is out of range [0, 3) for batch 0 (S2 = 12, block size 4)",
                     [](Tensors& t, FA&, BA&, P&) { t.topk.set(3, 1, 2, 40); }});
    expect_rejected({"below -1", ErrorCode::invalid_argument, "topkIndices[12, 0, 0] = -2 is out of range [0, 3) for batch 1",
                     [](Tensors& t, FA&, BA&, P&) { t.topk.set(12, 0, 0, -2); }});
    expect_rejected({"block of the next batch", ErrorCode::invalid_argument, "= 3 is out of range [0, 3) for batch 1 (S2 = 9",
                     [](Tensors& t, FA&, BA&, P&) { t.topk.set(16, 1, 1, 3); }});
}

TEST(Validation, PaddingRowsOfTopkAreNeverRead) {
    Tensors t(small());  // rows 17 and 18 are padding and hold garbage from the generator
    t.topk.set(17, 0, 0, 1e6);
    t.topk.set(18, 1, 2, -77);
    EXPECT_NO_THROW(opennsa::forward(t.forward_args(), t.params));
    EXPECT_TRUE(t.out.fully_written());
}

TEST(Validation, AddressingOverflowAndOverlappingOutputs) {
    expect_rejected({"huge strides", ErrorCode::invalid_argument, "overflows", BOTH(key, x.strides[0] = std::int64_t{1} << 62)});
    expect_rejected({"min stride", ErrorCode::invalid_argument, "overflows",
                     BOTH(query, x.strides[2] = std::numeric_limits<std::int64_t>::min())});
    expect_rejected({"element count", ErrorCode::invalid_argument, "query: shape [19, 4, 1152921504606846976] with its strides overflows",
                     [](Tensors&, FA& f, BA&, P&) {
                         for (auto* x : {&f.query, &f.key}) {
                             x->shape[2] = std::int64_t{1} << 60;  // broadcast (stride 0) but too many elements
                             x->strides[2] = 0;
                         }
                     }, true, false});
    expect_rejected({"output broadcast", ErrorCode::invalid_argument, "attentionOut: strides overlap",
                     [](Tensors&, FA& f, BA&, P&) { f.out.strides[1] = 0; }, true, false});
    expect_rejected({"dq overlap", ErrorCode::invalid_argument, "dqOut: strides overlap",
                     [](Tensors&, FA&, BA& b, P&) { b.query_grad.strides[0] = 1; }, false});
}

TEST(Validation, WorkspaceQueriesValidateToo) {
    Tensors t(small());
    auto fa = t.forward_args();
    fa.key.shape[2] = 3;
    EXPECT_THROW(opennsa::forward_workspace_bytes(fa, t.params), opennsa::Error);
    auto ba = t.backward_args();
    ba.value_grad = {};
    EXPECT_THROW(opennsa::backward_workspace_bytes(ba, t.params), opennsa::Error);
}
