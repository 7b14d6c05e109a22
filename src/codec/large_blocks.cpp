// The memory of large buffers (detail::buffer at large_block and up): mapped blocks of power-of-two sizes,
// kept for a second after they are let go of, so that the next payload of that size finds its memory faulted
// in already instead of having the kernel zero fresh pages (on a virtual machine that costs more than the
// copy the memory is for: docs/benchmarks.md, W9).
//
// Blocks are kept up to kept_limit bytes in all; a block not reused within keep_for is unmapped by a thread
// of the cache's own, which sleeps while nothing is kept. Thread-safe.
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <ferry/detail/buffer.hpp>
#include <iterator>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace ferry::detail {
namespace {

using clock = std::chrono::steady_clock;

constexpr std::size_t kept_limit = std::size_t{512} << 20;
constexpr auto keep_for = std::chrono::seconds(1);

void* map_block(std::size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc{};
  advise_huge_pages_within(p, size);
  return p;
}

void unmap_block(void* p, std::size_t size) noexcept { ::munmap(p, size); }

class block_cache {
 public:
  void* take(std::size_t size) {
    {
      std::lock_guard lock(mu_);
      for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {  // the most recently used first
        if (it->size != size) continue;
        void* p = it->data;
        kept_bytes_ -= size;
        kept_.erase(std::next(it).base());
        return p;
      }
    }
    return map_block(size);
  }

  void give_back(void* p, std::size_t size) noexcept {
    bool first_kept = false;
    {
      std::lock_guard lock(mu_);
      if (kept_bytes_ + size <= kept_limit) {
        try {
          start_releaser();
          first_kept = kept_.empty();
          kept_.push_back({p, size, clock::now()});
          kept_bytes_ += size;
          p = nullptr;
        } catch (...) {  // no thread, or no room to note it down: it goes now
          first_kept = false;
        }
      }
    }
    if (p) unmap_block(p, size);
    // (The releaser sleeps until the oldest block's second is up, which a newer block does not change.)
    if (first_kept) wake_.notify_one();
  }

  std::size_t kept_bytes() {
    std::lock_guard lock(mu_);
    return kept_bytes_;
  }

 private:
  struct kept_block {
    void* data;
    std::size_t size;
    clock::time_point since;
  };

  /// Requires mu_.
  void start_releaser() {
    if (releaser_started_) return;
    std::thread([this] { release_idle_blocks(); }).detach();  // the cache lives as long as the process
    releaser_started_ = true;
  }

  void release_idle_blocks() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (kept_.empty()) {
        wake_.wait(lock);  // (nothing kept: sleeps until something is)
        continue;
      }
      const auto now = clock::now();
      std::vector<kept_block> idle;
      clock::time_point next = clock::time_point::max();
      std::erase_if(kept_, [&](const kept_block& b) {
        if (now - b.since < keep_for) {
          next = std::min(next, b.since + keep_for);
          return false;
        }
        idle.push_back(b);
        kept_bytes_ -= b.size;
        return true;
      });
      if (!idle.empty()) {
        lock.unlock();
        for (const kept_block& b : idle) unmap_block(b.data, b.size);
        lock.lock();
        continue;
      }
      wake_.wait_until(lock, next);
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<kept_block> kept_;  // guarded by mu_, oldest first
  std::size_t kept_bytes_ = 0;    // guarded by mu_
  bool releaser_started_ = false;
};

block_cache& cache() {
  static auto* const c = new block_cache;  // never destroyed: its thread may run until the process exits
  return *c;
}

}  // namespace

std::size_t large_block_size(std::size_t at_least) noexcept { return std::bit_ceil(std::max(at_least, large_block)); }

void* take_large_block(std::size_t size) { return cache().take(size); }

void give_back_large_block(void* p, std::size_t size) noexcept { cache().give_back(p, size); }

std::size_t large_blocks_kept() { return cache().kept_bytes(); }

}  // namespace ferry::detail
