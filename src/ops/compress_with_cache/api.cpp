// The decoding compression's native API: validate everything (slot and block-table values
// included), then run the pass. Nothing is written before all checks have passed.
#include "core/workspace.hpp"
#include "ops/compress_with_cache/passes.hpp"
#include "ops/compress_with_cache/problem.hpp"

namespace opennsa {
namespace {

namespace cwc = detail::compress_with_cache;

}  // namespace

std::size_t compress_with_cache_workspace_bytes(const CompressWithCacheArgs& args,
                                                const CompressWithCacheParams& params) {
    (void)cwc::validate(args, params);
    return 0;
}

void compress_with_cache(const CompressWithCacheArgs& args, const CompressWithCacheParams& params,
                         std::span<std::byte>) {
    const cwc::Problem p = cwc::validate(args, params);
    cwc::check_values(p);
    if (p.triggered.empty()) return;  // no sequence completed a window: nothing to write
    const detail::KernelPath path = detail::kernel_path();
    detail::guarded([&] { cwc::run(p, path); });
}

void compress_with_cache(const CompressWithCacheArgs& args, const CompressWithCacheParams& params) {
    compress_with_cache(args, params, {});
}

}  // namespace opennsa
