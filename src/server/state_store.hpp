// The server's durable state: deployed apps and spawned calls with their results. An interface, so that
// another store (a shared database, when servers or containers run on several hosts) can be added beside the
// SQLite one without touching it or the server. Used from the server's thread only.
//
// Spawned calls are written in batches: add_call and finish_call queue a write, and flush() commits every
// queued write at once. The server flushes once per turn of its event loop and answers a spawn only after
// the flush that stored it, so a burst of spawns costs one commit, not one each.
#pragma once

#include <cstdint>
#include <ferry/detail/buffer.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "wire/protocol.hpp"

namespace ferry::server {

/// What the server keeps across restarts. An implementation (SQLite today: open_sqlite_store) owns how
/// and where; the server sees only this. Writes of spawned calls may be queued until flush(), which must
/// make them durable; reads see queued writes as if committed.
class state_store {
 public:
  virtual ~state_store() = default;

  struct deployment {
    std::string app;
    std::string declared_name;  // the name the binary gives its app
    std::string digest;         // of the binary, stored as binaries/<digest>
    double deployed_at = 0;
    detail::buffer specs;                // the encoded vector<wire::function_spec>
    std::vector<std::string> arguments;  // what its containers' main gets after the program's name
  };
  /// Deployments are written at once (they are rare), replacing one of the same app.
  virtual void put_deployment(const deployment& d) = 0;
  virtual void remove_deployment(const std::string& app) = 0;
  virtual std::vector<deployment> deployments() = 0;

  struct spawned_call {
    std::string call_id;
    std::string app;
    std::string function;
    std::string idempotency_key;  // empty: none
    detail::buffer arguments;
    double created_at = 0;
    std::int64_t seq = 0;  // the order of spawns, across restarts
  };
  /// Queues a spawned call's write (see flush).
  virtual void add_call(spawned_call call) = 0;
  /// Queues a spawned call's outcome.
  virtual void finish_call(const std::string& call_id, wire::status outcome, std::span<const char> result,
                           double finished_at) = 0;
  /// Commits the queued writes. Throws ferry::Error when the store fails.
  virtual void flush() = 0;
  /// Frees what the store caches in memory; it is read back as needed.
  virtual void release_memory() = 0;

  /// Calls spawned and not finished (to run again after a restart), oldest first.
  virtual std::vector<spawned_call> unfinished_calls() = 0;
  /// At most `limit` unfinished calls of one function spawned after `after_seq`, oldest first.
  virtual std::vector<spawned_call> unfinished_calls(const std::string& app, const std::string& function,
                                                     std::int64_t after_seq, std::size_t limit) = 0;
  /// Finishes every unfinished call of a function with `outcome` (queued, like finish_call).
  virtual void finish_unfinished(const std::string& app, const std::string& function, wire::status outcome,
                                 std::span<const char> result, double finished_at) = 0;
  /// The largest seq stored (0 when none).
  virtual std::int64_t max_seq() = 0;

  struct stored_call {
    std::string app;
    std::string function;
    bool finished = false;
    double finished_at = 0;
    bool expired = false;
    wire::status outcome = wire::status::ok;
    detail::buffer result;
  };
  /// The call as stored, counting writes still queued (so a look-up never has to force a commit).
  virtual std::optional<stored_call> find_call(const std::string& call_id) = 0;
  virtual std::optional<std::string> call_for_key(const std::string& idempotency_key) = 0;
  /// Which spawned calls `recent_calls` lists: those of `app` and `function` ("": any) in `status` ("": any;
  /// "pending", "ok", "failed" for any error, or an error's code name), the newest `limit`.
  struct call_filter {
    std::string app;
    std::string function;
    std::string status;
    std::size_t limit = 100;
  };
  /// Throws ArgumentError for a status name that is none of those.
  virtual std::vector<wire::call_row> recent_calls(const call_filter& filter) = 0;
  /// Drops the results of calls that finished before `before` (unix seconds); they read as expired.
  virtual void expire_results(double before) = 0;
};

/// The store in an SQLite database at `file` (":memory:" for one that lasts as long as the server), created
/// when missing; throws ferry::Error when it cannot be opened. See sqlite_store.hpp.
std::unique_ptr<state_store> open_sqlite_store(const std::filesystem::path& file);

/// Seconds since the epoch, as the store records times.
double unix_now();

}  // namespace ferry::server
