// The calls (and control requests) a client waits on, by id: one table, each entry with the one thing that
// completes it.
//
// Concurrency: thread-safe. Callers add their calls from any thread (blocking callers, event loops, the I/O
// thread itself when a map submits its next items), the I/O thread takes a call when its answer comes, and a
// thread that cancels or abandons a call takes it too: whoever takes it owns it and completes it, so a call
// is completed exactly once, and never under a lock of the table.
//
// The table is split into shards, each a map under its own mutex, a call's shard chosen by its id. One lock
// for the whole table (as there was) made every call and every completion of the process take turns on it;
// since ids are consecutive, calls in flight together fall in different shards, and a shard's lock is held
// for one map operation, by at most the thread that adds or cancels a call and the I/O thread. (Confining the
// table to the I/O thread instead would cost every call a hand-off to that thread, and would make a cancel
// asynchronous.)
#pragma once

#include <array>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "client/call_completion.hpp"

namespace ferry::client {

/// A call the client waits on.
struct pending_call {
  call_completion complete;
  std::string function;         // what its errors name: the function, or the control request
  const void* group = nullptr;  // see call_request::group
};

class pending_calls {
 public:
  /// Moves `call` into the table under `id`, which must not be pending already. Once the table has closed,
  /// returns false and leaves `call` as it was (its caller completes it, or throws).
  bool add(std::uint64_t id, pending_call& call);

  /// Takes the call pending under `id` out of the table; nothing when there is none (it was answered,
  /// cancelled or abandoned already, or never waited on).
  std::optional<pending_call> take(std::uint64_t id);

  /// The ids of the pending calls that were added with `group` (not nullptr).
  std::vector<std::uint64_t> ids_in_group(const void* group) const;

  /// Closes the table, saying why, and takes every call still in it; add() refuses from then on. Once.
  std::vector<pending_call> close(const std::string& reason);

  /// Why the table closed; empty while it is open.
  std::string closed_reason() const;

  /// How many calls are pending.
  std::size_t size() const;

 private:
  static constexpr std::size_t shard_count = 16;
  struct alignas(64) shard {  // (one cache line apart: the shards' locks are taken on different threads)
    mutable std::mutex mu;
    boost::unordered_flat_map<std::uint64_t, pending_call> calls;  // guarded by mu
    bool closed = false;                                           // guarded by mu
  };
  shard& shard_of(std::uint64_t id) { return shards_[id % shard_count]; }

  std::array<shard, shard_count> shards_;
  // Written once, by close() before it closes the first shard; read only by whoever saw a shard closed
  // (under that shard's lock, which orders the two).
  std::string closed_reason_;
};

}  // namespace ferry::client
