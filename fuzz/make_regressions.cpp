// Writes the hand-specified reproducers of fuzz/regressions/ in the fuzz targets' input format.
//
//   build-fuzz/fuzz/fuzz_make_regressions fuzz/regressions
//
// A reproducer is a table of named decisions ("key/strides" = 5, "key/stride" = 0, 0, 1, ...);
// every decision not named takes its default (the lowest value: the ordinary choice). The
// Recorder answers the targets' own decode() with that table and writes the bytes a
// FuzzedDataProvider turns back into the same answers (it reads integers from the end of the
// input, most significant byte first, as many bytes as the range needs). Each file is then
// decoded again through FuzzInput and the two decision logs compared, so a reproducer that no
// longer decodes as written is an error here rather than a silent change of meaning.
#define OPENNSA_FUZZ_GENERATOR
#pragma clang diagnostic ignored "-Wunused-function"  // the targets' run functions, unused here
#include "capi_selected_attention.cpp"
#include "executor_misuse.cpp"
#include "native_selected_attention.cpp"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

namespace {

using Values = std::vector<std::pair<std::string, std::vector<std::int64_t>>>;
using Log = std::vector<std::pair<std::string, std::int64_t>>;

// Scoped names, shared by both inputs below.
class Named : public fuzz::Input {
public:
    void enter(const char* scope) override {
        marks_.push_back(path_.size());
        path_ += scope;
        path_ += '/';
    }
    void leave() override {
        path_.resize(marks_.back());
        marks_.pop_back();
    }
    Log log;

protected:
    std::string full(const char* name) const { return path_ + name; }

private:
    std::string path_;
    std::vector<std::size_t> marks_;
};

class Recorder final : public Named {
public:
    explicit Recorder(const Values& values) {
        for (auto& [name, list] : values) values_[name] = {list, 0};
    }
    std::int64_t integer(const char* name, std::int64_t lo, std::int64_t hi) override {
        const std::string n = full(name);
        std::int64_t v = lo;
        if (auto it = values_.find(n); it != values_.end()) {
            auto& [list, used] = it->second;
            v = list[std::min(used, list.size() - 1)];  // the last value repeats
            ++used;
        }
        if (v < lo || v > hi) {
            std::cerr << "decision " << n << " = " << v << " is outside [" << lo << ", " << hi << "]\n";
            std::exit(1);
        }
        log.emplace_back(n, v);
        // FuzzedDataProvider::ConsumeIntegralInRange: ceil(bits(range) / 8) bytes, first one
        // most significant.
        const std::uint64_t range = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
        const std::uint64_t r = static_cast<std::uint64_t>(v) - static_cast<std::uint64_t>(lo);
        int bytes = 0;
        while (bytes < 8 && (range >> (8 * bytes)) > 0) ++bytes;
        for (int i = bytes - 1; i >= 0; --i) stream_.push_back(static_cast<std::uint8_t>(r >> (8 * i)));
        return v;
    }
    // The input: consumed from its end, so the stream reversed.
    std::vector<std::uint8_t> bytes() const { return {stream_.rbegin(), stream_.rend()}; }
    void expect_all_used(const std::string& what) const {
        for (auto& [name, entry] : values_)
            if (entry.second < entry.first.size()) {
                std::cerr << what << ": decision " << name << " was asked " << entry.second << " times, but "
                          << entry.first.size() << " values were given\n";
                std::exit(1);
            }
    }

private:
    std::map<std::string, std::pair<std::vector<std::int64_t>, std::size_t>> values_;
    std::vector<std::uint8_t> stream_;
};

class Replayer final : public Named {
public:
    explicit Replayer(const std::vector<std::uint8_t>& data) : in_(data.data(), data.size()) {}
    std::int64_t integer(const char* name, std::int64_t lo, std::int64_t hi) override {
        const std::int64_t v = in_.integer(name, lo, hi);
        log.emplace_back(full(name), v);
        return v;
    }

private:
    fuzz::FuzzInput in_;
};

struct Reproducer {
    const char* target;
    const char* file;
    const char* what;
    Values values;
};

constexpr std::int64_t P(int n) { return std::int64_t{1} << n; }

// The problem of defect 1: query [1, 1, D] fp16, key and value [T2, 1, D] as a broadcast view
// (strides 0, 0, 1) over one D-element buffer, bs = 8, C = 1, topk = {0}.
Values broadcast_keys(std::int64_t T2, std::int64_t D) {
    return {{"T1/value", {1}},    {"Dk/value", {D - 1}},     {"Dv/value", {D - 1}},  {"T2/kind", {15}},
            {"T2/wild", {T2}},    {"bs/value", {8}},         {"topk_fill", {1}},     {"topkIndices/index/value", {0}},
            {"key/strides", {5}}, {"key/stride", {0, 0, 1}}, {"value/strides", {5}}, {"value/stride", {0, 0, 1}}};
}

// q [1, 1, 8], k / v [16, 1, 8] dense, topk = {0}, one selected block of size bs.
Values huge_block(std::int64_t bs) {
    return {{"T1/value", {1}}, {"Dk/value", {7}}, {"Dv/value", {7}},  {"T2/value", {16}},
            {"bs/kind", {15}}, {"bs/wild", {bs}}, {"topk_fill", {1}}, {"topkIndices/index/value", {0}}};
}

// C = 2^31 slots as a broadcast (stride 0) over one index per query row: rows 0-14 hold -1
// (empty, valid), row 15 holds 99 (out of range), so a check that visits every slot loops
// 15 * 2^31 times before it finds the bad one.
Values broadcast_slots() {
    std::vector<std::int64_t> kinds(16, 0);
    kinds.back() = 3;
    return {{"T1/value", {16}},
            {"Dk/value", {0}},
            {"Dv/value", {0}},
            {"T2/value", {16}},
            {"bs/value", {4}},
            {"C/kind", {15}},
            {"C/wild", {P(31)}},
            {"topk_fill", {1}},
            {"topkIndices/strides", {5}},
            {"topkIndices/stride", {1, 0, 0}},
            {"topkIndices/index/kind", kinds},
            {"topkIndices/index/value", {-1}},
            {"topkIndices/index/wide", {99}}};
}

Values with(Values v, const Values& more) {
    v.insert(v.end(), more.begin(), more.end());
    return v;
}

// The executor scripts' forward problem (slot 0): T1 = 1 + 1 = 2, T2 = 8, bs = 4, C = 1, D = 8, so the
// workspace is not empty.
Values small_problem() {
    return {{"forward/T1", {1}},
            {"forward/T2", {8}},
            {"forward/bs", {3}},
            {"forward/Dk/value", {7}},
            {"forward/Dv/value", {7}}};
}

// Launch slot 0's forward executor (forward entry unless `entry` says otherwise) with `launch`,
// then destroy it: the destroy must find it consumed.
Values launch_destroy(std::int64_t entry, const Values& launch) {
    return with(with(small_problem(), {{"ops", {2}}, {"op/kind", {entry, 2}}}), launch);
}

const std::vector<Reproducer>& reproducers() {
    static const std::vector<Reproducer> all = {
        // --- capi_selected_attention ---------------------------------------------------------------
        {"capi_selected_attention", "defect1-broadcast-key-t2-2e58",
         "defect 1: key/value [2^58, 1, 8] strides (0, 0, 1): the forward's workspace size wraps to 0 and the launch "
         "writes past it",
         with({{"op", {0}}}, broadcast_keys(P(58), 8))},
        {"capi_selected_attention", "defect1-broadcast-key-t2-2e57-d16", "defect 1: the same at T2 = 2^57, D = 16",
         with({{"op", {0}}}, broadcast_keys(P(57), 16))},
        {"capi_selected_attention", "defect2-block-size-2e62",
         "defect 2: selectedBlockSize = 2^62 overflows the forward's workspace sizing",
         with({{"op", {0}}}, huge_block(P(62)))},
        {"capi_selected_attention", "defect2-block-size-int64-max",
         "defect 2: selectedBlockSize = INT64_MAX overflows the block count; index 0 is valid and must be accepted",
         with({{"op", {0}}}, huge_block(fuzz::kI64Max))},
        {"capi_selected_attention", "defect2-block-size-2e31-1-forward",
         "defect 2: selectedBlockSize = 2^31 - 1 with 16 keys: the forward asks for a workspace of tens of GiB",
         with({{"op", {0}}}, huge_block(P(31) - 1))},
        {"capi_selected_attention", "defect2-block-size-2e31-1-backward", "defect 2: the same through the backward",
         with({{"op", {1}}}, huge_block(P(31) - 1))},
        {"capi_selected_attention", "defect3-broadcast-topk-c-2e31",
         "defect 3: selectedBlockCount = 2^31 over a broadcast topk: the launch's topk check visits every slot",
         with({{"op", {0}}}, broadcast_slots())},
        {"capi_selected_attention",
         "defect4-scalar-dtype-outside-enum",
         "defect 4: aclCreateScalar(value, 100) loads the out-of-enum dtype as an aclDataType",
         {{"op", {2}}, {"meta/op/kind", {0}}, {"meta/op/any", {3}}, {"meta/op/value", {100}}}},
        {"capi_selected_attention",
         "defect4-tensor-dtype-outside-enum",
         "defect 4: a tensor whose aclDataType is 33 (outside the enum) reaches the operator",
         {{"op", {0}}, {"T1/value", {1}}, {"T2/value", {4}}, {"query/dtype", {15}}, {"query/dtype_raw", {33}}}},
        {"capi_selected_attention",
         "defect4-empty-view-offset-minus-2e61",
         "defect 4: an empty query [0, 1, 1] with offset -2^61 over a real pointer: the pointer arithmetic overflows",
         {{"op", {0}},
          {"T1/value", {0}},
          {"query/offset", {7}},
          {"query/offset_wild", {1}},
          {"query/offset_value", {-P(61)}}}},
        {"capi_selected_attention",
         "defect4-misaligned-softmax-max-out",
         "defect 4: softmaxMaxOut (fp32) one byte off its alignment: must be rejected (today: misaligned stores)",
         {{"op", {0}}, {"T1/value", {2}}, {"T2/value", {4}}, {"softmaxMaxOut/misalign", {15}}}},
        {"capi_selected_attention",
         "defect4-misaligned-softmax-max-backward",
         "defect 4: the backward's softmaxMax (fp32 input) one byte off: must be rejected (today: misaligned loads)",
         {{"op", {1}}, {"T1/value", {2}}, {"T2/value", {4}}, {"softmaxMax/misalign", {15}}}},
        {"capi_selected_attention",
         "defect4-misaligned-query-fp16",
         "defect 4: an fp16 query one byte off its alignment: must be rejected",
         {{"op", {0}}, {"T1/value", {2}}, {"T2/value", {4}}, {"query/misalign", {15}}}},
        {"capi_selected_attention",
         "defect6-small-workspace",
         "defect 6: a launch rejected for a workspace one byte too small must still consume its executor",
         {{"op", {0}}, {"T1/value", {2}}, {"T2/value", {8}}, {"launch/workspace", {11}}, {"launch/extra", {1}}}},
        // --- native_selected_attention -------------------------------------------------------------
        {"native_selected_attention", "defect1-broadcast-key-t2-2e58",
         "defect 1: forward_workspace_bytes wraps to 0 for key/value [2^58, 1, 8] strides (0, 0, 1); forward() "
         "then writes past the workspace it allocated",
         with({{"op", {0}}}, broadcast_keys(P(58), 8))},
        {"native_selected_attention", "defect2-block-size-2e31-1",
         "defect 2: block_size = 2^31 - 1 with 16 keys: forward_workspace_bytes asks for tens of GiB",
         with({{"op", {0}}}, huge_block(P(31) - 1))},
        {"native_selected_attention", "defect2-block-size-int64-max-backward",
         "defect 2: block_size = INT64_MAX through the backward: index 0 is valid",
         with({{"op", {1}}}, huge_block(fuzz::kI64Max))},
        {"native_selected_attention", "defect2-block-size-2e58-backward",
         "defect 2 (found again by fuzzing): block_size = 2^58 in the AVX2 backward: workspace_bytes is small, the "
         "per-thread scratch size then overflows int64",
         with({{"op", {1}}, {"dtype", {2}}}, huge_block(P(58)))},
        {"native_selected_attention", "defect3-broadcast-topk-c-2e31",
         "defect 3: block_count = 2^31 over a broadcast topk: the topk check visits every slot",
         with({{"op", {0}}}, broadcast_slots())},
        {"native_selected_attention",
         "defect4-misaligned-softmax-sum",
         "defect 4: softmax_sum (fp32 output) one byte off its alignment: must be rejected",
         {{"op", {0}}, {"T1/value", {2}}, {"T2/value", {4}}, {"softmaxSumOut/misalign", {15}}}},
        {"native_selected_attention",
         "found-broadcast-head-dim-2e57-workspace-overflow",
         "found by fuzzing (defect 1's sizing, second trigger): Dk = 2^57 as a broadcast view overflows int64 in the "
         "AVX2 forward's workspace sizing (phase one)",
         {{"op", {0}},
          {"T1/value", {1}},
          {"T2/value", {20}},
          {"Dk/kind", {15}},
          {"Dk/wild", {P(57)}},
          {"topk_fill", {1}},
          {"topkIndices/index/value", {0}}}},
        {"native_selected_attention",
         "found-broadcast-head-dim-no-keys-forward",
         "found by fuzzing: no keys (T2 = 0) and a broadcast Dk = 2^31: nothing to compute, yet the forward allocates "
         "16 GiB of per-thread scratch outside its workspace",
         {{"op", {0}},
          {"T1/value", {3}},
          {"G", {1}},
          {"T2/value", {0}},
          {"Dk/kind", {15}},
          {"Dk/wild", {P(31)}},
          {"topk_fill", {2}}}},
        {"native_selected_attention",
         "found-broadcast-head-dim-no-keys-backward-fp64",
         "found by fuzzing: the same through the generic (fp64) backward with a broadcast Dv = 2^31 - 1",
         {{"op", {1}},
          {"dtype", {3}},
          {"T1/value", {11}},
          {"G", {1}},
          {"T2/value", {0}},
          {"Dk/value", {18}},
          {"Dv/kind", {15}},
          {"Dv/wild", {P(31) - 1}},
          {"topk_fill", {2}}}},
        {"native_selected_attention",
         "found-broadcast-topk-c-2e31-all-empty",
         "found by fuzzing (defect 3, valid input): block_count = 2^31 - 1 over a broadcast topk of -1 (every slot "
         "empty, so nothing to compute): the forward still visits every slot",
         {{"op", {0}},
          {"T1/value", {1}},
          {"T2/value", {7}},
          {"bs/value", {9}},
          {"C/kind", {15}},
          {"C/wild", {P(31) - 1}},
          {"topk_fill", {2}}}},
        // --- executor_misuse -----------------------------------------------------------------------
        {"executor_misuse", "defect6-small-workspace",
         "defect 6: create, launch with a workspace one byte short (161002), destroy: the executor must be spent",
         launch_destroy(0, {{"op/workspace", {11}}, {"op/extra", {1}}})},
        {"executor_misuse", "defect6-null-workspace", "defect 6: the same with a NULL workspace (161001)",
         launch_destroy(0, {{"op/workspace", {13}}})},
        {"executor_misuse", "defect6-misaligned-workspace",
         "defect 6: the same with a workspace one byte off 64-byte alignment",
         launch_destroy(0, {{"op/workspace", {14}}, {"op/extra", {63}}})},
        {"executor_misuse", "defect6-dead-stream",
         "defect 6: create a stream, destroy it, launch on it: the executor must be spent",
         with(small_problem(), {{"ops", {4}}, {"op/kind", {6, 7, 0, 2}}, {"op/stream", {1}}})},
        {"executor_misuse", "defect6-wrong-entry-point",
         "defect 6: a forward executor launched through aclnnNsaSelectedAttentionGrad must be spent",
         launch_destroy(1, {})},
        {"executor_misuse", "rule-bad-topk-consumes",
         "the rule defect 6 asks for, already true today: a launch rejected for a bad topk index spends the executor",
         launch_destroy(0, {{"forward/topk_fill", {1}}, {"forward/topkIndices/index/kind", {2}}})},
        {"executor_misuse", "rule-repeatable-survives-rejections",
         "a repeatable executor survives rejected launches and still runs and destroys cleanly",
         with(small_problem(),
              {{"ops", {5}}, {"op/kind", {3, 0, 0, 0, 2}}, {"op/workspace", {11, 13, 0}}, {"op/extra", {1}}})},
    };
    return all;
}

std::string case_name(const Reproducer& r) { return std::string(r.target) + "/" + r.file; }

template <class Decode>
std::vector<std::uint8_t> encode(const Reproducer& r, Decode&& decode) {
    Recorder rec(r.values);
    decode(rec);
    rec.expect_all_used(case_name(r));
    std::vector<std::uint8_t> bytes = rec.bytes();
    Replayer replay(bytes);
    decode(replay);
    if (replay.log != rec.log) {
        std::cerr << case_name(r) << ": the bytes do not decode to the same decisions\n";
        std::exit(1);
    }
    return bytes;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: " << argv[0] << " <fuzz/regressions folder>\n";
        return 2;
    }
    const std::filesystem::path root = argv[1];
    for (const Reproducer& r : reproducers()) {
        const std::string target = r.target;
        std::vector<std::uint8_t> bytes;
        if (target == "capi_selected_attention")
            bytes = encode(r, [](fuzz::Input& in) { (void)fuzz::capi_target::decode(in); });
        else if (target == "native_selected_attention")
            bytes = encode(r, [](fuzz::Input& in) { (void)fuzz::native_target::decode(in); });
        else
            bytes = encode(r, [](fuzz::Input& in) { (void)fuzz::executor_target::decode(in); });
        std::filesystem::create_directories(root / target);
        std::ofstream(root / target / r.file, std::ios::binary)
            .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        std::cout << target << "/" << r.file << " (" << bytes.size() << " bytes): " << r.what << "\n";
    }
    return 0;
}
