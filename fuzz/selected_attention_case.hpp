// The selected-attention operator (SPEC.md) as the fuzz targets see it: how an input becomes a
// call (decode), which of SPEC's rules the call breaks (judge), and what a launch must do once
// phase one accepted it (facts). Shared by capi_selected_attention.cpp,
// native_selected_attention.cpp and executor_misuse.cpp.
#pragma once

#include <cmath>
#include <cstring>
#include <optional>

#include "aclnnop/aclnn_nsa_selected_attention.h"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"
#include "fuzz_support.hpp"

namespace fuzz::sa {

// Cumulative sequence lengths (actualSeqQLenOptional / actualSeqKvLenOptional).
struct SeqLens {
    bool given = false;
    bool null_pointer = false;  // C API: aclCreateIntArray(NULL, n > 0), which must refuse
    std::vector<std::int64_t> values;
};

inline const char* const kLayouts[] = {"TND", "BSND", "tnd", "", nullptr, "TND ", "TNDX", "BNSD"};

struct SaCase {
    Api api = Api::capi;
    bool backward = false;
    Case c;
    std::uint64_t seed = 0;
    // The sizes the decoder picked (the tensors' planned shapes follow them).
    std::int64_t T1 = 0, T2 = 0, N1 = 0, N2 = 0, Dk = 0, Dv = 0, bs = 0, C = 0;
    // Parameters as passed.
    double scale = 1;
    std::int64_t head_num = 0, sparse_mode = 2, block_size = 0, block_count = 0;
    int layout = 0;  // index into kLayouts
    SeqLens seq_q, seq_kv;
    Tensor *query = nullptr, *key = nullptr, *value = nullptr, *topk = nullptr, *mask = nullptr, *out = nullptr,
           *out_grad = nullptr, *softmax_max = nullptr, *softmax_sum = nullptr, *dq = nullptr, *dk = nullptr,
           *dv = nullptr;

    std::vector<Tensor*> required() const {
        if (backward) return {query, key, value, out, out_grad, softmax_max, softmax_sum, topk, dq, dk, dv};
        return {query, key, value, topk, softmax_max, softmax_sum, out};
    }
    opennsa::Params params() const {
        opennsa::Params p;
        p.scale = scale;
        p.head_num = head_num;
        p.block_size = block_size;
        p.block_count = block_count;
        p.sparse_mode = sparse_mode;
        if (seq_q.given && !seq_q.null_pointer) p.cu_seqlens_q = seq_q.values;
        if (seq_kv.given && !seq_kv.null_pointer) p.cu_seqlens_kv = seq_kv.values;
        return p;
    }
    void describe(std::FILE* f) const {
        std::fprintf(f, "  selected attention %s (%s): T1=%lld T2=%lld N1=%lld N2=%lld Dk=%lld Dv=%lld\n",
                     backward ? "backward" : "forward", api == Api::capi ? "C API" : "native", (long long)T1,
                     (long long)T2, (long long)N1, (long long)N2, (long long)Dk, (long long)Dv);
        std::fprintf(f,
                     "  scale=%g headNum=%lld sparseMode=%lld selectedBlockSize=%lld selectedBlockCount=%lld "
                     "layout=%s seed=%llu\n",
                     scale, (long long)head_num, (long long)sparse_mode, (long long)block_size, (long long)block_count,
                     kLayouts[layout] ? kLayouts[layout] : "NULL", (unsigned long long)seed);
        for (const SeqLens* s : {&seq_q, &seq_kv}) {
            std::fprintf(f, "  %s:", s == &seq_q ? "actualSeqQLen " : "actualSeqKvLen");
            if (!s->given) std::fprintf(f, " absent");
            if (s->null_pointer) std::fprintf(f, " NULL values");
            for (std::int64_t v : s->values) std::fprintf(f, " %lld", (long long)v);
            std::fprintf(f, "\n");
        }
        c.describe(f);
    }
};

// A head dimension: mostly small, sometimes a fast-path size, zero or an edge value.
inline std::int64_t decide_head_dim(Input& in, const char* name, bool strict) {
    Scope s(in, name);
    const std::int64_t kind = in.integer("kind", 0, strict ? 12 : 15);
    if (kind >= 11 && kind <= 12) {
        static constexpr std::int64_t kFast[] = {16, 32, 64, 128, 192, 8};
        return in.pick("fast", kFast);
    }
    if (kind == 13) return 0;
    if (kind == 14) return in.pick("edge", kEdgeValues);
    if (kind == 15) return in.integer("wild", kI64Min, kI64Max);
    return 1 + in.integer("value", 0, 23);
}

// Batches as [start of batch b] with a leading 0, from cumulative lengths (validated or not).
struct Batches {
    std::vector<std::int64_t> q{0}, kv{0};
    std::int64_t count() const { return static_cast<std::int64_t>(q.size()) - 1; }
};

inline Batches batches_of(const SaCase& s, std::int64_t T1, std::int64_t T2) {
    Batches b;
    if (s.seq_q.given && !s.seq_q.null_pointer && s.seq_kv.given && !s.seq_kv.null_pointer && !s.seq_q.values.empty() &&
        s.seq_q.values.size() == s.seq_kv.values.size()) {
        for (std::int64_t v : s.seq_q.values) b.q.push_back(v);
        for (std::int64_t v : s.seq_kv.values) b.kv.push_back(v);
    } else {
        b.q.push_back(T1);
        b.kv.push_back(T2);
    }
    return b;
}

// ceil(S2 / bs) without overflow (S2 >= 0, bs >= 1).
inline std::int64_t block_count(std::int64_t keys, std::int64_t bs) { return keys / bs + (keys % bs != 0 ? 1 : 0); }

inline void decide_seqlens(Input& in, SaCase& s, bool strict) {
    Scope scope(in, "seqlens");
    const std::int64_t mode = in.integer("mode", 0, strict ? 4 : 7);
    if (mode <= 2) return;
    s.seq_q.given = s.seq_kv.given = true;
    if (mode == 3 || mode == 4) {  // valid: non-decreasing, within T1 / T2
        const std::int64_t batches = in.integer("batches", 1, 4);
        std::int64_t q = 0, kv = 0;
        for (std::int64_t b = 0; b < batches; ++b) {
            q += in.integer("q", 0, std::max<std::int64_t>(s.T1 - q, 0));
            kv += in.integer("kv", 0, std::max<std::int64_t>(s.T2 - kv, 0));
            s.seq_q.values.push_back(q);
            s.seq_kv.values.push_back(kv);
        }
        if (mode == 4) {  // the last batch ends at T1 / T2
            s.seq_q.values.back() = std::max<std::int64_t>(s.T1, 0);
            s.seq_kv.values.back() = std::max<std::int64_t>(s.T2, 0);
        }
        return;
    }
    if (mode == 5) {  // only one of the two
        (in.chance("which", 2) ? s.seq_q : s.seq_kv).given = false;
        SeqLens& one = s.seq_q.given ? s.seq_q : s.seq_kv;
        one.values = {std::max<std::int64_t>(s.seq_q.given ? s.T1 : s.T2, 0)};
        return;
    }
    if (mode == 6) {  // anything
        for (SeqLens* l : {&s.seq_q, &s.seq_kv}) {
            const std::int64_t n = in.integer("length", 0, 5);
            for (std::int64_t i = 0; i < n; ++i) l->values.push_back(decide_size(in, "v", 0, 40));
        }
        return;
    }
    // mode 7: NULL values with a size (aclCreateIntArray must refuse; native: absent)
    (in.chance("which", 2) ? s.seq_q : s.seq_kv).null_pointer = true;
    s.seq_q.values = {std::max<std::int64_t>(s.T1, 0)};
    s.seq_kv.values = {std::max<std::int64_t>(s.T2, 0)};
}

// Every decision of one call, in order: seed, op dtype, sizes (T1, N2, G, Dk, Dv, T2, bs, C),
// parameters (scale, head_num, sparse, layout), seqlens, topk_fill, then the tensors in the
// operator's parameter order (TensorBuilder's decisions, scoped by the tensor's CANN name).
inline std::unique_ptr<SaCase> decode(Input& in, Api api, bool backward, bool strict) {
    auto sp = std::make_unique<SaCase>();
    SaCase& s = *sp;
    s.api = api;
    s.backward = backward;
    s.c.api = api;
    s.seed = static_cast<std::uint64_t>(in.integer("seed", 0, 0xFFFFFFFF));
    static constexpr Elt kDtypes[] = {Elt::f16, Elt::bf16, Elt::f32, Elt::f64};
    const Elt dt = kDtypes[in.integer("dtype", 0, api == Api::native ? 3 : 2)];

    s.T1 = strict ? 1 + in.integer("T1", 0, 8) : decide_size(in, "T1", 0, 16);
    s.N2 = strict ? 1 + in.integer("N2", 0, 2) : decide_size(in, "N2", 1, 4);
    const std::int64_t G = 1 + in.integer("G", 0, 3);
    s.N1 = s.N2 > 0 && s.N2 <= (std::int64_t{1} << 40) ? s.N2 * G : s.N2;
    s.Dk = decide_head_dim(in, "Dk", strict);
    s.Dv = decide_head_dim(in, "Dv", strict);
    s.T2 = strict ? in.integer("T2", 0, 40) : decide_size(in, "T2", 0, 40);
    s.bs = strict ? 1 + in.integer("bs", 0, 39) : decide_size(in, "bs", 1, 40);
    s.C = strict ? 1 + in.integer("C", 0, 5) : decide_size(in, "C", 1, 6);
    // Keep ordinary problems small: outputs of a few thousand elements.
    auto ordinary = [](std::int64_t v) { return v >= 0 && v <= 4096; };
    if (ordinary(s.T1) && ordinary(s.N1) && ordinary(s.Dk) && ordinary(s.Dv)) {
        while (s.T1 > 1 && s.T1 * s.N1 * std::max({s.Dk, s.Dv, std::int64_t{8}}) > 4096) s.T1 = (s.T1 + 1) / 2;
        if (s.N1 * std::max({s.Dk, s.Dv, std::int64_t{8}}) > 4096) s.Dk = s.Dv = 8;
    }
    if (backward && ordinary(s.T2) && ordinary(s.N2) && ordinary(s.Dk) && ordinary(s.Dv))
        while (s.T2 > 1 && s.T2 * s.N2 * std::max(s.Dk, s.Dv) > 4096) s.T2 = (s.T2 + 1) / 2;

    s.block_size = s.bs;
    s.block_count = s.C;
    s.scale = 1.0 / std::sqrt(static_cast<double>(s.Dk > 0 && s.Dk < 4096 ? s.Dk : 1));
    s.head_num = s.N1;
    s.sparse_mode = 2;
    Rng rng{s.seed};
    if (!strict) {
        switch (in.integer("scale", 0, 7)) {
            case 1: s.scale = rng.uniform(0.01, 2.0); break;
            case 2: s.scale = 0; break;
            case 3: s.scale = -0.5; break;
            case 4: s.scale = 1e30; break;
            case 5: s.scale = INFINITY; break;
            case 6: s.scale = NAN; break;
            case 7: s.scale = 1e-310; break;
            default: break;
        }
        switch (in.integer("head_num", 0, 15)) {
            case 13: s.head_num = s.N1 == kI64Max ? 0 : s.N1 + 1; break;
            case 14: s.head_num = 0; break;
            case 15: s.head_num = in.pick("head_num_edge", kEdgeValues); break;
            default: break;
        }
        static constexpr std::int64_t kModes[] = {2, 2, 2, 0, 0, 1, 3, -1, kI64Min, kI64Max};
        s.sparse_mode = in.pick("sparse", kModes);
        const std::int64_t layout = in.integer("layout", 0, 15);
        s.layout = layout <= 8 ? 0 : static_cast<int>(layout - 8);
    } else {
        s.sparse_mode = in.chance("sparse", 2) ? 0 : 2;
    }
    decide_seqlens(in, s, strict);

    // topk contents. The block count each index is checked against depends on its row's batch;
    // the fills aim at the smallest and largest batch so both valid and invalid values appear.
    const Batches planned = batches_of(s, s.T1, s.T2);
    std::int64_t fewest = -1, most = 0;
    if (s.bs >= 1)
        for (std::int64_t b = 0; b < planned.count(); ++b) {
            if (planned.q[b + 1] <= planned.q[b]) continue;  // no query rows: never read
            std::int64_t keys = 0;                           // the lengths may be anything here: not yet judged
            if (__builtin_sub_overflow(planned.kv[b + 1], planned.kv[b], &keys)) keys = 0;
            const std::int64_t n = keys < 0 ? 0 : std::min<std::int64_t>(block_count(keys, s.bs), INT32_MAX);
            fewest = fewest < 0 ? n : std::min(fewest, n);
            most = std::max(most, n);
        }
    if (fewest < 0) fewest = 1;
    const std::int64_t topk_fill = in.integer("topk_fill", 0, strict ? 1 : 3);
    auto topk_value = [&in, &rng, topk_fill, fewest, most](unsigned char* p, std::int64_t) {
        std::int32_t x = -1;
        switch (topk_fill) {
            case 0: x = rng.below(8) == 0 ? -1 : static_cast<std::int32_t>(rng.below(fewest)); break;
            case 1: {
                Scope v(in, "index");
                switch (in.integer("kind", 0, 3)) {
                    case 0: x = static_cast<std::int32_t>(in.integer("value", -1, 30)); break;
                    case 1: x = static_cast<std::int32_t>(most - 1); break;
                    case 2: x = static_cast<std::int32_t>(most); break;
                    case 3: x = static_cast<std::int32_t>(in.integer("wide", INT32_MIN, INT32_MAX)); break;
                }
                break;
            }
            case 2: x = -1; break;
            case 3: x = static_cast<std::int32_t>(rng.below(most + 4) - 2); break;
        }
        std::memcpy(p, &x, sizeof x);
    };
    // Statistics a forward could have produced: max anywhere, sum >= 1.
    auto stat = [&rng](bool is_sum) {
        return [&rng, is_sum](unsigned char* p, std::int64_t) {
            const float v =
                is_sum ? static_cast<float>(rng.uniform(1.0, 4.0)) : static_cast<float>(rng.uniform(-1.0, 1.0));
            std::memcpy(p, &v, sizeof v);
        };
    };

    TensorBuilder tb(in, api, rng);
    auto add = [&](TensorPlan plan) { return s.c.add(tb.build(plan, strict)); };
    const std::int64_t T1 = s.T1, T2 = s.T2, N1 = s.N1, N2 = s.N2, Dk = s.Dk, Dv = s.Dv, C = s.C;
    using R = Role;
    if (!backward) {
        s.query = add({"query", R::input, false, {T1, N1, Dk}, dt, {}});
        s.key = add({"key", R::input, false, {T2, N2, Dk}, dt, {}});
        s.value = add({"value", R::input, false, {T2, N2, Dv}, dt, {}});
        s.topk = add({"topkIndices", R::input, false, {T1, N2, C}, Elt::i32, topk_value});
        s.mask = add({"attenMaskOptional", R::input, true, {T1, T2}, Elt::boolean, {}});
        s.softmax_max = add({"softmaxMaxOut", R::output, false, {T1, N1, 8}, Elt::f32, {}});
        s.softmax_sum = add({"softmaxSumOut", R::output, false, {T1, N1, 8}, Elt::f32, {}});
        s.out = add({"attentionOut", R::output, false, {T1, N1, Dv}, dt, {}});
    } else {
        s.query = add({"query", R::input, false, {T1, N1, Dk}, dt, {}});
        s.key = add({"key", R::input, false, {T2, N2, Dk}, dt, {}});
        s.value = add({"value", R::input, false, {T2, N2, Dv}, dt, {}});
        s.out = add({"attentionOut", R::input, false, {T1, N1, Dv}, dt, {}});
        s.out_grad = add({"attentionOutGrad", R::input, false, {T1, N1, Dv}, dt, {}});
        s.softmax_max = add({"softmaxMax", R::input, false, {T1, N1, 8}, Elt::f32, stat(false)});
        s.softmax_sum = add({"softmaxSum", R::input, false, {T1, N1, 8}, Elt::f32, stat(true)});
        s.topk = add({"topkIndices", R::input, false, {T1, N2, C}, Elt::i32, topk_value});
        s.mask = add({"attenMaskOptional", R::input, true, {T1, T2}, Elt::boolean, {}});
        s.dq = add({"dqOut", R::output, false, {T1, N1, Dk}, dt, {}});
        s.dk = add({"dkOut", R::output, false, {T2, N2, Dk}, dt, {}});
        s.dv = add({"dvOut", R::output, false, {T2, N2, Dv}, dt, {}});
    }
    return sp;
}

// SPEC sections 1-4 and 9, applied to the call as built (after the C handles exist, so that a
// tensor aclCreateTensor refused counts as absent). Records rejects / unknowns in s.c.
inline void judge(SaCase& s) {
    Case& c = s.c;
    const std::vector<Tensor*> required = s.required();
    for (Tensor* t : required)
        if (!t->present) return;  // already a reject (judge_memory / create_acl_tensor)
    if (s.api == Api::capi) {
        const char* layout = kLayouts[s.layout];
        if (layout == nullptr)
            c.reject("inputLayout is NULL");
        else if (std::strcmp(layout, "TND") != 0)
            c.reject("inputLayout \"", layout, "\" is not TND");
    }
    const Tensor& q = *s.query;
    const bool q_float =
        q.elt == Elt::f16 || q.elt == Elt::bf16 || q.elt == Elt::f32 || (s.api == Api::native && q.elt == Elt::f64);
    if (!q_float) c.reject("query dtype ", q.raw_dtype, " is not supported");
    for (Tensor* t : required) {
        if (t == s.topk || t == s.softmax_max || t == s.softmax_sum || t == s.query) continue;
        if (t->raw_dtype != q.raw_dtype) c.reject(t->name(), " dtype differs from query's");
    }
    if (s.topk->elt != Elt::i32) c.reject("topkIndices is not int32");
    if (s.softmax_max->elt != Elt::f32 || s.softmax_sum->elt != Elt::f32) c.reject("softmax statistics are not fp32");
    // In the native API a rank-0 view is "no tensor" (TensorView::empty()), whatever its data
    // pointer: such a mask is absent, not a 0-D mask.
    const bool mask_given = s.mask->present && !(s.api == Api::native && s.mask->rank == 0);
    if (mask_given) {
        if (s.mask->elt != Elt::boolean && s.mask->elt != Elt::u8) c.reject("attenMaskOptional is not bool/uint8");
        if (s.mask->rank != 2) c.reject("attenMaskOptional is not 2-D");
    }
    bool ranks = true;
    for (Tensor* t : required)
        if (t->rank != 3) c.reject(t->name(), " has rank ", t->rank, ", not 3"), ranks = false;
    for (Tensor* t : required)
        for (int d = 0; d < t->rank; ++d)
            if (t->shape[d] < 0) ranks = false;  // rejected by judge_memory
    if (s.block_size < 1) c.reject("selectedBlockSize < 1");
    if (s.block_count < 1) c.reject("selectedBlockCount < 1");
    if (s.sparse_mode != 0 && s.sparse_mode != 2) c.reject("sparseMode ", s.sparse_mode);
    if (!std::isfinite(s.scale)) c.unknown("scaleValue is not finite");

    // Sequence lengths (native: a NULL array is just absent).
    // A NULL array (C API: aclCreateIntArray refuses it) reaches the operator as absent.
    const bool has_q = s.seq_q.given && !s.seq_q.null_pointer;
    const bool has_kv = s.seq_kv.given && !s.seq_kv.null_pointer;
    if (!ranks) return;

    const std::int64_t T1 = q.shape[0], N1 = q.shape[1], Dk = q.shape[2];
    const std::int64_t T2 = s.key->shape[0], N2 = s.key->shape[1], Dv = s.value->shape[2];
    if (N1 < 1) c.reject("N1 < 1");
    if (Dk < 1) c.reject("Dk < 1");
    if (N2 < 1) c.reject("N2 < 1");
    if (Dv < 1) c.reject("Dv < 1");
    if (s.key->shape[2] != Dk) c.reject("key Dk != query Dk");
    if (s.value->shape[0] != T2 || s.value->shape[1] != N2) c.reject("value T2/N2 differ from key's");
    if (s.head_num != N1) c.reject("headNum != N1");
    if (N2 >= 1 && N1 % N2 != 0) c.reject("N1 % N2 != 0");
    auto expect = [&](const Tensor* t, std::vector<std::int64_t> shape) {
        if (!t->shape_is(shape)) c.reject(t->name(), " has shape ", t->shape_string(), ", the rules want another");
    };
    expect(s.topk, {T1, N2, s.block_count});
    expect(s.out, {T1, N1, Dv});
    expect(s.softmax_max, {T1, N1, 8});
    expect(s.softmax_sum, {T1, N1, 8});
    if (s.backward) {
        expect(s.out_grad, {T1, N1, Dv});
        expect(s.dq, {T1, N1, Dk});
        expect(s.dk, {T2, N2, Dk});
        expect(s.dv, {T2, N2, Dv});
    }
    if (has_q != has_kv) c.reject("only one of actualSeqQLen / actualSeqKvLen given");
    if (has_q && has_kv) {
        const auto& cq = s.seq_q.values;
        const auto& ckv = s.seq_kv.values;
        if (cq.empty()) c.reject("actualSeqQLen is empty");
        if (cq.size() != ckv.size()) c.reject("actualSeq arrays differ in length");
        for (const auto* v : {&cq, &ckv}) {
            for (std::size_t i = 0; i < v->size(); ++i) {
                if ((*v)[i] < 0) c.reject("negative cumulative length");
                if (i > 0 && (*v)[i] < (*v)[i - 1]) c.reject("decreasing cumulative length");
            }
        }
        if (!cq.empty() && cq.back() > T1) c.reject("actualSeqQLen ends past T1");
        if (!ckv.empty() && ckv.back() > T2) c.reject("actualSeqKvLen ends past T2");
    }
    // A query row may see at most 2^24 keys through its slots: selectedBlockCount x
    // min(selectedBlockSize, the longest batch's keys, at least 1).
    if (s.block_size >= 1 && s.block_count >= 1 && T2 >= 0) {
        std::int64_t longest = 1;
        if (has_q && has_kv) {
            std::int64_t prev = 0;
            for (std::int64_t e : s.seq_kv.values) {  // (meaningful only for valid arrays, else rejected)
                const __int128 len = static_cast<__int128>(e) - prev;
                if (len > longest) longest = len > INT64_MAX ? INT64_MAX : static_cast<std::int64_t>(len);
                prev = e;
            }
        } else {
            longest = std::max<std::int64_t>(1, T2);
        }
        const std::int64_t block_len = std::min(s.block_size, longest);
        if (s.block_count > (std::int64_t{1} << 24) / block_len) c.reject("a row would see more than 2^24 keys");
    }
    // (Tensors with sizes near int64 are marked by Case itself.)
}

// What a launch of an accepted call must do: topk contents checked as SPEC 3 says, and how
// much real work it is. Reads the tensors as they are now.
inline LaunchFacts facts(const SaCase& s) {
    LaunchFacts f;
    const Tensor& q = *s.query;
    const std::int64_t T1 = q.shape[0], N1 = q.shape[1], Dk = q.shape[2];
    const std::int64_t T2 = s.key->shape[0], N2 = s.key->shape[1], Dv = s.value->shape[2];
    const std::int64_t bs = s.block_size, C = s.block_count, G = N1 / N2;
    const bool causal = s.sparse_mode == 2;
    // Generous: 512 bytes per logical element (packed, padded fp32 copies of every input) plus
    // 64 bytes per (row, head, slot) and head dimension or visible key (per-slot partials and
    // scores). What it leaves out is any size driven by selectedBlockSize beyond the keys.
    const double per_slot = static_cast<double>(Dk) + static_cast<double>(Dv) + static_cast<double>(std::min(bs, T2));
    f.workspace_bound = static_cast<double>(kMaxWorkspace) + 512.0 * s.c.logical_elements() +
                        64.0 * static_cast<double>(T1) * static_cast<double>(N1) * static_cast<double>(C) * per_slot;
    f.work = s.c.output_elements();
    const Tensor& topk = *s.topk;
    // A broadcast slot dimension repeats one value C times: read it once.
    const std::int64_t slots = topk.strides[2] == 0 ? 1 : C;
    const double repeat = static_cast<double>(C) / static_cast<double>(slots);
    if (f.work > kMaxOutputElements ||
        static_cast<double>(T1) * static_cast<double>(N2) * static_cast<double>(slots) > 1e6) {
        f.work = INFINITY;  // too big to evaluate: the driver only launches it in ways that fail early
        return f;
    }
    const Batches b = batches_of(s, T1, T2);
    const double per_key = static_cast<double>(G) * static_cast<double>(Dk + Dv) * (s.backward ? 2.0 : 1.0);
    for (std::int64_t batch = 0; batch < b.count(); ++batch) {
        const std::int64_t keys = b.kv[batch + 1] - b.kv[batch];
        const std::int64_t blocks = block_count(keys, bs);
        for (std::int64_t t = b.q[batch]; t < b.q[batch + 1]; ++t) {
            const std::int64_t pos = t - b.q[batch];
            for (std::int64_t n = 0; n < N2; ++n)
                for (std::int64_t j = 0; j < slots; ++j) {
                    const std::int32_t x = topk.read<std::int32_t>(t, n, j);
                    if (x == -1) continue;
                    if (x < 0 || x >= blocks) {
                        if (f.data_valid)
                            f.data_problem = Case::concat("topkIndices[", t, ", ", n, ", ", j, "] = ", x,
                                                          " is out of range [0, ", blocks, ") for batch ", batch);
                        f.data_valid = false;
                        continue;
                    }
                    const __int128 begin = static_cast<__int128>(x) * bs;
                    __int128 visible = std::min<__int128>(bs, keys - begin);
                    if (causal) visible = std::min<__int128>(visible, pos + 1 - begin);
                    if (visible > 0) f.work += static_cast<double>(visible) * per_key * repeat;
                }
        }
    }
    return f;
}

}  // namespace fuzz::sa
