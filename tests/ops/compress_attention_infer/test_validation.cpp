// Every rule of docs/spec/decoding.md sections 2.2, 2.4 and 2.5: the right error code, a one-line
// message naming the parameter (CANN's names), and no output touched (they stay poisoned). The
// workspace query validates the same way, except the block-table entries: those are the call's
// (the C API's launch's) check.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "ops/compress_attention_infer/cases.hpp"

using namespace nsa_test;
using opennsa::DType;
using opennsa::ErrorCode;

namespace {

using Args = opennsa::CompressAttentionInferArgs;
using P = opennsa::CompressAttentionInferParams;

struct Rule {
    const char* name;
    ErrorCode code;
    const char* message_part;
    std::function<void(CattnInferTensors&, Args&, P&)> mutate;
    bool at_sizing = true;  // the workspace query reports it too
};

CattnInferCase small(bool bsnd = false) {
    CattnInferCase c;
    c.dtype = DType::bf16;
    c.bsnd = bsnd;
    c.N1 = 4;
    c.N2 = 2;
    c.Dk = 16;
    c.Dv = 12;
    c.l = 4;
    c.d = 2;
    c.sel = 8;
    c.k = 3;
    c.P = 4;
    c.c_lens = {9, 5};
    c.q_lens = {2, 1};
    c.raw_lens = {30, 20};
    c.pass_q_lens = true;
    c.mask = true;
    c.seed = case_seed(5);
    return c;
}

bool untouched(const CattnInferTensors& t) {
    return std::all_of(t.out.bytes.begin(), t.out.bytes.end(), [](unsigned char b) { return b == 0xFF; }) &&
           std::all_of(t.topk.bytes.begin(), t.topk.bytes.end(),
                       [](unsigned char b) { return b == CattnInferTensors::kTopkPoison; });
}

void expect_rejected(const Rule& r, bool bsnd = false) {
    for (bool sizing : {false, true}) {
        if (sizing && !r.at_sizing) continue;
        SCOPED_TRACE(std::string(r.name) + (bsnd ? " BSND" : " TND") + (sizing ? " (workspace query)" : ""));
        CattnInferTensors t(small(bsnd));
        Args a = t.args();
        P params = t.params;
        r.mutate(t, a, params);
        try {
            if (sizing)
                (void)opennsa::compress_attention_infer_workspace_bytes(a, params);
            else
                opennsa::compress_attention_infer(a, params);
            ADD_FAILURE() << "no error raised";
        } catch (const opennsa::Error& e) {
            EXPECT_EQ(e.code(), r.code) << e.what();
            EXPECT_NE(std::string(e.what()).find(r.message_part), std::string::npos)
                << "message '" << e.what() << "' does not mention '" << r.message_part << "'";
            EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message is not one line";
        }
        EXPECT_TRUE(untouched(t)) << "an output was written before the error";
    }
}

#define TENSOR(field, ...) [](CattnInferTensors&, Args& a, P&) { auto f = [](opennsa::TensorView& x) { __VA_ARGS__; }; f(a.field); }
#define PARAMS(...) [](CattnInferTensors&, Args&, P& p) { __VA_ARGS__; }

constexpr ErrorCode kNull = ErrorCode::null_pointer;
constexpr ErrorCode kInvalid = ErrorCode::invalid_argument;

}  // namespace

TEST(InferValidation, RequiredArguments) {
    expect_rejected({"query absent", kNull, "query", TENSOR(query, x = {})});
    expect_rejected({"key null data", kNull, "key", TENSOR(key, x.data = nullptr)});
    expect_rejected({"value absent", kNull, "value", TENSOR(value, x = {})});
    expect_rejected({"block table absent", kNull, "blockTableOptional", TENSOR(block_table, x = {})});
    expect_rejected({"output absent", kNull, "output", TENSOR(out, x = {})});
    expect_rejected({"topk null data", kNull, "topKOutput", TENSOR(topk, x.data = nullptr)});
    expect_rejected({"compressed lengths absent", kNull, "actualCmpKvSeqLenOptional is required",
                     PARAMS(p.cmp_kv_seq_lens.reset())});
}

TEST(InferValidation, Dtypes) {
    expect_rejected({"query int32", kInvalid, "query: dtype int32", TENSOR(query, x.dtype = DType::i32)});
    expect_rejected({"key differs", kInvalid, "key: dtype fp16", TENSOR(key, x.dtype = DType::f16)});
    expect_rejected({"value differs", kInvalid, "value: dtype fp32", TENSOR(value, x.dtype = DType::f32)});
    expect_rejected({"output differs", kInvalid, "output: dtype fp16", TENSOR(out, x.dtype = DType::f16)});
    expect_rejected({"table int64", kInvalid, "blockTableOptional: dtype int64", TENSOR(block_table, x.dtype = DType::i64)});
    expect_rejected({"topk int64", kInvalid, "topKOutput: dtype int64", TENSOR(topk, x.dtype = DType::i64)});
    expect_rejected({"mask fp32", kInvalid, "attentionMaskOptional: dtype fp32 must be bool or uint8",
                     TENSOR(atten_mask, x.dtype = DType::f32)});
}

TEST(InferValidation, LayoutAndRanks) {
    expect_rejected({"layout", kInvalid, "layoutOptional = \"BSH\" is not supported", PARAMS(p.layout = "BSH")});
    expect_rejected({"TND query rank 4", kInvalid, "query: rank 4 (shape [3, 4, 16, 1]) must be 3 (layout TND)",
                     TENSOR(query, x.rank = 4; x.shape[3] = 1; x.strides[3] = 1)});
    expect_rejected({"BSND query rank 3", kInvalid, "query: rank 3", TENSOR(query, x.rank = 3)}, true);
    expect_rejected({"BSND output rank 3", kInvalid, "output: rank 3", TENSOR(out, x.rank = 3)}, true);
    expect_rejected({"topk rank 2", kInvalid, "topKOutput: rank 2", TENSOR(topk, x.rank = 2)});
    expect_rejected({"key rank 2", kInvalid, "key: rank 2", TENSOR(key, x.rank = 2)});
    expect_rejected({"table rank 1", kInvalid, "blockTableOptional: rank 1", TENSOR(block_table, x.rank = 1)});
    expect_rejected({"negative dim", kInvalid, "query.shape[0] = -1 is negative", TENSOR(query, x.shape[0] = -1)});
}

TEST(InferValidation, Shapes) {
    expect_rejected({"numHeads", kInvalid, "query.shape[1] = 4 must equal numHeads = 6", PARAMS(p.head_num = 6)});
    expect_rejected({"N1 % N2", kInvalid, "numHeads = 4 must be a multiple of numKeyValueHeads = 3",
                     PARAMS(p.key_value_head_num = 3)});
    expect_rejected({"page size", kInvalid, "key.shape[1] = 4 must equal pageBlockSize = 8", PARAMS(p.page_block_size = 8)});
    expect_rejected({"key width", kInvalid, "key.shape[2] = 31 must equal 2 heads x 16 = 32", TENSOR(key, x.shape[2] = 31)});
    expect_rejected({"value width", kInvalid, "value.shape[2] = 23 must be numKeyValueHeads = 2 x Dv",
                     TENSOR(value, x.shape[2] = 23)});
    expect_rejected({"Dk = 0", kInvalid, "query.shape[2] = 0 (Dk) must be >= 1", TENSOR(query, x.shape[2] = 0)});
    expect_rejected({"rank-4 value Dv = 0", kInvalid, "value.shape[3] = 0 (Dv) must be >= 1",
                     TENSOR(value, x.rank = 4; x.shape[3] = 0; x.shape[2] = 2; x.strides[3] = 1)});
    expect_rejected({"rank-4 key heads", kInvalid, "key.shape[2] = 3 must equal 2 (heads)",
                     TENSOR(key, x.rank = 4; x.shape[2] = 3; x.shape[3] = 16; x.strides[3] = 1)});
    expect_rejected({"Dv > Dk", kInvalid, "value: Dv = 17 must be <= Dk = 16", TENSOR(value, x.shape[2] = 34)});
    expect_rejected({"page counts", kInvalid, "value.shape[0] = 1 must equal key.shape[0]", TENSOR(value, x.shape[0] = 1)});
    expect_rejected({"output Dv", kInvalid, "output.shape[2] = 11 must equal 12 (Dv of value)", TENSOR(out, x.shape[2] = 11)});
    expect_rejected({"output rows", kInvalid, "output.shape[0] = 2 must equal 3", TENSOR(out, x.shape[0] = 2)});
    expect_rejected({"output heads", kInvalid, "output.shape[1] = 2 must equal 4 (numHeads)", TENSOR(out, x.shape[1] = 2)});
    expect_rejected({"topk N2", kInvalid, "topKOutput.shape[1] = 1 must equal 2 (numKeyValueHeads)", TENSOR(topk, x.shape[1] = 1)});
    expect_rejected({"topk k", kInvalid, "topKOutput.shape[2] = 2 must equal 3 (selectBlockCount)", TENSOR(topk, x.shape[2] = 2)});
    expect_rejected({"BSND batches", kInvalid, "query.shape[0] = 1 must equal the batch count B = 2",
                     TENSOR(query, x.shape[0] = 1)}, true);
    expect_rejected({"BSND Q", kInvalid, "query.shape[1] = 1 must be >= the longest query length 2",
                     TENSOR(query, x.shape[1] = 1)}, true);
    expect_rejected({"BSND output Q", kInvalid, "output.shape[1] = 1 must equal 2", TENSOR(out, x.shape[1] = 1)}, true);
}

TEST(InferValidation, Attributes) {
    expect_rejected({"scale NaN", kInvalid, "scaleValue", PARAMS(p.scale = std::numeric_limits<double>::quiet_NaN())});
    expect_rejected({"scale too large for fp32", kInvalid, "scaleValue = 1e+39", PARAMS(p.scale = 1e39)});
    expect_rejected({"numHeads 0", kInvalid, "numHeads = 0 must be >= 1", PARAMS(p.head_num = 0)});
    expect_rejected({"numKeyValueHeads 0", kInvalid, "numKeyValueHeads = 0 must be >= 1", PARAMS(p.key_value_head_num = 0)});
    expect_rejected({"stride 0", kInvalid, "compressBlockStride = 0 must be >= 1", PARAMS(p.compress_stride = 0)});
    expect_rejected({"l < d", kInvalid, "compressBlockSize = 1 must be >= compressBlockStride = 2", PARAMS(p.compress_block_size = 1)});
    expect_rejected({"l' < l", kInvalid, "selectBlockSize = 2 must be >= compressBlockSize = 4", PARAMS(p.select_block_size = 2)});
    expect_rejected({"l' % d", kInvalid, "selectBlockSize = 9 must be a multiple of compressBlockStride = 2",
                     PARAMS(p.select_block_size = 9)});
    expect_rejected({"k = 0", kInvalid, "selectBlockCount = 0 must be >= 1", PARAMS(p.select_block_count = 0)});
    expect_rejected({"P = 0", kInvalid, "pageBlockSize = 0 must be >= 1", PARAMS(p.page_block_size = 0)});
}

TEST(InferValidation, LengthArrays) {
    expect_rejected({"compressed count", kInvalid, "actualCmpKvSeqLenOptional: length 3 must equal the batch count B = 2",
                     PARAMS(p.cmp_kv_seq_lens = std::vector<std::int64_t>{9, 5, 1})});
    expect_rejected({"compressed negative", kInvalid, "actualCmpKvSeqLenOptional[0] = -1 must be >= 0",
                     PARAMS(p.cmp_kv_seq_lens = std::vector<std::int64_t>{-1, 5})});
    expect_rejected({"query length 0", kInvalid, "actualQSeqLenOptional[1] = 0 must be >= 1",
                     PARAMS(p.q_seq_lens = std::vector<std::int64_t>{3, 0})});
    expect_rejected({"query count", kInvalid, "actualQSeqLenOptional: length 1 must equal the batch count B = 2",
                     PARAMS(p.q_seq_lens = std::vector<std::int64_t>{3})});
    expect_rejected({"T != sum", kInvalid, "query.shape[0] = 3 must equal the sum of the query lengths 4",
                     PARAMS(p.q_seq_lens = std::vector<std::int64_t>{2, 2})});
    expect_rejected({"T != B without lengths", kInvalid, "the sum of the query lengths 2", PARAMS(p.q_seq_lens.reset())});
    expect_rejected({"raw count", kInvalid, "actualSelKvSeqLenOptional: length 1 must equal the batch count B = 2",
                     PARAMS(p.sel_kv_seq_lens = std::vector<std::int64_t>{30})});
    expect_rejected({"raw lengths needed", kInvalid,
                     "actualSelKvSeqLenOptional is absent while attentionMaskOptional is given and batch 0 has 2 query tokens",
                     PARAMS(p.sel_kv_seq_lens.reset())});
    expect_rejected({"raw < query", kInvalid, "actualSelKvSeqLenOptional[0] = 1 must be >= actualQSeqLenOptional[0] = 2",
                     PARAMS(p.sel_kv_seq_lens = std::vector<std::int64_t>{1, 20})});
    expect_rejected({"table columns", kInvalid,
                     "blockTableOptional: batch 0 holds 9 compressed tokens, 3 pages of 4, but the table has 2 columns",
                     TENSOR(block_table, x.shape[1] = 2)});
}

TEST(InferValidation, BlockTableEntriesAreCheckedByTheCall) {
    // Out of range, negative: the call rejects them before writing; the sizing does not read them.
    for (std::int32_t bad : {99, -1}) {
        expect_rejected({"table entry", kInvalid, "is not a page of key and value",
                         [bad](CattnInferTensors& t, Args&, P&) { t.table[static_cast<std::size_t>(t.tablev.shape[1])] = bad; },
                         false});
        CattnInferTensors t(small());
        t.table[0] = bad;
        EXPECT_NO_THROW((void)opennsa::compress_attention_infer_workspace_bytes(t.args(), t.params));
    }
    // The message names the entry: batch 1, column 1.
    CattnInferTensors t(small());
    t.table[static_cast<std::size_t>(t.tablev.shape[1]) + 1] = 1234;
    try {
        opennsa::compress_attention_infer(t.args(), t.params);
        ADD_FAILURE() << "no error raised";
    } catch (const opennsa::Error& e) {
        EXPECT_NE(std::string(e.what()).find("blockTableOptional[1, 1] = 1234 is not a page of key and value"),
                  std::string::npos)
            << e.what();
    }
}

TEST(InferValidation, AlignmentOverlapAndAddressing) {
    expect_rejected({"misaligned query", kInvalid, "query: data pointer", TENSOR(query, x.data = static_cast<char*>(x.data) + 1)});
    expect_rejected({"output overlaps itself", kInvalid, "output: strides overlap", TENSOR(out, x.strides[0] = 1)});
    expect_rejected({"topk overlaps itself", kInvalid, "topKOutput: strides overlap", TENSOR(topk, x.strides[1] = 0)});
    expect_rejected({"key addressing overflows", kInvalid, "key: shape", TENSOR(key, x.strides[0] = std::int64_t{1} << 62)});
}

TEST(InferValidation, BlockIndicesMustFitInt32) {
    // 2^40 compressed tokens (stride-0 caches, no memory) in blocks of one: NS_b does not fit int32.
    expect_rejected({"NS int32", kInvalid, "topKOutput (int32)", [](CattnInferTensors&, Args& a, P& p) {
                         const std::int64_t C = std::int64_t{1} << 40;
                         a.key = TensorView::strided(a.key.data, DType::bf16, {1, C, 32}, {0, 0, 1});
                         a.value = TensorView::strided(a.value.data, DType::bf16, {1, C, 24}, {0, 0, 1});
                         p.page_block_size = C;
                         p.compress_block_size = p.compress_stride = p.select_block_size = 1;
                         p.cmp_kv_seq_lens = std::vector<std::int64_t>{C, 5};
                         p.sel_kv_seq_lens = std::vector<std::int64_t>{C, 20};
                     }});
}

TEST(InferValidation, ReservedArgumentsAreNeverRead) {
    // topKMask (any kind), the mask's contents, sparseMode: accepted whatever they are.
    CattnInferTensors t(small());
    Args a = t.args();
    P p = t.params;
    a.topk_mask = TensorView::strided(nullptr, DType::i64, {7}, {1});
    a.atten_mask = TensorView::strided(nullptr, DType::boolean, {1 << 20, 3}, {1, 5});
    p.sparse_mode = -12345;
    EXPECT_NO_THROW(opennsa::compress_attention_infer(a, p));
    EXPECT_TRUE(t.topk_fully_written());
}
