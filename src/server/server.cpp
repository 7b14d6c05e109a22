#include "server/server.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <ferry/ferry.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <unordered_map>

#include "server/sha256.hpp"
#include "server/state_store.hpp"
#include "wire/connection.hpp"

namespace ferry::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using wire::message_kind;
using wire::status;

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

namespace {

struct session;
struct function_state;
struct container_record;

enum class input_state { waiting, queued, running, backoff, done };

/// One call, from the moment the server accepts it until nobody needs its result any more: a node of the
/// graph that futures passed as arguments, and tail calls, make of calls.
struct input_record {
  std::uint64_t id = 0;
  std::string call_id;
  std::uint64_t caller_session = 0;  // whose call this is, in whose numbering caller_call_id is
  std::uint64_t caller_call_id = 0;
  std::uint8_t flags = 0;  // wire::deliver_result | wire::keep_result
  function_state* function = nullptr;
  input_state state = input_state::waiting;
  /// With nil placeholders where deps go, until spliced. Kept until the call ends, for retries and for
  /// re-queueing when a container is replaced.
  detail::buffer arguments;
  std::uint64_t attempt_id = 0;  // the running attempt, as its container knows it (input_id on the wire)
  int attempts = 0;              // attempts started
  bool cancelled = false;        // by its caller: never retried
  bool durable = false;          // spawned: stored, and its outcome is stored when it ends
  std::unique_ptr<asio::steady_timer> timer;  // the running attempt's timeout, or the delay before a retry
  /// Argument calls this one waits for, by argument position; each holds a reader count on the dep.
  std::vector<std::pair<std::uint32_t, input_record*>> deps;
  std::size_t unresolved = 0;             // deps not done yet
  std::vector<input_record*> consumers;   // calls waiting for this one's result
  std::size_t readers = 0;                // consumers that will still read `result`
  container_record* container = nullptr;  // while running
  status outcome = status::ok;            // once done: the value, or an error record, in `result`
  detail::buffer result;
};

enum class container_state { starting, ready, stopping };

struct container_record {
  std::uint64_t id = 0;
  function_state* function = nullptr;
  std::unique_ptr<container_process> process;
  struct session* session = nullptr;
  container_state state = container_state::starting;
  std::chrono::steady_clock::time_point started_at;
  /// Attempts running here, by attempt id. nullptr: an attempt given up on (timed out) that still holds
  /// its slot until the container answers it, or is replaced.
  std::unordered_map<std::uint64_t, input_record*> in_flight;
  /// Attempts asked to stop (cancelled, timed out), each with the grace period it has left.
  std::unordered_map<std::uint64_t, std::unique_ptr<asio::steady_timer>> stopping_attempts;
  bool stop_requested = false;  // the server stopped it (scale-down, shutdown, replacement): not a crash
  bool replaced = false;        // killed for an attempt that would not stop: its other inputs are re-queued
  std::unique_ptr<asio::steady_timer> connect_timer;
  std::unique_ptr<asio::steady_timer> idle_timer;  // armed while it has nothing to do
};

struct app_instance;

struct function_state {
  app_instance* app = nullptr;
  std::string name;
  std::string signature;
  int max_inputs = 1;
  int max_containers = 1;
  int min_containers = 0;
  int buffer_containers = 0;
  std::chrono::milliseconds scaledown_window{60'000};
  std::chrono::milliseconds timeout{0};  // per attempt; 0: none
  Retries retries;
  std::deque<input_record*> queue;
  std::vector<container_record*> containers;
  /// Containers in a row that died without being asked to; reset by a successful output. From the second,
  /// starts back off: no container starts before next_launch.
  int crash_streak = 0;
  std::chrono::steady_clock::time_point next_launch{};
  std::unique_ptr<asio::steady_timer> launch_timer;
};

/// An app as a running program registered it; it lives as long as that program's connection.
struct app_instance {
  std::string name;
  std::string executable;
  std::uint64_t owner_session = 0;  // 0 for a deployed app
  std::string declared_name;        // the name its binary gives it (a deployment may rename it)
  std::string digest;               // of a deployed app's binary
  double deployed_at = 0;
  bool stopped = false;  // its program has gone, or it was stopped or redeployed: no new containers
  std::map<std::string, function_state> functions;
};

/// Failures worth another attempt: the body threw, its container died, it ran out of time.
bool retryable(status s) {
  return s == status::remote_exception || s == status::container_crashed || s == status::timed_out;
}

std::chrono::milliseconds retry_delay(const Retries& r, int failed_attempts) {
  double delay = static_cast<double>(r.initial_delay.count());
  for (int i = 1; i < failed_attempts && delay < static_cast<double>(r.max_delay.count()); ++i) {
    delay *= r.backoff_coefficient;
  }
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(std::min(delay, static_cast<double>(r.max_delay.count()))));
}

std::string plural(std::int64_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

enum class session_role { handshake, client, container };

struct session {
  std::uint64_t id = 0;
  std::shared_ptr<wire::connection> connection;
  session_role role = session_role::handshake;
  app_instance* app = nullptr;            // the app whose functions this session's calls reach
  container_record* container = nullptr;  // for containers
  std::unique_ptr<asio::steady_timer> handshake_timer;
  /// The calls this session made that it may still await, pass or cancel, by its call id.
  std::unordered_map<std::uint64_t, input_record*> open_calls;
};

std::string join_names(const std::map<std::string, function_state>& functions) {
  std::string s;
  for (const auto& [name, f] : functions) s += (s.empty() ? "" : ", ") + name;
  return s.empty() ? "none" : s;
}

std::string tail_note(const std::string& tail) {
  if (tail.empty()) return "; it wrote nothing to stderr";
  return "; its stderr ended with:\n" + tail;
}

}  // namespace

struct server::state {
  server_options options;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::unique_ptr<container_launcher> launcher;
  std::string address;

  std::uint64_t next_session_id = 1;
  std::uint64_t next_container_id = 1;
  std::uint64_t next_input_id = 1;
  std::uint64_t call_id_base = 0;  // random per server start, so call ids do not repeat across restarts
  std::unordered_map<std::uint64_t, std::unique_ptr<session>> sessions;
  std::unordered_map<std::uint64_t, std::unique_ptr<app_instance>> apps;  // by owner session
  std::unordered_map<std::uint64_t, std::unique_ptr<container_record>> containers;
  std::unordered_map<std::uint64_t, std::unique_ptr<input_record>> inputs;  // every call node, by input id
  std::map<std::string, std::unique_ptr<app_instance>> deployed;  // by app name
  std::vector<std::unique_ptr<app_instance>> retired;  // stopped or replaced deployments, until their containers exit

  // Durable state: spawned calls and deployments.
  std::unique_ptr<state_store> store;
  std::unordered_map<std::string, input_record*> durable_calls;     // spawned calls not finished, by call id
  std::unordered_map<std::string, std::string> unflushed_keys;      // idempotency key -> call id, until stored
  struct spawn_reply {
    std::uint64_t session_id;
    std::uint64_t request_id;
    std::uint64_t input_id;
  };
  std::vector<spawn_reply> unflushed_spawns;  // answered once the flush that stores them commits
  bool flush_posted = false;
  struct get_waiter {
    std::uint64_t session_id;
    std::uint64_t request_id;
    std::unique_ptr<asio::steady_timer> timer;
  };
  std::unordered_map<std::string, std::vector<get_waiter>> get_waiters;  // by call id
  std::unique_ptr<asio::steady_timer> expiry_timer;

  bool stopping = false;
  bool finishing = false;
  std::unique_ptr<asio::steady_timer> stop_timer;

  void accept();
  void on_frame(session& s, const wire::frame& f);
  void on_closed(std::uint64_t session_id, const std::string& reason);
  void on_hello(session& s, const wire::frame& f);
  void on_register_app(session& s, const wire::frame& f);
  void on_call(session& s, const wire::frame& f);
  void on_output(session& s, const wire::frame& f);
  void on_cancel(session& s, const wire::frame& f);
  void on_await(session& s, const wire::frame& f);
  void on_release(session& s, const wire::frame& f);
  void on_request(session& s, const wire::frame& f);
  void reply(std::uint64_t session_id, std::uint64_t request_id, status code,
             const std::function<void(detail::buffer&)>& write);
  void reply_error(std::uint64_t session_id, std::uint64_t request_id, const wire::error_record& error);
  /// The function `app.fn` names among the deployed apps; nullptr after replying an error.
  function_state* deployed_function(session& s, std::uint64_t request_id, const std::string& qualified);
  void deploy(session& s, std::uint64_t request_id, const std::string& app, std::span<const char> payload);
  /// Takes a deployed app out of service: queued inputs move to `successor` (same function name and
  /// signature) or fail; its containers stop.
  void retire(std::unique_ptr<app_instance> app, app_instance* successor);
  void spawn(session& s, std::uint64_t request_id, const std::string& qualified, std::span<const char> payload);
  void get_call(session& s, std::uint64_t request_id, const std::string& call_id, std::span<const char> payload);
  void cancel_input(input_record& in);
  void schedule_flush();
  void flush_store();
  /// A spawned call ended: store its outcome and answer whoever waits for it.
  void finish_durable(input_record& in);
  void recover();
  void expire_results();
  /// Fills `app` with functions from their specs; returns what is wrong with them, or "".
  std::string add_functions(app_instance& app, std::vector<wire::function_spec>& specs);
  void refuse(session& s, const std::string& reason);

  // The call graph.
  input_record* open_call(session& s, std::uint64_t call_id);
  void make_ready(input_record& in);
  void complete(input_record& in, status outcome, std::span<const char> payload);
  void fail(input_record& in, const wire::error_record& error);
  void settle(input_record& in);
  /// Fails `consumer` with the error of `dep`, its argument at `position`, naming that call.
  void fail_from_argument(input_record& consumer, const input_record& dep, std::uint32_t position);
  void deliver(input_record& in);
  void maybe_forget(input_record& in);
  void detach_from_deps(input_record& in);
  void tail_call(input_record& original, input_record& target);

  // Attempts: timeouts, retries, cancellation.
  /// Ends the running attempt's hold on its container (the slot stays taken when `abandon`, until the
  /// container answers or is replaced).
  void detach_attempt(input_record& in, bool abandon);
  /// After a failed attempt: queues another after the retry delay, or fails the call.
  void retry_or_fail(input_record& in, wire::error_record error);
  void time_out(std::uint64_t input_id, std::uint64_t attempt_id);
  /// Gives a container `cancel_grace` to stop an attempt; after that it is replaced.
  void await_attempt_stop(container_record& c, std::uint64_t attempt_id);
  void replace_container(container_record& c, const std::string& why);

  void dispatch(function_state& fn);
  /// Starts containers for the queued and running inputs (plus the buffer, at least the minimum, at most
  /// the maximum), and arms the scale-down of idle ones.
  void scale(function_state& fn);
  void arm_idle_timer(container_record& c);
  void launch_container(function_state& fn);
  void on_container_exit(std::uint64_t container_id, const std::string& how);
  void stop_container(container_record& c);
  void remove_app(std::uint64_t owner_session);

  void send_error(std::uint64_t session_id, std::uint64_t call_id, const wire::error_record& error);
  void fail_queue(function_state& fn, status code, const std::string& message);
  std::string new_call_id() {
    char text[32];
    std::snprintf(text, sizeof text, "fc-%016llx", static_cast<unsigned long long>(call_id_base + next_input_id));
    return text;
  }

  void begin_stop();
  void finish_stop_if_done();
};

server::server(server_options options, std::unique_ptr<container_launcher> launcher)
    : state_(std::make_unique<state>()) {
  state_->options = std::move(options);
  state_->launcher = launcher ? std::move(launcher) : make_process_launcher(state_->io.get_executor());
  const auto addr = asio::ip::make_address(state_->options.host);
  const tcp::endpoint ep(addr, state_->options.port);
  state_->acceptor.open(ep.protocol());
  state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  state_->acceptor.bind(ep);
  state_->acceptor.listen();
  const auto bound = state_->acceptor.local_endpoint();
  // Containers run on this host: when listening on every address, they reach us on loopback.
  const std::string host = addr.is_unspecified() ? (addr.is_v6() ? "::1" : "127.0.0.1") : addr.to_string();
  state_->address =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(bound.port());
  std::random_device rd;
  state_->call_id_base = (std::uint64_t{rd()} << 32) | rd();
  const auto& dir = state_->options.state_dir;
  state_->store = std::make_unique<state_store>(dir.empty() ? std::filesystem::path(":memory:") : dir / "ferry.db");
}

server::~server() = default;

std::string server::address() const { return state_->address; }

void server::run() {
  state_->accept();
  asio::post(state_->io, [s = state_.get()] { s->recover(); });
  state_->io.run();
}

void server::stop() {
  asio::post(state_->io, [s = state_.get()] { s->begin_stop(); });
}

void server::state::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec != asio::error::operation_aborted) spdlog::warn("accept failed: {}", ec.message());
      if (!stopping && acceptor.is_open()) accept();
      return;
    }
    auto s = std::make_unique<session>();
    s->id = next_session_id++;
    s->connection = std::make_shared<wire::connection>(std::move(socket), options.max_frame_size);
    s->connection->set_peer_max_frame_size(options.max_frame_size + wire::header_allowance);
    s->handshake_timer = std::make_unique<asio::steady_timer>(io, options.handshake_timeout);
    s->handshake_timer->async_wait([this, id = s->id](boost::system::error_code timer_ec) {
      if (timer_ec) return;
      auto it = sessions.find(id);
      if (it != sessions.end() && it->second->role == session_role::handshake) {
        it->second->connection->close("no hello within the handshake timeout");
      }
    });
    session* raw = s.get();
    sessions.emplace(s->id, std::move(s));
    raw->connection->start([this, raw](const wire::frame& f) { on_frame(*raw, f); },
                           [this, id = raw->id](const std::string& reason) { on_closed(id, reason); });
    accept();
  });
}

void server::state::on_frame(session& s, const wire::frame& f) {
  if (s.role == session_role::handshake && f.kind != message_kind::hello) {
    s.connection->close(std::string("expected hello as the first frame, received ") + wire::to_string(f.kind));
    return;
  }
  const bool caller = s.role == session_role::client || s.role == session_role::container;
  switch (f.kind) {
    case message_kind::hello:
      if (s.role != session_role::handshake) break;
      on_hello(s, f);
      return;
    case message_kind::register_app:
      if (s.role != session_role::client) break;
      on_register_app(s, f);
      return;
    case message_kind::call:
      if (!caller) break;
      on_call(s, f);
      return;
    case message_kind::output:
      if (s.role != session_role::container) break;
      on_output(s, f);
      return;
    case message_kind::cancel:
      if (!caller) break;
      on_cancel(s, f);
      return;
    case message_kind::await_call:
      if (!caller) break;
      on_await(s, f);
      return;
    case message_kind::release:
      if (!caller) break;
      on_release(s, f);
      return;
    case message_kind::request:
      if (s.role != session_role::client) break;
      on_request(s, f);
      return;
    default:
      break;
  }
  s.connection->close(std::string("unexpected ") + wire::to_string(f.kind) + " message from a " +
                      (s.role == session_role::container ? "container" : "client"));
}

void server::state::refuse(session& s, const std::string& reason) {
  spdlog::warn("refused connection from {}: {}", s.connection->remote_address(), reason);
  s.connection->send(message_kind::refused, wire::refused_header{reason});
  s.connection->close("refused: " + reason, /*flush=*/true);
}

void server::state::on_hello(session& s, const wire::frame& f) {
  auto [version, token, role, container_id, pid] = f.decode_header<wire::hello_header>();
  s.handshake_timer.reset();
  if (version != wire::protocol_version) {
    refuse(s, "protocol version " + std::to_string(version) + " is not supported: this server speaks version " +
                  std::to_string(wire::protocol_version) + "; use a ferry library and server of the same release");
    return;
  }
  if (!constant_time_equal(token, options.token)) {
    refuse(s, "invalid token; set FERRY_TOKEN to the token in the server's state directory (the 'token' file)");
    return;
  }
  if (stopping) {
    refuse(s, "the server is shutting down");
    return;
  }
  if (role == static_cast<std::uint8_t>(wire::peer_role::container)) {
    auto it = containers.find(container_id);
    if (it == containers.end() || it->second->state != container_state::starting) {
      refuse(s, "no container " + std::to_string(container_id) + " is expected to connect");
      return;
    }
    container_record& c = *it->second;
    s.role = session_role::container;
    s.container = &c;
    s.app = c.function->app;
    c.session = &s;
    c.state = container_state::ready;
    c.connect_timer.reset();
    spdlog::debug("container {} for {}.{} connected (pid {})", c.id, c.function->app->name, c.function->name, pid);
  } else if (role == static_cast<std::uint8_t>(wire::peer_role::client)) {
    s.role = session_role::client;
  } else {
    refuse(s, "unknown peer role " + std::to_string(role));
    return;
  }
  s.connection->send(message_kind::welcome, wire::welcome_header{ferry::version(), options.max_frame_size});
  if (s.container) dispatch(*s.container->function);
}

void server::state::on_register_app(session& s, const wire::frame& f) {
  auto [name, executable, specs] = f.decode_header<wire::register_app_header>();
  auto reply_error = [&](const std::string& message) {
    s.connection->send(message_kind::app_registered,
                       wire::app_registered_header{static_cast<std::uint8_t>(status::bad_arguments)},
                       [&](detail::buffer& out) {
                         wire::encode_error(out, {status::bad_arguments, "", message, "", "", ""});
                       });
  };
  if (s.app) return reply_error("this program has already registered app '" + s.app->name + "'");
  std::error_code ec;
  if (!std::filesystem::path(executable).is_absolute() || !std::filesystem::is_regular_file(executable, ec) ||
      ::access(executable.c_str(), X_OK) != 0) {
    return reply_error("the app's binary '" + executable + "' is not an executable file on the server's host");
  }
  auto app = std::make_unique<app_instance>();
  app->name = name;
  app->declared_name = name;
  app->executable = executable;
  app->owner_session = s.id;
  if (auto problem = add_functions(*app, specs); !problem.empty()) return reply_error(problem);
  s.app = app.get();
  spdlog::debug("app '{}' registered by {} with functions: {}", name, s.connection->remote_address(),
                join_names(app->functions));
  app_instance& registered = *app;
  apps.emplace(s.id, std::move(app));
  s.connection->send(message_kind::app_registered, wire::app_registered_header{static_cast<std::uint8_t>(status::ok)});
  for (auto& [fname, fn] : registered.functions) scale(fn);  // min_containers start now
}

std::string server::state::add_functions(app_instance& app, std::vector<wire::function_spec>& specs) {
  for (auto& [fname, signature, max_inputs, max_containers, timeout_ms, retries, min_containers, buffer_containers,
              scaledown_ms] : specs) {
    auto [max_retries, initial_delay_ms, backoff_coefficient, max_delay_ms] = retries;
    std::string problem;
    if (max_inputs < 1 || max_containers < 1) {
      problem = "max_inputs and max_containers must be at least 1";
    } else if (min_containers < 0 || buffer_containers < 0 || min_containers > max_containers) {
      problem = "min_containers and buffer_containers must be at least 0, and min_containers at most max_containers";
    } else if (max_retries < 0 || !(backoff_coefficient >= 1.0 && backoff_coefficient <= 10.0)) {
      problem = "retries: max_retries must be at least 0 and backoff_coefficient between 1 and 10";
    } else if (app.functions.contains(fname)) {
      problem = "declared twice";
    }
    if (!problem.empty()) return "function '" + fname + "': " + problem;
    function_state& fn = app.functions[fname];
    fn.app = &app;
    fn.name = fname;
    fn.signature = signature;
    fn.max_inputs = max_inputs;
    fn.max_containers = max_containers;
    fn.min_containers = min_containers;
    fn.buffer_containers = buffer_containers;
    fn.scaledown_window = std::chrono::milliseconds(scaledown_ms);
    fn.timeout = std::chrono::milliseconds(timeout_ms);
    fn.retries = Retries(max_retries, std::chrono::milliseconds(initial_delay_ms), backoff_coefficient,
                         std::chrono::milliseconds(max_delay_ms));
  }
  return "";
}

void server::state::reply(std::uint64_t session_id, std::uint64_t request_id, status code,
                          const std::function<void(detail::buffer&)>& write) {
  auto it = sessions.find(session_id);
  if (it == sessions.end()) return;
  try {
    it->second->connection->send(message_kind::reply, wire::reply_header{request_id, static_cast<std::uint8_t>(code)},
                                 write);
  } catch (const PayloadTooLargeError& e) {
    reply_error(session_id, request_id, {status::payload_too_large, "", e.what(), "", "", ""});
  }
}

void server::state::reply_error(std::uint64_t session_id, std::uint64_t request_id, const wire::error_record& error) {
  reply(session_id, request_id, error.code, [&](detail::buffer& out) { wire::encode_error(out, error); });
}

void server::state::on_request(session& s, const wire::frame& f) {
  auto [request_id, verb, subject] = f.decode_header<wire::request_header>();
  if (verb == "containers") {
    const auto now = std::chrono::steady_clock::now();
    std::vector<wire::container_row> rows;
    for (const auto& [id, c] : containers) {
      static constexpr const char* state_names[] = {"starting", "ready", "stopping"};
      const std::chrono::duration<double> uptime = now - c->started_at;
      const auto running = std::count_if(c->in_flight.begin(), c->in_flight.end(), [](const auto& a) { return a.second; });
      rows.emplace_back(c->id, c->function->app->name, c->function->name, state_names[static_cast<int>(c->state)],
                        static_cast<std::uint32_t>(running), c->process->pid(), uptime.count(), c->process->rss_bytes());
    }
    std::sort(rows.begin(), rows.end());
    return reply(s.id, request_id, status::ok,
                 [&](detail::buffer& out) { codec<std::vector<wire::container_row>>::encode(out, rows); });
  }
  if (verb == "apps") {
    std::vector<wire::app_row> rows;
    for (const auto& [name, app] : deployed) {
      std::vector<std::tuple<std::string, std::string>> functions;
      for (const auto& [fname, fn] : app->functions) functions.emplace_back(fname, fn.signature);
      rows.emplace_back(name, app->digest, app->deployed_at, std::move(functions));
    }
    return reply(s.id, request_id, status::ok,
                 [&](detail::buffer& out) { codec<std::vector<wire::app_row>>::encode(out, rows); });
  }
  if (verb == "calls") {
    store->flush();
    const auto rows = store->recent_calls(100);
    return reply(s.id, request_id, status::ok,
                 [&](detail::buffer& out) { codec<std::vector<wire::call_row>>::encode(out, rows); });
  }
  if (verb == "function") {
    function_state* fn = deployed_function(s, request_id, subject);
    if (!fn) return;
    return reply(s.id, request_id, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, fn->signature); });
  }
  if (verb == "deploy") return deploy(s, request_id, subject, f.payload);
  if (verb == "stop") {
    auto it = deployed.find(subject);
    if (it == deployed.end()) {
      return reply_error(s.id, request_id,
                         {status::unknown_app, "", "no app named '" + subject + "' is deployed (see `ferry apps`)",
                          "", "", ""});
    }
    auto app = std::move(it->second);
    deployed.erase(it);
    store->remove_deployment(subject);
    spdlog::info("stopped app '{}'", subject);
    retire(std::move(app), nullptr);
    return reply(s.id, request_id, status::ok, [](detail::buffer& out) { out.commit(mp_encode_nil(out.reserve(1))); });
  }
  if (verb == "spawn") return spawn(s, request_id, subject, f.payload);
  if (verb == "get") return get_call(s, request_id, subject, f.payload);
  if (verb == "cancel") {
    if (auto it = durable_calls.find(subject); it != durable_calls.end()) {
      cancel_input(*it->second);
    } else if (!store->find_call(subject)) {
      return reply_error(s.id, request_id, {status::unknown_call, "", "no call " + subject + " on this server", "",
                                            subject, ""});
    }
    return reply(s.id, request_id, status::ok, [](detail::buffer& out) { out.commit(mp_encode_nil(out.reserve(1))); });
  }
  throw wire::protocol_error("unknown request '" + verb + "'");
}

function_state* server::state::deployed_function(session& s, std::uint64_t request_id, const std::string& qualified) {
  const auto dot = qualified.find('.');
  const std::string app_name = qualified.substr(0, dot);
  const std::string fname = dot == std::string::npos ? "" : qualified.substr(dot + 1);
  app_instance* app = nullptr;
  if (auto it = deployed.find(app_name); it != deployed.end()) {
    app = it->second.get();
  } else if (s.app && s.app->name == app_name) {
    app = s.app;  // this program's own app
  }
  if (!app) {
    reply_error(s.id, request_id,
                {status::unknown_app, "",
                 "no app named '" + app_name +
                     "' is deployed on this server; deploy it with `ferry deploy ./BINARY` (see `ferry apps`)",
                 fname, "", ""});
    return nullptr;
  }
  auto fn = app->functions.find(fname);
  if (fn == app->functions.end()) {
    reply_error(s.id, request_id,
                {status::unknown_function, "",
                 "app '" + app_name + "' has no function '" + fname + "' (it has: " + join_names(app->functions) + ")",
                 fname, "", ""});
    return nullptr;
  }
  return &fn->second;
}

void server::state::deploy(session& s, std::uint64_t request_id, const std::string& app_name,
                           std::span<const char> payload) {
  auto refuse_deploy = [&](const std::string& message) {
    reply_error(s.id, request_id, {status::bad_arguments, "", message, "", "", ""});
  };
  if (options.state_dir.empty()) {
    return refuse_deploy("this server keeps no state (an embedded server): deploy to a `ferry server`");
  }
  detail::reader r{payload};
  std::vector<wire::function_spec> specs;
  ferry::bytes binary;
  std::string declared_name;
  try {
    std::tie(specs, binary, declared_name) =
        ferry::decode<std::tuple<std::vector<wire::function_spec>, ferry::bytes, std::string>>(r);
  } catch (const DecodeError& e) {
    return refuse_deploy(std::string("malformed deploy request: ") + e.what());
  }
  if (app_name.empty() || app_name.find_first_of("./ ") != std::string::npos) {
    return refuse_deploy("invalid app name '" + app_name + "': use letters, digits, '-' and '_'");
  }
  auto app = std::make_unique<app_instance>();
  app->name = app_name;
  app->declared_name = declared_name;
  if (auto problem = add_functions(*app, specs); !problem.empty()) return refuse_deploy(problem);
  const std::span<const char> image(reinterpret_cast<const char*>(binary.data()), binary.size());
  app->digest = sha256_hex(image);
  app->deployed_at = unix_now();
  // Content-addressed: the same binary deployed twice (or under two names) is stored once.
  const auto dir = options.state_dir / "binaries";
  const auto path = dir / app->digest;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!std::filesystem::exists(path, ec)) {
    const auto partial = path.string() + ".partial";
    {
      std::ofstream out(partial, std::ios::binary | std::ios::trunc);
      out.write(image.data(), static_cast<std::streamsize>(image.size()));
      if (!out) return refuse_deploy("cannot write " + partial + " on the server");
    }
    std::filesystem::permissions(partial, std::filesystem::perms::owner_all, ec);
    std::filesystem::rename(partial, path, ec);
    if (ec) return refuse_deploy("cannot store the binary on the server: " + ec.message());
  }
  app->executable = path.string();
  detail::buffer encoded_specs;
  codec<std::vector<wire::function_spec>>::encode(encoded_specs, specs);
  store->put_deployment({app_name, declared_name, app->digest, app->deployed_at, std::move(encoded_specs)});
  app_instance& fresh = *app;
  std::unique_ptr<app_instance> previous;
  if (auto it = deployed.find(app_name); it != deployed.end()) previous = std::move(it->second);
  deployed[app_name] = std::move(app);
  spdlog::info("deployed app '{}' ({} functions, binary sha256:{})", app_name, fresh.functions.size(),
               fresh.digest.substr(0, 12));
  if (previous) retire(std::move(previous), &fresh);
  for (auto& [fname, fn] : fresh.functions) scale(fn);
  reply(s.id, request_id, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, fresh.digest); });
}

void server::state::retire(std::unique_ptr<app_instance> app, app_instance* successor) {
  app->stopped = true;
  for (auto& [fname, fn] : app->functions) {
    function_state* next = nullptr;
    if (successor) {
      auto it = successor->functions.find(fname);
      if (it != successor->functions.end() && it->second.signature == fn.signature) next = &it->second;
    }
    if (next) {
      // Not started yet: the new version runs them.
      for (input_record* in : fn.queue) {
        in->function = next;
        next->queue.push_back(in);
      }
      fn.queue.clear();
      dispatch(*next);
    } else {
      fail_queue(fn, status::cancelled,
                 "app '" + app->name + "' was " + (successor ? "redeployed without" : "stopped before") + " '" +
                     fn.name + "'" + (successor ? " with this signature" : " started"));
    }
    // Running inputs finish on the old containers, which stop once idle.
    for (container_record* c : fn.containers) {
      if (c->in_flight.empty()) stop_container(*c);
    }
  }
  retired.push_back(std::move(app));
}

void server::state::spawn(session& s, std::uint64_t request_id, const std::string& qualified,
                          std::span<const char> payload) {
  function_state* fn = deployed_function(s, request_id, qualified);
  if (!fn) return;
  // The payload: [idempotency key, arguments]; the arguments stay encoded as they came.
  detail::reader r{payload};
  std::string key;
  const char* arguments = nullptr;
  try {
    if (r.at_end() || mp_typeof(*r.pos) != MP_ARRAY || mp_check_array(r.pos, r.end) > 0 || mp_decode_array(&r.pos) != 2) {
      throw DecodeError("[idempotency key, arguments]", "something else");
    }
    key = ferry::decode<std::string>(r);
    arguments = r.pos;
    if (!detail::skip_value(r) || !r.at_end()) throw DecodeError("[idempotency key, arguments]", "a malformed value");
  } catch (const DecodeError& e) {
    return reply_error(s.id, request_id,
                       {status::bad_arguments, "", std::string("malformed spawn request: ") + e.what(), fn->name, "", ""});
  }
  if (!key.empty()) {
    std::optional<std::string> existing;
    if (auto it = unflushed_keys.find(key); it != unflushed_keys.end()) existing = it->second;
    if (!existing) existing = store->call_for_key(key);
    if (existing) {
      return reply(s.id, request_id, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, *existing); });
    }
  }
  if (fn->queue.size() >= options.max_queued_inputs) {
    return reply_error(s.id, request_id,
                       {status::resource_exhausted, "",
                        "'" + fn->name + "' already has " + std::to_string(fn->queue.size()) +
                            " inputs queued, the server's limit (ferry server --max-queued-inputs); retry later",
                        fn->name, "", ""});
  }
  auto owned = std::make_unique<input_record>();
  input_record& in = *owned;
  in.call_id = new_call_id();
  in.id = next_input_id++;
  in.durable = true;
  in.function = fn;
  in.arguments.append(arguments, static_cast<std::size_t>(r.pos - arguments));
  inputs.emplace(in.id, std::move(owned));
  durable_calls.emplace(in.call_id, &in);
  if (!key.empty()) unflushed_keys.emplace(key, in.call_id);
  state_store::spawned_call stored{in.call_id, fn->app->name, fn->name, key, {}, unix_now()};
  stored.arguments.append(in.arguments.data(), in.arguments.size());
  store->add_call(std::move(stored));
  unflushed_spawns.push_back({s.id, request_id, in.id});
  schedule_flush();
}

void server::state::schedule_flush() {
  if (flush_posted) return;
  flush_posted = true;
  // After whatever else this turn of the loop brings: one commit for all of it.
  asio::post(io, [this] { flush_store(); });
}

void server::state::flush_store() {
  flush_posted = false;
  auto spawned = std::move(unflushed_spawns);
  unflushed_spawns.clear();
  unflushed_keys.clear();
  std::string failure;
  try {
    store->flush();
  } catch (const std::exception& e) {
    failure = e.what();
    spdlog::error("{}", failure);
  }
  for (const auto& [session_id, request_id, input_id] : spawned) {
    auto it = inputs.find(input_id);
    if (it == inputs.end()) continue;
    input_record& in = *it->second;
    if (!failure.empty()) {
      durable_calls.erase(in.call_id);
      reply_error(session_id, request_id,
                  {status::internal, "", "the server could not store the call: " + failure, in.function->name, "", ""});
      inputs.erase(it);
      continue;
    }
    reply(session_id, request_id, status::ok, [&](detail::buffer& out) { codec<std::string>::encode(out, in.call_id); });
    make_ready(in);  // stored: now it may run
  }
}

void server::state::finish_durable(input_record& in) {
  store->finish_call(in.call_id, in.outcome, in.result.view(), unix_now());
  schedule_flush();
  durable_calls.erase(in.call_id);
  auto waiters = get_waiters.find(in.call_id);
  if (waiters == get_waiters.end()) return;
  auto ready = std::move(waiters->second);
  get_waiters.erase(waiters);
  for (auto& w : ready) {
    reply(w.session_id, w.request_id, in.outcome,
          [&](detail::buffer& out) { out.append(in.result.data(), in.result.size()); });
  }
}

void server::state::get_call(session& s, std::uint64_t request_id, const std::string& call_id,
                             std::span<const char> payload) {
  detail::reader r{payload};
  std::uint32_t timeout_ms = 0;
  try {
    timeout_ms = ferry::decode<std::uint32_t>(r);
  } catch (const DecodeError& e) {
    return reply_error(s.id, request_id, {status::bad_arguments, "", std::string("malformed get: ") + e.what(), "", call_id, ""});
  }
  // (Captures by value: the timeout fires after this function has returned.)
  auto not_finished = [this, call_id](std::uint64_t session_id, std::uint64_t request, const std::string& function) {
    reply_error(session_id, request,
                {status::running, "",
                 "call " + call_id + " of '" + function + "' has not finished within the timeout; get it again later",
                 function, call_id, ""});
  };
  if (auto it = durable_calls.find(call_id); it != durable_calls.end()) {
    const std::string function = it->second->function->name;
    if (timeout_ms == 0) return not_finished(s.id, request_id, function);
    get_waiter w{s.id, request_id, std::make_unique<asio::steady_timer>(io, std::chrono::milliseconds(timeout_ms))};
    w.timer->async_wait(
        [this, call_id, request_id, session_id = s.id, function, not_finished](boost::system::error_code ec) {
          if (ec) return;
          auto waiters = get_waiters.find(call_id);
          if (waiters == get_waiters.end()) return;
          std::erase_if(waiters->second,
                        [&](const get_waiter& g) { return g.request_id == request_id && g.session_id == session_id; });
          if (waiters->second.empty()) get_waiters.erase(waiters);
          not_finished(session_id, request_id, function);
        });
    get_waiters[call_id].push_back(std::move(w));
    return;
  }
  store->flush();
  auto stored = store->find_call(call_id);
  if (!stored) {
    return reply_error(s.id, request_id,
                       {status::unknown_call, "", "no call " + call_id + " on this server (check the id and the server)",
                        "", call_id, ""});
  }
  if (!stored->finished) return not_finished(s.id, request_id, stored->function);
  if (stored->expired) {
    return reply_error(s.id, request_id,
                       {status::expired, "",
                        "the result of call " + call_id + " of '" + stored->function +
                            "' has expired: the server keeps results for its retention period (ferry server --retention)",
                        stored->function, call_id, ""});
  }
  reply(s.id, request_id, stored->outcome,
        [&](detail::buffer& out) { out.append(stored->result.data(), stored->result.size()); });
}

void server::state::recover() {
  for (auto& d : store->deployments()) {
    auto app = std::make_unique<app_instance>();
    app->name = d.app;
    app->declared_name = d.declared_name;
    app->digest = d.digest;
    app->deployed_at = d.deployed_at;
    app->executable = (options.state_dir / "binaries" / d.digest).string();
    detail::reader r{d.specs.view()};
    auto specs = ferry::decode<std::vector<wire::function_spec>>(r);
    std::error_code ec;
    if (!add_functions(*app, specs).empty() || !std::filesystem::exists(app->executable, ec)) {
      spdlog::error("deployment of app '{}' is damaged (binary {}); deploy it again", d.app, app->executable);
      continue;
    }
    deployed[d.app] = std::move(app);
  }
  std::size_t resumed = 0;
  for (auto& call : store->unfinished_calls()) {
    function_state* fn = nullptr;
    if (auto app = deployed.find(call.app); app != deployed.end()) {
      auto f = app->second->functions.find(call.function);
      if (f != app->second->functions.end()) fn = &f->second;
    }
    if (!fn) {
      detail::buffer error;
      wire::encode_error(error, {status::unknown_app, "",
                                 "'" + call.app + "." + call.function +
                                     "' is not deployed on this server any more (the program that spawned it exited, "
                                     "or the app was stopped)",
                                 call.function, call.call_id, ""});
      store->finish_call(call.call_id, status::unknown_app, error.view(), unix_now());
      continue;
    }
    auto owned = std::make_unique<input_record>();
    input_record& in = *owned;
    in.call_id = call.call_id;
    in.id = next_input_id++;
    in.durable = true;
    in.function = fn;
    in.arguments = std::move(call.arguments);
    inputs.emplace(in.id, std::move(owned));
    durable_calls.emplace(in.call_id, &in);
    make_ready(in);
    ++resumed;
  }
  store->flush();
  if (!deployed.empty() || resumed) {
    spdlog::info("recovered {} deployed app(s) and {} unfinished spawned call(s)", deployed.size(), resumed);
  }
  for (auto& [name, app] : deployed) {
    for (auto& [fname, fn] : app->functions) scale(fn);
  }
  expire_results();
}

void server::state::expire_results() {
  store->expire_results(unix_now() - static_cast<double>(options.retention.count()));
  expiry_timer = std::make_unique<asio::steady_timer>(io, std::chrono::hours(1));
  expiry_timer->async_wait([this](boost::system::error_code ec) {
    if (!ec) expire_results();
  });
}

void server::state::on_call(session& s, const wire::frame& f) {
  auto [caller_call_id, app_name, function_name, flags, deps] = f.decode_header<wire::call_header>();
  if (s.open_calls.contains(caller_call_id)) {
    throw wire::protocol_error("call id " + std::to_string(caller_call_id) + " is already in use");
  }
  if (stopping) {
    return send_error(s.id, caller_call_id,
                      {status::server_shutdown, "", "the ferry server is shutting down; retry against a running server",
                       function_name, "", ""});
  }
  // A container's calls name its app as its binary does, which a deployment may have renamed.
  app_instance* target_app =
      s.app && (s.app->name == app_name || s.app->declared_name == app_name) ? s.app : nullptr;
  if (!target_app) {
    if (auto it = deployed.find(app_name); it != deployed.end()) target_app = it->second.get();
  }
  if (!target_app) {
    return send_error(s.id, caller_call_id,
                      {status::unknown_app, "",
                       "no app named '" + app_name +
                           "' is running or deployed on this server; call functions of the app this program "
                           "declares, inside app.main, or deploy the app with `ferry deploy` (see `ferry apps`)",
                       function_name, "", ""});
  }
  auto fn = target_app->functions.find(function_name);
  if (fn == target_app->functions.end()) {
    return send_error(s.id, caller_call_id,
                      {status::unknown_function, "",
                       "app '" + app_name + "' has no function '" + function_name + "' (it declares: " +
                           join_names(target_app->functions) + "); declare it with app.function(\"" + function_name +
                           "\", ...) before app.main runs",
                       function_name, "", ""});
  }
  if (fn->second.queue.size() >= options.max_queued_inputs) {
    return send_error(s.id, caller_call_id,
                      {status::resource_exhausted, "",
                       "'" + function_name + "' already has " + std::to_string(fn->second.queue.size()) +
                           " inputs queued, the server's limit (ferry server --max-queued-inputs); retry later",
                       function_name, "", ""});
  }
  auto owned = std::make_unique<input_record>();
  input_record& in = *owned;
  in.call_id = new_call_id();
  in.id = next_input_id++;
  in.caller_session = s.id;
  in.caller_call_id = caller_call_id;
  in.flags = flags;
  in.function = &fn->second;
  in.arguments.append(f.payload.data(), f.payload.size());
  inputs.emplace(in.id, std::move(owned));
  s.open_calls.emplace(caller_call_id, &in);

  for (const auto& [position, dep_call_id] : deps) {
    input_record* dep = open_call(s, dep_call_id);
    if (!dep) {
      return fail(in, {status::bad_arguments, "",
                       "argument " + std::to_string(position + 1) + " of '" + function_name + "' refers to call " +
                           std::to_string(dep_call_id) + ", which this program has not made or has released",
                       function_name, in.call_id, ""});
    }
    in.deps.emplace_back(position, dep);
    ++dep->readers;
    if (dep->state != input_state::done) {
      dep->consumers.push_back(&in);
      ++in.unresolved;
    } else if (dep->outcome != status::ok) {
      return fail_from_argument(in, *dep, position);  // an argument that already failed
    }
  }
  if (in.unresolved == 0) make_ready(in);
}

input_record* server::state::open_call(session& s, std::uint64_t call_id) {
  auto it = s.open_calls.find(call_id);
  return it == s.open_calls.end() ? nullptr : it->second;
}

void server::state::make_ready(input_record& in) {
  if (!in.deps.empty()) {
    // Splice the argument calls' results into their placeholders, byte for byte.
    detail::buffer spliced;
    detail::reader r{in.arguments.view()};
    const char* start = r.pos;
    bool valid = !r.at_end() && mp_typeof(*r.pos) == MP_ARRAY && mp_check_array(r.pos, r.end) <= 0;
    const std::uint32_t n = valid ? mp_decode_array(&r.pos) : 0;
    spliced.append(start, static_cast<std::size_t>(r.pos - start));
    for (std::uint32_t i = 0; valid && i < n; ++i) {
      const char* element = r.pos;
      valid = detail::skip_value(r);
      auto dep = std::find_if(in.deps.begin(), in.deps.end(), [i](const auto& d) { return d.first == i; });
      if (dep == in.deps.end()) {
        spliced.append(element, static_cast<std::size_t>(r.pos - element));
      } else {
        spliced.append(dep->second->result.data(), dep->second->result.size());
      }
    }
    detach_from_deps(in);
    if (!valid) {
      return fail(in, {status::bad_arguments, "", "the arguments of '" + in.function->name + "' are malformed",
                       in.function->name, in.call_id, ""});
    }
    in.arguments = std::move(spliced);
  }
  in.state = input_state::queued;
  in.function->queue.push_back(&in);
  dispatch(*in.function);
}

void server::state::detach_from_deps(input_record& in) {
  auto deps = std::move(in.deps);
  in.deps.clear();
  for (auto& [position, dep] : deps) {
    std::erase(dep->consumers, &in);
    --dep->readers;
    maybe_forget(*dep);
  }
}

void server::state::fail(input_record& in, const wire::error_record& error) {
  detail::buffer payload;
  wire::encode_error(payload, error);
  complete(in, error.code, payload.view());
}

void server::state::complete(input_record& in, status outcome, std::span<const char> payload) {
  if (in.state == input_state::queued) std::erase(in.function->queue, &in);
  detach_attempt(in, /*abandon=*/false);
  in.timer.reset();
  detach_from_deps(in);
  in.state = input_state::done;
  in.outcome = outcome;
  in.result.clear();
  in.result.append(payload.data(), payload.size());
  in.arguments = detail::buffer{};
  // A spawned call cut short by the server's shutdown stays unfinished in the store: it runs again later.
  if (in.durable && !(stopping && outcome == status::server_shutdown)) finish_durable(in);
  settle(in);
}

void server::state::settle(input_record& in) {
  // Consumers go on (or fail, naming this call) now that its result exists. Each one that moves on stops
  // reading this call, which could forget it: hold a reader of our own until done.
  ++in.readers;
  auto consumers = std::move(in.consumers);
  in.consumers.clear();
  for (input_record* consumer : consumers) {
    if (consumer->state != input_state::waiting) continue;
    if (in.outcome != status::ok) {
      auto dep =
          std::find_if(consumer->deps.begin(), consumer->deps.end(), [&](const auto& d) { return d.second == &in; });
      fail_from_argument(*consumer, in, dep == consumer->deps.end() ? 0 : dep->first);
    } else if (--consumer->unresolved == 0) {
      make_ready(*consumer);
    }
  }
  if (in.flags & wire::deliver_result) deliver(in);
  --in.readers;
  maybe_forget(in);
}

void server::state::fail_from_argument(input_record& consumer, const input_record& dep, std::uint32_t position) {
  wire::error_record error = wire::decode_error(dep.result.view());
  error.message = "argument " + std::to_string(position + 1) + " of '" + consumer.function->name +
                  "' comes from call " + dep.call_id + " of '" + dep.function->name +
                  "', which failed: " + error.message;
  fail(consumer, error);
}

void server::state::deliver(input_record& in) {
  in.flags &= static_cast<std::uint8_t>(~wire::deliver_result);
  auto it = sessions.find(in.caller_session);
  if (it == sessions.end()) return;  // the caller has gone
  try {
    it->second->connection->send(message_kind::result,
                                 wire::result_header{in.caller_call_id, static_cast<std::uint8_t>(in.outcome)},
                                 [&](detail::buffer& out) { out.append(in.result.data(), in.result.size()); });
  } catch (const PayloadTooLargeError& e) {
    send_error(in.caller_session, in.caller_call_id,
               {status::payload_too_large, "", e.what(), in.function->name, in.call_id, ""});
  }
}

void server::state::maybe_forget(input_record& in) {
  if (in.state != input_state::done || in.readers > 0 || (in.flags & (wire::deliver_result | wire::keep_result))) {
    return;
  }
  auto caller = sessions.find(in.caller_session);
  if (caller != sessions.end()) {
    auto open = caller->second->open_calls.find(in.caller_call_id);
    if (open != caller->second->open_calls.end() && open->second == &in) caller->second->open_calls.erase(open);
  }
  inputs.erase(in.id);
}

void server::state::on_await(session& s, const wire::frame& f) {
  auto [call_id] = f.decode_header<wire::await_call_header>();
  input_record* in = open_call(s, call_id);
  if (!in) {
    return send_error(s.id, call_id,
                      {status::internal, "", "no open call " + std::to_string(call_id) + " to await", "", "", ""});
  }
  in->flags |= wire::deliver_result;
  if (in->state == input_state::done) {
    deliver(*in);
    maybe_forget(*in);
  }
}

void server::state::on_release(session& s, const wire::frame& f) {
  auto [call_id] = f.decode_header<wire::release_header>();
  input_record* in = open_call(s, call_id);
  if (!in) return;
  in->flags &= static_cast<std::uint8_t>(~wire::keep_result);
  maybe_forget(*in);
}

void server::state::on_cancel(session& s, const wire::frame& f) {
  auto [caller_call_id] = f.decode_header<wire::cancel_header>();
  input_record* in = open_call(s, caller_call_id);
  if (in) cancel_input(*in);
}

void server::state::cancel_input(input_record& in) {
  if (in.state == input_state::done) return;  // answered already
  in.cancelled = true;
  if (in.state == input_state::running) {
    // The container cancels the body; its output (cancelled, or the value if it won the race) ends the call.
    // A body that ignores the cancellation past the grace period has its container replaced.
    if (in.container && in.container->session) {
      in.container->session->connection->send(message_kind::cancel_input, wire::cancel_input_header{in.attempt_id});
      await_attempt_stop(*in.container, in.attempt_id);
    }
    return;
  }
  fail(in, {status::cancelled, "", "'" + in.function->name + "' was cancelled before it started (call " + in.call_id + ")",
            in.function->name, in.call_id, ""});
}

void server::state::on_output(session& s, const wire::frame& f) {
  auto [input_id, st] = f.decode_header<wire::output_header>();
  if (!s.container) return;  // its process has exited; the exit already failed what it was running
  if (st > static_cast<std::uint8_t>(status::tail_call)) {
    s.connection->close("output with unknown status " + std::to_string(st));
    return;
  }
  container_record& c = *s.container;
  auto it = c.in_flight.find(input_id);
  if (it == c.in_flight.end()) {
    s.connection->close("output for input " + std::to_string(input_id) + ", which this container is not running");
    return;
  }
  c.stopping_attempts.erase(input_id);
  function_state& fn = *c.function;
  if (!it->second) {  // an attempt given up on: its answer comes too late, but its slot is free again
    c.in_flight.erase(it);
    return dispatch(fn);
  }
  input_record& in = *it->second;
  if (in.cancelled && static_cast<status>(st) == status::ok) {
    // The body returned after it was cancelled (as a blocking body that polls ferry::cancelled() does): the
    // call was cancelled all the same.
    detach_attempt(in, /*abandon=*/false);
    fail(in, {status::cancelled, "", "'" + fn.name + "' was cancelled while it ran (call " + in.call_id + ")", fn.name,
              in.call_id, ""});
    return dispatch(fn);
  }
  const auto outcome = static_cast<status>(st);
  if (outcome == status::ok || outcome == status::tail_call) fn.crash_streak = 0;
  if (retryable(outcome)) {
    detach_attempt(in, /*abandon=*/false);
    retry_or_fail(in, wire::decode_error(f.payload));
  } else if (outcome == status::tail_call) {
    detail::reader r{f.payload};
    const auto target_id = ferry::decode<std::uint64_t>(r);
    input_record* target = open_call(s, target_id);
    if (!target) {
      s.connection->close("tail call to call " + std::to_string(target_id) + ", which this container has not made");
      return;
    }
    tail_call(in, *target);
  } else {
    complete(in, outcome, f.payload);
  }
  dispatch(fn);
}

void server::state::detach_attempt(input_record& in, bool abandon) {
  if (!in.container) return;
  if (abandon) {
    in.container->in_flight[in.attempt_id] = nullptr;
  } else {
    in.container->in_flight.erase(in.attempt_id);
  }
  in.container = nullptr;
}

void server::state::retry_or_fail(input_record& in, wire::error_record error) {
  function_state& fn = *in.function;
  in.timer.reset();
  if (!in.cancelled && !stopping && !fn.app->stopped && in.attempts <= fn.retries.max_retries) {
    const auto delay = retry_delay(fn.retries, in.attempts);
    spdlog::info("call {} of '{}' failed (attempt {} of {}): {}; retrying in {} ms", in.call_id, fn.name,
                 in.attempts, fn.retries.max_retries + 1, error.message, delay.count());
    in.state = input_state::backoff;
    in.timer = std::make_unique<asio::steady_timer>(io, delay);
    in.timer->async_wait([this, id = in.id](boost::system::error_code ec) {
      if (ec) return;
      auto it = inputs.find(id);
      if (it == inputs.end() || it->second->state != input_state::backoff) return;
      input_record& retry = *it->second;
      retry.state = input_state::queued;
      retry.function->queue.push_back(&retry);
      dispatch(*retry.function);
    });
    return;
  }
  if (in.attempts > 1) {
    error.message = "'" + fn.name + "' failed " + plural(in.attempts, "time") + " (" +
                    plural(in.attempts, "attempt") + ", the retry limit); the last attempt: " + error.message;
  }
  fail(in, error);
}

void server::state::time_out(std::uint64_t input_id, std::uint64_t attempt_id) {
  auto it = inputs.find(input_id);
  if (it == inputs.end()) return;
  input_record& in = *it->second;
  if (in.state != input_state::running || in.attempt_id != attempt_id || !in.container) return;
  function_state& fn = *in.function;
  container_record& c = *in.container;
  spdlog::warn("call {} of '{}' timed out after {} ms (attempt {})", in.call_id, fn.name, fn.timeout.count(),
               in.attempts);
  // The body is asked to stop; its slot stays taken until it does (or its container is replaced).
  if (c.session) c.session->connection->send(message_kind::cancel_input, wire::cancel_input_header{attempt_id});
  await_attempt_stop(c, attempt_id);
  detach_attempt(in, /*abandon=*/true);
  retry_or_fail(in, {status::timed_out, "",
                     "'" + fn.name + "' timed out: an attempt may run " + std::to_string(fn.timeout.count()) +
                         " ms (the function's timeout option) (call " + in.call_id + ")",
                     fn.name, in.call_id, ""});
}

void server::state::await_attempt_stop(container_record& c, std::uint64_t attempt_id) {
  auto& timer = c.stopping_attempts[attempt_id];
  if (timer) return;
  timer = std::make_unique<asio::steady_timer>(io, options.cancel_grace);
  timer->async_wait([this, container_id = c.id, attempt_id](boost::system::error_code ec) {
    if (ec) return;
    auto it = containers.find(container_id);
    if (it == containers.end() || !it->second->in_flight.contains(attempt_id)) return;
    replace_container(*it->second, "attempt " + std::to_string(attempt_id) + " did not stop within " +
                                       std::to_string(options.cancel_grace.count()) + " ms of being cancelled");
  });
}

void server::state::replace_container(container_record& c, const std::string& why) {
  if (c.replaced || c.state == container_state::stopping) return;
  spdlog::warn("replacing container {} of '{}': {}", c.id, c.function->name, why);
  c.replaced = true;
  c.stop_requested = true;
  c.state = container_state::stopping;
  // A cancelled input that would not stop ends now, as cancelled; the exit re-queues the others.
  std::vector<input_record*> cancelled;
  for (auto& [attempt, in] : c.in_flight) {
    if (in && in->cancelled) cancelled.push_back(in);
  }
  for (input_record* in : cancelled) {
    fail(*in, {status::cancelled, "",
               "'" + in->function->name + "' was cancelled (call " + in->call_id +
                   "); its body did not stop within the grace period, so its container was replaced",
               in->function->name, in->call_id, ""});
  }
  c.process->kill();
}

void server::state::tail_call(input_record& original, input_record& target) {
  // The target takes the original's place: its caller, its call id there, its consumers and what the caller
  // asked for. The original's slot is free at once and the original is forgotten, so a chain of tail calls
  // holds one node, whatever its length.
  auto container_session = sessions.find(target.caller_session);
  if (container_session != sessions.end()) container_session->second->open_calls.erase(target.caller_call_id);
  target.caller_session = original.caller_session;
  target.caller_call_id = original.caller_call_id;
  target.flags = original.flags;
  if (original.durable) {
    // The spawned call's id now names the target, whose outcome is the spawned call's.
    target.durable = true;
    target.call_id = original.call_id;
    durable_calls[original.call_id] = &target;
  }
  auto caller = sessions.find(original.caller_session);
  if (caller != sessions.end()) caller->second->open_calls[original.caller_call_id] = &target;
  for (input_record* consumer : original.consumers) {
    for (auto& dep : consumer->deps) {
      if (dep.second == &original) dep.second = &target;
    }
    if (target.state != input_state::done) target.consumers.push_back(consumer);
  }
  target.readers += original.readers;
  const bool target_done = target.state == input_state::done;
  auto consumers = std::move(original.consumers);
  detach_attempt(original, /*abandon=*/false);
  inputs.erase(original.id);
  if (target_done) {
    target.consumers = std::move(consumers);
    settle(target);
  }
}

void server::state::send_error(std::uint64_t session_id, std::uint64_t call_id, const wire::error_record& error) {
  auto it = sessions.find(session_id);
  if (it == sessions.end()) return;
  it->second->connection->send(message_kind::result,
                               wire::result_header{call_id, static_cast<std::uint8_t>(error.code)},
                               [&](detail::buffer& out) { wire::encode_error(out, error); });
}

void server::state::dispatch(function_state& fn) {
  if (stopping) {
    // Draining: nothing new starts, and containers stop as their running inputs finish.
    for (container_record* c : std::vector<container_record*>(fn.containers)) {
      if (c->state == container_state::ready && c->in_flight.empty()) stop_container(*c);
    }
    return;
  }
  while (!fn.queue.empty()) {
    container_record* target = nullptr;
    for (container_record* c : fn.containers) {
      if (c->state != container_state::ready || c->in_flight.size() >= static_cast<std::size_t>(fn.max_inputs))
        continue;
      if (!target || c->in_flight.size() < target->in_flight.size()) target = c;
    }
    if (!target) break;
    input_record& in = *fn.queue.front();
    const std::uint64_t attempt_id = next_input_id++;
    bool sent = false;
    try {
      sent = target->session->connection->send(
          message_kind::input, wire::input_header{attempt_id, in.call_id},
          [&](detail::buffer& out) { out.append(in.arguments.data(), in.arguments.size()); });
    } catch (const PayloadTooLargeError& e) {
      fail(in, {status::payload_too_large, "", e.what(), fn.name, in.call_id, ""});
      continue;
    }
    if (!sent) {  // the container's connection just closed; its exit will be handled shortly
      target->state = container_state::stopping;
      continue;
    }
    fn.queue.pop_front();
    in.state = input_state::running;
    in.container = target;
    in.attempt_id = attempt_id;
    ++in.attempts;
    target->in_flight.emplace(attempt_id, &in);
    target->idle_timer.reset();
    if (fn.timeout.count() > 0) {
      in.timer = std::make_unique<asio::steady_timer>(io, fn.timeout);
      in.timer->async_wait([this, id = in.id, attempt_id](boost::system::error_code ec) {
        if (!ec) time_out(id, attempt_id);
      });
    }
  }
  scale(fn);
}

void server::state::scale(function_state& fn) {
  if (stopping) return;
  if (fn.app->stopped) {  // retired: its containers stop once idle
    for (container_record* c : std::vector<container_record*>(fn.containers)) {
      if (c->state == container_state::ready && c->in_flight.empty()) stop_container(*c);
    }
    return;
  }
  std::size_t live = 0;
  std::size_t busy = 0;  // slots taken on containers that take inputs
  for (container_record* c : fn.containers) {
    if (c->state == container_state::stopping) continue;
    ++live;
    busy += c->in_flight.size();
    if (c->state == container_state::ready && c->in_flight.empty() && !c->idle_timer) arm_idle_timer(*c);
  }
  const std::size_t per_container = static_cast<std::size_t>(fn.max_inputs);
  std::size_t wanted = (fn.queue.size() + busy + per_container - 1) / per_container;
  if (wanted > 0) wanted += static_cast<std::size_t>(fn.buffer_containers);
  wanted = std::clamp(wanted, static_cast<std::size_t>(fn.min_containers), static_cast<std::size_t>(fn.max_containers));
  if (wanted <= live) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < fn.next_launch) {  // backing off after crashes: come back when the wait is over
    if (!fn.launch_timer) {
      fn.launch_timer = std::make_unique<asio::steady_timer>(io, fn.next_launch);
      fn.launch_timer->async_wait([this, &fn](boost::system::error_code ec) {
        if (ec) return;
        fn.launch_timer.reset();
        scale(fn);
      });
    }
    return;
  }
  for (std::size_t i = live; i < wanted; ++i) {
    const std::size_t before = fn.containers.size();
    launch_container(fn);
    if (fn.containers.size() == before) break;  // it could not start; the queue has been failed
  }
}

void server::state::arm_idle_timer(container_record& c) {
  c.idle_timer = std::make_unique<asio::steady_timer>(io, c.function->scaledown_window);
  c.idle_timer->async_wait([this, id = c.id](boost::system::error_code ec) {
    if (ec) return;
    auto it = containers.find(id);
    if (it == containers.end()) return;
    container_record& idle = *it->second;
    function_state& fn = *idle.function;
    std::size_t live = 0;
    for (container_record* c : fn.containers) live += c->state != container_state::stopping;
    if (idle.state != container_state::ready || !idle.in_flight.empty() || !fn.queue.empty() ||
        live <= static_cast<std::size_t>(fn.min_containers)) {
      idle.idle_timer.reset();  // re-armed the next time it is idle
      return;
    }
    spdlog::debug("container {} of '{}' idle for {} ms: stopping it", idle.id, fn.name, fn.scaledown_window.count());
    stop_container(idle);
  });
}

void server::state::launch_container(function_state& fn) {
  auto c = std::make_unique<container_record>();
  c->id = next_container_id++;
  c->function = &fn;
  c->started_at = std::chrono::steady_clock::now();
  container_spec spec{c->id, fn.app->executable, fn.app->declared_name, fn.name, address, options.token};
  try {
    c->process = launcher->launch(spec, [this, id = c->id](std::string how) { on_container_exit(id, how); });
  } catch (const std::exception& e) {
    spdlog::error("cannot start a container for {}.{}: {}", fn.app->name, fn.name, e.what());
    if (fn.containers.empty()) {
      const std::string message = "could not start a container for '" + fn.name + "': " + e.what();
      fail_queue(fn, status::container_start_failed, message);
    }
    return;
  }
  spdlog::debug("started container {} (pid {}) for {}.{}", c->id, c->process->pid(), fn.app->name, fn.name);
  c->connect_timer = std::make_unique<asio::steady_timer>(io, options.container_connect_timeout);
  c->connect_timer->async_wait([this, id = c->id](boost::system::error_code ec) {
    if (ec) return;
    auto it = containers.find(id);
    if (it == containers.end() || it->second->state != container_state::starting) return;
    spdlog::warn("container {} did not connect within {} ms; killing it", id,
                 options.container_connect_timeout.count());
    it->second->process->kill();
  });
  fn.containers.push_back(c.get());
  containers.emplace(c->id, std::move(c));
}

void server::state::on_container_exit(std::uint64_t container_id, const std::string& how) {
  auto it = containers.find(container_id);
  if (it == containers.end()) return;
  std::unique_ptr<container_record> c = std::move(it->second);
  containers.erase(it);
  function_state& fn = *c->function;
  std::erase(fn.containers, c.get());
  const std::string tail = c->process->stderr_tail();
  if (!c->stop_requested && !stopping) {
    // Died without being asked to: from the second in a row, starts back off (0.25 s doubling to 30 s).
    ++fn.crash_streak;
    if (fn.crash_streak >= 2) {
      const auto wait = std::min<std::chrono::milliseconds>(
          std::chrono::milliseconds(250 << std::min(fn.crash_streak - 2, 7)), std::chrono::seconds(30));
      fn.next_launch = std::chrono::steady_clock::now() + wait;
      spdlog::warn("'{}' has lost {} containers in a row; the next starts in {} ms", fn.name, fn.crash_streak,
                   wait.count());
    }
  }

  if (c->state == container_state::starting) {
    spdlog::warn("container {} for {}.{} {} before it connected", c->id, fn.app->name, fn.name, how);
    // With no other container on the way, nothing would ever run what is queued: fail it now.
    if (fn.containers.empty()) {
      fail_queue(fn, status::container_start_failed,
                 "could not start a container for '" + fn.name + "': the container process " + how +
                     " before it connected to the server" + tail_note(tail));
    }
  } else {
    const auto running = static_cast<std::size_t>(
        std::count_if(c->in_flight.begin(), c->in_flight.end(), [](const auto& attempt) { return attempt.second; }));
    if (!c->stop_requested || running > 0) {
      spdlog::log(running == 0 ? spdlog::level::debug : spdlog::level::warn, "container {} for {}.{} {}{}", c->id,
                  fn.app->name, fn.name, how, running == 0 ? "" : " with " + plural(running, "input") + " in flight");
    }
    auto in_flight = std::move(c->in_flight);
    c->in_flight.clear();
    for (auto& [attempt, in] : in_flight) {
      if (!in) continue;  // an attempt given up on already
      in->container = nullptr;
      if (stopping) {
        fail(*in, {status::server_shutdown, "", "the ferry server shut down before '" + fn.name + "' finished", fn.name,
                   in->call_id, ""});
      } else if (c->replaced) {
        // Not this input's fault: it runs again, and this attempt does not count.
        --in->attempts;
        in->timer.reset();
        in->state = input_state::queued;
        fn.queue.push_front(in);
      } else {
        retry_or_fail(*in, {status::container_crashed, "",
                            "the container running '" + fn.name + "' (call " + in->call_id + ") " + how +
                                " before the call finished" + tail_note(tail),
                            fn.name, in->call_id, ""});
      }
    }
  }
  if (c->session) {
    c->session->container = nullptr;
    c->session->connection->close("container exited");
  }
  if (!stopping) dispatch(fn);
  finish_stop_if_done();
}

void server::state::stop_container(container_record& c) {
  if (c.state == container_state::ready && c.session) c.session->connection->close("container stopped by the server");
  c.state = container_state::stopping;
  c.stop_requested = true;
  c.process->terminate();
}

void server::state::on_closed(std::uint64_t session_id, const std::string& reason) {
  auto it = sessions.find(session_id);
  if (it == sessions.end()) return;
  session& s = *it->second;
  const bool expected = reason == "peer closed the connection" || reason.rfind("refused", 0) == 0 ||
                        reason == "container exited" || reason == "container stopped by the server" || stopping;
  if (expected) {
    spdlog::debug("connection from {} closed: {}", s.connection->remote_address(), reason);
  } else {
    spdlog::warn("closed connection from {}: {}", s.connection->remote_address(), reason);
  }
  if (s.container) {
    // The process's exit handler fails its inputs with the exit status and stderr; make sure it exits.
    s.container->session = nullptr;
    if (s.container->state == container_state::ready) s.container->state = container_state::stopping;
    s.container->process->terminate();
  }
  // Nobody will await or pass this session's calls any more: they are forgotten once they end.
  const session_role role = s.role;
  auto open_calls = std::move(s.open_calls);
  sessions.erase(it);
  for (auto& [id, in] : open_calls) {
    in->flags = 0;
    maybe_forget(*in);
  }
  if (role == session_role::client) remove_app(session_id);
  finish_stop_if_done();
}

void server::state::fail_queue(function_state& fn, status code, const std::string& message) {
  auto queue = std::move(fn.queue);
  fn.queue.clear();
  for (input_record* in : queue) {
    in->state = input_state::waiting;  // no longer in the queue
    fail(*in, {code, "", message, fn.name, in->call_id, ""});
  }
}

void server::state::remove_app(std::uint64_t owner_session) {
  auto it = apps.find(owner_session);
  if (it == apps.end()) return;
  app_instance& app = *it->second;
  app.stopped = true;
  bool containers_left = false;
  for (auto& [name, fn] : app.functions) {
    fail_queue(fn, status::cancelled, "app '" + app.name + "' stopped before '" + fn.name + "' started");
    for (container_record* c : fn.containers) {
      stop_container(*c);
      containers_left = true;
    }
  }
  // Calls still waiting for arguments will not be needed either.
  std::vector<std::uint64_t> waiting;
  for (auto& [id, in] : inputs) {
    if (in->function->app == &app && (in->state == input_state::waiting || in->state == input_state::backoff)) {
      waiting.push_back(id);
    }
  }
  for (std::uint64_t id : waiting) {
    auto in = inputs.find(id);  // failing one may have failed (and forgotten) another
    if (in != inputs.end() && (in->second->state == input_state::waiting || in->second->state == input_state::backoff)) {
      fail(*in->second, {status::cancelled, "", "app '" + app.name + "' stopped", in->second->function->name,
                         in->second->call_id, ""});
    }
  }
  // Containers keep pointers to the app: it goes once its last container has exited.
  if (!containers_left) {
    apps.erase(it);
    return;
  }
  for (auto& [id, s] : sessions) {
    if (s->app == &app && s->role == session_role::container) s->app = nullptr;
  }
}

void server::state::begin_stop() {
  if (stopping) return;
  stopping = true;
  boost::system::error_code ec;
  acceptor.close(ec);
  // Queued inputs will not start; spawned ones stay unfinished in the store and run after a restart.
  auto fail_all = [this](app_instance& app) {
    for (auto& [name, fn] : app.functions) {
      fail_queue(fn, status::server_shutdown, "the ferry server shut down before '" + fn.name + "' started");
    }
  };
  for (auto& [id, app] : apps) fail_all(*app);
  for (auto& [name, app] : deployed) fail_all(*app);
  // Running inputs may finish within the drain period; idle containers stop now, busy ones once idle.
  for (auto& [id, c] : containers) {
    if (options.drain_timeout.count() == 0 || c->in_flight.empty()) stop_container(*c);
  }
  if (options.drain_timeout.count() > 0 && !containers.empty()) {
    spdlog::info("draining: {} running input(s) may finish within {} ms", inputs.size(), options.drain_timeout.count());
  }
  stop_timer = std::make_unique<asio::steady_timer>(io, options.drain_timeout);
  stop_timer->async_wait([this](boost::system::error_code timer_ec) {
    if (timer_ec) return;
    for (auto& [id, c] : containers) {
      if (c->state != container_state::stopping) stop_container(*c);
    }
    // Then the grace period for containers to exit after SIGTERM.
    stop_timer = std::make_unique<asio::steady_timer>(io, options.stop_grace);
    stop_timer->async_wait([this](boost::system::error_code grace_ec) {
      if (grace_ec) return;
      for (auto& [id, c] : containers) c->process->kill();
    });
  });
  finish_stop_if_done();
}

void server::state::finish_stop_if_done() {
  // Apps whose owner and containers have all gone can go.
  std::erase_if(apps, [this](const auto& entry) {
    if (sessions.contains(entry.first)) return false;
    for (const auto& [name, fn] : entry.second->functions) {
      if (!fn.containers.empty()) return false;
    }
    return true;
  });
  std::erase_if(retired, [](const auto& app) {
    for (const auto& [name, fn] : app->functions) {
      if (!fn.containers.empty()) return false;
    }
    return true;
  });
  if (!stopping || !containers.empty() || finishing) return;
  finishing = true;
  try {
    store->flush();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
  for (auto& [id, s] : sessions) s->connection->close("server stopped", /*flush=*/true);
  if (stop_timer) stop_timer->cancel();
  // Let the closing connections flush (bounded), then leave run().
  stop_timer = std::make_unique<asio::steady_timer>(io, std::chrono::milliseconds(200));
  stop_timer->async_wait([this](boost::system::error_code) { io.stop(); });
  asio::post(io, [this] {
    if (sessions.empty()) io.stop();
  });
}

}  // namespace ferry::server
