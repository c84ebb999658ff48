// Every rule of docs/spec/compress_attention.md sections 2, 3, 4 and 10: the right error code, a
// one-line message naming the parameter (CANN's names), and no output touched (they stay poisoned).
// The workspace queries validate the same way.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "ops/compress_attention/cases.hpp"

using namespace nsa_test;
using opennsa::DType;
using opennsa::ErrorCode;

namespace {

using FA = opennsa::CompressAttentionArgs;
using BA = opennsa::CompressAttentionGradArgs;
using P = opennsa::CompressAttentionParams;

struct Rule {
    const char* name;
    ErrorCode code;
    const char* message_part;
    std::function<void(CompressTensors&, FA&, BA&, P&)> mutate;
    bool forward = true, backward = true;
};

CompressCase small() {
    CompressCase c;
    c.dtype = DType::bf16;
    c.N1 = 4;
    c.N2 = 2;
    c.Dk = 8;
    c.Dv = 6;
    c.l = 4;
    c.d = 2;
    c.sel = 8;
    c.k = 3;
    c.q_lens = {10, 7};
    c.c_lens = {4, 3};
    c.pad_q = 2;
    c.varlen = true;
    c.atten_mask = true;
    c.forced = 0.2;
    c.seed = case_seed(5);
    return c;
}

bool untouched(const CompressTensors& t, bool forward) {
    auto poisoned = [](const HostTensor& h) {
        for (unsigned char b : h.bytes)
            if (b != 0xFF) return false;
        return true;
    };
    const bool topk_poisoned = std::all_of(t.topk.bytes.begin(), t.topk.bytes.end(),
                                           [](unsigned char b) { return b == CompressTensors::kTopkPoison; });
    return forward ? poisoned(t.out) && topk_poisoned && poisoned(t.smax) && poisoned(t.ssum)
                   : poisoned(t.dq) && poisoned(t.dk) && poisoned(t.dv);
}

void expect_rejected(const Rule& r) {
    for (bool forward : {true, false}) {
        if ((forward && !r.forward) || (!forward && !r.backward)) continue;
        for (bool sizing : {false, true}) {
            SCOPED_TRACE(std::string(r.name) + (forward ? " (forward" : " (backward") + (sizing ? ", workspace query)" : ")"));
            CompressTensors t(small());
            if (!forward) {
                t.set_forward_from_reference();
                t.dq.poison();
                t.dk.poison();
                t.dv.poison();
            }
            FA fa = t.forward_args();
            BA ba = t.backward_args();
            P params = t.params;
            r.mutate(t, fa, ba, params);
            try {
                if (forward && sizing)
                    (void)opennsa::compress_attention_workspace_bytes(fa, params);
                else if (forward)
                    opennsa::compress_attention(fa, params);
                else if (sizing)
                    (void)opennsa::compress_attention_backward_workspace_bytes(ba, params);
                else
                    opennsa::compress_attention_backward(ba, params);
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
}

// Applies f to the same-named tensor in both argument structs.
#define BOTH(field, ...) [](CompressTensors&, FA& fa, BA& ba, P&) { auto f = [](opennsa::TensorView& x) { __VA_ARGS__; }; f(fa.field); f(ba.field); }
#define FWD(field, ...) [](CompressTensors&, FA& fa, BA&, P&) { auto f = [](opennsa::TensorView& x) { __VA_ARGS__; }; f(fa.field); }
#define BWD(field, ...) [](CompressTensors&, FA&, BA& ba, P&) { auto f = [](opennsa::TensorView& x) { __VA_ARGS__; }; f(ba.field); }
#define PARAMS(...) [](CompressTensors&, FA&, BA&, P& p) { __VA_ARGS__; }

constexpr ErrorCode kNull = ErrorCode::null_pointer;
constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;

}  // namespace

TEST(CompressValidation, RequiredTensors) {
    expect_rejected({"query absent", kNull, "query", BOTH(query, x = {})});
    expect_rejected({"key null data", kNull, "key", BOTH(key, x.data = nullptr)});
    expect_rejected({"value absent", kNull, "value", BOTH(value, x = {})});
    expect_rejected({"out absent", kNull, "attentionOutOut", FWD(out, x = {}), true, false});
    expect_rejected({"topk absent", kNull, "topkIndicesOut", FWD(topk, x = {}), true, false});
    expect_rejected({"max null", kNull, "softmaxMaxOut", FWD(softmax_max, x.data = nullptr), true, false});
    expect_rejected({"sum absent", kNull, "softmaxSumOut", FWD(softmax_sum, x = {}), true, false});
    expect_rejected({"out (input) absent", kNull, "attentionOut", BWD(out, x = {}), false, true});
    expect_rejected({"out grad absent", kNull, "attentionOutGrad", BWD(out_grad, x = {}), false, true});
    expect_rejected({"max absent", kNull, "softmaxMax", BWD(softmax_max, x = {}), false, true});
    expect_rejected({"sum null", kNull, "softmaxSum", BWD(softmax_sum, x.data = nullptr), false, true});
    expect_rejected({"dq absent", kNull, "dqOut", BWD(query_grad, x = {}), false, true});
    expect_rejected({"dk null", kNull, "dkOut", BWD(key_grad, x.data = nullptr), false, true});
    expect_rejected({"dv absent", kNull, "dvOut", BWD(value_grad, x = {}), false, true});
}

TEST(CompressValidation, Dtypes) {
    expect_rejected({"query int32", kInvalid, "query: dtype int32", BOTH(query, x.dtype = DType::i32)});
    expect_rejected({"key differs", kInvalid, "key: dtype fp16", BOTH(key, x.dtype = DType::f16)});
    expect_rejected({"value differs", kInvalid, "value: dtype", BOTH(value, x.dtype = DType::f32)});
    expect_rejected({"out differs", kInvalid, "attentionOutOut: dtype", FWD(out, x.dtype = DType::f16), true, false});
    expect_rejected({"topk int64", kInvalid, "topkIndicesOut: dtype int64", FWD(topk, x.dtype = DType::i64), true, false});
    expect_rejected({"max fp16", kInvalid, "softmaxMaxOut: dtype fp16", FWD(softmax_max, x.dtype = DType::f16), true, false});
    expect_rejected({"sum bf16", kInvalid, "softmaxSum: dtype", BWD(softmax_sum, x.dtype = DType::bf16), false, true});
    expect_rejected({"out grad differs", kInvalid, "attentionOutGrad: dtype", BWD(out_grad, x.dtype = DType::f16), false, true});
    expect_rejected({"dk differs", kInvalid, "dkOut: dtype", BWD(key_grad, x.dtype = DType::f16), false, true});
    expect_rejected({"mask fp32", kInvalid, "attenMaskOptional: dtype fp32 must be bool or uint8",
                     BOTH(atten_mask, x.dtype = DType::f32)});
    expect_rejected({"topk mask int32", kInvalid, "topkMaskOptional: dtype int32", FWD(topk_mask, x.dtype = DType::i32), true, false});
}

TEST(CompressValidation, RanksAndShapes) {
    expect_rejected({"query rank 2", kInvalid, "query: rank 2", BOTH(query, x.rank = 2)});
    expect_rejected({"value rank 4", kInvalid, "value: rank 4", BOTH(value, x.rank = 4; x.shape[3] = 1; x.strides[3] = 1)});
    expect_rejected({"mask rank 3", kInvalid, "attenMaskOptional: rank 3", BOTH(atten_mask, x.rank = 3; x.shape[2] = 1; x.strides[2] = 1)});
    expect_rejected({"topk mask rank 1", kInvalid, "topkMaskOptional: rank 1", FWD(topk_mask, x.rank = 1), true, false});
    expect_rejected({"key Dk", kInvalid, "key.shape[2] = 7 must equal 8", BOTH(key, x.shape[2] = 7)});
    expect_rejected({"value T2", kInvalid, "value.shape[0]", BOTH(value, x.shape[0] = 5)});
    expect_rejected({"value N2", kInvalid, "value.shape[1]", BOTH(value, x.shape[1] = 1)});
    expect_rejected({"Dv > Dk", kInvalid, "value.shape[2] = 9 (Dv) must be <= query.shape[2] = 8", [](CompressTensors&, FA& fa, BA& ba, P&) {
                         for (auto* a : {&fa.value, &ba.value}) a->shape[2] = 9;
                         fa.out.shape[2] = ba.out.shape[2] = ba.out_grad.shape[2] = ba.value_grad.shape[2] = 9;
                     }});
    expect_rejected({"N1 % N2", kInvalid, "must be a multiple of key.shape[1] = 3", [](CompressTensors&, FA& fa, BA& ba, P&) {
                         for (auto* a : {&fa.key, &fa.value, &ba.key, &ba.value, &ba.key_grad, &ba.value_grad}) a->shape[1] = 3;
                         fa.topk.shape[1] = 3;
                     }});
    expect_rejected({"out T1", kInvalid, "attentionOutOut.shape[0]", FWD(out, x.shape[0] = 3), true, false});
    expect_rejected({"out Dv", kInvalid, "attentionOutOut.shape[2] = 5 must equal 6", FWD(out, x.shape[2] = 5), true, false});
    expect_rejected({"topk N2", kInvalid, "topkIndicesOut.shape[1] = 1 must equal 2", FWD(topk, x.shape[1] = 1), true, false});
    expect_rejected({"topk k", kInvalid, "topkIndicesOut.shape[2] = 2 must equal 3 (selectBlockCount)", FWD(topk, x.shape[2] = 2), true, false});
    expect_rejected({"stats 8", kInvalid, "softmaxSumOut.shape[2] = 4 must equal 8", FWD(softmax_sum, x.shape[2] = 4), true, false});
    expect_rejected({"stats T1", kInvalid, "softmaxMax.shape[0]", BWD(softmax_max, x.shape[0] = 4), false, true});
    expect_rejected({"out grad Dv", kInvalid, "attentionOutGrad.shape[2]", BWD(out_grad, x.shape[2] = 2), false, true});
    expect_rejected({"dq Dk", kInvalid, "dqOut.shape[2]", BWD(query_grad, x.shape[2] = 2), false, true});
    expect_rejected({"dk T2", kInvalid, "dkOut.shape[0]", BWD(key_grad, x.shape[0] = 2), false, true});
    expect_rejected({"dv N2", kInvalid, "dvOut.shape[1]", BWD(value_grad, x.shape[1] = 1), false, true});
    expect_rejected({"negative dim", kInvalid, "query.shape[0] = -1 is negative", BOTH(query, x.shape[0] = -1)});
}

TEST(CompressValidation, Attributes) {
    expect_rejected({"headNum", kInvalid, "headNum = 3 must equal query.shape[1] = 4", PARAMS(p.head_num = 3)});
    expect_rejected({"scale NaN", kInvalid, "scaleValue", PARAMS(p.scale = std::numeric_limits<double>::quiet_NaN())});
    expect_rejected({"scale too large for fp32", kInvalid, "scaleValue = 1e+39", PARAMS(p.scale = 1e39)});
    expect_rejected({"sparseMode 3", kInvalid, "sparseMode = 3 is not supported", PARAMS(p.sparse_mode = 3)});
    expect_rejected({"sparseMode -1", kInvalid, "sparseMode = -1", PARAMS(p.sparse_mode = -1)});
    expect_rejected({"stride 0", kInvalid, "compressStride = 0 must be >= 1", PARAMS(p.compress_stride = 0)});
    expect_rejected({"l < d", kInvalid, "compressBlockSize = 1 must be >= compressStride = 2", PARAMS(p.compress_block_size = 1)});
    expect_rejected({"l' < l", kInvalid, "selectBlockSize = 2 must be >= compressBlockSize = 4", PARAMS(p.select_block_size = 2)});
    expect_rejected({"l' % d", kInvalid, "selectBlockSize = 9 must be a multiple of compressStride = 2", PARAMS(p.select_block_size = 9)});
    expect_rejected({"k = 0", kInvalid, "selectBlockCount = 0 must be >= 1", PARAMS(p.select_block_count = 0)});
}

TEST(CompressValidation, LengthArrays) {
    expect_rejected({"only q", kInvalid, "actualCmpSeqKvLenOptional is absent", PARAMS(p.cu_seqlens_cmp_kv.reset())});
    expect_rejected({"only kv", kInvalid, "actualSeqQLenOptional is absent", PARAMS(p.cu_seqlens_q.reset())});
    expect_rejected({"empty", kInvalid, "actualSeqQLenOptional: length 0", PARAMS(p.cu_seqlens_q = std::vector<std::int64_t>{})});
    expect_rejected({"lengths differ", kInvalid, "actualCmpSeqKvLenOptional: length 3 must equal actualSeqQLenOptional's length 2",
                     PARAMS(p.cu_seqlens_cmp_kv = std::vector<std::int64_t>{1, 2, 3})});
    expect_rejected({"decreasing", kInvalid, "actualSeqQLenOptional[1] = 5 is less than actualSeqQLenOptional[0] = 10",
                     PARAMS(p.cu_seqlens_q = std::vector<std::int64_t>{10, 5})});
    expect_rejected({"negative", kInvalid, "actualCmpSeqKvLenOptional[0] = -1 is negative",
                     PARAMS(p.cu_seqlens_cmp_kv = std::vector<std::int64_t>{-1, 7})});
    expect_rejected({"past T1", kInvalid, "actualSeqQLenOptional[1] = 20 exceeds T1", PARAMS(p.cu_seqlens_q = std::vector<std::int64_t>{10, 20})});
    expect_rejected({"past T2", kInvalid, "actualCmpSeqKvLenOptional[1] = 8 exceeds T2", PARAMS(p.cu_seqlens_cmp_kv = std::vector<std::int64_t>{4, 8})});
}

TEST(CompressValidation, MaskCoverage) {
    // maxS1 = 10, maxC = 4, maxNS = 1 (m = 4).
    expect_rejected({"mask rows", kInvalid, "attenMaskOptional: shape [9, ", BOTH(atten_mask, x.shape[0] = 9)});
    expect_rejected({"mask cols", kInvalid, "does not cover [maxS1, maxC] = [10, 4]", BOTH(atten_mask, x.shape[1] = 3)});
    expect_rejected({"topk mask rows", kInvalid, "topkMaskOptional: shape [9, ", FWD(topk_mask, x.shape[0] = 9), true, false});
    expect_rejected({"topk mask cols", kInvalid, "does not cover [maxS1, maxNS] = [10, 1]", FWD(topk_mask, x.shape[1] = 0), true, false});
    // sparseMode 2 reads no attenMask: a small one is accepted.
    CompressCase c = small();
    c.sparse_mode = 2;
    CompressTensors t(c);
    FA fa = t.forward_args();
    fa.atten_mask.shape[0] = 1;
    fa.atten_mask.shape[1] = 1;
    EXPECT_NO_THROW(opennsa::compress_attention(fa, t.params));
}

TEST(CompressValidation, AlignmentOverlapAndAddressing) {
    expect_rejected({"misaligned query", kInvalid, "query: data pointer",
                     BOTH(query, x.data = static_cast<char*>(x.data) + 1)});
    expect_rejected({"out overlaps itself", kInvalid, "attentionOutOut: strides overlap", FWD(out, x.strides[0] = 1), true, false});
    expect_rejected({"dk overlaps itself", kInvalid, "dkOut: strides overlap", BWD(key_grad, x.strides[1] = 0), false, true});
    expect_rejected({"key addressing overflows", kInvalid, "key: shape", BOTH(key, x.strides[0] = std::int64_t{1} << 62)});
    expect_rejected({"mask addressing overflows", kInvalid, "attenMaskOptional: shape", BOTH(atten_mask, x.strides[0] = std::int64_t{1} << 62)});
}

TEST(CompressValidation, SelectionBlockCountsAreNeverRead) {
    CompressTensors t(small());
    P p = t.params;
    p.cu_seqlens_sel_kv = std::vector<std::int64_t>{-5, -9, 1};  // any values, any length
    EXPECT_NO_THROW(opennsa::compress_attention(t.forward_args(), p));
    EXPECT_TRUE(t.topk_fully_written());
}

TEST(CompressValidation, BlockIndicesMustFitInt32) {
    // 2^31 + 5 compressed tokens (a stride-0 view, no memory) in blocks of 1: their indices do not
    // fit topkIndicesOut's int32.
    CompressTensors t(small());
    FA fa = t.forward_args();
    P params = t.params;
    const std::int64_t C = (std::int64_t{1} << 31) + 5;
    fa.key = TensorView::strided(t.k.bytes.data(), DType::bf16, {C, 2, 8}, {0, 0, 1});
    fa.value = TensorView::strided(t.v.bytes.data(), DType::bf16, {C, 2, 6}, {0, 0, 1});
    fa.atten_mask = {};
    fa.topk_mask = {};
    params.compress_block_size = params.compress_stride = params.select_block_size = 1;
    params.cu_seqlens_q = std::vector<std::int64_t>{10, 17};
    params.cu_seqlens_cmp_kv = std::vector<std::int64_t>{4, C};
    try {
        opennsa::compress_attention(fa, params);
        ADD_FAILURE() << "no error raised";
    } catch (const opennsa::Error& e) {
        EXPECT_EQ(e.code(), kInvalid);
        EXPECT_NE(std::string(e.what()).find("topkIndicesOut (int32)"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(untouched(t, true));
}
