// Every rule of docs/spec/compress.md 1.4 / 2.4 through the native API: the right error code, a
// one-line message naming the parameter, and no output touched (they stay poisoned).
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "ops/compress/cases.hpp"

using namespace compress_test;
using nsa_test::case_seed;
using opennsa::ErrorCode;

namespace {

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

struct Rule {
    const char* name;
    ErrorCode code;
    const char* message_part;
    // Mutates the arguments of both directions (the forward's and the backward's views share
    // the names of the spec: input, weight, output / outputGrad, inputGradOut, weightGradOut).
    std::function<void(Tensors&, opennsa::CompressArgs&, opennsa::CompressGradArgs&, opennsa::CompressParams&)> mutate;
    bool forward = true, backward = true;
};

Case small() {
    Case c;
    c.dtype = DType::bf16;
    c.N = 3, c.D = 5, c.l = 4, c.d = 2;
    c.lens = {9, 6};
    c.pad = 1;
    c.seed = case_seed(7);
    return c;
}

using F = opennsa::CompressArgs;
using B = opennsa::CompressGradArgs;
using P = opennsa::CompressParams;

// Applies f to the same-named view of both directions.
template <class Fn>
auto on_input(Fn f) {
    return [f](Tensors&, F& fa, B& ba, P&) { f(fa.input), f(ba.input); };
}
template <class Fn>
auto on_weight(Fn f) {
    return [f](Tensors&, F& fa, B& ba, P&) { f(fa.weight), f(ba.weight); };
}
template <class Fn>
auto on_params(Fn f) {
    return [f](Tensors&, F&, B&, P& p) { f(p); };
}

void expect_rejected(const Rule& r) {
    for (bool forward : {true, false}) {
        if ((forward && !r.forward) || (!forward && !r.backward)) continue;
        SCOPED_TRACE(std::string(r.name) + (forward ? " (forward)" : " (backward)"));
        Tensors t(small());
        auto fa = t.forward_args();
        auto ba = t.backward_args();
        auto params = t.params;
        r.mutate(t, fa, ba, params);
        for (int call = 0; call < 2; ++call) {  // the sizing function and the operator itself
            try {
                if (forward && call == 0) (void)opennsa::compress_workspace_bytes(fa, params);
                if (forward && call == 1) opennsa::compress(fa, params);
                if (!forward && call == 0) (void)opennsa::compress_backward_workspace_bytes(ba, params);
                if (!forward && call == 1) opennsa::compress_backward(ba, params);
                ADD_FAILURE() << "no error raised (call " << call << ")";
            } catch (const opennsa::Error& e) {
                EXPECT_EQ(e.code(), r.code) << e.what();
                EXPECT_NE(std::string(e.what()).find(r.message_part), std::string::npos)
                    << "message '" << e.what() << "' does not mention '" << r.message_part << "'";
                EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message is not one line";
            }
        }
        EXPECT_TRUE(forward ? t.output.all_poisoned() : t.input_grad.all_poisoned() && t.weight_grad.all_poisoned())
            << "an output was written before the error";
    }
}

}  // namespace

TEST(CompressValidation, TheValidCaseRuns) {
    // The base case of every rule below is valid: each rejection is caused by its mutation.
    Tensors t(small());
    EXPECT_NO_THROW(opennsa::compress(t.forward_args(), t.params));
    EXPECT_NO_THROW(opennsa::compress_backward(t.backward_args(), t.params));
}

TEST(CompressValidation, EveryRuleIsReported) {
    const auto null_data = [](TensorView& v) { v.data = nullptr; };
    const auto absent = [](TensorView& v) { v = TensorView{}; };
    const std::vector<Rule> rules = {
        // presence
        {"input null", ErrorCode::null_pointer, "input", on_input(null_data)},
        {"weight absent", ErrorCode::null_pointer, "weight", on_weight(absent)},
        {"output null", ErrorCode::null_pointer, "output", [](Tensors&, F& f, B&, P&) { f.output.data = nullptr; },
         true, false},
        {"outputGrad null", ErrorCode::null_pointer, "outputGrad",
         [](Tensors&, F&, B& b, P&) { b.output_grad.data = nullptr; }, false, true},
        {"inputGradOut absent", ErrorCode::null_pointer, "inputGradOut",
         [](Tensors&, F&, B& b, P&) { b.input_grad = TensorView{}; }, false, true},
        {"weightGradOut null", ErrorCode::null_pointer, "weightGradOut",
         [](Tensors&, F&, B& b, P&) { b.weight_grad.data = nullptr; }, false, true},
        // dtypes
        {"input int32", ErrorCode::invalid_argument, "input: dtype int32 is not supported",
         [](Tensors&, F& f, B&, P&) { f.input.dtype = DType::i32; }, true, false},
        {"outputGrad int32", ErrorCode::invalid_argument, "outputGrad: dtype int32 is not supported",
         [](Tensors&, F&, B& b, P&) { b.output_grad.dtype = DType::i32; }, false, true},
        {"input fp32 in the backward", ErrorCode::invalid_argument, "input: dtype fp32 must be bf16",
         [](Tensors&, F&, B& b, P&) { b.input.dtype = DType::f32; }, false, true},
        {"weight fp16", ErrorCode::invalid_argument, "weight: dtype fp16", on_weight([](TensorView& v) { v.dtype = DType::f16; })},
        {"output fp16", ErrorCode::invalid_argument, "output: dtype fp16",
         [](Tensors&, F& f, B&, P&) { f.output.dtype = DType::f16; }, true, false},
        {"inputGradOut fp16", ErrorCode::invalid_argument, "inputGradOut: dtype fp16",
         [](Tensors&, F&, B& b, P&) { b.input_grad.dtype = DType::f16; }, false, true},
        {"weightGradOut fp16", ErrorCode::invalid_argument, "weightGradOut: dtype fp16",
         [](Tensors&, F&, B& b, P&) { b.weight_grad.dtype = DType::f16; }, false, true},
        // ranks
        {"input rank 2", ErrorCode::invalid_argument, "input: rank 2", on_input([](TensorView& v) { v.rank = 2; })},
        {"weight rank 3", ErrorCode::invalid_argument, "weight: rank 3",
         on_weight([](TensorView& v) { v.rank = 3, v.shape[2] = 1; })},
        {"output rank 2", ErrorCode::invalid_argument, "output: rank 2",
         [](Tensors&, F& f, B&, P&) { f.output.rank = 2; }, true, false},
        {"outputGrad rank 4", ErrorCode::invalid_argument, "outputGrad: rank 4",
         [](Tensors&, F&, B& b, P&) { b.output_grad.rank = 4, b.output_grad.shape[3] = 1; }, false, true},
        // N, D
        {"N = 0", ErrorCode::invalid_argument, "input.shape[1] = 0", on_input([](TensorView& v) { v.shape[1] = 0; })},
        {"D = 0", ErrorCode::invalid_argument, "input.shape[2] = 0", on_input([](TensorView& v) { v.shape[2] = 0; })},
        // attributes
        {"d = 0", ErrorCode::invalid_argument, "compressStride = 0", on_params([](P& p) { p.stride = 0; })},
        {"d < 0", ErrorCode::invalid_argument, "compressStride = -3", on_params([](P& p) { p.stride = -3; })},
        {"l < d", ErrorCode::invalid_argument, "compressBlockSize = 1 must be >= compressStride = 2",
         on_params([](P& p) { p.block_size = 1; })},
        {"l = 0", ErrorCode::invalid_argument, "compressBlockSize = 0", on_params([](P& p) { p.block_size = 0, p.stride = 1; })},
        {"type 2", ErrorCode::invalid_argument, "actSeqLenType = 2", on_params([](P& p) { p.seq_len_type = 2; })},
        {"type -1", ErrorCode::invalid_argument, "actSeqLenType = -1", on_params([](P& p) { p.seq_len_type = -1; })},
        // length arrays
        {"no batches", ErrorCode::invalid_argument, "actSeqLenOptional: length 0", on_params([](P& p) { p.seq_lens.clear(); })},
        {"negative end", ErrorCode::invalid_argument, "actSeqLenOptional[0] = -1",
         on_params([](P& p) { p.seq_lens = {-1, 9}; })},
        {"decreasing", ErrorCode::invalid_argument, "actSeqLenOptional[1] = 8",
         on_params([](P& p) { p.seq_lens = {9, 8}; })},
        {"last > T", ErrorCode::invalid_argument, "actSeqLenOptional[1] = 17 exceeds T",
         on_params([](P& p) { p.seq_lens = {9, 17}; })},
        {"type 1 negative", ErrorCode::invalid_argument, "actSeqLenOptional[1] = -2",
         on_params([](P& p) { p.seq_len_type = 1, p.seq_lens = {9, -2}; })},
        {"type 1 sum > T", ErrorCode::invalid_argument, "actSeqLenOptional: the lengths sum to 17",
         on_params([](P& p) { p.seq_len_type = 1, p.seq_lens = {9, 8}; })},
        {"type 1 sum overflows", ErrorCode::invalid_argument, "overflows",
         on_params([](P& p) { p.seq_len_type = 1, p.seq_lens = {kMax, 1}; })},
        // shapes
        {"weight rows != l", ErrorCode::invalid_argument, "weight.shape[0] = 4 must equal 5",
         on_params([](P& p) { p.block_size = 5; })},
        {"weight cols != N", ErrorCode::invalid_argument, "weight.shape[1] = 2 must equal 3",
         on_weight([](TensorView& v) { v.shape[1] = 2; })},
        {"output rows != Tc", ErrorCode::invalid_argument, "output.shape[0] = 4 must equal 5",
         [](Tensors&, F& f, B&, P&) { f.output.shape[0] = 4; }, true, false},
        {"output heads", ErrorCode::invalid_argument, "output.shape[1] = 2 must equal 3",
         [](Tensors&, F& f, B&, P&) { f.output.shape[1] = 2; }, true, false},
        {"output D", ErrorCode::invalid_argument, "output.shape[2] = 4 must equal 5",
         [](Tensors&, F& f, B&, P&) { f.output.shape[2] = 4; }, true, false},
        {"outputGrad rows != Tc", ErrorCode::invalid_argument, "outputGrad.shape[0] = 7 must equal 5",
         [](Tensors&, F&, B& b, P&) { b.output_grad.shape[0] = 7; }, false, true},
        {"inputGradOut rows", ErrorCode::invalid_argument, "inputGradOut.shape[0] = 15 must equal 16",
         [](Tensors&, F&, B& b, P&) { b.input_grad.shape[0] = 15; }, false, true},
        {"inputGradOut D", ErrorCode::invalid_argument, "inputGradOut.shape[2] = 4 must equal 5",
         [](Tensors&, F&, B& b, P&) { b.input_grad.shape[2] = 4; }, false, true},
        {"weightGradOut rows", ErrorCode::invalid_argument, "weightGradOut.shape[0] = 3 must equal 4",
         [](Tensors&, F&, B& b, P&) { b.weight_grad.shape[0] = 3; }, false, true},
        {"weightGradOut cols", ErrorCode::invalid_argument, "weightGradOut.shape[1] = 1 must equal 3",
         [](Tensors&, F&, B& b, P&) { b.weight_grad.shape[1] = 1; }, false, true},
        {"negative dim", ErrorCode::invalid_argument, "input.shape[0] = -1 is negative",
         on_input([](TensorView& v) { v.shape[0] = -1; })},
        // memory
        {"input misaligned", ErrorCode::invalid_argument, "input: data pointer",
         on_input([](TensorView& v) { v.data = static_cast<char*>(v.data) + 1; })},
        {"weightGradOut misaligned", ErrorCode::invalid_argument, "weightGradOut: data pointer",
         [](Tensors&, F&, B& b, P&) { b.weight_grad.data = static_cast<char*>(b.weight_grad.data) + 1; }, false, true},
        {"input addresses overflow", ErrorCode::invalid_argument, "input: shape",
         on_input([](TensorView& v) { v.strides[0] = kMax / 4; })},
        {"output overlaps itself", ErrorCode::invalid_argument, "output: strides overlap",
         [](Tensors&, F& f, B&, P&) { f.output.strides[1] = 0; }, true, false},
        {"inputGradOut overlaps itself", ErrorCode::invalid_argument, "inputGradOut: strides overlap",
         [](Tensors&, F&, B& b, P&) { b.input_grad.strides[0] = 1; }, false, true},
        {"weightGradOut overlaps itself", ErrorCode::invalid_argument, "weightGradOut: strides overlap",
         [](Tensors&, F&, B& b, P&) { b.weight_grad.strides[0] = 0; }, false, true},
    };
    for (const Rule& r : rules) expect_rejected(r);
}

TEST(CompressValidation, TokenCountFunctionsCheckTheirArguments) {
    opennsa::CompressParams p;
    p.block_size = 4;
    p.stride = 2;
    p.seq_lens = {9, 15};
    EXPECT_EQ(opennsa::compressed_token_count(16, p), 3 + 2);
    auto expect_invalid = [](auto fn, const char* part) {
        try {
            fn();
            ADD_FAILURE() << "no error raised";
        } catch (const opennsa::Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
        }
    };
    expect_invalid([&] { (void)opennsa::compressed_token_count(14, p); }, "actSeqLenOptional[1] = 15 exceeds T");
    expect_invalid([&] { (void)opennsa::compressed_token_count(-1, p); }, "input.shape[0] = -1");
    p.stride = 0;
    expect_invalid([&] { (void)opennsa::compressed_seq_lens(16, p); }, "compressStride = 0");
}

// A window longer than every batch is valid and cheap: there are no compressed rows, and nothing
// is sized by l beyond the tensors themselves (a broadcast weight of 2^40 rows costs nothing; the
// backward needs no workspace and writes zeros).
TEST(CompressValidation, WindowLongerThanEveryBatch) {
    Tensors t(small());
    auto params = t.params;
    params.block_size = std::int64_t{1} << 40;
    auto fa = t.forward_args();
    fa.weight.shape[0] = params.block_size;
    fa.weight.strides[0] = 0;
    fa.output.shape[0] = 0;
    EXPECT_EQ(opennsa::compressed_token_count(t.c.T(), params), 0);
    EXPECT_EQ(opennsa::compress_workspace_bytes(fa, params), 0u);
    EXPECT_NO_THROW(opennsa::compress(fa, params));
    EXPECT_TRUE(t.output.all_poisoned());

    Case c = small();
    c.l = 40;  // > T = 16
    Tensors big(c);
    auto ba = big.backward_args();
    ba.output_grad.shape[0] = 0;
    EXPECT_EQ(opennsa::compress_backward_workspace_bytes(ba, big.params), 0u);
    opennsa::compress_backward(ba, big.params);
    EXPECT_TRUE(big.input_grad.fully_written());
    EXPECT_TRUE(big.weight_grad.fully_written());
    for (double v : big.input_grad.dense()) EXPECT_EQ(v, 0.0);
    for (double v : big.weight_grad.dense()) EXPECT_EQ(v, 0.0);
}
