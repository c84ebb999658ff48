// libFuzzer target: the native C++ API, opennsa::forward / opennsa::backward (and their
// *_workspace_bytes and caller-workspace overloads) over TensorViews with fuzzed shapes, dtypes
// and strides (negative, zero, overlapping), null and misaligned data, thread counts 1-3.
// Checks SPEC 9 as the native API states it: opennsa::Error with code null_pointer or
// invalid_argument (internal only for real out-of-memory) and a one-line what(); nothing written
// on error; every output written and nothing else on success; the caller's workspace used only
// inside its span; and, when asked, the same bits from a rerun under another thread count.
#include "selected_attention_case.hpp"

namespace fuzz::native_target {
namespace {

struct Decoded {
    std::unique_ptr<sa::SaCase> sa;
    std::int64_t threads = 1;
    std::int64_t workspace = 0;  // 0-3 none, 4 exact, 5 larger, 6 smaller, 7 misaligned
    std::int64_t extra = 0;
    bool rerun = false;  // again under another thread count: same bits
};

Decoded decode(Input& in) {
    Decoded d;
    const bool backward = in.integer("op", 0, 1) == 1;
    d.sa = sa::decode(in, Api::native, backward, false);
    Scope s(in, "run");
    d.threads = 1 + in.integer("threads", 0, 2);
    d.workspace = in.integer("workspace", 0, 7);
    if (d.workspace >= 5) d.extra = in.integer("extra", 1, 4096);
    d.rerun = in.chance("rerun", 4);
    return d;
}

void run(Decoded& d, Rng& rng) {
    sa::SaCase& s = *d.sa;
    Case& c = s.c;
    sa::judge(s);
    opennsa::set_num_threads(static_cast<int>(d.threads));
    const opennsa::Params p = s.params();
    opennsa::ForwardArgs fa;
    opennsa::BackwardArgs ba;
    if (!s.backward) {
        fa = {native_view(*s.query), native_view(*s.key), native_view(*s.value),       native_view(*s.topk),
              native_view(*s.mask),  native_view(*s.out), native_view(*s.softmax_max), native_view(*s.softmax_sum)};
    } else {
        ba = {native_view(*s.query),    native_view(*s.key),         native_view(*s.value),       native_view(*s.out),
              native_view(*s.out_grad), native_view(*s.softmax_max), native_view(*s.softmax_sum), native_view(*s.topk),
              native_view(*s.mask),     native_view(*s.dq),          native_view(*s.dk),          native_view(*s.dv)};
    }
    const char* size_fn = s.backward ? "opennsa::backward_workspace_bytes" : "opennsa::forward_workspace_bytes";
    const char* run_fn = s.backward ? "opennsa::backward" : "opennsa::forward";
    auto compute = [&](std::span<std::byte> ws, bool with_span) {
        if (s.backward)
            with_span ? opennsa::backward(ba, p, ws) : opennsa::backward(ba, p);
        else
            with_span ? opennsa::forward(fa, p, ws) : opennsa::forward(fa, p);
    };

    c.arm();
    std::size_t ws = 0;
    const NativeOutcome sized = call_native(size_fn, false, [&] {
        ws = s.backward ? opennsa::backward_workspace_bytes(ba, p) : opennsa::forward_workspace_bytes(fa, p);
    });
    c.expect_untouched(size_fn);
    FUZZ_LOG("%s: %s %s\n", size_fn, sized.ok ? std::to_string(ws).c_str() : "error", sized.what.c_str());
    if (!sized.ok) {
        if (c.clean()) broken("%s rejected a valid call: %s", size_fn, sized.what.c_str());
        // The operator itself must reject it the same way, before writing anything.
        const NativeOutcome r = call_native(run_fn, false, [&] { compute({}, false); });
        if (r.ok) broken("%s accepted a call %s rejected (%s)", run_fn, size_fn, sized.what.c_str());
        if (r.code != sized.code) broken("%s and %s disagree on the error code: %s", run_fn, size_fn, r.what.c_str());
        c.expect_untouched(run_fn);
        return;
    }
    if (c.must_reject()) broken("%s accepted a call it must reject: %s", size_fn, c.rejects.front().c_str());
    const LaunchFacts facts = sa::facts(s);
    if (static_cast<double>(ws) > facts.workspace_bound)
        broken("%s = %zu bytes; no more than %.0f are needed for this problem", size_fn, ws, facts.workspace_bound);
    const bool runnable = ws <= kMaxWorkspace && facts.work <= kMaxWork && c.output_elements() <= kMaxOutputElements;
    // Real work the harness will not hand over; a call that must fail is still made (it must fail
    // on the topk check, before allocating anything).
    if (!runnable && facts.data_valid) return;

    std::int64_t mode = runnable ? d.workspace : 0;
    std::size_t size = ws, shift = 0;
    if (mode == 5) size += static_cast<std::size_t>(d.extra);
    if (mode == 6) size -= std::min(size, static_cast<std::size_t>(d.extra));
    if (mode == 7) shift = static_cast<std::size_t>(d.extra % 63 + 1);
    GuardedBlock block(mode >= 4 ? size : 0, shift, rng);
    const bool with_span = mode >= 4;
    const std::span<std::byte> span(reinterpret_cast<std::byte*>(block.data()), block.size());

    c.arm();
    const NativeOutcome r = call_native(run_fn, false, [&] { compute(span, with_span); });
    FUZZ_LOG("%s (workspace mode %lld): %s %s\n", run_fn, (long long)mode, r.ok ? "ok" : "error", r.what.c_str());
    if (!facts.data_valid) {
        if (r.ok) broken("%s succeeded but must fail: %s", run_fn, facts.data_problem.c_str());
        if (r.code != opennsa::ErrorCode::invalid_argument)
            broken("%s: a bad topk index gave error code %d: %s", run_fn, static_cast<int>(r.code), r.what.c_str());
        c.expect_untouched(run_fn);
        block.expect_guards(run_fn);
        return;
    }
    if (!r.ok) broken("%s failed on a valid call: %s", run_fn, r.what.c_str());
    c.expect_written(run_fn);
    // A workspace too small or misaligned is left unused; a usable one is used only inside.
    if (mode == 6 && size < ws) block.expect_unused(run_fn);
    if (mode == 7 && ws > 0) block.expect_unused(run_fn);
    block.expect_guards(run_fn);

    if (!d.rerun) return;
    std::vector<std::vector<unsigned char>> first;
    for (auto& t : c.tensors) first.emplace_back(t->buffer.get(), t->buffer.get() + t->bytes);
    opennsa::set_num_threads(d.threads == 1 ? 3 : 1);
    c.arm();
    const NativeOutcome again = call_native(run_fn, false, [&] { compute({}, false); });
    if (!again.ok) broken("%s failed when rerun under another thread count: %s", run_fn, again.what.c_str());
    for (std::size_t i = 0; i < c.tensors.size(); ++i)
        if (!same_bytes(first[i].data(), c.tensors[i]->buffer.get(), c.tensors[i]->bytes))
            broken("%s gave different bits in %s under %lld and %d threads", run_fn, c.tensors[i]->name(),
                   (long long)d.threads, d.threads == 1 ? 3 : 1);
}

}  // namespace
}  // namespace fuzz::native_target

// fuzz/make_regressions.cpp includes this file for decode(); it has its own main.
#ifndef OPENNSA_FUZZ_GENERATOR

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace fuzz;
    using namespace fuzz::native_target;
    FuzzInput in(data, size);
    Decoded d = decode(in);
    Rng rng{d.sa->seed ^ 0x5eed};
    g_describe = [&](std::FILE* f) {
        d.sa->describe(f);
        std::fprintf(f, "  threads %lld, workspace mode %lld (+%lld), rerun %d\n", (long long)d.threads,
                     (long long)d.workspace, (long long)d.extra, d.rerun);
    };
    if (verbose()) g_describe(stderr);
    run(d, rng);
    g_describe = nullptr;
    return 0;
}
#endif
