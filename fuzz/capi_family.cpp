// libFuzzer target: the C API of the NSA family beyond the selected attention. The first decision
// picks the operator (each a GetWorkspaceSize + launch, driven by fuzz_support.hpp's drive_two_phase):
//   0  aclnnNsaCompress                  3  aclnnNsaCompressWithCache
//   1  aclnnNsaCompressGrad              4  aclnnNsaCompressAttentionInfer
//   2  aclnnNsaCompressAttention         5  aclnnNsaSelectedAttentionInfer
// (CANN has no C entry point for the compress attention's backward, so neither has OpenNSA.)
//
// Each call is first *planned* valid from small sizes (docs/spec/compress.md, compress_attention.md,
// decoding.md), then the input may move any attribute, length array, layout string, scale or
// tensor (TensorBuilder: shape, dtype, strides, storage, pointers) off the plan, and corrupt one
// launch-checked entry (slot, block-table entry, topk index). The judge knows the plan: a call
// still on it must be accepted; one that breaks a rule the judge models (dtypes, ranks, attribute
// relations, layouts, null / negative lengths, a tensor alone off a shape the rest fixes) must be
// rejected; anything else may go either way and is still checked byte for byte.
#include <cfloat>

#include "aclnnop/aclnn_nsa_compress.h"
#include "aclnnop/aclnn_nsa_compress_attention.h"
#include "aclnnop/aclnn_nsa_compress_attention_infer.h"
#include "aclnnop/aclnn_nsa_compress_grad.h"
#include "aclnnop/aclnn_nsa_compress_with_cache.h"
#include "aclnnop/aclnn_nsa_selected_attention_infer.h"
#include "fuzz_support.hpp"

namespace fuzz::family {
namespace {

enum Op { compress, compress_grad, compress_attention, compress_with_cache, ca_infer, sa_infer, kOps };

constexpr const char* kLaunchNames[kOps] = {"aclnnNsaCompress",          "aclnnNsaCompressGrad",
                                            "aclnnNsaCompressAttention", "aclnnNsaCompressWithCache",
                                            "aclnnNsaCompressAttentionInfer", "aclnnNsaSelectedAttentionInfer"};
constexpr const char* kPrepareNames[kOps] = {
    "aclnnNsaCompressGetWorkspaceSize",          "aclnnNsaCompressGradGetWorkspaceSize",
    "aclnnNsaCompressAttentionGetWorkspaceSize", "aclnnNsaCompressWithCacheGetWorkspaceSize",
    "aclnnNsaCompressAttentionInferGetWorkspaceSize", "aclnnNsaSelectedAttentionInferGetWorkspaceSize"};
using Launch = aclnnStatus (*)(void*, std::uint64_t, aclOpExecutor*, aclrtStream);
constexpr Launch kLaunches[kOps] = {aclnnNsaCompress,          aclnnNsaCompressGrad,
                                    aclnnNsaCompressAttention, aclnnNsaCompressWithCache,
                                    aclnnNsaCompressAttentionInfer, aclnnNsaSelectedAttentionInfer};

inline const char* const kLayouts[] = {"TND", "BSND", "BSH", "tnd", "", nullptr, "TND ", "BNSD"};
enum { kTND = 0, kBSND = 1, kBSH = 2 };

// What the rules want of a tensor's dtype.
enum class Want {
    lead,  // fp16 or bf16 (the C API's data dtypes); the later `same` tensors must equal it
    same,
    i32,
    f32,
    mask,  // bool or uint8
    unread_mask,  // bool or uint8 of any shape (rank 1-4, the C API's), contents never read
    any,   // not validated at all (reserved arguments)
};

struct Arg {
    Tensor* t;
    Want want;
    std::vector<int> ranks;  // the ranks the rules allow
    bool exact;              // off its planned shape alone (the rest on plan), the call is invalid
};

struct Attr {
    const char* name;
    std::int64_t value, planned;
};

struct Lens {
    const char* name = "";
    bool required = false;
    bool ignored = false;  // accepted and never read: any contents, or none
    bool planned_given = false, given = false, null_pointer = false;
    std::vector<std::int64_t> planned, values;
    IntArray array;
    bool on_plan() const { return given == planned_given && !null_pointer && values == planned; }
    bool reaches_operator() const { return given && !(null_pointer && !values.empty()); }
};

struct Call {
    int op = 0;
    Case c;
    std::uint64_t seed = 0;
    std::vector<Arg> args;
    std::vector<Attr> attrs;
    std::vector<std::unique_ptr<Lens>> lens;
    double scale = 1, planned_scale = 1;
    int layout = kTND, planned_layout = kTND;
    bool corrupted = false;  // one launch-checked entry was overwritten
    // Operator parts, set by the decoders (they capture this Call, which never moves).
    std::function<aclnnStatus(const AclHandles&, const char* layout, std::uint64_t*, aclOpExecutor**)> prepare;
    std::function<void()> judge;           // rules beyond the generic ones of judge_call
    std::function<LaunchFacts()> facts;    // launch-time validity (reads the tensors as they are)
    std::function<void()> after_success;   // reference checks after a successful launch
    std::string notes;                     // the planned sizes, for describe

    std::int64_t attr(const char* name) const {
        for (const Attr& a : attrs)
            if (std::strcmp(a.name, name) == 0) return a.value;
        broken("harness bug: no attribute %s", name);
    }
    const char* layout_string() const { return kLayouts[layout]; }
    bool layout_is(int which) const { return kLayouts[layout] && std::strcmp(kLayouts[layout], kLayouts[which]) == 0; }

    void describe(std::FILE* f) const {
        std::fprintf(f, "  %s: %s seed=%llu\n", kLaunchNames[op], notes.c_str(), (unsigned long long)seed);
        std::fprintf(f, "  layout=%s (planned %s) scale=%g (planned %g)%s\n",
                     kLayouts[layout] ? kLayouts[layout] : "NULL", kLayouts[planned_layout], scale, planned_scale,
                     corrupted ? " corrupted-entry" : "");
        for (const Attr& a : attrs)
            std::fprintf(f, "  %s=%lld%s\n", a.name, (long long)a.value,
                         a.value == a.planned ? "" : Case::concat(" (planned ", a.planned, ")").c_str());
        for (const auto& l : lens) {
            std::fprintf(f, "  %s:", l->name);
            if (!l->given) std::fprintf(f, " absent");
            if (l->null_pointer) std::fprintf(f, " NULL values");
            for (std::int64_t v : l->values) std::fprintf(f, " %lld", (long long)v);
            std::fprintf(f, "%s\n", l->on_plan() ? "" : " (off plan)");
        }
        c.describe(f);
    }
};

// ---------------------------------------------------------------------------------------------
// Decisions off the plan.

std::int64_t decide_attr(Input& in, Call& k, const char* name, std::int64_t planned) {
    Scope s(in, name);
    std::int64_t v = planned;
    switch (in.integer("kind", 0, 15)) {
        case 12: v = planned + in.integer("delta", -3, 3); break;
        case 13: v = 0; break;
        case 14: v = in.pick("edge", kEdgeValues); break;
        case 15: v = in.integer("wild", kI64Min, kI64Max); break;
        default: break;
    }
    k.attrs.push_back({name, v, planned});
    return v;
}

Lens& decide_lens(Input& in, Call& k, const char* name, bool required, bool given,
                  std::vector<std::int64_t> planned) {
    Scope s(in, name);
    auto l = std::make_unique<Lens>();
    l->name = name;
    l->required = required;
    l->planned_given = l->given = given;
    l->planned = l->values = std::move(planned);
    auto& v = l->values;
    switch (in.integer("kind", 0, 15)) {
        case 12: l->given = !l->given; break;
        case 13:
            l->given = l->null_pointer = true;
            if (v.empty()) v = {1};
            break;
        case 14:
            if (!v.empty()) {
                auto& x = v[static_cast<std::size_t>(in.integer("at", 0, static_cast<std::int64_t>(v.size()) - 1))];
                x = in.chance("edge", 2) ? in.pick("edge_value", kEdgeValues) : x + in.integer("delta", -2, 2);
            }
            break;
        case 15:
            if (in.chance("drop", 2)) {
                if (!v.empty()) v.pop_back();
            } else {
                v.push_back(in.integer("extra", -1, 8));
            }
            break;
        default: break;
    }
    k.lens.push_back(std::move(l));
    return *k.lens.back();
}

void decide_layout(Input& in, Call& k, int planned) {
    k.planned_layout = k.layout = planned;
    if (in.integer("layout", 0, 15) >= 13) k.layout = static_cast<int>(in.integer("layout_any", 0, 7));
}

void decide_scale(Input& in, Call& k, double planned) {
    k.planned_scale = k.scale = planned;
    switch (in.integer("scale", 0, 15)) {
        case 9: k.scale = 0.7; break;
        case 10: k.scale = 0; break;
        case 11: k.scale = -0.5; break;
        case 12: k.scale = 1e30; break;
        case 13: k.scale = INFINITY; break;
        case 14: k.scale = NAN; break;
        case 15: k.scale = 1e300; break;  // finite as a double, infinite as the fp32 the rules ask for
        default: break;
    }
}

bool finite_as_f32(double v) { return std::isfinite(v) && std::fabs(v) <= FLT_MAX; }

// The C API's data dtypes.
Elt decide_dtype(Input& in) { return in.chance("bf16", 2) ? Elt::bf16 : Elt::f16; }

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
// Compressed-token count C(S) (docs/spec/README.md).
std::int64_t tokens(std::int64_t S, std::int64_t l, std::int64_t d) { return S >= l ? (S - l) / d + 1 : 0; }
std::vector<std::int64_t> cumulative(const std::vector<std::int64_t>& v) {
    std::vector<std::int64_t> c;
    std::int64_t s = 0;
    for (std::int64_t x : v) c.push_back(s += x);
    return c;
}
std::int64_t sum_of(const std::vector<std::int64_t>& v) { return v.empty() ? 0 : cumulative(v).back(); }
std::int64_t max_of(const std::vector<std::int64_t>& v) { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }
double dim(const Tensor* t, int d) {  // a dimension as a work estimate sees it
    if (!t->present) return 0;
    if (d < 0) d += t->rank;
    return d >= 0 && d < t->rank ? std::fabs(static_cast<double>(t->shape[d])) : 1.0;
}

// A head dimension: small, sometimes a fast-path size.
std::int64_t decide_dim(Input& in, const char* name) {
    static constexpr std::int64_t kDims[] = {1, 2, 3, 4, 5, 7, 8, 8, 16, 16, 32, 64};
    return in.pick(name, kDims);
}

Tensor* add(Input& in, Call& k, Rng& rng, TensorPlan plan, Want want, std::vector<int> ranks, bool exact) {
    TensorBuilder tb(in, Api::capi, rng);
    const std::size_t rejects = k.c.rejects.size();
    Tensor* t = k.c.add(tb.build(plan, false));
    // A reserved argument, or a mask of any shape whose contents are never read (the compress
    // attention infer's), is not validated: what its memory breaks need not be seen.
    if (want == Want::any || want == Want::unread_mask)
        while (k.c.rejects.size() > rejects) {
            k.c.unknown(k.c.rejects.back(), " (a reserved argument, not validated)");
            k.c.rejects.pop_back();
        }
    k.args.push_back({t, want, std::move(ranks), exact});
    return t;
}

// A page table [B, maxBlocks]: batch b's first pages[b] columns hold distinct pages of a shuffled
// pool of num_blocks; the columns past them are never read (-1 or garbage).
void fill_block_table(Tensor* t, const std::vector<std::int64_t>& pages, std::int64_t num_blocks, Rng& rng) {
    if (!t->present || t->elt != Elt::i32 || t->rank != 2 || t->empty) return;
    std::vector<std::int32_t> pool(static_cast<std::size_t>(std::max<std::int64_t>(num_blocks, 1)));
    for (std::size_t i = 0; i < pool.size(); ++i) pool[i] = static_cast<std::int32_t>(i);
    for (std::size_t i = pool.size(); i > 1; --i) std::swap(pool[i - 1], pool[static_cast<std::size_t>(rng.below(i))]);
    std::size_t next = 0;
    // Only the planned rows and columns (the shape may have been made huge; the rest of the
    // buffer keeps TensorBuilder's small integers).
    const std::int64_t rows = std::min<std::int64_t>(t->shape[0], static_cast<std::int64_t>(pages.size()));
    const std::int64_t cols = std::min<std::int64_t>(t->shape[1], max_of(pages) + 1);
    for (std::int64_t b = 0; b < rows; ++b)
        for (std::int64_t col = 0; col < cols; ++col) {
            const bool read = b < static_cast<std::int64_t>(pages.size()) && col < pages[static_cast<std::size_t>(b)];
            const std::int32_t v = read ? pool[next++ % pool.size()] : (rng.below(2) ? -1 : static_cast<std::int32_t>(rng.next()));
            const std::int64_t idx[2] = {b, col};
            t->put(idx, v);
        }
}

// Overwrites one launch-checked int32 entry with a value the launch must refuse (or one it must
// take: the decision picks among in-range edges too).
void corrupt_entry(Input& in, Call& k, Tensor* t, std::vector<std::int64_t> idx, std::int64_t bad_hi) {
    if (!t->present || t->elt != Elt::i32 || t->rank != static_cast<int>(idx.size())) return;
    const std::int64_t values[] = {-1, -2, bad_hi, bad_hi - 1, INT32_MAX, INT32_MIN};
    k.corrupted = t->put(idx.data(), static_cast<std::int32_t>(in.pick("value", values)));
}

// Every read block-table entry (batch b's first pages[b] columns) in [0, num_blocks).
void check_pages(LaunchFacts& f, const Tensor* table, const std::vector<std::int64_t>& pages, std::int64_t num_blocks) {
    for (std::int64_t b = 0; b < static_cast<std::int64_t>(pages.size()); ++b)
        for (std::int64_t col = 0; col < pages[static_cast<std::size_t>(b)]; ++col) {
            const std::int64_t idx[2] = {b, col};
            const std::int32_t v = table->get<std::int32_t>(idx);
            if ((v < 0 || v >= num_blocks) && f.data_valid) {
                f.data_valid = false;
                f.data_problem = Case::concat("blockTable[", b, ", ", col, "] = ", v, " outside [0, ", num_blocks, ")");
            }
        }
}

// ---------------------------------------------------------------------------------------------
// The generic judge: dtypes, ranks and plan deviations of every tensor, length arrays, and any
// attribute off its plan (unknown unless an operator rule below makes it a reject).

void judge_call(Call& k) {
    Case& c = k.c;
    int off_plan = 0;
    for (const Arg& a : k.args) off_plan += a.t->present && !a.t->shape_is(a.t->plan.shape);
    for (const Attr& a : k.attrs) off_plan += a.value != a.planned;
    for (const auto& l : k.lens) off_plan += !l->on_plan() && !l->ignored;
    off_plan += k.layout != k.planned_layout;

    const Tensor* lead = nullptr;
    for (const Arg& a : k.args) {
        const Tensor& t = *a.t;
        if (!t.present || a.want == Want::any) continue;
        switch (a.want) {
            case Want::lead:
                lead = &t;
                if (t.elt != Elt::f16 && t.elt != Elt::bf16) c.reject(t.name(), ": dtype ", t.raw_dtype, " is not fp16/bf16");
                break;
            case Want::same:
                if (lead && t.raw_dtype != lead->raw_dtype) c.reject(t.name(), ": dtype differs from ", lead->name(), "'s");
                break;
            case Want::i32:
                if (t.elt != Elt::i32) c.reject(t.name(), " is not int32");
                break;
            case Want::f32:
                if (t.elt != Elt::f32) c.reject(t.name(), " is not fp32");
                break;
            case Want::mask:
            case Want::unread_mask:
                if (t.elt != Elt::boolean && t.elt != Elt::u8) c.reject(t.name(), " is not bool/uint8");
                break;
            case Want::any: break;
        }
        if (std::find(a.ranks.begin(), a.ranks.end(), t.rank) == a.ranks.end()) {
            c.reject(t.name(), " has rank ", t.rank);
            continue;
        }
        if (t.shape_is(t.plan.shape) || a.want == Want::unread_mask) continue;
        if (a.exact && off_plan == 1)
            c.reject(t.name(), " alone is off its shape: ", t.shape_string());
        else
            c.unknown(t.name(), " is off its planned shape: ", t.shape_string());
    }
    for (const auto& l : k.lens) {
        if (l->on_plan() || l->ignored) continue;
        if (!l->reaches_operator()) {
            l->required ? c.reject(l->name, " is absent (required)") : c.unknown(l->name, " absent, against the plan");
            continue;
        }
        bool negative = false;
        for (std::int64_t v : l->values) negative |= v < 0;
        if (negative)
            c.reject(l->name, " has a negative entry");
        else
            c.unknown(l->name, " is off its plan");
    }
    for (const Attr& a : k.attrs)
        if (a.value != a.planned) c.unknown(a.name, " is off its plan");
    if (k.layout != k.planned_layout) c.unknown("layout is off its plan");
    k.judge();
}

// Attribute relations shared by the operators (each a definite rule whatever else the call holds).
void judge_window(Call& k, bool selection) {
    const std::int64_t l = k.attr("compressBlockSize"), d = k.attr(k.op == ca_infer ? "compressBlockStride" : "compressStride");
    if (d < 1) k.c.reject("compress stride < 1");
    if (l < d) k.c.reject("compressBlockSize < stride");
    if (!selection) return;
    const std::int64_t ls = k.attr("selectBlockSize"), n = k.attr("selectBlockCount");
    if (ls < l) k.c.reject("selectBlockSize < compressBlockSize");
    if (d >= 1 && ls % d != 0) k.c.reject("selectBlockSize is not a multiple of the stride");
    if (n < 1) k.c.reject("selectBlockCount < 1");
}

void judge_layout(Call& k, std::initializer_list<int> allowed) {
    bool ok = false;
    for (int a : allowed) ok |= k.layout_is(a);
    if (!ok) k.c.reject("layout ", k.layout_string() ? k.layout_string() : "NULL", " is not allowed");
}

// ---------------------------------------------------------------------------------------------
// 0, 1: aclnnNsaCompress, aclnnNsaCompressGrad (docs/spec/compress.md).

void decode_compress(Input& in, Call& k, Rng& rng, bool grad) {
    const Elt dt = decide_dtype(in);
    const std::int64_t N = 1 + in.integer("N", 0, 2), D = decide_dim(in, "D");
    const std::int64_t l = 1 + in.integer("l", 0, 5), d = 1 + in.integer("d", 0, l - 1);
    const std::int64_t type = in.integer("type", 0, 1);
    std::vector<std::int64_t> S(static_cast<std::size_t>(1 + in.integer("B", 0, 2)));
    for (auto& s : S) s = in.integer("S", 0, 12);
    const std::int64_t T = sum_of(S) + in.integer("pad", 0, 2);
    std::int64_t Tc = 0;
    for (std::int64_t s : S) Tc += tokens(s, l, d);
    k.notes = Case::concat("T=", T, " N=", N, " D=", D, " Tc=", Tc);

    decide_attr(in, k, "compressBlockSize", l);
    decide_attr(in, k, "compressStride", d);
    decide_attr(in, k, "actSeqLenType", type);
    Lens& lens = decide_lens(in, k, "actSeqLen", true, true, type == 0 ? cumulative(S) : S);
    decide_layout(in, k, kTND);
    using R = Role;
    Tensor *input, *weight, *output = nullptr, *out_grad = nullptr, *in_grad = nullptr, *w_grad = nullptr;
    if (!grad) {
        input = add(in, k, rng, {"input", R::input, false, {T, N, D}, dt, {}}, Want::lead, {3}, false);
        weight = add(in, k, rng, {"weight", R::input, false, {l, N}, dt, {}}, Want::same, {2}, true);
        output = add(in, k, rng, {"output", R::output, false, {Tc, N, D}, dt, {}}, Want::same, {3}, true);
    } else {
        out_grad = add(in, k, rng, {"outputGrad", R::input, false, {Tc, N, D}, dt, {}}, Want::lead, {3}, true);
        input = add(in, k, rng, {"input", R::input, false, {T, N, D}, dt, {}}, Want::same, {3}, true);
        weight = add(in, k, rng, {"weight", R::input, false, {l, N}, dt, {}}, Want::same, {2}, true);
        in_grad = add(in, k, rng, {"inputGradOut", R::output, false, {T, N, D}, dt, {}}, Want::same, {3}, true);
        w_grad = add(in, k, rng, {"weightGradOut", R::output, false, {l, N}, dt, {}}, Want::same, {2}, true);
    }
    k.judge = [&k, &lens] {
        judge_window(k, false);
        const std::int64_t t = k.attr("actSeqLenType");
        if (t != 0 && t != 1) k.c.reject("actSeqLenType ", t);
        judge_layout(k, {kTND});
        if (lens.reaches_operator() && lens.values.empty()) k.c.reject("actSeqLen is empty");
    };
    k.prepare = [=, &k, &lens](const AclHandles& h, const char* layout, std::uint64_t* ws, aclOpExecutor** ex) {
        char* lay = const_cast<char*>(layout);
        if (!grad)
            return aclnnNsaCompressGetWorkspaceSize(h.of(input), h.of(weight), lens.array.handle, lay,
                                                    k.attr("compressBlockSize"), k.attr("compressStride"),
                                                    k.attr("actSeqLenType"), h.mut(output), ws, ex);
        return aclnnNsaCompressGradGetWorkspaceSize(h.of(out_grad), h.of(input), h.of(weight), lens.array.handle,
                                                    k.attr("compressBlockSize"), k.attr("compressStride"),
                                                    k.attr("actSeqLenType"), lay, h.of(in_grad), h.of(w_grad), ws, ex);
    };
    k.facts = [&k] {
        LaunchFacts f;
        const double window = std::fabs(static_cast<double>(k.attr("compressBlockSize")));
        f.work = k.c.logical_elements() * (1 + window) * 3;
        f.workspace_bound = static_cast<double>(kMaxWorkspace) + 512.0 * k.c.logical_elements();
        return f;
    };
    if (grad) return;
    // The forward against its formula (1.3), for calls on plan: each element one weighted sum,
    // rounded once to the output dtype.
    k.after_success = [&k, input, weight, output, S, l, d, type] {
        if (!k.c.clean()) return;
        // Rounding once: half an ulp relative, or of the smallest subnormal (fp16's is 2^-24).
        const double eps = output->elt == Elt::bf16 ? 0x1p-8 : 0x1p-11;
        const double tiny = output->elt == Elt::bf16 ? 0x1p-133 : 0x1p-24;
        std::int64_t start = 0, row = 0;
        for (std::int64_t s : S) {
            for (std::int64_t c = 0; c < tokens(s, l, d); ++c, ++row)
                for (std::int64_t h = 0; h < output->shape[1]; ++h)
                    for (std::int64_t e = 0; e < output->shape[2]; ++e) {
                        double want = 0, size = 0;
                        for (std::int64_t r = 0; r < l; ++r) {
                            const std::int64_t wi[2] = {r, h}, xi[3] = {start + c * d + r, h, e};
                            const double term = weight->load(wi) * input->load(xi);
                            want += term;
                            size += std::fabs(term);
                        }
                        const std::int64_t oi[3] = {row, h, e};
                        const double got = output->load(oi);
                        if (!(std::fabs(got - want) <= 2 * eps * size + tiny))
                            broken("aclnnNsaCompress: output[%lld, %lld, %lld] = %.8g, the formula gives %.8g",
                                   (long long)row, (long long)h, (long long)e, got, want);
                    }
            start += s;
        }
        (void)type;
    };
}

// ---------------------------------------------------------------------------------------------
// 2: aclnnNsaCompressAttention (docs/spec/compress_attention.md).

void decode_compress_attention(Input& in, Call& k, Rng& rng) {
    const Elt dt = decide_dtype(in);
    const std::int64_t N2 = 1 + in.integer("N2", 0, 1), G = 1 + in.integer("G", 0, 2), N1 = N2 * G;
    const std::int64_t Dk = decide_dim(in, "Dk"), Dv = 1 + in.integer("Dv", 0, Dk - 1);
    const std::int64_t d = 1 + in.integer("d", 0, 2), l = d + in.integer("l", 0, 2 * d);
    const std::int64_t ls = d * (ceil_div(l, d) + in.integer("ls", 0, 2)), n = 1 + in.integer("k", 0, 3), m = ls / d;
    const bool batched = !in.chance("one_batch", 4);
    std::vector<std::int64_t> S1(static_cast<std::size_t>(batched ? 1 + in.integer("B", 0, 2) : 1)), C(S1.size());
    for (std::size_t b = 0; b < S1.size(); ++b) S1[b] = in.integer("S1", 0, 5), C[b] = in.integer("C", 0, 6);
    const std::int64_t T1 = sum_of(S1) + (batched ? in.integer("pad_q", 0, 1) : 0);
    const std::int64_t T2 = sum_of(C) + (batched ? in.integer("pad_kv", 0, 1) : 0);
    const std::int64_t maxS1 = max_of(S1), maxC = max_of(C), maxNS = ceil_div(maxC, m);
    static constexpr std::int64_t kModes[] = {0, 1, 2};
    k.notes = Case::concat("T1=", T1, " T2=", T2, " N1=", N1, " N2=", N2, " Dk=", Dk, " Dv=", Dv, " batches=",
                           batched ? static_cast<std::int64_t>(S1.size()) : 0);

    decide_attr(in, k, "headNum", N1);
    decide_attr(in, k, "sparseMode", in.pick("mode", kModes));
    decide_attr(in, k, "compressBlockSize", l);
    decide_attr(in, k, "compressStride", d);
    decide_attr(in, k, "selectBlockSize", ls);
    decide_attr(in, k, "selectBlockCount", n);
    decide_scale(in, k, 1.0 / std::sqrt(static_cast<double>(Dk)));
    decide_layout(in, k, kTND);
    Lens& sq = decide_lens(in, k, "actualSeqQLen", false, batched, cumulative(S1));
    Lens& sc = decide_lens(in, k, "actualCmpSeqKvLen", false, batched, cumulative(C));
    std::vector<std::int64_t> blocks;
    for (std::int64_t c : C) blocks.push_back(ceil_div(c, m));
    Lens& ss = decide_lens(in, k, "actualSelSeqKvLen", false, batched && in.chance("sel", 2), cumulative(blocks));
    ss.ignored = true;

    using R = Role;
    Tensor* q = add(in, k, rng, {"query", R::input, false, {T1, N1, Dk}, dt, {}}, Want::lead, {3}, true);
    Tensor* key = add(in, k, rng, {"key", R::input, false, {T2, N2, Dk}, dt, {}}, Want::same, {3}, false);
    Tensor* v = add(in, k, rng, {"value", R::input, false, {T2, N2, Dv}, dt, {}}, Want::same, {3}, true);
    Tensor* mask = add(in, k, rng, {"attenMaskOptional", R::input, true, {maxS1, maxC}, Elt::boolean, {}}, Want::mask, {2}, false);
    Tensor* tmask = add(in, k, rng, {"topkMaskOptional", R::input, true, {maxS1, maxNS}, Elt::boolean, {}}, Want::mask, {2}, false);
    Tensor* smax = add(in, k, rng, {"softmaxMaxOut", R::output, false, {T1, N1, 8}, Elt::f32, {}}, Want::f32, {3}, true);
    Tensor* ssum = add(in, k, rng, {"softmaxSumOut", R::output, false, {T1, N1, 8}, Elt::f32, {}}, Want::f32, {3}, true);
    Tensor* out = add(in, k, rng, {"attentionOutOut", R::output, false, {T1, N1, Dv}, dt, {}}, Want::same, {3}, true);
    Tensor* topk = add(in, k, rng, {"topkIndicesOut", R::output, false, {T1, N2, n}, Elt::i32, {}}, Want::i32, {3}, true);
    k.judge = [&k, &sq, &sc] {
        judge_window(k, true);
        const std::int64_t mode = k.attr("sparseMode");
        if (mode < 0 || mode > 2) k.c.reject("sparseMode ", mode);
        judge_layout(k, {kTND});
        if (!finite_as_f32(k.scale)) k.c.reject("scaleValue is not finite as fp32");
        if (sq.reaches_operator() != sc.reaches_operator()) k.c.reject("only one of the q / cmp kv arrays given");
    };
    k.prepare = [=, &k, &sq, &sc, &ss](const AclHandles& h, const char* layout, std::uint64_t* ws, aclOpExecutor** ex) {
        return aclnnNsaCompressAttentionGetWorkspaceSize(
            h.of(q), h.of(key), h.of(v), h.of(mask), h.of(tmask), sq.array.handle, sc.array.handle, ss.array.handle,
            k.scale, k.attr("headNum"), const_cast<char*>(layout), k.attr("sparseMode"), k.attr("compressBlockSize"),
            k.attr("compressStride"), k.attr("selectBlockSize"), k.attr("selectBlockCount"), h.of(smax), h.of(ssum),
            h.of(out), h.of(topk), ws, ex);
    };
    k.facts = [&k, q, key, v] {
        LaunchFacts f;
        const double rows = dim(q, 0) * dim(q, 1);
        f.work = rows * dim(key, 0) * (dim(key, -1) + dim(v, -1) + 8) * 2 + k.c.logical_elements();
        f.workspace_bound = static_cast<double>(kMaxWorkspace) + 512.0 * k.c.logical_elements() + 64.0 * rows * dim(key, 0);
        return f;
    };
}

// ---------------------------------------------------------------------------------------------
// 3: aclnnNsaCompressWithCache (docs/spec/decoding.md section 1).

void decode_compress_with_cache(Input& in, Call& k, Rng& rng) {
    const Elt dt = decide_dtype(in);
    const std::int64_t N = 1 + in.integer("N", 0, 2), D = decide_dim(in, "D");
    const std::int64_t l = 1 + in.integer("l", 0, 5), d = 1 + in.integer("d", 0, l - 1), P = 1 + in.integer("P", 0, 3);
    std::vector<std::int64_t> L(static_cast<std::size_t>(in.integer("B", 0, 3))), pages;
    for (auto& x : L) {
        // Often a length that triggers the window: l + j*d.
        x = in.chance("trigger", 2) ? l + d * in.integer("j", 0, 3) : in.integer("L", 0, 12);
        pages.push_back(ceil_div(x, P));
    }
    const std::int64_t B = static_cast<std::int64_t>(L.size());
    const std::int64_t max_blocks = max_of(pages) + in.integer("extra_cols", 0, 1);
    const std::int64_t blocks = sum_of(pages) + in.integer("extra_pages", 0, 2);
    const std::int64_t R = B + in.integer("extra_rows", 0, 3);
    k.notes = Case::concat("B=", B, " N=", N, " D=", D, " P=", P, " numBlocks=", blocks, " R=", R);

    decide_attr(in, k, "compressBlockSize", l);
    decide_attr(in, k, "compressStride", d);
    decide_attr(in, k, "actSeqLenType", 1);
    decide_attr(in, k, "pageBlockSize", P);
    Lens& lens = decide_lens(in, k, "actSeqLen", true, true, L);
    decide_layout(in, k, kTND);  // never read

    using R_ = Role;
    Tensor* input = add(in, k, rng, {"input", R_::input, false, {blocks, P, N, D}, dt, {}}, Want::lead, {4}, false);
    Tensor* weight = add(in, k, rng, {"weight", R_::input, false, {l, N}, dt, {}}, Want::same, {2}, true);
    Tensor* slots = add(in, k, rng, {"slotMapping", R_::input, false, {B}, Elt::i32, {}}, Want::i32, {1}, true);
    Tensor* table = add(in, k, rng, {"blockTableOptional", R_::input, false, {B, max_blocks}, Elt::i32, {}}, Want::i32, {2}, false);
    Tensor* cache = add(in, k, rng, {"outputCache", R_::inout, false, {R, N, D}, dt, {}}, Want::same, {3}, false);
    // Distinct rows for the batches (an untriggered batch may say -1), then maybe one bad entry.
    std::vector<std::int32_t> rows(static_cast<std::size_t>(std::max<std::int64_t>(R, 1)));
    for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<std::int32_t>(i);
    for (std::size_t i = rows.size(); i > 1; --i) std::swap(rows[i - 1], rows[static_cast<std::size_t>(rng.below(i))]);
    for (std::int64_t b = 0; b < B && slots->present && slots->elt == Elt::i32 && slots->rank == 1; ++b) {
        const bool triggered = L[b] >= l && (L[b] - l) % d == 0;
        const std::int64_t idx[1] = {b};
        slots->put(idx, !triggered && rng.below(2) ? -1 : rows[static_cast<std::size_t>(b) % rows.size()]);
    }
    fill_block_table(table, pages, blocks, rng);
    if (B > 0 && in.chance("corrupt", 4)) {
        Scope s(in, "corrupt");
        const std::int64_t b = in.integer("b", 0, B - 1);
        if (in.chance("table", 2))
            corrupt_entry(in, k, table, {b, in.integer("col", 0, std::max<std::int64_t>(pages[b], 1) - 1)}, blocks);
        else
            corrupt_entry(in, k, slots, {b}, R);
    }
    k.judge = [&k] {
        judge_window(k, false);
        if (k.attr("actSeqLenType") != 1) k.c.reject("actSeqLenType != 1");
        if (k.attr("pageBlockSize") < 1) k.c.reject("pageBlockSize < 1");
    };
    k.prepare = [=, &k, &lens](const AclHandles& h, const char* layout, std::uint64_t* ws, aclOpExecutor** ex) {
        return aclnnNsaCompressWithCacheGetWorkspaceSize(
            h.of(input), h.of(weight), h.of(slots), lens.array.handle, h.of(table), const_cast<char*>(layout),
            k.attr("compressBlockSize"), k.attr("compressStride"), k.attr("actSeqLenType"), k.attr("pageBlockSize"),
            h.mut(cache), ws, ex);
    };
    // The rows the launch writes: those of the triggered batches (on plan only).
    auto written_rows = [=] {
        std::vector<std::int64_t> r;
        for (std::int64_t b = 0; b < B; ++b) {
            const std::int64_t idx[1] = {b};
            if (L[b] >= l && (L[b] - l) % d == 0) r.push_back(slots->get<std::int32_t>(idx));
        }
        return r;
    };
    k.facts = [=, &k] {
        LaunchFacts f;
        f.work = k.c.logical_elements() * (1 + std::fabs(static_cast<double>(k.attr("compressBlockSize"))));
        f.workspace_bound = static_cast<double>(kMaxWorkspace) + 512.0 * k.c.logical_elements();
        if (!k.c.clean()) {
            f.data_unknown = true;
            return f;
        }
        std::vector<std::int64_t> seen, read;
        for (std::int64_t b = 0; b < B; ++b) {
            if (!(L[b] >= l && (L[b] - l) % d == 0)) {
                read.push_back(0);
                continue;
            }
            read.push_back(pages[b]);  // pages (L-l)/P .. (L-1)/P are read; the others are valid anyway
            const std::int64_t idx[1] = {b};
            const std::int64_t slot = slots->get<std::int32_t>(idx);
            const bool repeated = std::find(seen.begin(), seen.end(), slot) != seen.end();
            if ((slot < 0 || slot >= R || repeated) && f.data_valid) {
                f.data_valid = false;
                f.data_problem = Case::concat("slotMapping[", b, "] = ", slot, repeated ? " repeated" : " out of range");
            }
            seen.push_back(slot);
        }
        // A corrupted column outside the pages a window reads is still fine: only the window's
        // pages count.
        std::vector<std::int64_t> first(static_cast<std::size_t>(B), 0);
        for (std::int64_t b = 0; b < B; ++b)
            if (read[b] > 0) first[b] = (L[b] - l) / P;
        for (std::int64_t b = 0; b < B; ++b)
            for (std::int64_t col = first[b]; col < read[b]; ++col) {
                const std::int64_t idx[2] = {b, col};
                const std::int32_t v = table->get<std::int32_t>(idx);
                if ((v < 0 || v >= blocks) && f.data_valid) {
                    f.data_valid = false;
                    f.data_problem = Case::concat("blockTable[", b, ", ", col, "] = ", v, " outside [0, ", blocks, ")");
                }
            }
        return f;
    };
    // Rows of the cache that no triggered batch names keep their bytes.
    k.after_success = [=, &k] {
        if (!k.c.clean() || !cache->present || cache->null_data) return;
        const std::vector<std::int64_t> rows_written = written_rows();
        cache->for_each_index([&](const std::int64_t* idx, std::int64_t at) {
            if (std::find(rows_written.begin(), rows_written.end(), idx[0]) != rows_written.end()) return;
            if (!same_bytes(cache->buffer.get() + at, cache->snapshot.data() + at, cache->esize))
                broken("aclnnNsaCompressWithCache changed outputCache row %lld, which no triggered batch names",
                       (long long)idx[0]);
        });
    };
}

// ---------------------------------------------------------------------------------------------
// 4, 5: the decoding attentions (docs/spec/decoding.md sections 2 and 3). Shared: heads, paged
// key / value caches, per-batch query lengths and the block table.

struct Paged {
    std::int64_t N2, G, N1, Dk, Dv, P, B, Qmax, T, blocks, max_blocks;
    std::vector<std::int64_t> Q, pages;
    bool q_given;
    Tensor *key = nullptr, *value = nullptr, *table = nullptr;
};

void decide_heads_and_queries(Input& in, Paged& p, std::int64_t min_batches) {
    p.N2 = 1 + in.integer("N2", 0, 1);
    p.G = 1 + in.integer("G", 0, 2);
    p.N1 = p.N2 * p.G;
    p.Dk = decide_dim(in, "Dk");
    p.Dv = 1 + in.integer("Dv", 0, p.Dk - 1);
    p.P = 1 + in.integer("P", 0, 3);
    p.B = in.integer("B", min_batches, 3);
    p.q_given = in.chance("q_given", 2);
    p.Q.assign(static_cast<std::size_t>(p.B), 1);
    if (p.q_given)
        for (auto& q : p.Q) q = 1 + in.integer("Q", 0, 2);
    p.T = sum_of(p.Q);
    p.Qmax = max_of(p.Q) + in.integer("pad_q", 0, 1);
}

// numHeads, numKeyValueHeads (and the planned sizes, for describe).
void decide_heads_attrs(Input& in, Call& k, const Paged& p) {
    k.notes = Case::concat("B=", p.B, " N1=", p.N1, " N2=", p.N2, " Dk=", p.Dk, " Dv=", p.Dv, " P=", p.P, " T=", p.T,
                           " Q=", p.Qmax);
    decide_attr(in, k, "numHeads", p.N1);
    decide_attr(in, k, "numKeyValueHeads", p.N2);
}

// key / value [numBlocks, P, N2*D] or [numBlocks, P, N2, D] (the same memory), and the table
// for `pages` pages per batch.
void add_paged(Input& in, Call& k, Rng& rng, Paged& p, Elt dt) {
    p.max_blocks = max_of(p.pages) + in.integer("extra_cols", 0, 1);
    p.blocks = sum_of(p.pages) + in.integer("extra_pages", 0, 1);
    const bool rank4 = in.chance("rank4", 2);
    auto cache_shape = [&](std::int64_t D) {
        return rank4 ? std::vector<std::int64_t>{p.blocks, p.P, p.N2, D} : std::vector<std::int64_t>{p.blocks, p.P, p.N2 * D};
    };
    p.key = add(in, k, rng, {"key", Role::input, false, cache_shape(p.Dk), dt, {}}, Want::same, {3, 4}, false);
    p.value = add(in, k, rng, {"value", Role::input, false, cache_shape(p.Dv), dt, {}}, Want::same, {3, 4}, false);
    p.table = add(in, k, rng, {"blockTableOptional", Role::input, false, {p.B, p.max_blocks}, Elt::i32, {}},
                  Want::i32, {2}, false);
    fill_block_table(p.table, p.pages, p.blocks, rng);
}

// Work and workspace bounds of a decoding attention that sees `keys` keys per (row, head); off
// the plan the launch-time contents are not judged.
LaunchFacts paged_bounds(const Call& k, const Paged& p, double keys) {
    LaunchFacts f;
    const double rows = k.c.output_elements();  // over Dv below: (query row, head) pairs times N2
    f.work = rows * keys * (dim(p.key, -1) + dim(p.value, -1) + 8) / std::max(1.0, dim(p.value, -1)) +
             k.c.logical_elements();
    f.workspace_bound = static_cast<double>(kMaxWorkspace) + 512.0 * k.c.logical_elements() + 64.0 * rows * keys;
    f.data_unknown = !k.c.clean();
    return f;
}

// A tensor shaped by the layout: BSND [B, Q, N, D], BSH [B, Q, N*D], TND [T, N, D].
std::vector<std::int64_t> by_layout(int layout, const Paged& p, std::int64_t N, std::int64_t D) {
    if (layout == kBSND) return {p.B, p.Qmax, N, D};
    if (layout == kBSH) return {p.B, p.Qmax, N * D};
    return {p.T, N, D};
}

void decode_ca_infer(Input& in, Call& k, Rng& rng) {
    const Elt dt = decide_dtype(in);
    Paged p;
    decide_heads_and_queries(in, p, 1);
    const int layout = in.chance("bsnd", 2) ? kBSND : kTND;
    const std::int64_t d = 1 + in.integer("d", 0, 2), l = d + in.integer("l", 0, 2 * d);
    const std::int64_t ls = d * (ceil_div(l, d) + in.integer("ls", 0, 2)), n = 1 + in.integer("k", 0, 3);
    std::vector<std::int64_t> C, L;
    for (std::int64_t b = 0; b < p.B; ++b) {
        C.push_back(in.integer("C", 0, 6));
        L.push_back(p.Q[b] + in.integer("L", 0, 20));  // raw lengths: L_b >= Q_b (needed with a mask)
        p.pages.push_back(ceil_div(C.back(), p.P));
    }
    decide_heads_attrs(in, k, p);
    decide_attr(in, k, "selectBlockSize", ls);
    decide_attr(in, k, "selectBlockCount", n);
    decide_attr(in, k, "compressBlockSize", l);
    decide_attr(in, k, "compressBlockStride", d);
    decide_attr(in, k, "pageBlockSize", p.P);
    decide_attr(in, k, "sparseMode", in.integer("mode", 0, 3));  // accepted and ignored
    decide_scale(in, k, 1.0 / std::sqrt(static_cast<double>(p.Dk)));
    decide_layout(in, k, layout);
    Lens& lq = decide_lens(in, k, "actualQSeqLen", false, p.q_given, p.Q);
    Lens& lc = decide_lens(in, k, "actualCmpKvSeqLen", true, true, C);
    Lens& ll = decide_lens(in, k, "actualSelKvSeqLen", false, true, L);

    using R = Role;
    Tensor* q = add(in, k, rng, {"query", R::input, false, by_layout(layout, p, p.N1, p.Dk), dt, {}}, Want::lead,
                    {layout == kTND ? 3 : 4}, layout == kTND);
    add_paged(in, k, rng, p, dt);
    Tensor* mask = add(in, k, rng, {"attentionMaskOptional", R::input, true, {p.Qmax, 8}, Elt::boolean, {}},
                       Want::unread_mask, {1, 2, 3, 4}, false);
    Tensor* tmask = add(in, k, rng, {"topKMaskOptional", R::input, true, {p.Qmax, 8}, Elt::boolean, {}}, Want::any, {}, false);
    Tensor* out = add(in, k, rng, {"output", R::output, false, by_layout(layout, p, p.N1, p.Dv), dt, {}}, Want::same,
                      {layout == kTND ? 3 : 4}, true);
    Tensor* topk = add(in, k, rng, {"topKOutput", R::output, false, by_layout(layout, p, p.N2, n), Elt::i32, {}},
                       Want::i32, {layout == kTND ? 3 : 4}, true);
    if (p.B > 0 && in.chance("corrupt", 4)) {
        Scope s(in, "corrupt");
        const std::int64_t b = in.integer("b", 0, p.B - 1);
        corrupt_entry(in, k, p.table, {b, in.integer("col", 0, std::max<std::int64_t>(p.pages[b], 1) - 1)}, p.blocks);
    }
    k.judge = [&k] {
        judge_window(k, true);
        if (k.attr("pageBlockSize") < 1) k.c.reject("pageBlockSize < 1");
        if (k.attr("numHeads") < 1) k.c.reject("numHeads < 1");
        if (k.attr("numKeyValueHeads") < 1) k.c.reject("numKeyValueHeads < 1");
        judge_layout(k, {kTND, kBSND});
        if (!finite_as_f32(k.scale)) k.c.reject("scaleValue is not finite as fp32");
    };
    auto shared = std::make_shared<Paged>(p);  // the closures outlive decoding
    k.prepare = [=, &k, &lq, &lc, &ll](const AclHandles& h, const char* lay, std::uint64_t* ws, aclOpExecutor** ex) {
        return aclnnNsaCompressAttentionInferGetWorkspaceSize(
            h.of(q), h.of(shared->key), h.of(shared->value), h.of(mask), h.of(shared->table), lq.array.handle,
            lc.array.handle, ll.array.handle, h.of(tmask), k.attr("numHeads"), k.attr("numKeyValueHeads"),
            k.attr("selectBlockSize"), k.attr("selectBlockCount"), k.attr("compressBlockSize"),
            k.attr("compressBlockStride"), k.scale, const_cast<char*>(lay), k.attr("pageBlockSize"),
            k.attr("sparseMode"), h.of(out), h.of(topk), ws, ex);
    };
    k.facts = [=, &k] {
        LaunchFacts f = paged_bounds(k, *shared, dim(shared->key, 0) * dim(shared->key, 1));
        if (f.data_unknown) return f;
        check_pages(f, shared->table, shared->pages, shared->blocks);
        return f;
    };
}

void decode_sa_infer(Input& in, Call& k, Rng& rng) {
    const Elt dt = decide_dtype(in);
    Paged p;
    decide_heads_and_queries(in, p, 0);
    static constexpr int kLayoutsHere[] = {kBSND, kBSH, kTND};
    const int layout = in.pick("layout_planned", kLayoutsHere);
    const std::int64_t ls = 1 + in.integer("ls", 0, 5), n = 1 + in.integer("k", 0, 3);
    std::vector<std::int64_t> L;
    for (std::int64_t b = 0; b < p.B; ++b) {
        L.push_back(p.Q[b] + in.integer("L", 0, 12));
        p.pages.push_back(ceil_div(L.back(), p.P));
    }
    decide_heads_attrs(in, k, p);
    decide_attr(in, k, "selectBlockSize", ls);
    decide_attr(in, k, "selectBlockCount", n);
    decide_attr(in, k, "pageBlockSize", p.P);
    decide_attr(in, k, "sparseMode", in.integer("mode", 0, 3));  // ignored
    decide_scale(in, k, 1.0 / std::sqrt(static_cast<double>(p.Dk)));
    decide_layout(in, k, layout);
    Lens& lq = decide_lens(in, k, "actualQSeqLen", false, p.q_given, p.Q);
    Lens& lkv = decide_lens(in, k, "actualKvSeqLen", true, true, L);

    using R = Role;
    const int rank = layout == kBSND ? 4 : 3;
    Tensor* q = add(in, k, rng, {"query", R::input, false, by_layout(layout, p, p.N1, p.Dk), dt, {}}, Want::lead,
                    {rank}, layout == kTND);
    add_paged(in, k, rng, p, dt);
    auto shared = std::make_shared<Paged>(p);  // the closures outlive decoding
    const std::vector<std::int64_t> topk_shape =
        layout == kTND ? std::vector<std::int64_t>{p.T, p.N2, n} : std::vector<std::int64_t>{p.B, p.Qmax, p.N2, n};
    // BSND / BSH also take [B, N2, k] when Q = 1: only TND's shape is exact.
    Tensor* topk = add(in, k, rng, {"topkIndices", R::input, false, topk_shape, Elt::i32, {}}, Want::i32,
                       layout == kTND ? std::vector<int>{3} : std::vector<int>{3, 4}, layout == kTND);
    Tensor* mask = add(in, k, rng, {"attenMaskOptional", R::input, true, {p.B, 8}, Elt::boolean, {}}, Want::any, {}, false);
    Tensor* out = add(in, k, rng, {"output", R::output, false, by_layout(layout, p, p.N1, p.Dv), dt, {}}, Want::same,
                      {rank}, true);
    // The slots of the computed rows: indices of the batch's blocks or -1, then maybe one bad one.
    auto row_index = [layout, Q = p.Q](std::int64_t b, std::int64_t s, std::int64_t n2, std::int64_t j) {
        if (layout == kTND) return std::vector<std::int64_t>{sum_of(std::vector<std::int64_t>(Q.begin(), Q.begin() + b)) + s, n2, j};
        return std::vector<std::int64_t>{b, s, n2, j};
    };
    if (topk->present && topk->elt == Elt::i32 && topk->shape_is(topk_shape))
        for (std::int64_t b = 0; b < p.B; ++b)
            for (std::int64_t s = 0; s < p.Q[b]; ++s)
                for (std::int64_t n2 = 0; n2 < p.N2; ++n2)
                    for (std::int64_t j = 0; j < n; ++j) {
                        const std::int64_t nb = ceil_div(L[b], ls);
                        const auto v = static_cast<std::int32_t>(rng.below(6) == 0 ? -1 : rng.below(nb));
                        topk->put(row_index(b, s, n2, j).data(), v);
                    }
    if (p.B > 0 && in.chance("corrupt", 4)) {
        Scope s(in, "corrupt");
        const std::int64_t b = in.integer("b", 0, p.B - 1);
        if (in.chance("table", 2))
            corrupt_entry(in, k, p.table, {b, in.integer("col", 0, std::max<std::int64_t>(p.pages[b], 1) - 1)}, p.blocks);
        else {
            const std::int64_t s_ = in.integer("s", 0, p.Q[b] - 1), n2 = in.integer("n2", 0, p.N2 - 1);
            corrupt_entry(in, k, topk, row_index(b, s_, n2, in.integer("j", 0, n - 1)), ceil_div(L[b], ls));
        }
    }
    k.judge = [&k, &lkv] {
        const std::int64_t ls = k.attr("selectBlockSize"), n = k.attr("selectBlockCount");
        if (ls < 1) k.c.reject("selectBlockSize < 1");
        if (n < 1) k.c.reject("selectBlockCount < 1");
        if (k.attr("pageBlockSize") < 1) k.c.reject("pageBlockSize < 1");
        if (k.attr("numHeads") < 1) k.c.reject("numHeads < 1");
        if (k.attr("numKeyValueHeads") < 1) k.c.reject("numKeyValueHeads < 1");
        judge_layout(k, {kBSND, kBSH, kTND});
        if (!finite_as_f32(k.scale)) k.c.reject("scaleValue is not finite as fp32");
        // A row may see at most 2^24 keys through its slots (3.7).
        if (ls >= 1 && n >= 1 && lkv.on_plan()) {
            const std::int64_t longest = std::max<std::int64_t>(1, max_of(lkv.values));
            if (n > (std::int64_t{1} << 24) / std::min(ls, longest)) k.c.reject("a row would see more than 2^24 keys");
        }
    };
    k.prepare = [=, &k, &lq, &lkv](const AclHandles& h, const char* lay, std::uint64_t* ws, aclOpExecutor** ex) {
        return aclnnNsaSelectedAttentionInferGetWorkspaceSize(
            h.of(q), h.of(shared->key), h.of(shared->value), h.of(topk), h.of(mask), h.of(shared->table),
            lq.array.handle, lkv.array.handle, const_cast<char*>(lay), k.attr("numHeads"), k.attr("numKeyValueHeads"),
            k.attr("selectBlockSize"), k.attr("selectBlockCount"), k.attr("pageBlockSize"), k.scale,
            k.attr("sparseMode"), h.mut(out), ws, ex);
    };
    k.facts = [=, &k] {
        const double keys = std::min(dim(shared->key, 0) * dim(shared->key, 1),
                                     std::fabs(static_cast<double>(k.attr("selectBlockSize"))) *
                                         std::fabs(static_cast<double>(k.attr("selectBlockCount"))));
        LaunchFacts f = paged_bounds(k, *shared, keys);
        if (f.data_unknown) return f;
        for (std::int64_t b = 0; b < shared->B; ++b)
            for (std::int64_t s = 0; s < shared->Q[b]; ++s)
                for (std::int64_t n2 = 0; n2 < shared->N2; ++n2)
                    for (std::int64_t j = 0; j < n; ++j) {
                        const std::int32_t x = topk->get<std::int32_t>(row_index(b, s, n2, j).data());
                        const std::int64_t nb = ceil_div(L[b], ls);
                        if ((x < -1 || x >= nb) && f.data_valid) {
                            f.data_valid = false;
                            f.data_problem = Case::concat("topkIndices of batch ", b, " row ", s, " = ", x,
                                                          " outside [-1, ", nb, ")");
                        }
                    }
        check_pages(f, shared->table, shared->pages, shared->blocks);
        return f;
    };
}

// ---------------------------------------------------------------------------------------------

struct Decoded {
    std::unique_ptr<Call> call;
    LaunchChoice launch;
};

Decoded decode(Input& in) {
    Decoded d;
    d.call = std::make_unique<Call>();
    Call& k = *d.call;
    k.op = static_cast<int>(in.integer("op", 0, kOps - 1));
    k.seed = static_cast<std::uint64_t>(in.integer("seed", 0, 0xFFFFFFFF));
    k.c.api = Api::capi;
    Rng rng{k.seed};
    {
        Scope s(in, kLaunchNames[k.op]);
        switch (k.op) {
            case compress: decode_compress(in, k, rng, false); break;
            case compress_grad: decode_compress(in, k, rng, true); break;
            case compress_attention: decode_compress_attention(in, k, rng); break;
            case compress_with_cache: decode_compress_with_cache(in, k, rng); break;
            case ca_infer: decode_ca_infer(in, k, rng); break;
            case sa_infer: decode_sa_infer(in, k, rng); break;
        }
    }
    d.launch = decide_launch(in);
    return d;
}

void run(Call& k, const LaunchChoice& choice, Rng& rng) {
    AclHandles handles;
    handles.create(k.c);
    for (auto& l : k.lens) create_int_array(l->given, l->null_pointer, l->values, l->array);
    judge_call(k);

    // The layout string lives in a buffer of its own (the API takes char*).
    std::string layout_storage = k.layout_string() ? k.layout_string() : "";
    const char* layout = k.layout_string() ? layout_storage.c_str() : nullptr;
    TwoPhaseOp op;
    op.prepare_name = kPrepareNames[k.op];
    op.launch_name = kLaunchNames[k.op];
    const int other = (k.op + 1) % kOps;  // any other operator's entry point must refuse the executor
    op.other_launch_name = kLaunchNames[other];
    op.launch = kLaunches[k.op];
    op.other_launch = kLaunches[other];
    op.prepare = [&](std::uint64_t* ws, aclOpExecutor** ex) { return k.prepare(handles, layout, ws, ex); };
    op.facts = k.facts;
    op.destroy_tensors = [&] { handles.reset(); };
    op.after_success = [&](const char* call) {
        // Inputs are finite; with an ordinary scale so are the outputs.
        if (k.c.clean() && std::fabs(k.scale) <= 2) k.c.expect_finite(call);
        if (k.after_success) k.after_success();
    };
    drive_two_phase(k.c, op, choice, rng);
}

}  // namespace
}  // namespace fuzz::family

#ifndef OPENNSA_FUZZ_GENERATOR
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace fuzz;
    init_acl();
    FuzzInput in(data, size);
    family::Decoded d = family::decode(in);
    Rng rng{d.call->seed ^ 0xfa11};
    g_describe = [&](std::FILE* f) { d.call->describe(f); };
    family::run(*d.call, d.launch, rng);
    g_describe = nullptr;
    return 0;
}
#endif
