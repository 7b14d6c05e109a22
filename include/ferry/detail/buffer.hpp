/// ferry/detail/buffer.hpp: the byte buffer values are encoded into, and the reader they are decoded from.
/// Not thread-safe; each is owned by one thread at a time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <utility>

namespace ferry::detail {

/// Payloads from this size up are held in memory backed by transparent huge pages where the kernel offers
/// them (`madvise` mode): first touching a 64 MiB buffer then takes 32 page faults, not 16,384, which on
/// a virtual machine cost more than copying the bytes (docs/benchmarks.md, W9).
inline constexpr std::size_t huge_payload = std::size_t{2} << 20;

/// MADV_HUGEPAGE on the whole 2 MiB pages inside [p, p + n); the kernel may refuse it (THP off).
void advise_huge_pages_within(void* p, std::size_t n) noexcept;

/// Advises the kernel to back [p, p + n) with huge pages when it is a large payload's memory; for memory
/// not yet touched, which is where it pays.
inline void advise_huge_pages(void* p, std::size_t n) noexcept {
  if (n >= huge_payload) advise_huge_pages_within(p, n);
}

/// Buffers from this capacity up hold a large block: mapped memory of a power-of-two size (advised as huge
/// pages), which, once let go of, is kept for a second (up to 512 MiB of blocks in a process) for the next
/// buffer of that size, whose bytes are then written into memory that is faulted in already instead of
/// fresh pages the kernel must zero. A thread of the cache's own unmaps the blocks not reused (large_blocks.cpp).
inline constexpr std::size_t large_block = std::size_t{1} << 20;
/// The size of the block that holds `at_least` bytes (at least large_block).
std::size_t large_block_size(std::size_t at_least) noexcept;
/// A block of `size` (a large_block_size): a kept one if there is one, else a new mapping.
void* take_large_block(std::size_t size);
void give_back_large_block(void* p, std::size_t size) noexcept;
/// The bytes of blocks kept for reuse now.
std::size_t large_blocks_kept();

/// A growable byte buffer that, unlike std::vector<char>, never zero-fills what it is about to overwrite.
/// Encoders ask for room with reserve(n), write through the pointer it returns, and commit the new end.
class buffer {
 public:
  buffer() = default;
  explicit buffer(std::size_t capacity) { grow(capacity); }
  buffer(buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  buffer& operator=(buffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
    return *this;
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { free_memory(); }

  /// Room for at least n more bytes at the end; returns where they start. Invalidates earlier pointers.
  char* reserve(std::size_t n) {
    if (capacity_ - size_ < n) grow(size_ + n);
    return data_ + size_;
  }
  /// Marks everything up to `end` (a pointer into the reserved room) as written.
  void commit(char* end) noexcept { size_ = static_cast<std::size_t>(end - data_); }
  void append(const void* bytes, std::size_t n) {
    if (n == 0) return;
    std::memcpy(reserve(n), bytes, n);
    size_ += n;
  }
  void resize(std::size_t n) {
    if (n > capacity_) grow(n);
    size_ = n;
  }
  void clear() noexcept { size_ = 0; }
  /// Gives memory back when a large payload has passed and the buffer is empty again.
  void shrink_if_empty(std::size_t keep) {
    if (size_ == 0 && capacity_ > keep) {
      free_memory();
      data_ = nullptr;
      capacity_ = 0;
    }
  }

  char* data() noexcept { return data_; }
  const char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<const char> view() const noexcept { return {data_, size_}; }

 private:
  void grow(std::size_t at_least) {
    // The first allocation fits what is asked (a result held per map item is often a few bytes), then doubles.
    std::size_t capacity = capacity_ ? capacity_ : std::max<std::size_t>(at_least, 64);
    while (capacity < at_least) capacity *= 2;
    if (capacity < large_block) {
      void* p = std::realloc(data_, capacity);
      if (!p) throw std::bad_alloc{};
      data_ = static_cast<char*>(p);
      capacity_ = capacity;
      return;
    }
    capacity = large_block_size(capacity);
    char* p = static_cast<char*>(take_large_block(capacity));
    if (size_ > 0) std::memcpy(p, data_, size_);
    free_memory();
    data_ = p;
    capacity_ = capacity;
  }

  void free_memory() noexcept {
    if (capacity_ >= large_block) {
      give_back_large_block(data_, capacity_);
    } else {
      std::free(data_);
    }
  }

  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

/// A cursor over encoded bytes that it does not own. Decoders check before every read that the bytes
/// they need are there, so a truncated or hostile input is a DecodeError, never a read past `end`.
struct reader {
  const char* pos;
  const char* end;

  reader(const char* begin, const char* finish) : pos(begin), end(finish) {}
  explicit reader(std::span<const char> bytes) : pos(bytes.data()), end(bytes.data() + bytes.size()) {}
  bool at_end() const noexcept { return pos >= end; }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end - pos); }
};

}  // namespace ferry::detail
