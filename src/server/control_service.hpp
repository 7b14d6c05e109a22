// The control service: what programs, the CLI and the HTTP API ask of the server besides calls. Listings,
// deployments (stored binaries, versions replacing versions), and durable spawned calls: stored before they
// are acknowledged, run by the scheduler, their outcomes kept for the retention period, recovered after a
// restart. It owns the state store, the deployed apps and the spawned calls in flight. The wire's `request`
// frames (control_requests.cpp) and the HTTP API (http_api.cpp) decode their requests and call the same typed
// methods, each of which answers a `control_answer`. tests/server/control_service_test.cpp drives it on an
// in-memory store, the real call graph and scheduler, and the scheduler's fake clock and launcher.
//
// Internal to the server; everything here runs on the server's one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/apps.hpp"
#include "server/call_graph.hpp"
#include "server/clock.hpp"
#include "server/metrics.hpp"
#include "server/scheduler.hpp"
#include "server/state_store.hpp"
#include "wire/protocol.hpp"

namespace ferry::server {

/// Where the answer to one control request goes: a session's `reply` frame (by ids: once the session has
/// gone, the answer goes nowhere), or, for the server's own requests (the HTTP API's), a function.
struct control_answer {
  ferry::server::session_id session_id{};
  std::uint64_t request_id = 0;
  std::function<void(wire::status, std::span<const char>)> to;  // when set, instead of a reply frame
};

struct control_options {
  std::filesystem::path state_dir;                // where deployed binaries are kept; empty: none (no deployments)
  std::size_t max_queued_inputs = 100'000;        // per function, in memory; spawned calls beyond wait in the store
  std::chrono::seconds retention{7 * 24 * 3600};  // how long spawned calls' results are kept
  /// Runs `work` off the service's thread, then `then` on it, in the order given: what takes long
  /// (hashing and storing a deployed binary of GiBs) holds up no other request, nor agents' heartbeats.
  /// Unset: both at once, here (the unit tests').
  std::function<void(std::function<void()> work, std::function<void()> then)> off_loop;
};

class control_service {
 public:
  /// What the service asks of the server around it.
  class host {
   public:
    /// Sends `code` and what `write` writes as the answer to `answer` (a session's reply frame; see
    /// control_answer).
    virtual void reply(const control_answer& answer, wire::status code,
                       const std::function<void(detail::buffer&)>& write) = 0;
    /// Cancels a live call, as its caller would.
    virtual void cancel(call_record& call) = 0;
    /// Whether the server is stopping (nothing new is loaded from the store then).
    virtual bool shutting_down() const = 0;

   protected:
    ~host() = default;
  };

  control_service(host& h, call_graph& graph, call_numbering& numbers, scheduler& sched, clock& time,
                  server_metrics& metrics, std::unique_ptr<state_store> store, control_options options);
  control_service(const control_service&) = delete;
  control_service& operator=(const control_service&) = delete;

  // --- the requests ---

  /// The containers, as `ferry ps` lists them.
  std::vector<wire::container_row> container_rows() const;
  /// The deployed apps and their functions' signatures, as `ferry apps` lists them.
  std::vector<wire::app_row> app_rows() const;
  /// The recent spawned calls `filter` selects, newest first; answers bad_arguments for an unknown status.
  void list_calls(const state_store::call_filter& filter, const control_answer& answer);
  /// The function `app.fn` names among the deployed apps (or `own`, the asking program's app, which a
  /// container names as its binary does); nullptr after answering unknown_app or unknown_function.
  function_state* deployed_function(const control_answer& answer, const std::string& qualified,
                                    app_instance* own = nullptr);
  /// Deploys `binary` as app `app` with functions `specs` (replacing the app's previous version, whose
  /// queued calls move to the new one where the function's signature is the same), and answers its digest.
  void deploy(const control_answer& answer, const std::string& app, const std::vector<wire::function_spec>& specs,
              std::span<const char> image, const std::string& declared_name, std::vector<std::string> arguments);
  /// Stops deployed app `app`: its queued and stored calls fail as cancelled; running ones finish.
  void stop_app(const control_answer& answer, const std::string& app);
  /// Spawns a call of `fn` with `arguments` (encoded), stored before the answer (its call id) goes; with an
  /// idempotency key already used, answers that call's id instead.
  void spawn(function_state& fn, const std::string& idempotency_key, std::span<const char> arguments,
             control_answer answer);
  /// Answers with spawned call `call_id`'s outcome once it has one, or `running` after `timeout_ms`.
  void get_call(const std::string& call_id, std::uint32_t timeout_ms, control_answer answer);
  /// Cancels spawned call `call_id` (running, queued, or waiting in the store).
  void cancel_spawned(const std::string& call_id, const control_answer& answer);

  // --- what the server tells it ---

  /// Loads the deployments and unfinished spawned calls from the store, and starts the hourly sweep of
  /// expired results. Once, when the server starts.
  void recover();
  /// A spawned call ended: its outcome is stored, and whoever waits for it answered.
  void finished(call_record& call);
  /// Spawned call `original` handed its result over to `target` (a tail call): `target` stands for it.
  void handed_over(const call_record& original, call_record& target);
  /// `fn`'s queue has room: stored calls of it join the queue, in spawn order.
  void refill(function_state& fn);
  /// Fails the function's spawned calls that wait in the store (its app has gone).
  void fail_backlog(function_state& fn, const std::string& message);
  /// Frees retired app versions whose last container has exited.
  void collect_retired();
  /// Commits what is queued for the store (the server stops).
  void flush();

  const std::map<std::string, std::unique_ptr<app_instance>>& deployed() const { return deployed_; }
  /// A spawned call the server has in memory, running or queued, by call id; nullptr otherwise.
  call_record* live_call(const std::string& call_id) const;
  state_store& store() { return *store_; }
  /// Frees what the store caches, and the buckets of the tables that are empty (an unordered_map keeps
  /// them at the most entries it ever held).
  void release_memory();

 private:
  void reply_error(const control_answer& answer, const wire::error_record& error);
  /// Takes a deployed app out of service: queued calls move to `successor` (same function name and
  /// signature) or fail; its containers stop once idle.
  void retire(std::unique_ptr<app_instance> app, app_instance* successor);
  /// A spawned call, as the store holds it, made a call of the graph.
  call_record& add_call(function_state& fn, state_store::spawned_call call);
  void schedule_flush();
  void flush_spawns();
  /// Stores the outcome of spawned call `call_id` and answers whoever waits for it.
  void finish_stored(const std::string& call_id, wire::status outcome, std::span<const char> result);
  /// Answers `get` when the call ends, or with `running` after `timeout_ms`.
  void wait_for_call(control_answer answer, const std::string& call_id, const std::string& function,
                     std::uint32_t timeout_ms);
  void expire_results();

  host& host_;
  call_graph& graph_;
  call_numbering& numbers_;
  scheduler& sched_;
  clock& clock_;
  server_metrics& metrics_;
  std::unique_ptr<state_store> store_;
  control_options options_;

  std::map<std::string, std::unique_ptr<app_instance>> deployed_;  // by app name
  std::vector<std::unique_ptr<app_instance>> retired_;  // stopped or replaced versions, until their containers exit
  std::unordered_map<std::string, call_record*> live_calls_;     // spawned calls not finished, by call id
  std::unordered_map<std::string, std::string> unflushed_keys_;  // idempotency key -> call id, until stored
  struct spawn_reply {
    control_answer answer;
    graph_id id;  // {}: a call stored in the backlog only
    std::string call_id;
  };
  std::int64_t next_seq_ = 1;                  // the order of spawns (see state_store::spawned_call::seq)
  std::vector<spawn_reply> unflushed_spawns_;  // answered once the flush that stores them commits
  /// Spawned calls in memory until the flush stores them and queues them, by app and function name: with
  /// the function's queue, what the limit of calls queued in memory counts.
  std::map<std::pair<std::string, std::string>, std::size_t> unstored_;
  std::unique_ptr<clock::timer> flush_timer_;  // set while a flush is due
  struct get_waiter {
    std::uint64_t id;  // next_get_waiter_'s, for the timer to find it
    control_answer answer;
    std::unique_ptr<clock::timer> timer;
  };
  std::uint64_t next_get_waiter_ = 1;
  std::unordered_map<std::string, std::vector<get_waiter>> get_waiters_;  // by call id
  std::unique_ptr<clock::timer> expiry_timer_;
};

}  // namespace ferry::server
