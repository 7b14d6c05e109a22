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
#include <map>
#include <random>
#include <unordered_map>

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
  std::uint64_t owner_session = 0;
  bool stopped = false;  // its program has gone: no new containers
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
  void on_query(session& s, const wire::frame& f);
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
}

server::~server() = default;

std::string server::address() const { return state_->address; }

void server::run() {
  state_->accept();
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
    case message_kind::query:
      if (s.role != session_role::client) break;
      on_query(s, f);
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
  app->executable = executable;
  app->owner_session = s.id;
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
    }
    if (!problem.empty()) return reply_error("function '" + fname + "': " + problem);
    if (app->functions.contains(fname)) return reply_error("function '" + fname + "' is declared twice");
    function_state& fn = app->functions[fname];
    fn.app = app.get();
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
  s.app = app.get();
  spdlog::debug("app '{}' registered by {} with functions: {}", name, s.connection->remote_address(),
                join_names(app->functions));
  app_instance& registered = *app;
  apps.emplace(s.id, std::move(app));
  s.connection->send(message_kind::app_registered, wire::app_registered_header{static_cast<std::uint8_t>(status::ok)});
  for (auto& [fname, fn] : registered.functions) scale(fn);  // min_containers start now
}

void server::state::on_query(session& s, const wire::frame& f) {
  auto [request_id, what] = f.decode_header<wire::query_header>();
  if (what != "containers") throw wire::protocol_error("unknown query '" + what + "'");
  const auto now = std::chrono::steady_clock::now();
  std::vector<wire::container_row> rows;
  for (const auto& [id, c] : containers) {
    static constexpr const char* state_names[] = {"starting", "ready", "stopping"};
    const std::chrono::duration<double> uptime = now - c->started_at;
    rows.emplace_back(c->id, c->function->app->name, c->function->name, state_names[static_cast<int>(c->state)],
                      static_cast<std::uint32_t>(c->in_flight.size()), c->process->pid(), uptime.count(),
                      c->process->rss_bytes());
  }
  std::sort(rows.begin(), rows.end());
  s.connection->send(message_kind::query_reply, wire::query_reply_header{request_id},
                     [&](detail::buffer& out) { codec<std::vector<wire::container_row>>::encode(out, rows); });
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
  if (!s.app || s.app->name != app_name) {
    return send_error(s.id, caller_call_id,
                      {status::unknown_app, "",
                       "no app named '" + app_name +
                           "' is running on this server for this program; call functions "
                           "of the app this program declares, inside app.main",
                       function_name, "", ""});
  }
  auto fn = s.app->functions.find(function_name);
  if (fn == s.app->functions.end()) {
    return send_error(s.id, caller_call_id,
                      {status::unknown_function, "",
                       "app '" + app_name + "' has no function '" + function_name +
                           "' (it declares: " + join_names(s.app->functions) + "); declare it with app.function(\"" +
                           function_name + "\", ...) before app.main runs",
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
  if (!in || in->state == input_state::done) return;  // answered already
  in->cancelled = true;
  if (in->state == input_state::running) {
    // The container cancels the body; its output (cancelled, or the value if it won the race) ends the call.
    // A body that ignores the cancellation past the grace period has its container replaced.
    if (in->container && in->container->session) {
      in->container->session->connection->send(message_kind::cancel_input, wire::cancel_input_header{in->attempt_id});
      await_attempt_stop(*in->container, in->attempt_id);
    }
    return;
  }
  fail(*in, {status::cancelled, "",
             "'" + in->function->name + "' was cancelled before it started (call " + in->call_id + ")",
             in->function->name, in->call_id, ""});
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
  if (stopping || fn.app->stopped) return;
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
  container_spec spec{c->id, fn.app->executable, fn.app->name, fn.name, address, options.token};
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
  for (auto& [id, app] : apps) {
    for (auto& [name, fn] : app->functions) {
      fail_queue(fn, status::server_shutdown, "the ferry server shut down before '" + fn.name + "' started");
    }
  }
  for (auto& [id, c] : containers) stop_container(*c);
  stop_timer = std::make_unique<asio::steady_timer>(io, options.stop_grace);
  stop_timer->async_wait([this](boost::system::error_code timer_ec) {
    if (timer_ec) return;
    for (auto& [id, c] : containers) c->process->kill();
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
  if (!stopping || !containers.empty() || finishing) return;
  finishing = true;
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
