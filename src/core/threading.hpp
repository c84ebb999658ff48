// A small persistent thread pool, or a host framework's threads when one lends them
// (opennsa::set_host_threads; the PyTorch extension lends torch's), and fork-safe. Work is split into a fixed list of tasks (fixed by the problem,
// never by the thread count) that threads claim dynamically; each output element belongs to one
// task and is reduced in a fixed order inside it, so results are bitwise identical for any number
// of threads.
#pragma once

#include <cstdint>
#include <utility>

namespace opennsa::detail {

// Threads the next parallel_for uses (the caller's thread included): num_threads(), capped by the
// host's available threads while a host lends them.
int thread_count() noexcept;

using TaskFn = void (*)(void* ctx, std::int64_t task, int worker);

// Runs fn(ctx, task, worker) for every task in [0, tasks) on at most `threads` threads; `worker`
// is in [0, threads) and identifies the thread, for per-thread scratch. Returns when all tasks are done; rethrows the
// first exception a task threw. Concurrent callers are serialized; a nested call runs inline.
void parallel_for_raw(std::int64_t tasks, int threads, TaskFn fn, void* ctx);

template <class Body>
void parallel_for(std::int64_t tasks, int threads, Body&& body) {
    parallel_for_raw(
        tasks, threads,
        [](void* ctx, std::int64_t task, int worker) { (*static_cast<std::remove_reference_t<Body>*>(ctx))(task, worker); },
        &body);
}

}  // namespace opennsa::detail
