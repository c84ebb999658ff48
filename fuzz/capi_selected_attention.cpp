// libFuzzer target: the CANN-compatible C API. The first decision picks what one input does:
//   0  aclnnNsaSelectedAttentionGetWorkspaceSize + aclnnNsaSelectedAttention
//   1  aclnnNsaSelectedAttentionGradGetWorkspaceSize + aclnnNsaSelectedAttentionGrad
//   2  the meta objects and runtime around them: scalars, int/float/bool arrays, tensors and
//      their getters, aclDataTypeSize, fp16 conversions, aclrtMalloc / Memset / Memcpy / Free.
// Operators get tensors with fuzzed shapes, strides, offsets, storage shapes, dtypes and formats,
// sequence arrays, parameters, topk contents and launch options (workspace, stream, entry point,
// repeatable executors); fuzz_support.hpp's driver checks both phases against SPEC 9.
#include "selected_attention_case.hpp"

namespace fuzz::capi_target {
namespace {

// ---------------------------------------------------------------------------------------------
// Operators.

void run_operator(sa::SaCase& s, const LaunchChoice& choice, Rng& rng) {
    AclHandles handles;
    handles.create(s.c);
    auto handle_of = [&](const Tensor* t) { return handles.of(t); };
    IntArray seq_q, seq_kv;
    create_int_array(s.seq_q.given, s.seq_q.null_pointer, s.seq_q.values, seq_q);
    create_int_array(s.seq_kv.given, s.seq_kv.null_pointer, s.seq_kv.values, seq_kv);
    sa::judge(s);

    std::string layout_storage = sa::kLayouts[s.layout] ? sa::kLayouts[s.layout] : "";
    char* layout = sa::kLayouts[s.layout] ? layout_storage.data() : nullptr;
    TwoPhaseOp op;
    if (!s.backward) {
        op.prepare_name = "aclnnNsaSelectedAttentionGetWorkspaceSize";
        op.launch_name = "aclnnNsaSelectedAttention";
        op.other_launch_name = "aclnnNsaSelectedAttentionGrad";
        op.launch = aclnnNsaSelectedAttention;
        op.other_launch = aclnnNsaSelectedAttentionGrad;
        op.prepare = [&](std::uint64_t* ws, aclOpExecutor** ex) {
            return aclnnNsaSelectedAttentionGetWorkspaceSize(
                handle_of(s.query), handle_of(s.key), handle_of(s.value), handle_of(s.topk), handle_of(s.mask),
                seq_q.handle, seq_kv.handle, s.scale, s.head_num, layout, s.sparse_mode, s.block_size, s.block_count,
                handle_of(s.softmax_max), handle_of(s.softmax_sum), handle_of(s.out), ws, ex);
        };
    } else {
        op.prepare_name = "aclnnNsaSelectedAttentionGradGetWorkspaceSize";
        op.launch_name = "aclnnNsaSelectedAttentionGrad";
        op.other_launch_name = "aclnnNsaSelectedAttention";
        op.launch = aclnnNsaSelectedAttentionGrad;
        op.other_launch = aclnnNsaSelectedAttention;
        op.prepare = [&](std::uint64_t* ws, aclOpExecutor** ex) {
            return aclnnNsaSelectedAttentionGradGetWorkspaceSize(
                handle_of(s.query), handle_of(s.key), handle_of(s.value), handle_of(s.out), handle_of(s.out_grad),
                handle_of(s.softmax_max), handle_of(s.softmax_sum), handle_of(s.topk), seq_q.handle, seq_kv.handle,
                handle_of(s.mask), s.scale, s.block_size, s.block_count, s.head_num, layout, s.sparse_mode,
                handle_of(s.dq), handle_of(s.dk), handle_of(s.dv), ws, ex);
        };
    }
    op.facts = [&] { return sa::facts(s); };
    op.destroy_tensors = [&] { handles.reset(); };
    drive_two_phase(s.c, op, choice, rng);

    // Required pointers, one at a time, on an otherwise unchanged call: always 161001.
    arm_error_message();
    const aclnnStatus st =
        s.backward ? aclnnNsaSelectedAttentionGradGetWorkspaceSize(
                         nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                         nullptr, 1.0, 1, 1, 1, layout, 0, nullptr, nullptr, nullptr, nullptr, nullptr)
                   : aclnnNsaSelectedAttentionGetWorkspaceSize(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                               nullptr, 1.0, 1, layout, 0, 1, 1, nullptr, nullptr,
                                                               nullptr, nullptr, nullptr);
    expect_aclnn_code(op.prepare_name, st, {ACLNN_ERR_PARAM_NULLPTR, ACLNN_ERR_PARAM_INVALID}, "every pointer NULL");
}

// ---------------------------------------------------------------------------------------------
// Meta objects and the runtime.

struct MetaOp {
    std::int64_t kind = 0;
    int raw = 0;             // a dtype, memcpy kind or malloc policy
    std::int64_t size = 0;   // element / byte count
    std::int64_t count = 0;  // memset / memcpy count
    bool null_pointer = false;
    std::uint16_t half = 0;
    std::unique_ptr<Tensor> tensor;  // kind 7
};

constexpr int kMetaKinds = 8;

// Dtype values worth trying: every enumerator and values around and outside the enum.
int decide_raw_dtype(Input& in) {
    static constexpr int kRaw[] = {
        ACL_DT_UNDEFINED, ACL_FLOAT, ACL_FLOAT16, ACL_INT8,   ACL_INT32, ACL_UINT8,  5,   ACL_INT16, ACL_UINT16,
        ACL_UINT32,       ACL_INT64, ACL_UINT64,  ACL_DOUBLE, ACL_BOOL,  ACL_STRING, 14,  15,        ACL_COMPLEX64,
        ACL_COMPLEX128,   26,        ACL_BF16,    28,         31,        32,         100, -2,        -33,
        INT32_MAX,        INT32_MIN};
    return in.chance("any", 4) ? static_cast<int>(in.integer("value", INT32_MIN, INT32_MAX)) : in.pick("dtype", kRaw);
}

std::vector<MetaOp> decode_meta(Input& in, Rng& rng) {
    Scope scope(in, "meta");
    std::vector<MetaOp> ops(static_cast<std::size_t>(in.integer("ops", 1, 8)));
    for (MetaOp& op : ops) {
        Scope s(in, "op");
        op.kind = in.integer("kind", 0, kMetaKinds - 1);
        switch (op.kind) {
            case 0:  // aclCreateScalar
            case 1:  // aclDataTypeSize
                op.raw = decide_raw_dtype(in);
                op.null_pointer = in.chance("null", 8);
                break;
            case 2:
            case 3:
            case 4:  // int / float / bool arrays
                op.size = in.chance("huge", 8) ? in.pick("edge", kEdgeValues) : in.integer("size", 0, 20);
                op.null_pointer = in.chance("null", 4);
                if (op.size < 0) op.size = 0;
                if (!op.null_pointer && op.size > 64) op.size = 64;  // the harness must own the values
                break;
            case 5: op.half = static_cast<std::uint16_t>(in.integer("half", 0, 0xFFFF)); break;
            case 6:  // runtime memory
                op.size = in.integer("size", 0, 4096);
                op.count =
                    in.chance("over", 4) ? op.size + in.integer("excess", 1, 64) : in.integer("count", 0, op.size);
                op.raw = static_cast<int>(in.integer("kind_raw", -2, 6));
                op.null_pointer = in.chance("host", 2);
                break;
            case 7: {  // a tensor of any shape, for aclCreateTensor and the getters
                const std::int64_t rank = in.integer("rank", 0, kMaxHarnessRank);
                TensorPlan plan{"tensor", Role::input, false, {}, Elt::f16, {}};
                for (std::int64_t d = 0; d < rank; ++d) plan.shape.push_back(in.integer("dim", 0, 6));
                TensorBuilder tb(in, Api::capi, rng);
                op.tensor = tb.build(plan, false);
                break;
            }
        }
    }
    return ops;
}

void run_meta(std::vector<MetaOp>& ops, Rng& rng) {
    for (MetaOp& op : ops) {
        switch (op.kind) {
            case 0: {
                unsigned char value[16];
                for (auto& b : value) b = static_cast<unsigned char>(rng.next());
                arm_error_message();
                aclScalar* s = aclCreateScalar(op.null_pointer ? nullptr : value, as_enum<aclDataType>(op.raw));
                const bool valid = acl_dtype_size(op.raw) > 0 && !op.null_pointer;
                if (valid && s == nullptr) broken("aclCreateScalar refused dtype %d: %s", op.raw, aclGetRecentErrMsg());
                if (!valid && s != nullptr)
                    broken("aclCreateScalar accepted dtype %d / NULL value %d", op.raw, op.null_pointer);
                if (!s) expect_error_message("aclCreateScalar");
                if (aclDestroyScalar(s) != ACLNN_SUCCESS) broken("aclDestroyScalar failed");
                break;
            }
            case 1: {
                const std::size_t got = aclDataTypeSize(as_enum<aclDataType>(op.raw));
                if (got != acl_dtype_size(op.raw))
                    broken("aclDataTypeSize(%d) = %zu, expected %zu", op.raw, got, acl_dtype_size(op.raw));
                break;
            }
            case 2:
            case 3:
            case 4: {
                std::vector<std::int64_t> ints(static_cast<std::size_t>(op.null_pointer ? 0 : op.size));
                std::vector<float> floats(ints.size());
                std::unique_ptr<bool[]> bools(new bool[ints.size() + 1]);
                for (std::size_t i = 0; i < ints.size(); ++i) {
                    ints[i] = static_cast<std::int64_t>(rng.next());
                    floats[i] = static_cast<float>(rng.uniform(-1, 1));
                    bools[i] = rng.next() & 1;
                }
                const auto n = static_cast<std::uint64_t>(op.size);
                arm_error_message();
                const char* fn = op.kind == 2   ? "aclCreateIntArray"
                                 : op.kind == 3 ? "aclCreateFloatArray"
                                                : "aclCreateBoolArray";
                void* handle =
                    op.kind == 2 ? static_cast<void*>(aclCreateIntArray(op.null_pointer ? nullptr : ints.data(), n))
                    : op.kind == 3
                        ? static_cast<void*>(aclCreateFloatArray(op.null_pointer ? nullptr : floats.data(), n))
                        : static_cast<void*>(aclCreateBoolArray(op.null_pointer ? nullptr : bools.get(), n));
                const bool valid = !(op.null_pointer && n > 0);
                if (valid && !handle)
                    broken("%s refused %llu values: %s", fn, (unsigned long long)n, aclGetRecentErrMsg());
                if (!valid && handle) broken("%s accepted NULL values with size %llu", fn, (unsigned long long)n);
                if (!handle) expect_error_message(fn);
                if (op.kind == 2 && handle) {
                    std::uint64_t size = 0;
                    if (aclGetIntArraySize(static_cast<aclIntArray*>(handle), &size) != ACLNN_SUCCESS || size != n)
                        broken("aclGetIntArraySize does not return %llu", (unsigned long long)n);
                    arm_error_message();
                    expect_aclnn_code("aclGetIntArraySize",
                                      aclGetIntArraySize(static_cast<aclIntArray*>(handle), nullptr),
                                      {ACLNN_ERR_PARAM_NULLPTR}, "NULL size");
                }
                const aclnnStatus d = op.kind == 2   ? aclDestroyIntArray(static_cast<aclIntArray*>(handle))
                                      : op.kind == 3 ? aclDestroyFloatArray(static_cast<aclFloatArray*>(handle))
                                                     : aclDestroyBoolArray(static_cast<aclBoolArray*>(handle));
                if (d != ACLNN_SUCCESS) broken("destroying an array failed");
                break;
            }
            case 5: {
                const float f = aclFloat16ToFloat(op.half);
                const bool nan = (op.half & 0x7C00) == 0x7C00 && (op.half & 0x3FF) != 0;
                if (nan != std::isnan(f)) broken("aclFloat16ToFloat(0x%04x) = %g", op.half, f);
                if (!nan && aclFloatToFloat16(f) != op.half)
                    broken("aclFloatToFloat16(aclFloat16ToFloat(0x%04x)) = 0x%04x", op.half, aclFloatToFloat16(f));
                break;
            }
            case 6: {
                void* p = nullptr;
                const bool host = op.null_pointer;
                arm_error_message();
                const aclError a =
                    host ? aclrtMallocHost(&p, static_cast<std::size_t>(op.size))
                         : aclrtMalloc(&p, static_cast<std::size_t>(op.size), as_enum<aclrtMemMallocPolicy>(op.raw));
                const bool policy_ok = host || (op.raw >= 0 && op.raw <= 2);
                if (op.size == 0 || !policy_ok) {
                    expect_acl_code(host ? "aclrtMallocHost" : "aclrtMalloc", a, ACL_ERROR_INVALID_PARAM,
                                    op.size == 0 ? "size 0" : "bad policy");
                    break;
                }
                expect_acl_code(host ? "aclrtMallocHost" : "aclrtMalloc", a, ACL_SUCCESS, "valid allocation");
                const auto size = static_cast<std::size_t>(op.size), count = static_cast<std::size_t>(op.count);
                auto* bytes = static_cast<unsigned char*>(p);
                std::memset(bytes, 0xA5, size);
                std::vector<unsigned char> before(bytes, bytes + size), src(count + 1);
                for (auto& b : src) b = static_cast<unsigned char>(rng.next());
                arm_error_message();
                const aclError m = aclrtMemset(p, size, 0x3C, count);
                if (count > size) {
                    expect_acl_code("aclrtMemset", m, ACL_ERROR_INVALID_PARAM, "count > maxCount");
                    if (std::memcmp(bytes, before.data(), size) != 0) broken("a failed aclrtMemset wrote");
                } else {
                    expect_acl_code("aclrtMemset", m, ACL_SUCCESS, "count <= maxCount");
                    for (std::size_t i = 0; i < size; ++i)
                        if (bytes[i] != (i < count ? 0x3C : 0xA5)) broken("aclrtMemset wrote the wrong bytes");
                }
                std::memcpy(before.data(), bytes, size);
                arm_error_message();
                const aclError c = aclrtMemcpy(p, size, src.data(), count, as_enum<aclrtMemcpyKind>(op.raw));
                if (count > size || op.raw < 0 || op.raw > 4) {
                    expect_acl_code("aclrtMemcpy", c, ACL_ERROR_INVALID_PARAM, "count > destMax or bad kind");
                    if (std::memcmp(bytes, before.data(), size) != 0) broken("a failed aclrtMemcpy wrote");
                } else {
                    expect_acl_code("aclrtMemcpy", c, ACL_SUCCESS, "valid copy");
                    if (std::memcmp(bytes, src.data(), count) != 0 ||
                        std::memcmp(bytes + count, before.data() + count, size - count) != 0)
                        broken("aclrtMemcpy copied the wrong bytes");
                }
                const char* free_name = host ? "aclrtFreeHost" : "aclrtFree";
                arm_error_message();
                expect_acl_code(host ? "aclrtFree" : "aclrtFreeHost", host ? aclrtFree(p) : aclrtFreeHost(p),
                                ACL_ERROR_INVALID_PARAM, "freed through the other kind");
                expect_acl_code(free_name, host ? aclrtFreeHost(p) : aclrtFree(p), ACL_SUCCESS, "live allocation");
                arm_error_message();
                expect_acl_code(free_name, host ? aclrtFreeHost(p) : aclrtFree(p), ACL_ERROR_INVALID_PARAM,
                                "double free");
                break;
            }
            case 7: {
                Case c;
                c.api = Api::capi;
                Tensor* t = c.add(std::move(op.tensor));
                AclTensor h;
                create_acl_tensor(c, *t, h);
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

struct Decoded {
    std::int64_t target = 0;
    std::unique_ptr<sa::SaCase> sa;
    LaunchChoice launch;
    std::vector<MetaOp> meta;
    std::uint64_t seed = 0;
};

Decoded decode(Input& in) {
    Decoded d;
    d.target = in.integer("op", 0, 2);
    if (d.target == 2) {
        d.seed = static_cast<std::uint64_t>(in.integer("seed", 0, 0xFFFFFFFF));
        Rng rng{d.seed};
        d.meta = decode_meta(in, rng);
        return d;
    }
    d.sa = sa::decode(in, Api::capi, d.target == 1, false);
    d.launch = decide_launch(in);
    return d;
}

}  // namespace
}  // namespace fuzz::capi_target

// fuzz/make_regressions.cpp includes this file for decode(); it has its own main.
#ifndef OPENNSA_FUZZ_GENERATOR

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace fuzz;
    using namespace fuzz::capi_target;
    init_acl();
    FuzzInput in(data, size);
    Decoded d = decode(in);
    Rng rng{d.sa ? d.sa->seed ^ 0x5eed : d.seed};
    if (d.target == 2) {
        g_describe = [](std::FILE* f) { std::fprintf(f, "  meta objects and runtime memory\n"); };
        run_meta(d.meta, rng);
    } else {
        g_describe = [&](std::FILE* f) { d.sa->describe(f); };
        run_operator(*d.sa, d.launch, rng);
    }
    g_describe = nullptr;
    return 0;
}
#endif
