// Observation: what the server lets people see of its work. Containers' output as lines attributed to the
// calls they were written for (kept in the log book, shown in the calling program's terminal, followed
// live), progress reports, the history of ended calls and their metrics, warnings that would otherwise
// repeat without end, and the subscribers that follow all of it (`ferry logs -f`, the HTTP API's event
// streams, the dashboard). tests/server/observation_test.cpp drives it on a fake clock.
//
// Internal to the server; everything here runs on the server's one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "server/apps.hpp"
#include "server/call_graph.hpp"
#include "server/call_history.hpp"
#include "server/clock.hpp"
#include "server/log_book.hpp"
#include "server/metrics.hpp"
#include "server/scheduler.hpp"

namespace ferry::server {

/// What subscribers receive: a log line, a call's progress, or a call's end.
struct server_event {
  enum class kind { log, progress, ended } what;
  const std::string& app;
  const std::string& call_id;
  const log_entry* log = nullptr;     // for log
  const call_record* call = nullptr;  // for progress and ended
};

/// Someone following events: of an app (and of one call, unless call_id is empty). `session_id` is the wire
/// session that asked (its subscriptions end with it), {} for an HTTP stream.
struct subscriber {
  std::string app;
  std::string call_id;
  ferry::server::session_id session_id{};
  std::function<void(const server_event&)> deliver;
};

class observation {
 public:
  /// What observation asks of the server around it.
  class host {
   public:
    /// Shows `line` in the terminal of the program whose work `call` is (the root of its calls), or, for a
    /// line of no call (`call` null), of the program that runs `app`.
    virtual void show(const call_record* call, const app_instance& app, const log_entry& line) = 0;

   protected:
    ~host() = default;
  };

  /// A longer line is cut into pieces of this size.
  static constexpr std::size_t max_line_length = std::size_t{64} * 1024;
  /// How long a repeating warning's window lasts.
  static constexpr std::chrono::seconds warning_window{5};

  observation(host& h, clock& time, std::size_t max_log_lines);
  observation(const observation&) = delete;
  observation& operator=(const observation&) = delete;

  /// A chunk container `c` wrote to stdout (1) or stderr (2): split into lines, each attributed to the call
  /// it was written for, kept, shown and published.
  void output(container_record& c, int stream, std::string_view chunk);
  /// Container `c` has exited: what it wrote after its last newline is a line too.
  void exiting(container_record& c);
  /// `call` reports how far it has got (ferry::progress).
  void progress(call_record& call, double done, double total, std::string message);
  /// `call` ended, or handed its result to the tail call `tail_call_id`: its summary joins the history, and
  /// the metrics count it (a tail-called call is counted once, when the call it handed over to ends).
  void record_end(const call_record& call, const std::string& tail_call_id = "");

  /// A warning that may repeat many times over (a map whose inputs crash their containers): the first of a
  /// `key` is logged as `message`; later ones within a window of 5 s are counted, and logged as one line,
  /// "N more `repeated` in the last 5 s", when the window ends (or flush_repeating_warnings is called).
  void warn_repeating(const std::string& key, const std::string& message, const std::string& repeated);
  /// Logs what the open windows have counted (the server stops).
  void flush_repeating_warnings();

  std::uint64_t subscribe(subscriber sub);
  void unsubscribe(std::uint64_t id) { subscribers_.erase(id); }
  /// Ends the subscriptions of wire session `session_id` (it has closed).
  void unsubscribe_session(session_id id);

  const log_book& logs() const { return logs_; }
  const call_history& history() const { return history_; }
  server_metrics& metrics() { return metrics_; }
  const server_metrics& metrics() const { return metrics_; }

 private:
  void add_line(container_record& c, wire::log_stream stream, std::string_view line);
  void publish(const server_event& event);
  void open_warning_window(const std::string& key);

  host& host_;
  clock& clock_;
  log_book logs_;
  call_history history_;
  server_metrics metrics_;
  struct repeating_warning {
    std::size_t held = 0;  // counted since it was last logged
    std::string repeated;
    std::unique_ptr<clock::timer> window;
  };
  std::map<std::string, repeating_warning> repeating_warnings_;  // by key
  std::uint64_t next_subscriber_id_ = 1;
  std::map<std::uint64_t, subscriber> subscribers_;  // by subscriber id
};

/// The observers' view of a live call.
void summarize(const call_record& call, call_summary& out);

}  // namespace ferry::server
