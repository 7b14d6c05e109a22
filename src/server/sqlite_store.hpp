// The state store in an SQLite database (the state directory's ferry.db): deployments and spawned calls in
// two tables. Queued writes are committed in one transaction per flush; the hot statements are prepared once.
#pragma once

#include <unordered_map>

#include "server/state_store.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace ferry::server {

class sqlite_store final : public state_store {
 public:
  /// Opens (creating) the database at `file`; throws ferry::Error when it cannot.
  explicit sqlite_store(const std::filesystem::path& file);
  ~sqlite_store() override;
  sqlite_store(const sqlite_store&) = delete;
  sqlite_store& operator=(const sqlite_store&) = delete;

  void put_deployment(const deployment& d) override;
  void remove_deployment(const std::string& app) override;
  std::vector<deployment> deployments() override;
  void add_call(spawned_call call) override;
  void finish_call(const std::string& call_id, wire::status outcome, std::span<const char> result,
                   double finished_at) override;
  void flush() override;
  void release_memory() override;
  std::vector<spawned_call> unfinished_calls() override;
  std::vector<spawned_call> unfinished_calls(const std::string& app, const std::string& function,
                                             std::int64_t after_seq, std::size_t limit) override;
  void finish_unfinished(const std::string& app, const std::string& function, wire::status outcome,
                         std::span<const char> result, double finished_at) override;
  std::int64_t max_seq() override;
  std::optional<stored_call> find_call(const std::string& call_id) override;
  std::optional<std::string> call_for_key(const std::string& idempotency_key) override;
  std::vector<wire::call_row> recent_calls(const call_filter& filter) override;
  void expire_results(double before) override;

 private:
  struct queued_write {
    enum { add, finish, finish_function } kind = add;
    spawned_call call;    // for add
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

}  // namespace ferry::server
