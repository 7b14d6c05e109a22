#include "server/sqlite_store.hpp"

#include <sqlite3.h>

#include <chrono>
#include <ferry/errors.hpp>
#include <memory>

namespace ferry::server {

namespace {

struct statement_deleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using statement = std::unique_ptr<sqlite3_stmt, statement_deleter>;

/// A use of a cached statement: resets it at the end, so that a SELECT does not keep its read snapshot.
class statement_use {
 public:
  explicit statement_use(sqlite3_stmt* s) : s_(s) {}
  ~statement_use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  statement_use(const statement_use&) = delete;
  statement_use& operator=(const statement_use&) = delete;
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_;
};

std::string text_column(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

detail::buffer blob_column(sqlite3_stmt* s, int i) {
  detail::buffer b;
  const void* p = sqlite3_column_blob(s, i);
  if (p) b.append(static_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
  return b;
}

void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

void bind_blob(sqlite3_stmt* s, int i, std::span<const char> v) {
  sqlite3_bind_blob64(s, i, v.data(), v.size(), SQLITE_TRANSIENT);
}

}  // namespace

std::unique_ptr<state_store> open_sqlite_store(const std::filesystem::path& file) {
  return std::make_unique<sqlite_store>(file);
}

double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

sqlite_store::sqlite_store(const std::filesystem::path& file) {
  if (sqlite3_open(file.c_str(), &db_) != SQLITE_OK) {
    const std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw Error("cannot open the server's database " + file.string() + ": " + why);
  }
  // The server is the database's only user, and holds it for as long as it runs (locking_mode=EXCLUSIVE):
  // no file lock is taken and released around every transaction and every read, and a second server on
  // the same state directory is refused at once. (A killed server's lock goes with its process.)
  // WAL with synchronous=NORMAL: a commit survives a crash of the server process (kill -9); only a power
  // loss can take the last commits back.
  try {
    exec("PRAGMA locking_mode=EXCLUSIVE");
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    exec("BEGIN IMMEDIATE");  // takes the lock now
    exec("COMMIT");
  } catch (const Error&) {
    if (sqlite3_errcode(db_) != SQLITE_BUSY) throw;
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error("another ferry server is using " + file.parent_path().string() +
                "; stop it, or give this one its own --state-dir");
  }
  exec(
      "CREATE TABLE IF NOT EXISTS deployments (app TEXT PRIMARY KEY, declared_name TEXT NOT NULL, digest TEXT NOT NULL,"
      " deployed_at REAL NOT NULL, specs BLOB NOT NULL)");
  // (Added after the first release: a database from before it gets the column, empty.)
  if (!has_column("deployments", "arguments")) exec("ALTER TABLE deployments ADD COLUMN arguments BLOB");
  exec(
      "CREATE TABLE IF NOT EXISTS calls (call_id TEXT PRIMARY KEY, app TEXT NOT NULL, function TEXT NOT NULL,"
      " idempotency_key TEXT UNIQUE, arguments BLOB, created_at REAL NOT NULL, finished_at REAL,"
      " outcome INTEGER, result BLOB, expired INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0)");
  exec("CREATE INDEX IF NOT EXISTS calls_unfinished ON calls(app, function, seq) WHERE finished_at IS NULL");
  exec("CREATE INDEX IF NOT EXISTS calls_created ON calls(created_at)");
}

sqlite_store::~sqlite_store() {
  try {
    flush();
  } catch (...) {
  }
  for (const auto& [sql, s] : statements_) sqlite3_finalize(s);
  sqlite3_close(db_);
}

void sqlite_store::release_memory() { sqlite3_db_release_memory(db_); }

bool sqlite_store::has_column(const char* table, const char* column) {
  statement s(prepare((std::string("PRAGMA table_info(") + table + ")").c_str()));
  while (sqlite3_step(s.get()) == SQLITE_ROW) {
    if (text_column(s.get(), 1) == column) return true;
  }
  return false;
}

void sqlite_store::exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string why = error ? error : sqlite3_errmsg(db_);
    sqlite3_free(error);
    throw Error(std::string("the server's database failed (") + sql + "): " + why);
  }
}

sqlite3_stmt* sqlite_store::cached(const char* sql) {
  auto [it, added] = statements_.try_emplace(sql, nullptr);
  if (added) {
    try {
      it->second = prepare(sql);
    } catch (...) {
      statements_.erase(it);
      throw;
    }
  }
  return it->second;
}

sqlite3_stmt* sqlite_store::prepare(const char* sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) {
    throw Error(std::string("the server's database failed to prepare (") + sql + "): " + sqlite3_errmsg(db_));
  }
  return s;
}

void sqlite_store::put_deployment(const deployment& d) {
  statement s(
      prepare("INSERT OR REPLACE INTO deployments (app, declared_name, digest, deployed_at, specs, arguments)"
              " VALUES (?, ?, ?, ?, ?, ?)"));
  bind_text(s.get(), 1, d.app);
  bind_text(s.get(), 2, d.declared_name);
  bind_text(s.get(), 3, d.digest);
  sqlite3_bind_double(s.get(), 4, d.deployed_at);
  bind_blob(s.get(), 5, d.specs.view());
  detail::buffer arguments;
  ferry::encode(arguments, d.arguments);
  bind_blob(s.get(), 6, arguments.view());
  if (sqlite3_step(s.get()) != SQLITE_DONE)
    throw Error(std::string("cannot store a deployment: ") + sqlite3_errmsg(db_));
}

void sqlite_store::remove_deployment(const std::string& app) {
  statement s(prepare("DELETE FROM deployments WHERE app = ?"));
  bind_text(s.get(), 1, app);
  if (sqlite3_step(s.get()) != SQLITE_DONE)
    throw Error(std::string("cannot remove a deployment: ") + sqlite3_errmsg(db_));
}

std::vector<state_store::deployment> sqlite_store::deployments() {
  statement s(
      prepare("SELECT app, declared_name, digest, deployed_at, specs, arguments FROM deployments ORDER BY app"));
  std::vector<deployment> out;
  while (sqlite3_step(s.get()) == SQLITE_ROW) {
    out.push_back({text_column(s.get(), 0),
                   text_column(s.get(), 1),
                   text_column(s.get(), 2),
                   sqlite3_column_double(s.get(), 3),
                   blob_column(s.get(), 4),
                   {}});
    const detail::buffer arguments = blob_column(s.get(), 5);
    if (arguments.size() > 0) {
      detail::reader r{arguments.view()};
      out.back().arguments = ferry::decode<std::vector<std::string>>(r);
    }
  }
  return out;
}

void sqlite_store::add_call(spawned_call call) {
  queued_write w;
  w.kind = queued_write::add;
  w.call = std::move(call);
  queued_adds_[w.call.call_id] = queued_.size();
  queued_.push_back(std::move(w));
}

void sqlite_store::finish_unfinished(const std::string& app, const std::string& function, wire::status outcome,
                                     std::span<const char> result, double finished_at) {
  queued_write w;
  w.kind = queued_write::finish_function;
  w.call_id = app;
  w.call.function = function;
  w.outcome = outcome;
  w.result.append(result.data(), result.size());
  w.finished_at = finished_at;
  function_finish_queued_ = true;
  queued_.push_back(std::move(w));
}

std::int64_t sqlite_store::max_seq() {
  statement s(prepare("SELECT COALESCE(MAX(seq), 0) FROM calls"));
  return sqlite3_step(s.get()) == SQLITE_ROW ? sqlite3_column_int64(s.get(), 0) : 0;
}

void sqlite_store::finish_call(const std::string& call_id, wire::status outcome, std::span<const char> result,
                               double finished_at) {
  queued_write w;
  w.kind = queued_write::finish;
  w.call_id = call_id;
  queued_finishes_[call_id] = queued_.size();
  w.outcome = outcome;
  w.result.append(result.data(), result.size());
  w.finished_at = finished_at;
  queued_.push_back(std::move(w));
}

void sqlite_store::flush() {
  if (queued_.empty()) return;
  auto writes = std::move(queued_);
  queued_.clear();
  queued_adds_.clear();
  queued_finishes_.clear();
  function_finish_queued_ = false;
  exec("BEGIN IMMEDIATE");
  try {
    statement_use add(
        cached("INSERT INTO calls (call_id, app, function, idempotency_key, arguments, created_at, seq)"
               " VALUES (?, ?, ?, ?, ?, ?, ?)"));
    statement_use finish(
        cached("UPDATE calls SET finished_at = ?, outcome = ?, result = ?, arguments = NULL WHERE call_id = ?"));
    statement_use finish_function(
        cached("UPDATE calls SET finished_at = ?, outcome = ?, result = ?, arguments = NULL"
               " WHERE app = ? AND function = ? AND finished_at IS NULL"));
    for (const auto& w : writes) {
      sqlite3_stmt* s = w.kind == queued_write::add      ? add.get()
                        : w.kind == queued_write::finish ? finish.get()
                                                         : finish_function.get();
      sqlite3_reset(s);
      sqlite3_clear_bindings(s);
      if (w.kind != queued_write::add) {
        sqlite3_bind_double(s, 1, w.finished_at);
        sqlite3_bind_int(s, 2, static_cast<int>(w.outcome));
        bind_blob(s, 3, w.result.view());
        bind_text(s, 4, w.call_id);
        if (w.kind == queued_write::finish_function) bind_text(s, 5, w.call.function);
      } else {
        bind_text(s, 1, w.call.call_id);
        bind_text(s, 2, w.call.app);
        bind_text(s, 3, w.call.function);
        if (w.call.idempotency_key.empty()) {
          sqlite3_bind_null(s, 4);
        } else {
          bind_text(s, 4, w.call.idempotency_key);
        }
        bind_blob(s, 5, w.call.arguments.view());
        sqlite3_bind_double(s, 6, w.call.created_at);
        sqlite3_bind_int64(s, 7, w.call.seq);
      }
      if (sqlite3_step(s) != SQLITE_DONE) throw Error(std::string("cannot store a call: ") + sqlite3_errmsg(db_));
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

namespace {

std::vector<state_store::spawned_call> read_calls(sqlite3_stmt* s) {
  std::vector<state_store::spawned_call> out;
  while (sqlite3_step(s) == SQLITE_ROW) {
    out.push_back({text_column(s, 0), text_column(s, 1), text_column(s, 2), text_column(s, 3), blob_column(s, 4),
                   sqlite3_column_double(s, 5), sqlite3_column_int64(s, 6)});
  }
  return out;
}

}  // namespace

std::vector<state_store::spawned_call> sqlite_store::unfinished_calls() {
  statement s(
      prepare("SELECT call_id, app, function, COALESCE(idempotency_key, ''), arguments, created_at, seq FROM calls"
              " WHERE finished_at IS NULL ORDER BY seq"));
  return read_calls(s.get());
}

std::vector<state_store::spawned_call> sqlite_store::unfinished_calls(const std::string& app,
                                                                      const std::string& function,
                                                                      std::int64_t after_seq, std::size_t limit) {
  statement_use s(
      cached("SELECT call_id, app, function, COALESCE(idempotency_key, ''), arguments, created_at, seq FROM calls"
             " WHERE app = ? AND function = ? AND finished_at IS NULL AND seq > ? ORDER BY seq LIMIT ?"));
  bind_text(s.get(), 1, app);
  bind_text(s.get(), 2, function);
  sqlite3_bind_int64(s.get(), 3, after_seq);
  sqlite3_bind_int64(s.get(), 4, static_cast<sqlite3_int64>(limit));
  return read_calls(s.get());
}

std::optional<state_store::stored_call> sqlite_store::find_call(const std::string& call_id) {
  if (function_finish_queued_) flush();  // (rare: an app went; its calls are not indexed one by one)
  auto add = queued_adds_.find(call_id);
  auto finish = queued_finishes_.find(call_id);
  if (add == queued_adds_.end() && finish == queued_finishes_.end()) return find_committed_call(call_id);
  stored_call c;
  if (add != queued_adds_.end()) {
    c.app = queued_[add->second].call.app;
    c.function = queued_[add->second].call.function;
  } else if (auto committed = find_committed_call(call_id)) {
    c.app = std::move(committed->app);
    c.function = std::move(committed->function);
  }
  if (finish != queued_finishes_.end()) {
    const queued_write& w = queued_[finish->second];
    c.finished = true;
    c.finished_at = w.finished_at;
    c.outcome = w.outcome;
    c.result.append(w.result.data(), w.result.size());
  }
  return c;
}

std::optional<state_store::stored_call> sqlite_store::find_committed_call(const std::string& call_id) {
  statement_use s(
      cached("SELECT app, function, finished_at IS NOT NULL, expired, COALESCE(outcome, 0), result,"
             " COALESCE(finished_at, 0) FROM calls WHERE call_id = ?"));
  bind_text(s.get(), 1, call_id);
  if (sqlite3_step(s.get()) != SQLITE_ROW) return std::nullopt;
  stored_call c;
  c.app = text_column(s.get(), 0);
  c.function = text_column(s.get(), 1);
  c.finished = sqlite3_column_int(s.get(), 2) != 0;
  c.expired = sqlite3_column_int(s.get(), 3) != 0;
  c.outcome = static_cast<wire::status>(sqlite3_column_int(s.get(), 4));
  c.result = blob_column(s.get(), 5);
  c.finished_at = sqlite3_column_double(s.get(), 6);
  return c;
}

std::optional<std::string> sqlite_store::call_for_key(const std::string& idempotency_key) {
  statement_use s(cached("SELECT call_id FROM calls WHERE idempotency_key = ?"));
  bind_text(s.get(), 1, idempotency_key);
  if (sqlite3_step(s.get()) != SQLITE_ROW) return std::nullopt;
  return text_column(s.get(), 0);
}

std::vector<wire::call_row> sqlite_store::recent_calls(const call_filter& filter) {
  // The status as SQL sees it: -1 any, -2 pending, -3 failed, or an outcome's code.
  int status = -1;
  if (filter.status == "pending") {
    status = -2;
  } else if (filter.status == "failed") {
    status = -3;
  } else if (!filter.status.empty()) {
    std::string known = "pending, failed";
    for (int code = 0; code <= wire::last_status; ++code) {
      const char* name = wire::to_string(static_cast<wire::status>(code));
      if (filter.status == name) status = code;
      known += std::string(", ") + name;
    }
    if (status < 0) throw ArgumentError("no call status '" + filter.status + "': use one of " + known);
  }
  statement s(prepare(
      "SELECT call_id, app, function, finished_at IS NOT NULL, COALESCE(outcome, 0), expired, created_at,"
      " COALESCE(finished_at - created_at, -1) FROM calls"
      " WHERE (?1 = '' OR app = ?1) AND (?2 = '' OR function = ?2) AND CASE ?3"
      "   WHEN -1 THEN 1 WHEN -2 THEN finished_at IS NULL"
      "   WHEN -3 THEN finished_at IS NOT NULL AND outcome != 0 ELSE finished_at IS NOT NULL AND outcome = ?3 END"
      " ORDER BY created_at DESC LIMIT ?4"));
  bind_text(s.get(), 1, filter.app);
  bind_text(s.get(), 2, filter.function);
  sqlite3_bind_int(s.get(), 3, status);
  sqlite3_bind_int64(s.get(), 4, static_cast<sqlite3_int64>(filter.limit));
  std::vector<wire::call_row> out;
  while (sqlite3_step(s.get()) == SQLITE_ROW) {
    std::string status = "pending";
    if (sqlite3_column_int(s.get(), 3)) {
      status = wire::to_string(static_cast<wire::status>(sqlite3_column_int(s.get(), 4)));
      if (sqlite3_column_int(s.get(), 5)) status += " (expired)";
    }
    out.emplace_back(text_column(s.get(), 0), text_column(s.get(), 1), text_column(s.get(), 2), status,
                     sqlite3_column_double(s.get(), 6), sqlite3_column_double(s.get(), 7));
  }
  return out;
}

void sqlite_store::expire_results(double before) {
  statement s(prepare("UPDATE calls SET result = NULL, expired = 1 WHERE finished_at < ? AND expired = 0"));
  sqlite3_bind_double(s.get(), 1, before);
  if (sqlite3_step(s.get()) != SQLITE_DONE) throw Error(std::string("cannot expire results: ") + sqlite3_errmsg(db_));
}

}  // namespace ferry::server
