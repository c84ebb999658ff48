// aclnnNsaCompress and aclnnNsaCompressGrad through the C API: the same bits as the native API
// (fp16, bf16; strided views with offsets; varlen with empty and short batches, padding; both
// actSeqLenType conventions), Tc = 0, and the error paths with their status, message and
// untouched outputs.
#include <memory>

#include "aclnnop/aclnn_nsa_compress.h"
#include "aclnnop/aclnn_nsa_compress_grad.h"
#include "capi_util.hpp"

using namespace capi_test;

namespace {

// A [R, C] tensor stored column-major (non-contiguous) in a HostTensor.
HostTensor make_2d(DType dtype, std::int64_t R, std::int64_t C) {
    HostTensor h;
    h.bytes.assign(static_cast<std::size_t>(std::max<std::int64_t>(R * C, 1)) * opennsa::dtype_size(dtype), 0);
    h.view = opennsa::TensorView::strided(h.bytes.data(), dtype, {R, C}, {1, R});
    return h;
}

struct CompressCase {
    DType dtype = DType::bf16;
    std::int64_t N = 3, D = 21, l = 8, d = 4;
    std::vector<std::int64_t> lens = {40, 0, 13, 5, 29};
    std::int64_t pad = 3;
    std::int64_t seq_type = 0;

    std::int64_t T() const {
        std::int64_t t = pad;
        for (std::int64_t x : lens) t += x;
        return t;
    }
    opennsa::CompressParams params() const {
        opennsa::CompressParams p;
        p.block_size = l;
        p.stride = d;
        p.seq_len_type = seq_type;
        std::int64_t end = 0;
        for (std::int64_t x : lens) p.seq_lens.push_back(seq_type == 0 ? end += x : x);
        return p;
    }
};

// Host tensors (native API) and their aclTensor mirrors (C API), each mirror at its own offset.
struct Problem {
    CompressCase c;
    opennsa::CompressParams params;
    std::int64_t Tc;
    HostTensor input, weight, output, output_grad, input_grad, weight_grad;
    std::unique_ptr<AclMirror> m_input, m_weight, m_output, m_output_grad, m_input_grad, m_weight_grad;
    aclIntArray* seq = nullptr;
    char layout[4] = "TND";

    explicit Problem(const CompressCase& cc, std::uint64_t salt)
        : c(cc), params(cc.params()), Tc(opennsa::compressed_token_count(cc.T(), params)),
          input(HostTensor::make(cc.dtype, cc.T(), cc.N, cc.D, true)), weight(make_2d(cc.dtype, cc.l, cc.N)),
          output(HostTensor::make(cc.dtype, Tc, cc.N, cc.D, true)),
          output_grad(HostTensor::make(cc.dtype, Tc, cc.N, cc.D, false)),
          input_grad(HostTensor::make(cc.dtype, cc.T(), cc.N, cc.D, true)), weight_grad(make_2d(cc.dtype, cc.l, cc.N)) {
        std::mt19937_64 rng(nsa_test::case_seed(salt));
        std::normal_distribution<double> nd;
        input.fill_normal(rng);
        output_grad.fill_normal(rng);
        for (std::int64_t r = 0; r < c.l; ++r)
            for (std::int64_t h = 0; h < c.N; ++h) weight.set(r, h, 0, nd(rng));
        for (HostTensor* t : {&output, &input_grad, &weight_grad}) t->poison();
        m_input = std::make_unique<AclMirror>(input, 1);
        m_weight = std::make_unique<AclMirror>(weight, 2);
        m_output = std::make_unique<AclMirror>(output, 3);
        m_output_grad = std::make_unique<AclMirror>(output_grad, 4);
        m_input_grad = std::make_unique<AclMirror>(input_grad, 5);
        m_weight_grad = std::make_unique<AclMirror>(weight_grad, 6);
        seq = aclCreateIntArray(params.seq_lens.data(), params.seq_lens.size());
    }
    ~Problem() { aclDestroyIntArray(seq); }

    aclnnStatus forward_workspace(std::uint64_t* ws, aclOpExecutor** ex) {
        return aclnnNsaCompressGetWorkspaceSize(m_input->get(), m_weight->get(), seq, layout, c.l, c.d, c.seq_type,
                                                m_output->get(), ws, ex);
    }
    aclnnStatus backward_workspace(std::uint64_t* ws, aclOpExecutor** ex) {
        return aclnnNsaCompressGradGetWorkspaceSize(m_output_grad->get(), m_input->get(), m_weight->get(), seq, c.l,
                                                    c.d, c.seq_type, layout, m_input_grad->get(),
                                                    m_weight_grad->get(), ws, ex);
    }
    aclnnStatus run_forward() {
        return two_phase([&](std::uint64_t* w, aclOpExecutor** e) { return forward_workspace(w, e); },
                         aclnnNsaCompress);
    }
    aclnnStatus run_backward() {
        return two_phase([&](std::uint64_t* w, aclOpExecutor** e) { return backward_workspace(w, e); },
                         aclnnNsaCompressGrad);
    }
    ::testing::AssertionResult outputs_untouched() const {
        if (auto r = m_output->untouched("output"); !r) return r;
        if (auto r = m_input_grad->untouched("inputGradOut"); !r) return r;
        return m_weight_grad->untouched("weightGradOut");
    }
};

void expect_same_bits_as_native(const CompressCase& c, std::uint64_t salt) {
    Problem p(c, salt);
    opennsa::compress({p.input.view, p.weight.view, p.output.view}, p.params);
    ASSERT_EQ(p.run_forward(), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_TRUE(p.m_output->same_bits(p.output, "output"));
    opennsa::compress_backward({p.output_grad.view, p.input.view, p.weight.view, p.input_grad.view, p.weight_grad.view},
                               p.params);
    ASSERT_EQ(p.run_backward(), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_TRUE(p.m_input_grad->same_bits(p.input_grad, "inputGradOut"));
    EXPECT_TRUE(p.m_weight_grad->same_bits(p.weight_grad, "weightGradOut"));
}

}  // namespace

TEST(CapiCompress, SameBitsAsNativeApi) {
    for (DType dtype : {DType::bf16, DType::f16})
        for (std::int64_t type : {0, 1}) {
            CompressCase c;
            c.dtype = dtype;
            c.seq_type = type;
            SCOPED_TRACE(std::string(opennsa::dtype_name(dtype)) + " actSeqLenType " + std::to_string(type));
            expect_same_bits_as_native(c, 10 + type);
            c.N = 4, c.D = 192, c.l = 32, c.d = 16, c.lens = {70, 31, 100}, c.pad = 0;  // production sizes
            expect_same_bits_as_native(c, 20 + type);
        }
}

TEST(CapiCompress, NoWindowNeedsNoWorkspaceAndZeroesTheGradients) {
    CompressCase c;
    c.l = 50, c.d = 10;  // longer than every batch: Tc = 0
    Problem p(c, 30);
    ASSERT_EQ(p.Tc, 0);
    std::uint64_t ws = 1;
    aclOpExecutor* ex = nullptr;
    ASSERT_EQ(p.backward_workspace(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_EQ(ws, 0u);
    ASSERT_EQ(aclnnNsaCompressGrad(nullptr, 0, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    opennsa::compress_backward({p.output_grad.view, p.input.view, p.weight.view, p.input_grad.view, p.weight_grad.view},
                               p.params);
    EXPECT_TRUE(p.m_input_grad->same_bits(p.input_grad, "inputGradOut"));
    EXPECT_TRUE(p.m_weight_grad->same_bits(p.weight_grad, "weightGradOut"));
    EXPECT_EQ(p.run_forward(), ACLNN_SUCCESS) << aclGetRecentErrMsg();
}

TEST(CapiCompress, NullPointersAreNamed) {
    Problem p(CompressCase{}, 40);
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    const CompressCase& c = p.c;
    auto fwd = [&](const aclTensor* in, const aclTensor* w, const aclIntArray* seq, aclTensor* out, std::uint64_t* wsp,
                   aclOpExecutor** exp) {
        return aclnnNsaCompressGetWorkspaceSize(in, w, seq, p.layout, c.l, c.d, c.seq_type, out, wsp, exp);
    };
    aclTensor* out = p.m_output->get();
    EXPECT_EQ(fwd(nullptr, p.m_weight->get(), p.seq, out, &ws, &ex), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("input"));
    EXPECT_TRUE(message_names("aclnnNsaCompressGetWorkspaceSize"));
    EXPECT_EQ(fwd(p.m_input->get(), nullptr, p.seq, out, &ws, &ex), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("weight"));
    EXPECT_EQ(fwd(p.m_input->get(), p.m_weight->get(), nullptr, out, &ws, &ex), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("actSeqLenOptional"));
    EXPECT_EQ(fwd(p.m_input->get(), p.m_weight->get(), p.seq, nullptr, &ws, &ex), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("output"));
    EXPECT_EQ(fwd(p.m_input->get(), p.m_weight->get(), p.seq, out, nullptr, &ex), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("workspaceSize"));
    EXPECT_EQ(fwd(p.m_input->get(), p.m_weight->get(), p.seq, out, &ws, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("executor"));

    auto bwd = [&](int null_at) {
        const aclTensor* t[5] = {p.m_output_grad->get(), p.m_input->get(), p.m_weight->get(), p.m_input_grad->get(),
                                 p.m_weight_grad->get()};
        if (null_at < 5) t[null_at] = nullptr;
        return aclnnNsaCompressGradGetWorkspaceSize(t[0], t[1], t[2], null_at == 5 ? nullptr : p.seq, c.l, c.d,
                                                    c.seq_type, p.layout, t[3], t[4], &ws, &ex);
    };
    const char* names[] = {"outputGrad", "input", "weight", "inputGradOut", "weightGradOut", "actSeqLenOptionalOptional"};
    for (int i = 0; i < 6; ++i) {
        EXPECT_EQ(bwd(i), ACLNN_ERR_PARAM_NULLPTR) << names[i];
        EXPECT_TRUE(message_names(names[i]));
    }
    EXPECT_EQ(aclnnNsaCompress(nullptr, 0, nullptr, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(p.outputs_untouched());
}

TEST(CapiCompress, InvalidArgumentsAreReportedAndWriteNothing) {
    Problem p(CompressCase{}, 50);
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    CompressCase& c = p.c;

    // layout: "TND" only; a null layout attribute is not "TND" (161002, as CANN)
    std::memcpy(p.layout, "BSH", 4);
    EXPECT_EQ(p.forward_workspace(&ws, &ex), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("layoutOptional = \"BSH\""));
    EXPECT_EQ(p.backward_workspace(&ws, &ex), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("layoutOptionalOptional"));
    std::memcpy(p.layout, "TND", 4);
    EXPECT_EQ(aclnnNsaCompressGetWorkspaceSize(p.m_input->get(), p.m_weight->get(), p.seq, nullptr, c.l, c.d, 0,
                                               p.m_output->get(), &ws, &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("layoutOptional is null"));

    // attributes and the length array
    auto expect_invalid = [&](const char* what, bool backward = false) {
        EXPECT_EQ(backward ? p.backward_workspace(&ws, &ex) : p.forward_workspace(&ws, &ex), ACLNN_ERR_PARAM_INVALID)
            << what;
        EXPECT_TRUE(message_names(what));
    };
    c.d = 0;
    expect_invalid("compressStride = 0");
    c.d = 9;
    expect_invalid("compressBlockSize = 8 must be >= compressStride = 9", true);
    c.d = 4;
    c.seq_type = 2;
    expect_invalid("actSeqLenType = 2");
    c.seq_type = 0;
    aclIntArray* empty = aclCreateIntArray(nullptr, 0);
    std::swap(empty, p.seq);
    expect_invalid("actSeqLenOptional: length 0");
    std::swap(empty, p.seq);
    aclDestroyIntArray(empty);
    const std::int64_t too_long[] = {40, 40, 53, 58, 88};  // sums past T = 90 as lengths (type 1)
    aclIntArray* bad = aclCreateIntArray(too_long, 5);
    std::swap(bad, p.seq);
    c.seq_type = 1;
    expect_invalid("actSeqLenOptional: the lengths sum to", true);
    c.seq_type = 0;
    std::swap(bad, p.seq);
    aclDestroyIntArray(bad);

    // dtypes: fp16 / bf16 only through the C API, all equal
    std::vector<unsigned char> scratch(1 << 16, 0);
    auto tensor = [&](std::vector<std::int64_t> dims, aclDataType dt) {
        return aclCreateTensor(dims.data(), dims.size(), dt, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, scratch.data());
    };
    aclTensor* in32 = tensor({c.T(), c.N, c.D}, ACL_FLOAT);
    aclTensor* w32 = tensor({c.l, c.N}, ACL_FLOAT);
    aclTensor* out32 = tensor({p.Tc, c.N, c.D}, ACL_FLOAT);
    EXPECT_EQ(aclnnNsaCompressGetWorkspaceSize(in32, w32, p.seq, p.layout, c.l, c.d, 0, out32, &ws, &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("input: dtype fp32 is not supported by aclnnNsaCompress"));
    EXPECT_EQ(aclnnNsaCompressGetWorkspaceSize(p.m_input->get(), w32, p.seq, p.layout, c.l, c.d, 0, p.m_output->get(),
                                               &ws, &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("weight: dtype fp32 must be"));
    aclTensor* in_int = tensor({c.T(), c.N, c.D}, ACL_INT32);
    EXPECT_EQ(aclnnNsaCompressGradGetWorkspaceSize(p.m_output_grad->get(), in_int, p.m_weight->get(), p.seq, c.l, c.d,
                                                   0, p.layout, p.m_input_grad->get(), p.m_weight_grad->get(), &ws,
                                                   &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("input: dtype int32 must be"));

    // shapes: output rows != Tc, outputGrad rows != Tc, weight != [l, N]
    aclTensor* short_out = tensor({p.Tc - 1, c.N, c.D}, ACL_BF16);
    EXPECT_EQ(aclnnNsaCompressGetWorkspaceSize(p.m_input->get(), p.m_weight->get(), p.seq, p.layout, c.l, c.d, 0,
                                               short_out, &ws, &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("output.shape[0]"));
    EXPECT_EQ(aclnnNsaCompressGradGetWorkspaceSize(short_out, p.m_input->get(), p.m_weight->get(), p.seq, c.l, c.d, 0,
                                                   p.layout, p.m_input_grad->get(), p.m_weight_grad->get(), &ws, &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("outputGrad.shape[0]"));
    c.l = 9;
    expect_invalid("weight.shape[0] = 8 must equal 9", true);
    c.l = 8;
    for (aclTensor* t : {in32, w32, out32, in_int, short_out}) aclDestroyTensor(t);

    // the executor of one operator cannot be launched by the other
    ASSERT_EQ(p.forward_workspace(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_EQ(aclnnNsaCompressGrad(nullptr, 0, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("must be launched by aclnnNsaCompress, not aclnnNsaCompressGrad"));
    EXPECT_TRUE(p.outputs_untouched());
}
