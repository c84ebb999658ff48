#include "core/threading.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>

#include "opennsa/core.hpp"

namespace opennsa::detail {
namespace {

int default_thread_count() {
    if (const char* env = std::getenv("OPENNSA_NUM_THREADS")) {
        char* end = nullptr;
        const long n = std::strtol(env, &end, 10);
        if (end != env && *end == '\0' && n >= 1 && n <= 4096) return static_cast<int>(n);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

thread_local bool t_inside_pool = false;

// One parallel region: tasks claimed with an atomic counter by whichever threads run it (the
// pool's or a host's), the first exception kept and the remaining tasks abandoned.
struct Job {
    Job(TaskFn fn_, void* ctx_, std::int64_t tasks_) : fn(fn_), ctx(ctx_), tasks(tasks_) {}
    TaskFn fn;
    void* ctx;
    std::int64_t tasks;
    std::atomic<std::int64_t> next{0};
    std::mutex error_mutex;
    std::exception_ptr error;

    void work(int worker) {
        for (;;) {
            const std::int64_t task = next.fetch_add(1, std::memory_order_relaxed);
            if (task >= tasks) return;
            try {
                fn(ctx, task, worker);
            } catch (...) {
                std::lock_guard lock(error_mutex);
                if (!error) error = std::current_exception();
                next.store(tasks, std::memory_order_relaxed);  // abandon the rest
            }
        }
    }
};

// The host's threads, when one lent them (set_host_threads): two atomics, so that a change while a
// region runs is harmless (a region that read available() but finds run cleared uses the pool).
using HostAvailableFn = int (*)();
using HostRunFn = void (*)(int, void (*)(void*, int), void*);
std::atomic<HostAvailableFn> g_host_available{nullptr};
std::atomic<HostRunFn> g_host_run{nullptr};

// Workers a region would get on the host now, or 0 when it runs on the library's own pool.
int host_workers() {
    const HostAvailableFn available = g_host_available.load(std::memory_order_acquire);
    if (available == nullptr || t_inside_pool) return 0;
    const int n = available();
    return n >= 2 ? n : 0;
}

void run_on_host(HostRunFn run, std::int64_t tasks, int threads, TaskFn fn, void* ctx) {
    Job job(fn, ctx, tasks);
    const int workers = static_cast<int>(std::min<std::int64_t>(threads, tasks));
    run(workers, [](void* c, int worker) {
        const bool outer = t_inside_pool;
        t_inside_pool = true;  // a nested call from a task runs inline
        static_cast<Job*>(c)->work(worker);
        t_inside_pool = outer;
    }, &job);
    if (job.error) std::rethrow_exception(job.error);
}

class Pool {
public:
    ~Pool() { resize_locked(1); }

    // fork() copies only the forking thread: a child would wait forever for workers it does not
    // have. Around a fork the pool is quiescent (prepare waits for the running job and holds the
    // locks); the child then drops this pool without touching it (its threads do not exist there)
    // and starts a fresh one with the same thread count (fork_child in pool_slot()).
    void lock_for_fork() {
        config_mutex_.lock();
        job_mutex_.lock();
        state_mutex_.lock();
    }
    void unlock_after_fork() {
        state_mutex_.unlock();
        job_mutex_.unlock();
        config_mutex_.unlock();
    }
    int requested() const { return requested_; }  // read in the child, where no other thread runs
    void set_requested(int n) { requested_ = n; }

    int size() {
        std::lock_guard lock(config_mutex_);
        if (requested_ < 1) requested_ = default_thread_count();
        return requested_;
    }

    void request(int n) {
        std::lock_guard lock(config_mutex_);
        requested_ = n < 1 ? default_thread_count() : n;
    }

    void run(std::int64_t tasks, int threads, TaskFn fn, void* ctx) {
        if (tasks <= 0) return;
        if (t_inside_pool || threads == 1 || tasks == 1) {
            for (std::int64_t i = 0; i < tasks; ++i) fn(ctx, i, 0);
            return;
        }
        std::lock_guard job_lock(job_mutex_);  // one job at a time
        resize_locked(threads);
        Job job(fn, ctx, tasks);
        {
            std::lock_guard lock(state_mutex_);
            job_ = &job;
            busy_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        t_inside_pool = true;
        job.work(0);
        t_inside_pool = false;
        spin_until([&] { return busy_.load(std::memory_order_acquire) == 0; });
        std::unique_lock lock(state_mutex_);
        done_.wait(lock, [&] { return busy_.load(std::memory_order_acquire) == 0; });
        job_ = nullptr;
        if (job.error) std::rethrow_exception(job.error);
    }

private:
    // Polls `ready` for a short while before the caller blocks on a condition variable: the passes
    // post hundreds of short jobs back to back (per chunk of query tokens), and a sleeping thread
    // takes tens of microseconds to wake. Bounded, so an idle pool does not burn a core.
    template <class Ready>
    static bool spin_until(Ready&& ready) {
        for (int i = 0; i < kSpins; ++i) {
            if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ __volatile__("yield");  // Arm's spin-wait hint
#endif
        }
        return ready();
    }
    static constexpr int kSpins = 4000;  // ~50-100 us of pause instructions

    // Called with job_mutex_ held (or from the destructor): the pool has threads - 1 workers.
    void resize_locked(int threads) {
        const std::size_t want = static_cast<std::size_t>(threads > 1 ? threads - 1 : 0);
        if (workers_.size() == want) return;
        {
            std::lock_guard lock(state_mutex_);
            stop_ = true;
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
        workers_.clear();
        std::uint64_t start_generation = 0;
        {
            std::lock_guard lock(state_mutex_);
            stop_ = false;
            start_generation = generation_.load(std::memory_order_relaxed);
        }
        // A new worker waits for the first generation after its creation, even if it only starts
        // running after that job was posted.
        for (std::size_t i = 0; i < want; ++i)
            workers_.emplace_back([this, i, start_generation] { loop(static_cast<int>(i) + 1, start_generation); });
    }

    void loop(int worker, std::uint64_t seen) {
        t_inside_pool = true;
        for (;;) {
            // The job's fields are written before generation_ is bumped (release), and read after
            // it is seen to change (acquire), with or without the lock.
            if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
                std::unique_lock lock(state_mutex_);
                wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            }
            seen = generation_.load(std::memory_order_acquire);
            {
                std::lock_guard lock(state_mutex_);
                if (stop_) return;
            }
            job_->work(worker);
            if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard lock(state_mutex_);  // the caller waits under this lock
                done_.notify_one();
            }
        }
    }

    std::mutex config_mutex_;
    int requested_ = 0;

    std::mutex job_mutex_;
    std::mutex state_mutex_;
    std::condition_variable wake_, done_;
    std::vector<std::thread> workers_;
    std::atomic<std::uint64_t> generation_{0};
    bool stop_ = false;
    std::atomic<int> busy_{0};
    Job* job_ = nullptr;  // the job being run, set before generation_ is bumped
};

std::unique_ptr<Pool>& pool_slot();

void fork_prepare() { pool_slot()->lock_for_fork(); }
void fork_parent() { pool_slot()->unlock_after_fork(); }
void fork_child() {
    std::unique_ptr<Pool>& slot = pool_slot();
    const int requested = slot->requested();
    (void)slot.release();  // its workers and locked mutexes belong to the parent: never destroyed here
    slot = std::make_unique<Pool>();
    slot->set_requested(requested);
}

std::unique_ptr<Pool>& pool_slot() {
    static std::unique_ptr<Pool> p = [] {
        pthread_atfork(&fork_prepare, &fork_parent, &fork_child);
        return std::make_unique<Pool>();
    }();
    return p;
}

Pool& pool() { return *pool_slot(); }

}  // namespace

int thread_count() noexcept {
    const int own = pool().size();
    const int host = host_workers();
    return host >= 2 ? std::min(own, host) : own;
}

void parallel_for_raw(std::int64_t tasks, int threads, TaskFn fn, void* ctx) {
    if (tasks > 1 && threads > 1 && host_workers() >= 2) {
        if (const HostRunFn run = g_host_run.load(std::memory_order_acquire)) {
            run_on_host(run, tasks, threads, fn, ctx);
            return;
        }
    }
    pool().run(tasks, threads, fn, ctx);
}

}  // namespace opennsa::detail

namespace opennsa {
void set_num_threads(int n) { detail::pool().request(n); }
int num_threads() noexcept { return detail::pool().size(); }
void set_host_threads(const HostThreads* host) noexcept {
    const bool complete = host != nullptr && host->available != nullptr && host->run != nullptr;
    detail::g_host_available.store(nullptr, std::memory_order_release);  // off first: no region starts half-set
    detail::g_host_run.store(complete ? host->run : nullptr, std::memory_order_release);
    if (complete) detail::g_host_available.store(host->available, std::memory_order_release);
}
}  // namespace opennsa
