// Every rule of docs/spec/decoding.md 1.4 through the native API: the error code, a one-line
// message naming the parameter, and nothing written (the poisoned cache keeps every byte; the
// inputs too). Rules on shapes, dtypes, attributes and lengths are reported by the sizing
// function already (the C API's GetWorkspaceSize); the slot and block-table values by the call.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "ops/compress_with_cache/cases.hpp"

using namespace cwc_test;
using nsa_test::case_seed;
using opennsa::ErrorCode;

namespace {

using A = opennsa::CompressWithCacheArgs;
using P = opennsa::CompressWithCacheParams;

struct Rule {
    const char* name;
    ErrorCode code;
    const char* message_part;
    std::function<void(Tensors&, A&, P&)> mutate;
    bool at_launch = false;  // a value rule: the sizing function accepts the call
};

// Triggered: batches 0 (L = l), 1 (one stride later) and 4; not: 2 (between), 3 (L < l).
Case small() {
    Case c;
    c.dtype = DType::bf16;
    c.N = 3, c.D = 5, c.l = 4, c.d = 2, c.P = 4;
    c.lens = {4, 6, 5, 3, 8};
    c.seed = case_seed(7);
    return c;
}

void expect_rejected(const Rule& r) {
    SCOPED_TRACE(r.name);
    Tensors t(small());
    A args = t.args();
    P params = t.params;
    r.mutate(t, args, params);
    const auto before = input_bytes(t);
    if (r.at_launch) {
        EXPECT_NO_THROW((void)opennsa::compress_with_cache_workspace_bytes(args, params));
    }
    for (int call = r.at_launch ? 1 : 0; call < 2; ++call) {
        try {
            if (call == 0) (void)opennsa::compress_with_cache_workspace_bytes(args, params);
            if (call == 1) opennsa::compress_with_cache(args, params);
            ADD_FAILURE() << "no error raised (call " << call << ")";
        } catch (const opennsa::Error& e) {
            EXPECT_EQ(e.code(), r.code) << e.what();
            EXPECT_NE(std::string(e.what()).find(r.message_part), std::string::npos)
                << "message '" << e.what() << "' does not mention '" << r.message_part << "'";
            EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message is not one line";
        }
    }
    EXPECT_TRUE(std::all_of(t.cache.bytes.begin(), t.cache.bytes.end(), [](unsigned char b) { return b == 0xFF; }))
        << "the cache was written before the error";
    EXPECT_TRUE(input_bytes(t) == before) << "an input changed";
}

template <class Fn>
auto on_args(Fn f) {
    return [f](Tensors&, A& a, P&) { f(a); };
}
template <class Fn>
auto on_params(Fn f) {
    return [f](Tensors&, A&, P& p) { f(p); };
}

}  // namespace

TEST(CompressWithCacheValidation, TheValidCaseRuns) {
    Tensors t(small());
    ASSERT_EQ(t.c.triggered(0) + t.c.triggered(1) + t.c.triggered(2) + t.c.triggered(3) + t.c.triggered(4), 3);
    EXPECT_NO_THROW(opennsa::compress_with_cache(t.args(), t.params));
    EXPECT_TRUE(t.only_slots_written());
}

TEST(CompressWithCacheValidation, EveryRuleIsReported) {
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    const std::vector<Rule> rules = {
        // presence
        {"input absent", ErrorCode::null_pointer, "input", on_args([](A& a) { a.input = TensorView{}; })},
        {"input null data", ErrorCode::null_pointer, "input has a null data pointer", on_args([](A& a) { a.input.data = nullptr; })},
        {"weight absent", ErrorCode::null_pointer, "weight", on_args([](A& a) { a.weight = TensorView{}; })},
        {"slotMapping null data", ErrorCode::null_pointer, "slotMapping", on_args([](A& a) { a.slot_mapping.data = nullptr; })},
        {"blockTable absent", ErrorCode::null_pointer, "blockTableOptional", on_args([](A& a) { a.block_table = TensorView{}; })},
        {"outputCache absent", ErrorCode::null_pointer, "outputCache", on_args([](A& a) { a.output_cache = TensorView{}; })},
        {"outputCache null data", ErrorCode::null_pointer, "outputCache has a null data pointer",
         on_args([](A& a) { a.output_cache.data = nullptr; })},
        // dtypes
        {"input int32", ErrorCode::invalid_argument, "input: dtype int32 is not supported",
         on_args([](A& a) { a.input.dtype = DType::i32; })},
        {"weight fp16", ErrorCode::invalid_argument, "weight: dtype fp16 must be bf16",
         on_args([](A& a) { a.weight.dtype = DType::f16; })},
        {"outputCache fp16", ErrorCode::invalid_argument, "outputCache: dtype fp16 must be bf16",
         on_args([](A& a) { a.output_cache.dtype = DType::f16; })},
        {"slotMapping int64", ErrorCode::invalid_argument, "slotMapping: dtype int64 must be int32",
         on_args([](A& a) { a.slot_mapping.dtype = DType::i64, a.slot_mapping.shape[0] = 2; })},
        {"blockTable fp32", ErrorCode::invalid_argument, "blockTableOptional: dtype fp32 must be int32",
         on_args([](A& a) { a.block_table.dtype = DType::f32; })},
        // ranks and layouts
        {"input rank 3 (TND)", ErrorCode::invalid_argument, "input: rank 3",
         on_args([](A& a) { a.input.rank = 3, a.input.shape[2] *= a.input.shape[3]; })},
        {"TND is named", ErrorCode::invalid_argument, "TND layout is not supported", on_args([](A& a) { a.input.rank = 3; })},
        {"weight rank 3", ErrorCode::invalid_argument, "weight: rank 3", on_args([](A& a) { a.weight.rank = 3, a.weight.shape[2] = 1; })},
        {"outputCache rank 2", ErrorCode::invalid_argument, "outputCache: rank 2", on_args([](A& a) { a.output_cache.rank = 2; })},
        {"outputCache rank 4", ErrorCode::invalid_argument, "outputCache: rank 4",
         on_args([](A& a) { a.output_cache.rank = 4, a.output_cache.shape[3] = 1; })},
        {"slotMapping rank 2", ErrorCode::invalid_argument, "slotMapping: rank 2",
         on_args([](A& a) { a.slot_mapping.rank = 2, a.slot_mapping.shape[1] = 1; })},
        {"blockTable rank 1", ErrorCode::invalid_argument, "blockTableOptional: rank 1", on_args([](A& a) { a.block_table.rank = 1; })},
        // shapes
        {"page size != pageBlockSize", ErrorCode::invalid_argument, "input.shape[1] = 4 must equal pageBlockSize = 8",
         on_params([](P& p) { p.page_size = 8; })},
        {"N = 0", ErrorCode::invalid_argument, "input.shape[2] = 0", on_args([](A& a) { a.input.shape[2] = 0; })},
        {"D = 0", ErrorCode::invalid_argument, "input.shape[3] = 0", on_args([](A& a) { a.input.shape[3] = 0; })},
        {"negative pages", ErrorCode::invalid_argument, "input.shape[0] = -1", on_args([](A& a) { a.input.shape[0] = -1; })},
        {"weight rows != l", ErrorCode::invalid_argument, "weight.shape[0] = 4 must equal 6 (compressBlockSize)",
         on_params([](P& p) { p.block_size = 6; })},
        {"weight heads != N", ErrorCode::invalid_argument, "weight.shape[1] = 2 must equal 3 (N of input)",
         on_args([](A& a) { a.weight.shape[1] = 2; })},
        {"cache heads != N", ErrorCode::invalid_argument, "outputCache.shape[1] = 2 must equal 3",
         on_args([](A& a) { a.output_cache.shape[1] = 2; })},
        {"cache dim != D", ErrorCode::invalid_argument, "outputCache.shape[2] = 4 must equal 5",
         on_args([](A& a) { a.output_cache.shape[2] = 4; })},
        {"blockTable rows != B", ErrorCode::invalid_argument, "blockTableOptional.shape[0] = 4 must equal 5",
         on_args([](A& a) { a.block_table.shape[0] = 4; })},
        {"cache overlaps itself", ErrorCode::invalid_argument, "outputCache: strides overlap",
         on_args([](A& a) { a.output_cache.strides[0] = 0; })},
        {"input addressing overflows", ErrorCode::invalid_argument, "input: shape",
         on_args([](A& a) { a.input.shape[0] = kMax / 2; })},
        {"misaligned cache", ErrorCode::invalid_argument, "outputCache: data pointer",
         on_args([](A& a) { a.output_cache.data = static_cast<char*>(a.output_cache.data) + 1; })},
        // attributes
        {"d = 0", ErrorCode::invalid_argument, "compressStride = 0", on_params([](P& p) { p.stride = 0; })},
        {"d < 0", ErrorCode::invalid_argument, "compressStride = -2", on_params([](P& p) { p.stride = -2; })},
        {"l < d", ErrorCode::invalid_argument, "compressBlockSize = 4 must be >= compressStride = 5",
         on_params([](P& p) { p.stride = 5; })},
        {"l = 0", ErrorCode::invalid_argument, "compressBlockSize = 0", on_params([](P& p) { p.block_size = 0, p.stride = 1; })},
        {"actSeqLenType 0", ErrorCode::invalid_argument, "actSeqLenType = 0", on_params([](P& p) { p.seq_len_type = 0; })},
        {"actSeqLenType 2", ErrorCode::invalid_argument, "actSeqLenType = 2", on_params([](P& p) { p.seq_len_type = 2; })},
        {"pageBlockSize 0", ErrorCode::invalid_argument, "pageBlockSize = 0", on_params([](P& p) { p.page_size = 0; })},
        // lengths
        {"too few lengths", ErrorCode::invalid_argument, "actSeqLenOptional: 4 entries, must have B = 5",
         on_params([](P& p) { p.seq_lens.pop_back(); })},
        {"too many lengths", ErrorCode::invalid_argument, "actSeqLenOptional: 6 entries",
         on_params([](P& p) { p.seq_lens.push_back(4); })},
        {"negative length", ErrorCode::invalid_argument, "actSeqLenOptional[2] = -1 is negative",
         on_params([](P& p) { p.seq_lens[2] = -1; })},
        {"triggered length past its pages", ErrorCode::invalid_argument, "blockTableOptional: batch 1 holds",
         [](Tensors& t, A&, P& p) { p.seq_lens[1] = t.cols * t.c.P + 2; }},
        {"untriggered length past its pages", ErrorCode::invalid_argument, "blockTableOptional: batch 3 holds",
         [](Tensors& t, A&, P& p) { p.seq_lens[3] = t.cols * t.c.P + 1; }},
        {"huge length", ErrorCode::invalid_argument, "blockTableOptional: batch 0 holds",
         on_params([](P& p) { p.seq_lens[0] = kMax; })},
        // values, checked by the call before anything is written
        {"triggered slot -1", ErrorCode::invalid_argument, "slotMapping[1] = -1 is out of range [0, 8)",
         [](Tensors& t, A&, P&) { t.set_slot(1, -1); }, true},
        {"triggered slot = R", ErrorCode::invalid_argument, "slotMapping[4] = 8 is out of range",
         [](Tensors& t, A&, P&) { t.set_slot(4, 8); }, true},
        {"two triggered batches, one slot", ErrorCode::invalid_argument, "slotMapping[4] = ",
         [](Tensors& t, A&, P&) { t.set_slot(4, static_cast<std::int32_t>(t.slot(0))); }, true},
        {"duplicate names the other batch", ErrorCode::invalid_argument, "is also the slot of batch 1",
         [](Tensors& t, A&, P&) { t.set_slot(4, static_cast<std::int32_t>(t.slot(1))); }, true},
        {"window page -1", ErrorCode::invalid_argument, "blockTableOptional[1, 1] = -1 is not a page of input",
         [](Tensors& t, A&, P&) { t.set_page(1, 1, -1); }, true},
        {"window page past the cache", ErrorCode::invalid_argument, "is not a page of input",
         [](Tensors& t, A&, P&) { t.set_page(4, 1, static_cast<std::int32_t>(t.pages)); }, true},
    };
    for (const Rule& r : rules) expect_rejected(r);
}

// What is not read is not checked: slots of batches that are not triggered, table entries no
// window reads, and the layout (there is no layout argument in the native API).
TEST(CompressWithCacheValidation, WhatIsNotReadIsNotChecked) {
    Tensors t(small());
    t.set_slot(2, -1);
    t.set_slot(3, static_cast<std::int32_t>(t.slot(0)));  // a triggered batch's slot
    t.set_page(1, 0, -9);                                  // batch 1's window [2, 6) starts on page 0 ...
    t.set_page(4, 0, -9);                                  // ... batch 4's [4, 8) does not
    EXPECT_THROW(opennsa::compress_with_cache(t.args(), t.params), opennsa::Error);
    t.set_page(1, 0, 0);
    EXPECT_NO_THROW(opennsa::compress_with_cache(t.args(), t.params));
    EXPECT_TRUE(t.only_slots_written());
}

// B = 0: nothing to do, nothing written.
TEST(CompressWithCacheValidation, NoBatches) {
    Case c = small();
    c.lens.clear();
    Tensors t(c);
    EXPECT_NO_THROW(opennsa::compress_with_cache(t.args(), t.params));
    EXPECT_TRUE(t.only_slots_written());
}
