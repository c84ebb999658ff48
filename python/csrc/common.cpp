#include "common.hpp"

#include <ATen/Parallel.h>

#include <cstdlib>

namespace opennsa_torch {

opennsa::DType to_dtype(const at::Tensor& t, const char* name) {
    switch (t.scalar_type()) {
        case at::kHalf: return opennsa::DType::f16;
        case at::kBFloat16: return opennsa::DType::bf16;
        case at::kFloat: return opennsa::DType::f32;
        case at::kDouble: return opennsa::DType::f64;
        case at::kInt: return opennsa::DType::i32;
        case at::kLong: return opennsa::DType::i64;
        case at::kByte: return opennsa::DType::u8;
        case at::kBool: return opennsa::DType::boolean;
        default:
            TORCH_CHECK_VALUE(false, "opennsa: ", name, " has dtype ", t.scalar_type(),
                              ", which the operator does not take");
    }
    return opennsa::DType::f32;  // unreachable
}

opennsa::TensorView view_of(const at::Tensor& t, const char* name) {
    TORCH_CHECK_VALUE(t.device().is_cpu(), "opennsa: ", name, " is on ", t.device(),
                      "; the operators run on CPU tensors");
    TORCH_CHECK_VALUE(t.dim() >= 1 && t.dim() <= opennsa::kMaxRank, "opennsa: ", name, " has rank ", t.dim(),
                      " (shape ", t.sizes(), "); the operators take tensors of rank 1 to ", opennsa::kMaxRank);
    opennsa::TensorView v;
    v.data = t.data_ptr();
    v.dtype = to_dtype(t, name);
    v.rank = static_cast<int>(t.dim());
    for (int d = 0; d < v.rank; ++d) {
        v.shape[d] = t.size(d);
        v.strides[d] = t.stride(d);
    }
    return v;
}

opennsa::TensorView optional_view(const Optional<at::Tensor>& t, const char* name) {
    if (!t.has_value() || !t->defined()) return {};
    return view_of(*t, name);
}

std::optional<std::vector<std::int64_t>> to_vector(at::OptionalIntArrayRef a) {
    if (!a.has_value()) return std::nullopt;
    return std::vector<std::int64_t>(a->begin(), a->end());
}

void rethrow_library_error(const opennsa::Error& e) {
    if (e.code() == opennsa::ErrorCode::internal) TORCH_CHECK(false, "opennsa: ", e.what());
    TORCH_CHECK_VALUE(false, e.what());
}

void require_rank(const at::Tensor& t, int rank, const char* name, const char* layout) {
    TORCH_CHECK_VALUE(t.dim() == rank, "opennsa: ", name, " has shape ", t.sizes(), "; expected rank ", rank, " (",
                      layout, ")");
}

}  // namespace opennsa_torch

namespace {

#if defined(_OPENMP) || !AT_PARALLEL_OPENMP  // else at::parallel_for would run its body serially
// OpenNSA's parallel regions run on torch's intra-op threads (see opennsa::HostThreads): torch's
// idle OpenMP workers spin after each torch op, and the library's own pool lost the cores to them
// (the layer at T = 4096 took 1.2x its time with both pools at 2 threads; docs/PERFORMANCE.md).
int torch_threads_available() { return at::in_parallel_region() ? 1 : at::get_num_threads(); }

void run_on_torch_threads(int workers, void (*body)(void*, int), void* ctx) {
    at::parallel_for(0, workers, 1, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t w = begin; w < end; ++w) body(ctx, static_cast<int>(w));
    });
}
#define OPENNSA_LEND_TORCH_THREADS 1
#endif

// OPENNSA_LEND_TORCH_THREADS=0 keeps the library's own pool under torch at any thread count
// (for an A/B of the two, or a host whose torch threads are busy elsewhere). Read once, when the
// extension loads.
bool lending_enabled() {
#ifdef OPENNSA_LEND_TORCH_THREADS
    const char* env = std::getenv("OPENNSA_LEND_TORCH_THREADS");
    return !(env && std::string(env) == "0");
#else
    return false;
#endif
}

bool lends_torch_threads() {
    static const bool lends = lending_enabled();
    return lends;
}

void set_num_threads(int64_t n) { opennsa::set_num_threads(static_cast<int>(n)); }
int64_t get_num_threads() { return opennsa::num_threads(); }
std::string library_version() { return opennsa::version(); }

}  // namespace

// The library's own definitions; each operator file adds its schemas with TORCH_LIBRARY_FRAGMENT.
TORCH_LIBRARY(opennsa, m) {
#ifdef OPENNSA_LEND_TORCH_THREADS
    const opennsa::HostThreads torch_threads{&torch_threads_available, &run_on_torch_threads};
    if (lends_torch_threads()) opennsa::set_host_threads(&torch_threads);
#endif
    // The library's thread count (under torch at >= 2 threads, capped by torch's; results are identical
    // for every count).
    m.def("set_num_threads(int n) -> ()", &set_num_threads);
    m.def("get_num_threads() -> int", &get_num_threads);
    m.def("version() -> str", &library_version);
    // Whether the regions run on torch's threads: the build can (compiled with torch's OpenMP) and
    // OPENNSA_LEND_TORCH_THREADS is not 0.
    m.def("lends_torch_threads() -> bool", &lends_torch_threads);
}
