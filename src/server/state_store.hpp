// The server's durable state: deployed apps and spawned calls with their results, in an SQLite database in
// the state directory. A narrow interface, so that a shared database can replace it when containers run on
// other hosts. Used from the server's thread only.
//
// Spawned calls are written in batches: add_call and finish_call queue a write, and flush() commits every
// queued write in one transaction. The server flushes once per turn of its event loop and answers a spawn
// only after the flush that stored it, so a burst of spawns costs one commit, not one each.
#pragma once

#include <cstdint>
#include <ferry/detail/buffer.hpp>
#include <filesystem>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "wire/protocol.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace ferry::server {

class state_store {
 public:
  /// Opens (creating) the database at `file`; throws ferry::Error when it cannot.
  explicit state_store(const std::filesystem::path& file);
  ~state_store();
  state_store(const state_store&) = delete;
  state_store& operator=(const state_store&) = delete;

  struct deployment {
    std::string app;
    std::string declared_name;  // the name the binary gives its app
    std::string digest;  // of the binary, stored as binaries/<digest>
    double deployed_at = 0;
    detail::buffer specs;  // the encoded vector<wire::function_spec>
    std::vector<std::string> arguments;  // what its containers' main gets after the program's name
  };
  void put_deployment(const deployment& d);
  void remove_deployment(const std::string& app);
  std::vector<deployment> deployments();

  struct spawned_call {
    std::string call_id;
    std::string app;
    std::string function;
    std::string idempotency_key;  // empty: none
    detail::buffer arguments;
    double created_at = 0;
    std::int64_t seq = 0;  // the order of spawns, across restarts
  };
  void add_call(spawned_call call);
  void finish_call(const std::string& call_id, wire::status outcome, std::span<const char> result, double finished_at);
  /// Commits the queued writes. Throws ferry::Error when the database fails.
  void flush();
  /// Frees the pages the database keeps cached; they are read back as needed.
  void release_memory();
  bool has_queued_writes() const noexcept { return !queued_.empty(); }

  /// Calls spawned and not finished (to run again after a restart), oldest first.
  std::vector<spawned_call> unfinished_calls();
  /// At most `limit` unfinished calls of one function spawned after `after_seq`, oldest first.
  std::vector<spawned_call> unfinished_calls(const std::string& app, const std::string& function,
                                             std::int64_t after_seq, std::size_t limit);
  /// Finishes every unfinished call of a function with `outcome` (queued, like finish_call).
  void finish_unfinished(const std::string& app, const std::string& function, wire::status outcome,
                         std::span<const char> result, double finished_at);
  /// The largest seq stored (0 when none).
  std::int64_t max_seq();

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
  std::optional<stored_call> find_call(const std::string& call_id);
  std::optional<std::string> call_for_key(const std::string& idempotency_key);
  /// Which spawned calls `recent_calls` lists: those of `app` and `function` ("": any) in `status` ("": any;
  /// "pending", "ok", "failed" for any error, or an error's code name), the newest `limit`.
  struct call_filter {
    std::string app;
    std::string function;
    std::string status;
    std::size_t limit = 100;
  };
  /// Throws ArgumentError for a status name that is none of those.
  std::vector<wire::call_row> recent_calls(const call_filter& filter);
  /// Drops the results of calls that finished before `before` (unix seconds); they read as expired.
  void expire_results(double before);

 private:
  struct queued_write {
    enum { add, finish, finish_function } kind = add;
    spawned_call call;  // for add
    std::string call_id;  // finish; for finish_function: the app, with the function in call.function
    wire::status outcome = wire::status::ok;
    detail::buffer result;
    double finished_at = 0;
  };
  void exec(const char* sql);
  bool has_column(const char* table, const char* column);
  sqlite3_stmt* prepare(const char* sql);
  /// The statement for `sql` (a string literal: cached by its address), prepared once and kept, since the
  /// hot queries run once per call. Reset it after use (statement_use does).
  sqlite3_stmt* cached(const char* sql);

  std::optional<stored_call> find_committed_call(const std::string& call_id);

  sqlite3* db_ = nullptr;
  std::unordered_map<const char*, sqlite3_stmt*> statements_;  // see cached()
  std::vector<queued_write> queued_;
  // Where in queued_ a call's add and finish wait, for find_call.
  std::unordered_map<std::string, std::size_t> queued_adds_, queued_finishes_;
  bool function_finish_queued_ = false;
};

/// Seconds since the epoch, as the store records times.
double unix_now();

}  // namespace ferry::server
