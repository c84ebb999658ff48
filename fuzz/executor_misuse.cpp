// libFuzzer target: executor and stream misuse. An input is a forward executor in slot 0 and a
// backward one in slot 1 (phase one on valid problems), then a script of up to 16 operations on
// four executor slots and two stream slots: launch through either entry point with any
// workspace / stream, create more executors, mark repeatable,
// destroy, create / destroy / synchronize streams, and launch or destroy pointers that are no
// (longer) executors. A model of which handles are live predicts every status:
//   - launching a non-live executor: 161002 (NULL: 161001), nothing written;
//   - a launch consumes a live non-repeatable executor whatever its outcome (CANN's rule);
//   - a repeatable executor runs until destroyed; destroying a dead one is 161002;
//   - a dead stream fails aclrtSynchronizeStream / aclrtDestroyStream with 100000 and any launch;
//   - a launch that must succeed writes every output; one that fails writes nothing.
// At the end every executor the script saw is destroyed, which checks the model once more.
#include <span>
#include <unordered_map>

#include "selected_attention_case.hpp"

namespace fuzz::executor_target {
namespace {

enum Kind : std::int64_t {
    kLaunchForward,
    kLaunchBackward,
    kDestroy,
    kRepeatable,
    kCreateForward,
    kCreateBackward,
    kCreateStream,
    kDestroyStream,
    kSyncStream,
    kLaunchNotExecutor,
    kSyncDevice,
    kNullExecutor,
    kKinds
};

struct Op {
    std::int64_t kind = 0;
    std::int64_t slot = 0;       // executor slot 0-3
    std::int64_t stream = 0;     // 0 default (NULL), 1-2 stream slots, 3 a pointer that is no stream
    std::int64_t workspace = 0;  // as LaunchChoice::workspace
    std::int64_t extra = 0;
    std::unique_ptr<sa::SaCase> problem;  // for creates
};

// Decisions: "ops", then per operation (scope "op") kind, slot and what the kind needs; then the
// problems: the two first executors' (scopes "forward" and "backward"), then one per create
// operation (scope "create"), each with sa::decode's names. The script comes first so that short
// inputs already vary it (FuzzedDataProvider reads integers from the input's end).
std::vector<Op> decode(Input& in) {
    std::vector<Op> ops(2 + static_cast<std::size_t>(in.integer("ops", 0, 16)));
    ops[0].kind = kCreateForward;
    ops[1].kind = kCreateBackward;
    ops[1].slot = 1;
    for (Op& op : std::span(ops).subspan(2)) {
        Scope s(in, "op");
        op.kind = in.integer("kind", 0, kKinds - 1);
        op.slot = in.integer("slot", 0, 3);
        switch (op.kind) {
            case kLaunchForward:
            case kLaunchBackward:
                op.stream = in.integer("stream", 0, 3);
                op.workspace = in.integer("workspace", 0, 15);
                if (op.workspace == 10 || op.workspace == 11 || op.workspace == 14)
                    op.extra = in.integer("extra", 1, 4096);
                break;
            case kCreateStream:
            case kDestroyStream:
            case kSyncStream: op.stream = in.integer("stream", 0, 3); break;
            default: break;
        }
    }
    for (std::size_t i = 0; i < ops.size(); ++i) {
        Op& op = ops[i];
        if (op.kind != kCreateForward && op.kind != kCreateBackward) continue;
        Scope s(in, i == 0 ? "forward" : i == 1 ? "backward" : "create");
        op.problem = sa::decode(in, Api::capi, op.kind == kCreateBackward, true);
    }
    return ops;
}

struct Executor {
    bool live = false;
    bool repeatable = false;
    bool backward = false;
    std::uint64_t workspace = 0;
    sa::SaCase* problem = nullptr;
    std::string spent_by;  // what made it not live, for the report
};

class Runner {
public:
    explicit Runner(Rng& rng) : rng_(rng) {}

    void run(std::vector<Op>& ops) {
        for (Op& op : ops) step(op);
        sweep();
    }

private:
    static const char* launch_name(bool backward) {
        return backward ? "aclnnNsaSelectedAttentionGrad" : "aclnnNsaSelectedAttention";
    }

    aclrtStream stream_of(std::int64_t slot) {
        if (slot == 0) return nullptr;
        if (slot == 3) return &not_a_stream_;
        return streams_[slot];
    }
    bool stream_live(aclrtStream s) {
        if (s == nullptr) return true;
        auto it = stream_state_.find(s);
        return it != stream_state_.end() && it->second;
    }

    void create(Op& op) {
        sa::SaCase& s = *op.problem;
        std::vector<std::unique_ptr<AclTensor>> h;
        for (auto& t : s.c.tensors) {
            h.push_back(std::make_unique<AclTensor>());
            create_acl_tensor(s.c, *t, *h.back());
        }
        auto hd = [&](Tensor* t) -> const aclTensor* {
            for (std::size_t i = 0; i < s.c.tensors.size(); ++i)
                if (s.c.tensors[i].get() == t) return h[i]->handle;
            return nullptr;
        };
        aclIntArray *q = nullptr, *kv = nullptr;
        if (s.seq_q.given) q = aclCreateIntArray(s.seq_q.values.data(), s.seq_q.values.size());
        if (s.seq_kv.given) kv = aclCreateIntArray(s.seq_kv.values.data(), s.seq_kv.values.size());
        sa::judge(s);
        char layout[] = "TND";
        std::uint64_t ws = 0;
        aclOpExecutor* ex = nullptr;
        s.c.arm();
        arm_error_message();
        const aclnnStatus st =
            s.backward ? aclnnNsaSelectedAttentionGradGetWorkspaceSize(
                             hd(s.query), hd(s.key), hd(s.value), hd(s.out), hd(s.out_grad), hd(s.softmax_max),
                             hd(s.softmax_sum), hd(s.topk), q, kv, hd(s.mask), s.scale, s.block_size, s.block_count,
                             s.head_num, layout, s.sparse_mode, hd(s.dq), hd(s.dk), hd(s.dv), &ws, &ex)
                       : aclnnNsaSelectedAttentionGetWorkspaceSize(
                             hd(s.query), hd(s.key), hd(s.value), hd(s.topk), hd(s.mask), q, kv, s.scale, s.head_num,
                             layout, s.sparse_mode, s.block_size, s.block_count, hd(s.softmax_max), hd(s.softmax_sum),
                             hd(s.out), &ws, &ex);
        aclDestroyIntArray(q);
        aclDestroyIntArray(kv);
        // The executor keeps what it needs; the aclTensor objects go now (CANN allows it).
        h.clear();
        const char* fn =
            s.backward ? "aclnnNsaSelectedAttentionGradGetWorkspaceSize" : "aclnnNsaSelectedAttentionGetWorkspaceSize";
        FUZZ_LOG("slot %lld: %s: %d %s -> %p (workspace %llu)\n", (long long)op.slot, fn, st,
                 st ? aclGetRecentErrMsg() : "", static_cast<void*>(ex), static_cast<unsigned long long>(ws));
        if (st != ACLNN_SUCCESS) {
            expect_aclnn_error(fn, st, false);
            if (s.c.clean()) broken("%s rejected a valid call: %s", fn, aclGetRecentErrMsg());
            return;
        }
        if (s.c.must_reject()) broken("%s accepted a call it must reject: %s", fn, s.c.rejects.front().c_str());
        if (ws > kMaxWorkspace) broken("%s asks for %llu bytes for a small problem", fn, (unsigned long long)ws);
        slots_[op.slot] = ex;
        executors_[ex] = {true, false, s.backward, ws, &s, ""};
    }

    void launch(const Op& op) {
        const bool entry_backward = op.kind == kLaunchBackward;
        const char* fn = launch_name(entry_backward);
        aclOpExecutor* ex = slots_[op.slot];
        aclrtStream stream = stream_of(op.stream);
        auto it = ex ? executors_.find(ex) : executors_.end();
        Executor* e = it == executors_.end() ? nullptr : &it->second;
        const std::uint64_t need = e ? e->workspace : 0;

        std::uint64_t given = need;
        std::size_t block_size = static_cast<std::size_t>(need), shift = 0;
        bool null_ws = false;
        switch (op.workspace) {
            case 10:
                block_size += static_cast<std::size_t>(op.extra);
                given = block_size;
                break;
            case 11:
                given = need - std::min<std::uint64_t>(need, static_cast<std::uint64_t>(op.extra));
                block_size = given;
                break;
            case 12: given = 0; break;
            case 13: null_ws = true; break;
            case 14: shift = static_cast<std::size_t>(op.extra % 63 + 1); break;
            default: break;
        }
        GuardedBlock block(block_size, shift, rng_);
        void* ws = null_ws || (block_size == 0 && op.workspace != 14) ? nullptr : block.data();

        std::vector<aclnnStatus> codes;
        std::string why;
        auto fails = [&](aclnnStatus code, const char* reason) {
            codes.push_back(code);
            why += (why.empty() ? "" : "; ") + std::string(reason);
        };
        if (ex == nullptr)
            fails(ACLNN_ERR_PARAM_NULLPTR, "NULL executor");
        else if (!e || !e->live)
            fails(ACLNN_ERR_PARAM_INVALID, "executor not live");
        else {
            if (e->backward != entry_backward) fails(ACLNN_ERR_PARAM_INVALID, "executor of the other operator");
            if (!stream_live(stream)) fails(ACLNN_ERR_PARAM_INVALID, "stream not live");
            if (given < need) fails(ACLNN_ERR_PARAM_INVALID, "workspace smaller than asked");
            if (need > 0 && ws == nullptr) fails(ACLNN_ERR_PARAM_NULLPTR, "NULL workspace");
            if (need > 0 && ws && reinterpret_cast<std::uintptr_t>(ws) % 64 != 0)
                fails(ACLNN_ERR_PARAM_INVALID, "workspace not 64-byte aligned");
        }
        LaunchFacts facts;
        if (e && e->live) facts = sa::facts(*e->problem);
        const bool must_succeed = codes.empty() && facts.data_valid;
        if (codes.empty() && !facts.data_valid) fails(ACLNN_ERR_PARAM_INVALID, facts.data_problem.c_str());

        // Every live problem is armed: a launch must write only its own executor's outputs.
        for (auto& [p, x] : executors_)
            if (x.live) x.problem->c.arm();
        arm_error_message();
        const aclnnStatus st =
            (entry_backward ? aclnnNsaSelectedAttentionGrad : aclnnNsaSelectedAttention)(ws, given, ex, stream);
        FUZZ_LOG("slot %lld: %s(%p) workspace mode %lld stream %lld: %d %s (expected %s)\n", (long long)op.slot, fn,
                 static_cast<void*>(ex), (long long)op.workspace, (long long)op.stream, st,
                 st ? aclGetRecentErrMsg() : "", must_succeed ? "success" : why.c_str());
        if (must_succeed) {
            if (st != ACLNN_SUCCESS) broken("%s failed on a valid launch: %d %s", fn, st, aclGetRecentErrMsg());
            e->problem->c.expect_written(fn);
        } else {
            bool listed = false;
            for (aclnnStatus c : codes) listed |= c == st;
            if (!listed)
                broken("%s returned %d; expected %d (%s): %s", fn, st, codes.front(), why.c_str(),
                       aclGetRecentErrMsg());
            expect_error_message(fn);
        }
        for (auto& [p, x] : executors_)
            if (x.live && (!must_succeed || &x != e)) x.problem->c.expect_untouched(fn);
        block.expect_guards(fn);
        if (e && e->live && !e->repeatable) {  // spent, whatever the outcome
            e->live = false;
            e->spent_by = Case::concat("a launch through ", fn, " that returned ", st,
                                       must_succeed ? "" : Case::concat(" (", why, ")"));
        }
    }

    void step(Op& op) {
        aclOpExecutor* ex = slots_[op.slot];
        auto it = ex ? executors_.find(ex) : executors_.end();
        Executor* e = it == executors_.end() ? nullptr : &it->second;
        switch (op.kind) {
            case kCreateForward:
            case kCreateBackward: create(op); break;
            case kLaunchForward:
            case kLaunchBackward: launch(op); break;
            case kRepeatable: {
                arm_error_message();
                const aclnnStatus st = aclSetAclOpExecutorRepeatable(ex);
                const char* fn = "aclSetAclOpExecutorRepeatable";
                if (!ex)
                    expect_aclnn_code(fn, st, {ACLNN_ERR_PARAM_NULLPTR}, "NULL executor");
                else if (!e || !e->live) {
                    if (st == ACLNN_SUCCESS)
                        broken(
                            "the executor was still live after %s: a launch must consume a non-repeatable "
                            "executor whatever the outcome",
                            e ? e->spent_by.c_str() : "?");
                    expect_aclnn_code(fn, st, {ACLNN_ERR_PARAM_INVALID}, "executor not live");
                } else if (st != ACLNN_SUCCESS)
                    broken("%s failed on a live executor: %s", fn, aclGetRecentErrMsg());
                else
                    e->repeatable = true;
                break;
            }
            case kDestroy: {
                arm_error_message();
                const aclnnStatus st = aclDestroyAclOpExecutor(ex);
                const char* fn = "aclDestroyAclOpExecutor";
                if (!ex)
                    expect_aclnn_code(fn, st, {ACLNN_ERR_PARAM_NULLPTR}, "NULL executor");
                else if (!e || !e->live) {
                    if (st == ACLNN_SUCCESS)
                        broken(
                            "the executor was still live after %s: a launch must consume a non-repeatable "
                            "executor whatever the outcome",
                            e ? e->spent_by.c_str() : "?");
                    expect_aclnn_code(fn, st, {ACLNN_ERR_PARAM_INVALID}, "executor not live");
                } else if (st != ACLNN_SUCCESS) {
                    broken("%s failed on a live executor: %s", fn, aclGetRecentErrMsg());
                } else {
                    e->live = false;
                    e->spent_by = "aclDestroyAclOpExecutor";
                }
                break;
            }
            case kCreateStream: {
                if (op.stream != 1 && op.stream != 2) break;
                aclrtStream s = nullptr;
                if (aclrtCreateStream(&s) != ACL_SUCCESS) broken("aclrtCreateStream failed: %s", aclGetRecentErrMsg());
                streams_[op.stream] = s;
                stream_state_[s] = true;
                break;
            }
            case kDestroyStream:
            case kSyncStream: {
                aclrtStream s = stream_of(op.stream);
                const bool destroy = op.kind == kDestroyStream;
                const char* fn = destroy ? "aclrtDestroyStream" : "aclrtSynchronizeStream";
                // The default stream cannot be destroyed (CANN: only streams from aclrtCreateStream).
                const bool ok = destroy ? s != nullptr && stream_live(s) : stream_live(s);
                arm_error_message();
                const aclError st = destroy ? aclrtDestroyStream(s) : aclrtSynchronizeStream(s);
                expect_acl_code(fn, st, ok ? ACL_SUCCESS : ACL_ERROR_INVALID_PARAM,
                                ok ? "live stream" : "not a live stream");
                if (destroy && ok) stream_state_[s] = false;
                break;
            }
            case kLaunchNotExecutor: {
                // Memory that is no executor: a stream object and the harness's own data.
                void* fake = op.slot % 2 ? static_cast<void*>(&not_a_stream_) : static_cast<void*>(this);
                arm_error_message();
                const aclnnStatus st = (op.slot < 2 ? aclnnNsaSelectedAttention : aclnnNsaSelectedAttentionGrad)(
                    nullptr, 0, static_cast<aclOpExecutor*>(fake), nullptr);
                expect_aclnn_code(op.slot < 2 ? "aclnnNsaSelectedAttention" : "aclnnNsaSelectedAttentionGrad", st,
                                  {ACLNN_ERR_PARAM_INVALID}, "not an executor");
                break;
            }
            case kSyncDevice:
                expect_acl_code("aclrtSynchronizeDevice", aclrtSynchronizeDevice(), ACL_SUCCESS, "always");
                break;
            case kNullExecutor: {
                arm_error_message();
                expect_aclnn_code("aclDestroyAclOpExecutor", aclDestroyAclOpExecutor(nullptr),
                                  {ACLNN_ERR_PARAM_NULLPTR}, "NULL executor");
                arm_error_message();
                expect_aclnn_code("aclSetAclOpExecutorRepeatable", aclSetAclOpExecutorRepeatable(nullptr),
                                  {ACLNN_ERR_PARAM_NULLPTR}, "NULL executor");
                break;
            }
        }
    }

    // Every executor the script saw: live ones destroy (0), spent ones are not live (161002).
    void sweep() {
        for (auto& [ex, e] : executors_) {
            arm_error_message();
            const aclnnStatus st = aclDestroyAclOpExecutor(ex);
            if (e.live) {
                if (st != ACLNN_SUCCESS)
                    broken("aclDestroyAclOpExecutor failed on a live executor: %s", aclGetRecentErrMsg());
            } else {
                if (st == ACLNN_SUCCESS)
                    broken(
                        "the executor was still live after %s: a launch must consume a non-repeatable executor "
                        "whatever the outcome",
                        e.spent_by.c_str());
                expect_aclnn_code("aclDestroyAclOpExecutor", st, {ACLNN_ERR_PARAM_INVALID}, "executor not live");
            }
        }
        for (auto& [s, live] : stream_state_)
            if (live && aclrtDestroyStream(s) != ACL_SUCCESS) broken("aclrtDestroyStream failed on a live stream");
    }

    Rng& rng_;
    aclOpExecutor* slots_[4] = {};
    aclrtStream streams_[3] = {};
    std::unordered_map<aclOpExecutor*, Executor> executors_;
    std::unordered_map<aclrtStream, bool> stream_state_;
    int not_a_stream_ = 0;
};

}  // namespace
}  // namespace fuzz::executor_target

// fuzz/make_regressions.cpp includes this file for decode(); it has its own main.
#ifndef OPENNSA_FUZZ_GENERATOR

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace fuzz;
    using namespace fuzz::executor_target;
    init_acl();
    opennsa::set_num_threads(1);
    FuzzInput in(data, size);
    std::vector<Op> ops = decode(in);
    g_describe = [&](std::FILE* f) {
        std::fprintf(f, "  script of %zu operations:", ops.size());
        for (const Op& op : ops) std::fprintf(f, " %lld/%lld", (long long)op.kind, (long long)op.slot);
        std::fprintf(f, "\n");
    };
    Rng rng{0x5eed ^ size};
    Runner(rng).run(ops);
    g_describe = nullptr;
    return 0;
}
#endif
