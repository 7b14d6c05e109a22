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

/// One call of a function, from the moment the server accepts it until its result is sent.
struct container_record;

struct input_record {
  std::uint64_t id = 0;
  std::string call_id;
  std::uint64_t caller_session = 0;
  std::uint64_t caller_call_id = 0;
  detail::buffer arguments;
  function_state* function = nullptr;
  container_record* container = nullptr;  // set while a container runs it
};

enum class container_state { starting, ready, stopping };

struct container_record {
  std::uint64_t id = 0;
  function_state* function = nullptr;
  std::unique_ptr<container_process> process;
  struct session* session = nullptr;
  container_state state = container_state::starting;
  std::unordered_map<std::uint64_t, std::unique_ptr<input_record>> in_flight;
  std::unique_ptr<asio::steady_timer> connect_timer;
};

struct app_instance;

struct function_state {
  app_instance* app = nullptr;
  std::string name;
  std::string signature;
  int max_inputs = 1;
  int max_containers = 1;
  std::deque<std::unique_ptr<input_record>> queue;
  std::vector<container_record*> containers;
};

/// An app as a running program registered it; it lives as long as that program's connection.
struct app_instance {
  std::string name;
  std::string executable;
  std::uint64_t owner_session = 0;
  std::map<std::string, function_state> functions;
};

enum class session_role { handshake, client, container };

struct session {
  std::uint64_t id = 0;
  std::shared_ptr<wire::connection> connection;
  session_role role = session_role::handshake;
  app_instance* app = nullptr;            // the app whose functions this session's calls reach
  container_record* container = nullptr;  // for containers
  std::unique_ptr<asio::steady_timer> handshake_timer;
  /// The calls this session made that have not been answered, by the session's call id.
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
  bool stopping = false;
  std::unique_ptr<asio::steady_timer> stop_timer;

  void accept();
  void on_frame(session& s, const wire::frame& f);
  void on_closed(std::uint64_t session_id, const std::string& reason);
  void on_hello(session& s, const wire::frame& f);
  void on_register_app(session& s, const wire::frame& f);
  void on_call(session& s, const wire::frame& f);
  void on_output(session& s, const wire::frame& f);
  void on_cancel(session& s, const wire::frame& f);
  void refuse(session& s, const std::string& reason);

  void dispatch(function_state& fn);
  void launch_container(function_state& fn);
  void on_container_exit(std::uint64_t container_id, const std::string& how);
  void stop_container(container_record& c);
  void remove_app(std::uint64_t owner_session);

  void send_error(std::uint64_t session_id, std::uint64_t call_id, const wire::error_record& error);
  void send_result(std::uint64_t session_id, std::uint64_t call_id, status st, std::span<const char> payload);
  void fail_input(const input_record& in, const wire::error_record& error) {
    send_error(in.caller_session, in.caller_call_id, error);
  }
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
      on_call(s, f);
      return;
    case message_kind::output:
      if (s.role != session_role::container) break;
      on_output(s, f);
      return;
    case message_kind::cancel:
      on_cancel(s, f);
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
  for (auto& [fname, signature, max_inputs, max_containers] : specs) {
    if (max_inputs < 1 || max_containers < 1) {
      return reply_error("function '" + fname + "': max_inputs and max_containers must be at least 1");
    }
    if (app->functions.contains(fname)) return reply_error("function '" + fname + "' is declared twice");
    function_state& fn = app->functions[fname];
    fn.app = app.get();
    fn.name = fname;
    fn.signature = signature;
    fn.max_inputs = max_inputs;
    fn.max_containers = max_containers;
  }
  s.app = app.get();
  spdlog::debug("app '{}' registered by {} with functions: {}", name, s.connection->remote_address(),
                join_names(app->functions));
  apps.emplace(s.id, std::move(app));
  s.connection->send(message_kind::app_registered, wire::app_registered_header{static_cast<std::uint8_t>(status::ok)});
}

void server::state::on_call(session& s, const wire::frame& f) {
  auto [caller_call_id, app_name, function_name] = f.decode_header<wire::call_header>();
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
  auto it = s.app->functions.find(function_name);
  if (it == s.app->functions.end()) {
    return send_error(s.id, caller_call_id,
                      {status::unknown_function, "",
                       "app '" + app_name + "' has no function '" + function_name +
                           "' (it declares: " + join_names(s.app->functions) + "); declare it with app.function(\"" +
                           function_name + "\", ...) before app.main runs",
                       function_name, "", ""});
  }
  auto in = std::make_unique<input_record>();
  in->call_id = new_call_id();
  in->id = next_input_id++;
  in->caller_session = s.id;
  in->caller_call_id = caller_call_id;
  in->arguments.append(f.payload.data(), f.payload.size());
  in->function = &it->second;
  s.open_calls[caller_call_id] = in.get();
  it->second.queue.push_back(std::move(in));
  dispatch(it->second);
}

void server::state::on_output(session& s, const wire::frame& f) {
  auto [input_id, st] = f.decode_header<wire::output_header>();
  if (!s.container) return;  // its process has exited; the exit already failed what it was running
  if (st > wire::last_status) {
    s.connection->close("output with unknown status " + std::to_string(st));
    return;
  }
  container_record& c = *s.container;
  auto it = c.in_flight.find(input_id);
  if (it == c.in_flight.end()) {
    s.connection->close("output for input " + std::to_string(input_id) + ", which this container is not running");
    return;
  }
  std::unique_ptr<input_record> in = std::move(it->second);
  c.in_flight.erase(it);
  send_result(in->caller_session, in->caller_call_id, static_cast<status>(st), f.payload);
  dispatch(*c.function);
}

void server::state::on_cancel(session& s, const wire::frame& f) {
  auto [caller_call_id] = f.decode_header<wire::cancel_header>();
  auto it = s.open_calls.find(caller_call_id);
  if (it == s.open_calls.end()) return;  // answered already
  input_record& in = *it->second;
  if (in.container) {
    // The container cancels the body; its output (cancelled, or the value if it won the race) ends the call.
    if (in.container->session) {
      in.container->session->connection->send(message_kind::cancel_input, wire::cancel_input_header{in.id});
    }
    return;
  }
  function_state& fn = *in.function;
  auto queued = std::find_if(fn.queue.begin(), fn.queue.end(), [&](const auto& q) { return q.get() == &in; });
  if (queued == fn.queue.end()) return;
  std::unique_ptr<input_record> owned = std::move(*queued);
  fn.queue.erase(queued);
  fail_input(*owned,
             {status::cancelled, "", "'" + fn.name + "' was cancelled before it started (call " + owned->call_id + ")",
              fn.name, owned->call_id, ""});
}

void server::state::send_result(std::uint64_t session_id, std::uint64_t call_id, status st,
                                std::span<const char> payload) {
  auto it = sessions.find(session_id);
  if (it == sessions.end()) return;  // the caller has gone
  it->second->open_calls.erase(call_id);
  try {
    it->second->connection->send(message_kind::result, wire::result_header{call_id, static_cast<std::uint8_t>(st)},
                                 [&](detail::buffer& out) { out.append(payload.data(), payload.size()); });
  } catch (const PayloadTooLargeError& e) {
    send_error(session_id, call_id, {status::payload_too_large, "", e.what(), "", "", ""});
  }
}

void server::state::send_error(std::uint64_t session_id, std::uint64_t call_id, const wire::error_record& error) {
  auto it = sessions.find(session_id);
  if (it == sessions.end()) return;
  it->second->open_calls.erase(call_id);
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
    std::unique_ptr<input_record> in = std::move(fn.queue.front());
    fn.queue.pop_front();
    bool sent = false;
    try {
      sent = target->session->connection->send(
          message_kind::input, wire::input_header{in->id, in->call_id},
          [&](detail::buffer& out) { out.append(in->arguments.data(), in->arguments.size()); });
    } catch (const PayloadTooLargeError& e) {
      fail_input(*in, {status::payload_too_large, "", e.what(), fn.name, in->call_id, ""});
      continue;
    }
    if (!sent) {  // the container's connection just closed; its exit will be handled shortly
      fn.queue.push_front(std::move(in));
      target->state = container_state::stopping;
      continue;
    }
    in->arguments = detail::buffer{};  // the container has them now; a crash fails the call, it is not resent
    in->container = target;
    target->in_flight.emplace(in->id, std::move(in));
  }
  // Start containers for what is still queued beyond the capacity of those already starting.
  std::size_t starting = 0;
  for (container_record* c : fn.containers) starting += c->state == container_state::starting;
  const std::size_t per_container = static_cast<std::size_t>(fn.max_inputs);
  const std::size_t capacity_coming = starting * per_container;
  if (fn.queue.size() > capacity_coming) {
    const std::size_t wanted = (fn.queue.size() - capacity_coming + per_container - 1) / per_container;
    const std::size_t room = static_cast<std::size_t>(fn.max_containers) -
                             std::min(fn.containers.size(), static_cast<std::size_t>(fn.max_containers));
    for (std::size_t i = 0; i < std::min(wanted, room) && !fn.queue.empty(); ++i) launch_container(fn);
  }
}

void server::state::launch_container(function_state& fn) {
  auto c = std::make_unique<container_record>();
  c->id = next_container_id++;
  c->function = &fn;
  container_spec spec{c->id, fn.app->executable, fn.app->name, fn.name, address, options.token};
  try {
    c->process = launcher->launch(spec, [this, id = c->id](std::string how) { on_container_exit(id, how); });
  } catch (const std::exception& e) {
    spdlog::error("cannot start a container for {}.{}: {}", fn.app->name, fn.name, e.what());
    if (fn.containers.empty()) {
      const std::string message = "could not start a container for '" + fn.name + "': " + e.what();
      for (auto& in : fn.queue)
        fail_input(*in, {status::container_start_failed, "", message, fn.name, in->call_id, ""});
      fn.queue.clear();
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

  if (c->state == container_state::starting) {
    spdlog::warn("container {} for {}.{} {} before it connected", c->id, fn.app->name, fn.name, how);
    // With no other container on the way, nothing would ever run what is queued: fail it now.
    if (fn.containers.empty()) {
      const std::string message = "could not start a container for '" + fn.name + "': the container process " + how +
                                  " before it connected to the server" + tail_note(tail);
      for (auto& in : fn.queue)
        fail_input(*in, {status::container_start_failed, "", message, fn.name, in->call_id, ""});
      fn.queue.clear();
    }
  } else {
    if (c->state != container_state::stopping || !c->in_flight.empty()) {
      spdlog::log(c->in_flight.empty() ? spdlog::level::debug : spdlog::level::warn, "container {} for {}.{} {}{}",
                  c->id, fn.app->name, fn.name, how,
                  c->in_flight.empty() ? "" : " with " + std::to_string(c->in_flight.size()) + " input(s) in flight");
    }
    for (auto& [id, in] : c->in_flight) {
      if (stopping) {
        fail_input(*in, {status::server_shutdown, "", "the ferry server shut down before '" + fn.name + "' finished",
                         fn.name, in->call_id, ""});
      } else {
        fail_input(*in, {status::container_crashed, "",
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
  if (s.role == session_role::client) remove_app(s.id);
  sessions.erase(it);
  finish_stop_if_done();
}

void server::state::remove_app(std::uint64_t owner_session) {
  auto it = apps.find(owner_session);
  if (it == apps.end()) return;
  app_instance& app = *it->second;
  bool containers_left = false;
  for (auto& [name, fn] : app.functions) {
    // Nobody waits for these any more (the app's own program and containers are going).
    for (auto& in : fn.queue) {
      auto caller = sessions.find(in->caller_session);
      if (caller != sessions.end()) caller->second->open_calls.erase(in->caller_call_id);
    }
    fn.queue.clear();
    for (container_record* c : fn.containers) {
      stop_container(*c);
      containers_left = true;
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
      for (auto& in : fn.queue) {
        fail_input(*in, {status::server_shutdown, "", "the ferry server shut down before '" + fn.name + "' started",
                         fn.name, in->call_id, ""});
      }
      fn.queue.clear();
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
  // Apps whose containers have all exited can go.
  std::erase_if(apps, [this](const auto& entry) {
    if (sessions.contains(entry.first)) return false;
    for (const auto& [name, fn] : entry.second->functions) {
      if (!fn.containers.empty()) return false;
    }
    return true;
  });
  if (!stopping || !containers.empty()) return;
  for (auto& [id, s] : sessions) s->connection->close("server stopped", /*flush=*/true);
  if (stop_timer) stop_timer->cancel();
  // Let the closing connections flush, then leave run().
  asio::post(io, [this] {
    if (sessions.empty()) {
      io.stop();
    } else {
      stop_timer = std::make_unique<asio::steady_timer>(io, std::chrono::milliseconds(200));
      stop_timer->async_wait([this](boost::system::error_code) { io.stop(); });
    }
  });
}

}  // namespace ferry::server
