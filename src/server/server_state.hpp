// The server's state: the sessions, and the components it owns and wires together as the host of each: the
// call graph (call_graph.hpp), the scheduler (scheduler.hpp), the control service (control_service.hpp) and
// observation (observation.hpp). server.cpp has the connections, the calls sessions make and the hooks;
// control_requests.cpp decodes the wire's control requests; http_api.cpp is the HTTP API. Internal:
// everything here runs on the server's one thread.
#pragma once

#include <fmt/format.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <deque>
#include <ferry/errors.hpp>
#include <ferry/options.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/agents.hpp"
#include "server/apps.hpp"
#include "server/call_graph.hpp"
#include "server/control_service.hpp"
#include "server/http.hpp"
#include "server/observation.hpp"
#include "server/scheduler.hpp"
#include "server/server.hpp"
#include "server/state_store.hpp"
#include "wire/connection.hpp"
#include "wire/tls.hpp"

namespace ferry::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using wire::message_kind;
using wire::status;

struct session;
struct target_query;

enum class session_role { handshake, client, container, agent };

struct session {
  session_id id{};
  std::shared_ptr<wire::connection> connection;
  session_role role = session_role::handshake;
  app_instance* app = nullptr;            // the app whose functions this session's calls reach
  container_record* container = nullptr;  // for containers
  std::unique_ptr<asio::steady_timer> handshake_timer;
  bool refuse_plain = false;  // plain TCP from another host: refused at its hello
  /// The calls this session made that it may still await, pass or cancel, by its call id.
  std::unordered_map<std::uint64_t, call_record*> open_calls;
};

struct server::state final : call_graph::host, scheduler::host, control_service::host, observation::host {
  server_options options;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  /// The Unix socket containers on this host connect to (a round trip costs less than over loopback TCP).
  /// Closed when the host has none to offer (see open_local_socket).
  asio::local::stream_protocol::acceptor local_acceptor{io};
  std::string local_address;  // "unix:@NAME"; `address` when local_acceptor is closed
  /// Armed while accepting on acceptor (local_acceptor) is paused for lack of descriptors or memory (see
  /// accept()).
  std::unique_ptr<asio::steady_timer> accept_retry_timer, local_accept_retry_timer;
  std::unique_ptr<agent_pool> agents;     // where containers run: the scheduler's launcher
  std::unique_ptr<slurm_capacity> slurm;  // asks Slurm for agents (--agents slurm)
  std::size_t unplaced_containers = 0;    // of every function: what waits for a host
  std::unique_ptr<clock> time;
  std::string address;
  /// Set when other hosts can connect, which they must do over TLS, with this server's certificate (and
  /// its fingerprint, which the containers and agents it starts pin).
  std::shared_ptr<wire::tls::context> tls_context;
  std::string tls_fingerprint;

  std::uint64_t next_session = 1;
  call_numbering numbers{0};  // (its base is set, at random, when the server starts)
  std::unordered_map<session_id, std::unique_ptr<session>> sessions;
  std::unordered_map<session_id, std::unique_ptr<app_instance>> apps;  // by owner session
  std::unique_ptr<observation> obs;                // logs, call history, metrics, and who follows them live
  call_graph graph{*this};                         // every call, by id, and how they depend on each other
  std::unique_ptr<scheduler> sched;                // the containers, and the calls queued for them or running in them
  std::unique_ptr<control_service> control;        // deployments, spawned calls, the state store
  std::unique_ptr<asio::steady_timer> trim_timer;  // see trim_memory_when_idle
  /// Where long work runs off the loop (control_options::off_loop), on one thread, in order; made when
  /// first needed. (Destroyed before `io`: a work item that ends meanwhile still posts into it.)
  std::unique_ptr<asio::thread_pool> off_loop_thread;
  void off_loop(std::function<void()> work, std::function<void()> then);

  bool stopping = false;
  bool finishing = false;
  std::optional<asio::signal_set> stop_signals;  // see server_options::stop_on_signals
  std::unique_ptr<asio::steady_timer> stop_timer;

  /// Listens on a Unix socket in Linux's abstract namespace, named for this process and a random number:
  /// no file to leave behind should the server die, and reachable from this host's (network namespace's)
  /// processes only, as loopback TCP is; a connection still needs the token or a container's credential.
  /// Without one (a kernel without Unix sockets) everything stays on TCP, which works the same.
  void open_local_socket();
  /// Accepts connections on `on` (acceptor or local_acceptor) until it closes, pausing with `retry_timer`
  /// (its own) while the process lacks descriptors or memory.
  template <class Acceptor>
  void accept(Acceptor& on, std::unique_ptr<asio::steady_timer>& retry_timer);
  /// Tells an accepted connection's protocol by its first bytes: TLS (then again, inside it), HTTP, or
  /// ferry's wire protocol. A connection from another host must be TLS.
  void sniff(wire::stream stream);
  void start_session(wire::stream stream, std::string_view already_received, bool refuse_plain);
  void on_frame(session& s, const wire::frame& f);
  void on_closed(session_id id, const std::string& reason);
  void on_hello(session& s, const wire::frame& f);
  /// An agent has said what its host offers: containers may run there, and calls waiting for a host go.
  void on_agent_ready(session& s, const wire::frame& f);
  void on_register_app(session& s, const wire::frame& f);
  void on_call(session& s, const wire::frame& f);
  void on_output(session& s, const wire::frame& f);
  /// What a container's output means: a result, an error (retried?), a tail call.
  void take_output(session& s, container_record& c, attempt_id attempt, status outcome, wire::payload payload);
  /// A remote container's held outputs: asks its agent for what the container wrote, then takes them.
  void drain_then_take_outputs(container_record& c);
  void take_held_outputs(container_id id, std::size_t count);
  void on_cancel(session& s, const wire::frame& f);
  void on_await(session& s, const wire::frame& f);
  void on_release(session& s, const wire::frame& f);
  void on_request(session& s, const wire::frame& f);
  // The control service's host (see control_service::host; control_requests.cpp decodes the wire's
  // `request` into the service's calls, and sends its answers as `reply` frames).
  void reply(const control_answer& answer, status code, const std::function<void(detail::buffer&)>& write) override;
  void reply_error(const control_answer& answer, const wire::error_record& error);
  void cancel(call_record& call) override { cancel_input(call); }
  bool shutting_down() const override { return stopping; }
  /// Cancels `in` as its caller would: it fails now unless it runs, when its container is asked to stop it.
  void cancel_input(call_record& in);
  void refuse(session& s, const std::string& reason);

  // The call graph's host (see call_graph::host).
  void ready(call_record& in) override;
  void ended(call_record& in, call_state was) override;
  void deliver(call_record& in) override;
  void unneeded(call_record& in) override { cancel_input(in); }
  void forgetting(call_record& in) override;
  void emptied() override { trim_memory_when_idle(); }
  call_record* open_call(session& s, std::uint64_t call_id);
  void complete(call_record& in, status outcome, wire::payload payload) {
    graph.complete(in, outcome, std::move(payload));
  }
  void fail(call_record& in, const wire::error_record& error) { graph.fail(in, error); }
  /// A second after the last open input has gone, if none has come since, gives the memory freed back to
  /// the system (the heap, the store's page cache): a server's idle footprint should not be its busiest
  /// moment's.
  void trim_memory_when_idle();
  /// `original` ended with a tail call to `target`: the caller's records follow (see call_graph::hand_over).
  void tail_call(call_record& original, call_record& target);

  // The scheduler's host (see scheduler::host).
  bool send_input(container_record& c, attempt_id attempt, const call_record& call) override;
  void send_cancel(container_record& c, attempt_id attempt) override;
  void disconnect(container_record& c, const std::string& why) override;
  void refill(function_state& fn) override { control->refill(fn); }
  void output(container_record& c, int stream, std::string_view chunk) override { obs->output(c, stream, chunk); }
  void exiting(container_record& c) override { obs->exiting(c); }
  void warn_repeating(const std::string& key, const std::string& message, const std::string& repeated) override {
    obs->warn_repeating(key, message, repeated);
  }
  void exited() override {
    if (unplaced_containers > 0 && !stopping) dispatch_waiting_for_hosts();  // a host may have room now
    finish_stop_if_done();
  }
  /// Dispatches the functions whose containers wait for a host (an agent has joined, or room was made).
  void dispatch_waiting_for_hosts();
  /// The containers, as `ferry ps` and GET /v1/containers list them: the scheduler's, then those that
  /// functions want and that wait for a host (state "waiting", id 0), as `kubectl get pods` lists pending ones.
  std::vector<wire::container_row> container_rows() const;
  void unplaced(function_state& fn, std::size_t was) override;
  /// Slurm will never give an agent for `need` (slurm_capacity): the calls waiting for one fail.
  void no_host_will_fit(const resources& need, const std::string& why);
  /// Every function of every app, registered or deployed.
  void for_each_function(const std::function<void(function_state&)>& visit);
  void remove_app(session_id owner);

  void send_error(session_id id, std::uint64_t call_id, const wire::error_record& error);

  void begin_stop();
  void finish_stop_if_done();

  // Observation's host (see observation::host), and what feeds it from the wire.
  void show(const call_record* call, const app_instance& app, const log_entry& line) override;
  /// The session whose terminal shows the logs of `in`: the program at the root of its calls.
  session* log_recipient(const call_record& in);
  void on_progress(session& s, const wire::frame& f);
  void on_tail_hop(session& s, const wire::frame& f);
  /// Starts a `logs` request's answer: the kept lines, then (with follow) every new one.
  void follow_logs(session& s, const control_answer& answer, const std::string& app, std::span<const char> payload);

  // The HTTP API (http_api.cpp; http.cpp has the connections).
  void on_http(const http_request& req, const std::shared_ptr<http_connection>& conn);
  /// The call `call_id` while the server has it in memory (even ended), or nullptr.
  call_record* live_call(const std::string& call_id) const;
  /// A live or recently ended call as observers see it; false when the server knows no such call.
  bool find_summary(const std::string& call_id, call_summary& out) const;
  void respond_calls(const std::shared_ptr<http_connection>& conn, const target_query& t);
  void respond_call(const std::shared_ptr<http_connection>& conn, const std::string& call_id);
  void respond_graph(const std::shared_ptr<http_connection>& conn, const std::string& root_id);
  void respond_logs(const std::shared_ptr<http_connection>& conn, const std::string& app, const std::string& call_id,
                    const target_query& t);
  void stream_events(const std::shared_ptr<http_connection>& conn, const std::string& app, const std::string& call_id);
  void cancel_call(const std::shared_ptr<http_connection>& conn, const std::string& call_id);
  /// POST .../call (wait for the result up to ?timeout) and .../spawn: a spawned call either way.
  void run_function(const http_request& req, const std::shared_ptr<http_connection>& conn, const app_instance& app,
                    const std::string& function, bool wait, const target_query& t);
  http_response metrics_response() const;
};

}  // namespace ferry::server
