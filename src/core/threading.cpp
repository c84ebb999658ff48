#include "core/threading.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

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

class Pool {
public:
    ~Pool() { resize_locked(1); }

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
        {
            std::lock_guard lock(state_mutex_);
            fn_ = fn;
            ctx_ = ctx;
            tasks_ = tasks;
            next_.store(0, std::memory_order_relaxed);
            error_ = nullptr;
            busy_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        t_inside_pool = true;
        work(0);
        t_inside_pool = false;
        spin_until([&] { return busy_.load(std::memory_order_acquire) == 0; });
        std::unique_lock lock(state_mutex_);
        done_.wait(lock, [&] { return busy_.load(std::memory_order_acquire) == 0; });
        if (error_) std::rethrow_exception(error_);
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
            work(worker);
            if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard lock(state_mutex_);  // the caller waits under this lock
                done_.notify_one();
            }
        }
    }

    void work(int worker) {
        for (;;) {
            const std::int64_t task = next_.fetch_add(1, std::memory_order_relaxed);
            if (task >= tasks_) return;
            try {
                fn_(ctx_, task, worker);
            } catch (...) {
                std::lock_guard lock(state_mutex_);
                if (!error_) error_ = std::current_exception();
                next_.store(tasks_, std::memory_order_relaxed);  // abandon the rest
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
    TaskFn fn_ = nullptr;
    void* ctx_ = nullptr;
    std::int64_t tasks_ = 0;
    std::atomic<std::int64_t> next_{0};
    std::exception_ptr error_;
};

Pool& pool() {
    static Pool p;
    return p;
}

}  // namespace

int thread_count() noexcept { return pool().size(); }

void parallel_for_raw(std::int64_t tasks, int threads, TaskFn fn, void* ctx) { pool().run(tasks, threads, fn, ctx); }

}  // namespace opennsa::detail

namespace opennsa {
void set_num_threads(int n) { detail::pool().request(n); }
int num_threads() noexcept { return detail::pool().size(); }
}  // namespace opennsa
