// Every rule of docs/spec/decoding.md sections 3.4 and 3.5: the right error code, a one-line
// message naming the parameter (CANN's names), and the output untouched (it stays poisoned). The
// metadata rules fail the workspace query too; the content rules (top-k indices, block-table
// entries) pass it and fail the call, before anything is written.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "ops/select_attention_infer/cases.hpp"

using namespace nsa_test;
using opennsa::DType;
using opennsa::ErrorCode;

namespace {

using Args = opennsa::SelectAttentionInferArgs;
using Params = opennsa::SelectAttentionInferParams;

struct Rule {
    const char* name;
    ErrorCode code;
    const char* message_part;
    std::function<void(SelInferTensors&, Args&, Params&)> mutate;
    bool content = false;  // found at the launch: the workspace query succeeds
};

SelInferCase small(const char* layout = "BSND") {
    SelInferCase c;
    c.dtype = DType::bf16;
    c.layout = layout;
    c.N1 = 4;
    c.N2 = 2;
    c.Dk = 8;
    c.Dv = 6;
    c.sel = 4;
    c.k = 3;
    c.P = 8;
    c.kv_lens = {20, 9};
    c.q_lens = {2, 1};
    c.spare_pages = 1;
    c.seed = case_seed(5);
    return c;
}

void expect_rejected(const Rule& r, const char* layout = "BSND") {
    for (bool sizing : {false, true}) {
        SCOPED_TRACE(std::string(r.name) + " (" + layout + (sizing ? ", workspace query)" : ")"));
        SelInferTensors t(small(layout));
        Args a = t.args();
        Params p = t.params;
        r.mutate(t, a, p);
        t.out.poison();
        try {
            if (sizing)
                (void)opennsa::select_attention_infer_workspace_bytes(a, p);
            else
                opennsa::select_attention_infer(a, p);
            if (!(sizing && r.content)) ADD_FAILURE() << "no error raised";
        } catch (const opennsa::Error& e) {
            if (sizing && r.content) ADD_FAILURE() << "the workspace query reads contents: " << e.what();
            EXPECT_EQ(e.code(), r.code) << e.what();
            EXPECT_NE(std::string(e.what()).find(r.message_part), std::string::npos)
                << "message '" << e.what() << "' does not mention '" << r.message_part << "'";
            EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message is not one line";
        }
        EXPECT_TRUE(std::all_of(t.out.bytes.begin(), t.out.bytes.end(), [](unsigned char b) { return b == 0xFF; }))
            << "the output was written before the error";
    }
}

#define TENSOR(field, ...) [](SelInferTensors&, Args& a, Params&) { auto f = [](opennsa::TensorView& x) { __VA_ARGS__; }; f(a.field); }
#define PARAMS(...) [](SelInferTensors&, Args&, Params& p) { __VA_ARGS__; }
#define WITH(...) [](SelInferTensors& t, Args& a, Params& p) { (void)t; (void)a; (void)p; __VA_ARGS__; }

constexpr ErrorCode kNull = ErrorCode::null_pointer;
constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;

}  // namespace

TEST(SelectAttentionInferValidation, RequiredArguments) {
    expect_rejected({"query absent", kNull, "query", TENSOR(query, x = {})});
    expect_rejected({"key null data", kNull, "key", TENSOR(key, x.data = nullptr)});
    expect_rejected({"value absent", kNull, "value", TENSOR(value, x = {})});
    expect_rejected({"topk absent", kNull, "topkIndices", TENSOR(topk, x = {})});
    expect_rejected({"block table absent", kNull, "blockTableOptional", TENSOR(block_table, x = {})});
    expect_rejected({"output absent", kNull, "output", TENSOR(out, x = {})});
    expect_rejected({"kv lengths absent", kNull, "actualKvSeqLenOptional", PARAMS(p.actual_kv_seq_len.reset())});
}

TEST(SelectAttentionInferValidation, DtypesAndLayout) {
    expect_rejected({"layout", kInvalid, "layoutOptional = \"BNSD\"", PARAMS(p.layout = "BNSD")});
    expect_rejected({"query int", kInvalid, "query: dtype", TENSOR(query, x.dtype = DType::i32)});
    expect_rejected({"key dtype", kInvalid, "key: dtype", TENSOR(key, x.dtype = DType::f16)});
    expect_rejected({"value dtype", kInvalid, "value: dtype", TENSOR(value, x.dtype = DType::f16)});
    expect_rejected({"output dtype", kInvalid, "output: dtype", TENSOR(out, x.dtype = DType::f16)});
    expect_rejected({"topk dtype", kInvalid, "topkIndices: dtype", TENSOR(topk, x.dtype = DType::f32)});
    expect_rejected({"table dtype", kInvalid, "blockTableOptional: dtype", TENSOR(block_table, x.dtype = DType::u8; x.strides[0] *= 4; x.strides[1] *= 4)});
    expect_rejected({"table rank", kInvalid, "blockTableOptional: rank", TENSOR(block_table, x.rank = 1)});
    expect_rejected({"misaligned query", kInvalid, "query: data pointer",
                     TENSOR(query, x.data = static_cast<char*>(x.data) + 1)});
    expect_rejected({"overlapping output", kInvalid, "output: strides overlap", TENSOR(out, x.strides[1] = 0)});
}

TEST(SelectAttentionInferValidation, Attributes) {
    expect_rejected({"scale NaN", kInvalid, "scaleValue", PARAMS(p.scale = std::numeric_limits<double>::quiet_NaN())});
    expect_rejected({"scale beyond fp32", kInvalid, "scaleValue", PARAMS(p.scale = 1e39)});
    expect_rejected({"numHeads 0", kInvalid, "numHeads = 0", PARAMS(p.head_num = 0)});
    expect_rejected({"numKeyValueHeads 0", kInvalid, "numKeyValueHeads = 0", PARAMS(p.key_value_head_num = 0)});
    expect_rejected({"N1 % N2", kInvalid, "multiple of numKeyValueHeads", PARAMS(p.key_value_head_num = 3)});
    expect_rejected({"numHeads vs query", kInvalid, "query.shape[2]", PARAMS(p.head_num = 2; p.key_value_head_num = 1)});
    expect_rejected({"selectBlockSize 0", kInvalid, "selectBlockSize = 0", PARAMS(p.select_block_size = 0)});
    expect_rejected({"selectBlockCount 0", kInvalid, "selectBlockCount = 0", PARAMS(p.select_block_count = 0)});
    expect_rejected({"selectBlockCount vs topk", kInvalid, "topkIndices.shape[3]", PARAMS(p.select_block_count = 2)});
    expect_rejected({"pageBlockSize 0", kInvalid, "pageBlockSize = 0", PARAMS(p.page_block_size = 0)});
    expect_rejected({"pageBlockSize vs cache", kInvalid, "key.shape[1]", PARAMS(p.page_block_size = 4)});
}

TEST(SelectAttentionInferValidation, Shapes) {
    expect_rejected({"query rank for BSND", kInvalid, "query: rank", TENSOR(query, x.rank = 3)});
    expect_rejected({"query batch", kInvalid, "query.shape[0]", TENSOR(query, x.shape[0] = 3)});
    expect_rejected({"key width", kInvalid, "key.shape[2]", TENSOR(key, x.shape[2] = 15)});
    expect_rejected({"key rank", kInvalid, "key: rank", TENSOR(key, x.rank = 2)});
    expect_rejected({"value wider than key", kInvalid, "value.shape[2]", WITH(
        t.v = HostNd::make(DType::bf16, {t.k.view.shape[0], 8, 2 * 9}, 0); a.value = t.v.view)});
    expect_rejected({"value pages", kInvalid, "value.shape[0]", TENSOR(value, x.shape[0] -= 1)});
    expect_rejected({"output head dim", kInvalid, "output: head dim", TENSOR(out, x.shape[3] = 5)});
    expect_rejected({"output tokens", kInvalid, "output.shape[1]", TENSOR(out, x.shape[1] = 1)});
    expect_rejected({"topk heads", kInvalid, "topkIndices.shape[2]", TENSOR(topk, x.shape[2] = 1)});
    expect_rejected({"topk rank 3 with 2 tokens", kInvalid, "needs query.shape[1] = 1",
                     TENSOR(topk, x.rank = 3; x.shape[1] = 2; x.shape[2] = 3; x.strides[1] = x.strides[2]; x.strides[2] = x.strides[3])});
    expect_rejected({"BSH head split", kInvalid, "query.shape[2]", WITH(
        p.layout = "BSH"; t.q = HostNd::make(DType::bf16, {2, 2, 4 * 8 + 1}, 0); a.query = t.q.view)});
    expect_rejected({"TND tokens", kInvalid, "query.shape[0] = 4 must equal the sum", WITH(
        p.layout = "TND"; t.q = HostNd::make(DType::bf16, {4, 4, 8}, 0); a.query = t.q.view;
        t.out = HostNd::make(DType::bf16, {4, 4, 6}, 0); a.out = t.out.view)});
    expect_rejected({"huge selection", kInvalid, "more than 16777216 keys", WITH(
        p.select_block_count = std::int64_t{1} << 23; a.topk.shape[3] = p.select_block_count; a.topk.strides[3] = 0)});
}

TEST(SelectAttentionInferValidation, Lengths) {
    expect_rejected({"kv count", kInvalid, "actualKvSeqLenOptional: 3 entries", PARAMS(p.actual_kv_seq_len->push_back(5))});
    expect_rejected({"q count", kInvalid, "actualQSeqLenOptional: 1 entries", PARAMS(p.actual_q_seq_len->pop_back())});
    expect_rejected({"no query token", kInvalid, "actualQSeqLenOptional[1] = 0", PARAMS((*p.actual_q_seq_len)[1] = 0)});
    expect_rejected({"kv shorter than q", kInvalid, "actualKvSeqLenOptional[1] = 1 is less than",
                     PARAMS((*p.actual_q_seq_len)[1] = 2; (*p.actual_kv_seq_len)[1] = 1)});
    expect_rejected({"more tokens than rows", kInvalid, "more than query.shape[1] = 2", PARAMS((*p.actual_q_seq_len)[1] = 3)});
    expect_rejected({"length beyond the table", kInvalid, "blockTableOptional: batch 1 holds 100 tokens",
                     PARAMS((*p.actual_kv_seq_len)[1] = 100)});
}

TEST(SelectAttentionInferValidation, ContentsAtTheLaunch) {
    // Batch 0: 20 tokens in blocks of 4 -> indices [-1, 5).
    expect_rejected({"topk past the blocks", kInvalid, "topkIndices[0, 1, 0, 2] = 5 is out of range [-1, 5)",
                     WITH(t.set_slot(0, 1, 0, 2, 5)), true});
    expect_rejected({"topk below -1", kInvalid, "topkIndices[1, 0, 1, 0] = -2 is out of range [-1, 3)",
                     WITH(t.set_slot(1, 0, 1, 0, -2)), true});
    expect_rejected({"table entry past the pages", kInvalid, "blockTableOptional[0, 2] = 99 is not a page of key",
                     WITH(t.table.set({0, 2}, 99)), true});
    expect_rejected({"table entry -1", kInvalid, "blockTableOptional[1, 0] = -1", WITH(t.table.set({1, 0}, -1)), true});
    // TND names the token row.
    expect_rejected({"topk TND", kInvalid, "topkIndices[2, 1, 0] = 7", WITH(t.set_slot(1, 0, 1, 0, 7)), true}, "TND");
}

TEST(SelectAttentionInferValidation, WhatIsNotRead) {
    // Rows s >= Q_b of topk, table columns past a batch's pages and the attention mask are not read:
    // garbage there is accepted (the case builder puts out-of-range values in all of them).
    SelInferCase c = small();
    c.Q = 4;
    c.spare_cols = 3;
    SelInferTensors t(c);
    HostNd mask = HostNd::make(DType::f32, {1}, 0);  // any tensor: reserved
    auto a = t.args();
    a.atten_mask = mask.view;
    EXPECT_NO_THROW(opennsa::select_attention_infer(a, t.params));
    EXPECT_TRUE(run_and_check(t));
}
