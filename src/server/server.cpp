// The server: connections and the handshake, calls as sessions make, await, release and tail-call them,
// delivering results, and stopping; and the hooks through which the components it wires (call graph,
// scheduler, control service, observation: see server_state.hpp) reach sessions and each other.
#include "server/server.hpp"

#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/read.hpp>
#include <ferry/errors.hpp>
#include <ferry/version.hpp>
#include <filesystem>
#include <random>

#include "base/secrets.hpp"
#include "server/backoff.hpp"
#include "server/quiet_thread.hpp"
#include "server/server_state.hpp"
#include "wire/connection.hpp"

namespace ferry::server {

server::server(server_options options, std::unique_ptr<container_launcher> launcher)
    : state_(std::make_unique<state>()) {
  state_->options = std::move(options);
  if (state_->options.local_agent && !launcher) launcher = make_process_launcher(state_->io.get_executor());
  state_->agents = std::make_unique<agent_pool>(state_->io.get_executor(),
                                                state_->options.local_agent ? std::move(launcher) : nullptr);
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(state_->options.host, ec);
  if (ec) {
    throw Error("'" + state_->options.host + "' is not an IP address to listen on; give one such as 127.0.0.1 " +
                "(this host only) or 0.0.0.0 (every interface)");
  }
  const tcp::endpoint ep(addr, state_->options.port);
  state_->acceptor.open(ep.protocol());
  state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  state_->acceptor.bind(ep, ec);
  if (!ec) state_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    const std::string where = state_->options.host + ":" + std::to_string(state_->options.port);
    throw Error("cannot listen on " + where + ": " + ec.message() +
                (ec == asio::error::address_in_use
                     ? " (another ferry server?); stop it, or choose another --port (0: any free port)"
                     : ""));
  }
  const auto bound = state_->acceptor.local_endpoint();
  // Containers run on this host: when listening on every address, they reach us on loopback.
  const std::string host = addr.is_unspecified() ? (addr.is_v6() ? "::1" : "127.0.0.1") : addr.to_string();
  state_->address =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(bound.port());
  std::random_device rd;
  state_->numbers = call_numbering((std::uint64_t{rd()} << 32) | rd());
  state_->open_local_socket();
  const auto& o = state_->options;
  if (!wire::is_local(addr)) {
    const wire::tls::identity id =
        o.state_dir.empty() ? wire::tls::create_identity() : wire::tls::load_or_create_identity(o.state_dir);
    state_->tls_context = wire::tls::server_context(id);
    state_->tls_fingerprint = id.fingerprint;
  }
  state_->time = make_steady_clock(state_->io.get_executor());
  state_->obs = std::make_unique<observation>(*state_, *state_->time, o.max_log_lines);
  state_->sched =
      std::make_unique<scheduler>(*state_, state_->graph, *state_->time, *state_->agents,
                                  scheduler_options{o.cancel_grace, o.stop_grace, o.container_connect_timeout,
                                                    state_->local_address, state_->tls_fingerprint});
  state_->control = std::make_unique<control_service>(
      *state_, state_->graph, state_->numbers, *state_->sched, *state_->time, state_->obs->metrics(),
      open_sqlite_store(o.state_dir.empty() ? std::filesystem::path(":memory:") : o.state_dir / "ferry.db"),
      control_options{o.state_dir, o.max_queued_inputs, o.retention,
                      [s = state_.get()](std::function<void()> work, std::function<void()> then) {
                        s->off_loop(std::move(work), std::move(then));
                      }});
  if (o.slurm) {
    slurm_options slurm = *o.slurm;
    if (slurm.server_address.empty()) slurm.server_address = o.advertise.empty() ? state_->address : o.advertise;
    slurm.server_cert = state_->tls_fingerprint;
    state_->slurm = std::make_unique<slurm_capacity>(
        state_->io.get_executor(), *state_->agents, std::move(slurm),
        [s = state_.get()](const resources& need, const std::string& why) { s->no_host_will_fit(need, why); });
  }
}

server::~server() = default;

std::string server::address() const { return state_->address; }

std::string server::local_address() const { return state_->local_address; }

std::string server::tls_fingerprint() const { return state_->tls_fingerprint; }

void server::state::off_loop(std::function<void()> work, std::function<void()> then) {
  if (!off_loop_thread) off_loop_thread = make_quiet_thread();
  // (Tracked: the loop's run() waits for `then`, so a stopping server still answers a deploy in progress.)
  auto loop = asio::prefer(io.get_executor(), asio::execution::outstanding_work.tracked);
  asio::post(*off_loop_thread, [work = std::move(work), then = std::move(then), loop = std::move(loop)]() mutable {
    work();
    asio::post(loop, std::move(then));
  });
}

void server::run() {
  if (state_->options.stop_on_signals) {
    state_->stop_signals.emplace(state_->io, SIGINT, SIGTERM)
        .async_wait([s = state_.get()](boost::system::error_code ec, int sig) {
          if (ec) return;
          spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
          s->begin_stop();
        });
  }
  state_->accept(state_->acceptor, state_->accept_retry_timer);
  if (state_->local_acceptor.is_open()) state_->accept(state_->local_acceptor, state_->local_accept_retry_timer);
  asio::post(state_->io, [s = state_.get()] { s->control->recover(); });
  wire::run_batched(state_->io);
}

void server::stop() {
  asio::post(state_->io, [s = state_.get()] { s->begin_stop(); });
}

void server::state::open_local_socket() {
  std::random_device rd;
  const std::string path = fmt::format("@ferry-{}-{:08x}", ::getpid(), rd());
  boost::system::error_code ec;
  local_acceptor.open(asio::local::stream_protocol(), ec);
  if (!ec) local_acceptor.bind(wire::unix_endpoint(path), ec);
  if (!ec) local_acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    spdlog::debug("no Unix socket for containers: cannot listen on {}: {}", path, ec.message());
    boost::system::error_code ignored;
    local_acceptor.close(ignored);
    local_address = address;
    return;
  }
  local_address = "unix:" + path;
}

template <class Acceptor>
void server::state::accept(Acceptor& on, std::unique_ptr<asio::steady_timer>& retry_timer) {
  on.async_accept(
      [this, &on, &retry_timer](boost::system::error_code ec, typename Acceptor::protocol_type::socket socket) {
        if (stopping || !on.is_open()) return;
        const bool out_of_resources = ec == asio::error::no_descriptors || ec.value() == ENFILE ||
                                      ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
        if (out_of_resources) {
          // Accepting again at once would fail again at once: a busy loop. Pause, say so once, and retry.
          if (!retry_timer) {
            spdlog::warn(
                "cannot accept connections: {}; retrying every 100 ms (close connections, or raise the "
                "open-file limit: ulimit -n)",
                ec.message());
          }
          retry_timer = std::make_unique<asio::steady_timer>(io, std::chrono::milliseconds(100));
          retry_timer->async_wait([this, &on, &retry_timer](boost::system::error_code timer_ec) {
            if (!timer_ec) accept(on, retry_timer);
          });
          return;
        }
        if (ec) {
          if (ec != asio::error::operation_aborted) spdlog::warn("accept failed: {}", ec.message());
        } else {
          if (retry_timer) {
            retry_timer.reset();
            spdlog::info("accepting connections again");
          }
          sniff(wire::stream(std::move(socket)));
        }
        accept(on, retry_timer);
      });
}

void server::state::sniff(wire::stream stream) {
  // One port for all: an HTTP request starts with an upper-case method ("GET ", "POST"); a wire frame with
  // its length, little-endian, whose fourth byte is 0 for any frame under 16 MiB (a hello is tiny); TLS
  // with a handshake record: 0x16, then version 3.x (a frame starting so would be a hello of 790 bytes).
  struct first_bytes {
    explicit first_bytes(wire::stream s, asio::io_context& io, std::chrono::milliseconds timeout)
        : stream(std::move(s)), timer(io, timeout) {}
    wire::stream stream;
    std::array<char, 4> bytes{};
    asio::steady_timer timer;
  };
  auto pending = std::make_shared<first_bytes>(std::move(stream), io, options.idle_timeout);
  const wire::peer peer = wire::peer_of(pending->stream.socket());
  const std::string from = peer.description;
  const bool other_host = peer.known && !peer.on_this_host;
  pending->timer.async_wait([pending, from](boost::system::error_code ec) {
    if (ec) return;
    spdlog::warn("closed connection from {}: it sent nothing within the idle timeout", from);
    boost::system::error_code ignored;
    pending->stream.socket().close(ignored);
  });
  asio::async_read(
      pending->stream, asio::buffer(pending->bytes),
      [this, pending, from, other_host](boost::system::error_code ec, std::size_t) {
        if (ec || stopping) {
          pending->timer.cancel();
          return;
        }
        const std::string_view first(pending->bytes.data(), pending->bytes.size());
        const bool tls_hello = first[0] == 0x16 && first[1] == 0x03;
        if (tls_hello && !pending->stream.is_tls()) {
          if (!tls_context) {
            pending->timer.cancel();
            spdlog::warn(
                "closed connection from {}: it began TLS, which this server, listening on loopback only, does "
                "not speak (connections within a host are plain)",
                from);
            return;
          }
          // The handshake, like the first bytes, must come within the idle timeout.
          pending->timer.cancel();
          auto secured = wire::tls::stream_over(std::move(pending->stream.socket()), tls_context);
          auto deadline = std::make_shared<asio::steady_timer>(io, options.idle_timeout);
          deadline->async_wait([secured, from](boost::system::error_code timer_ec) {
            if (timer_ec) return;
            spdlog::warn("closed connection from {}: its TLS handshake did not end within the idle timeout", from);
            boost::system::error_code ignored;
            secured->socket().close(ignored);  // (ends the handshake; nothing once the stream has moved on)
          });
          wire::tls::async_server_handshake(secured, std::string(first),
                                            [this, secured, deadline, from](const std::string& error, bool) {
                                              deadline->cancel();
                                              if (stopping) return;
                                              if (!error.empty()) {
                                                spdlog::warn("closed connection from {}: {}", from, error);
                                                return;
                                              }
                                              sniff(std::move(*secured));
                                            });
          return;
        }
        pending->timer.cancel();
        const bool refuse_plain = other_host && !pending->stream.is_tls();
        const bool http =
            std::all_of(first.begin(), first.end(), [](char c) { return (c >= 'A' && c <= 'Z') || c == ' '; });
        if (http) {
          auto conn = std::make_shared<http_connection>(
              std::move(pending->stream), options.max_frame_size, options.idle_timeout,
              [this, refuse_plain](const http_request& req, const std::shared_ptr<http_connection>& c) {
                if (refuse_plain) {
                  c->respond(json_error(http::status::forbidden, "tls_required",
                                        "this server takes connections from other hosts over TLS only: use https:// "
                                        "(its certificate is the tls-cert.pem in its state directory: curl --cacert "
                                        "tls-cert.pem)"));
                  return;
                }
                try {
                  on_http(req, c);
                } catch (const std::exception& e) {
                  spdlog::error("HTTP {} {}: {}", std::string(req.method_string()), std::string(req.target()),
                                e.what());
                  c->respond(json_error(http::status::internal_server_error, "internal", e.what()));
                }
              });
          conn->start(first);
          return;
        }
        start_session(std::move(pending->stream), first, refuse_plain);
      });
}

void server::state::start_session(wire::stream stream, std::string_view already_received, bool refuse_plain) {
  auto s = std::make_unique<session>();
  s->id = session_id{next_session++};
  s->refuse_plain = refuse_plain;
  s->connection = std::make_shared<wire::connection>(std::move(stream), wire::max_hello_frame_size);
  s->connection->set_peer_max_frame_size(options.max_frame_size + wire::header_allowance);
  s->handshake_timer = std::make_unique<asio::steady_timer>(io, options.idle_timeout);
  s->handshake_timer->async_wait([this, id = s->id](boost::system::error_code timer_ec) {
    if (timer_ec) return;
    auto it = sessions.find(id);
    if (it != sessions.end() && it->second->role == session_role::handshake) {
      it->second->connection->close("no hello within the idle timeout");
    }
  });
  session* raw = s.get();
  sessions.emplace(s->id, std::move(s));
  raw->connection->start([this, raw](const wire::frame& f) { on_frame(*raw, f); },
                         [this, id = raw->id](const std::string& reason) { on_closed(id, reason); }, already_received);
}

void server::state::on_frame(session& s, const wire::frame& f) {
  if (s.role == session_role::handshake && f.kind != message_kind::hello) {
    s.connection->close(std::string("expected hello as the first frame, received ") + wire::to_string(f.kind),
                        /*flush=*/true);
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
    case message_kind::progress:
      if (s.role != session_role::container) break;
      on_progress(s, f);
      return;
    case message_kind::tail_hop:
      if (s.role != session_role::container) break;
      on_tail_hop(s, f);
      return;
    case message_kind::request:  // containers too: a body may spawn, get or look up
      if (!caller) break;
      on_request(s, f);
      return;
    case message_kind::agent_ready:
      if (s.role != session_role::agent) break;
      on_agent_ready(s, f);
      return;
    case message_kind::launched:
    case message_kind::container_output:
    case message_kind::container_exited:
    case message_kind::container_stats:
    case message_kind::output_drained:
    case message_kind::fetch_binary:
      if (s.role != session_role::agent) break;
      agents->on_frame(s.id, f);
      return;
    default:
      break;
  }
  s.connection->close(std::string("unexpected ") + wire::to_string(f.kind) + " message from a " +
                          (s.role == session_role::container ? "container"
                           : s.role == session_role::agent   ? "agent"
                                                             : "client"),
                      /*flush=*/true);
}

void server::state::refuse(session& s, const std::string& reason) {
  spdlog::warn("refused connection from {}: {}", s.connection->remote_address(), reason);
  s.connection->send(message_kind::refused, wire::refused_header{reason});
  s.connection->close("refused: " + reason, /*flush=*/true);
}

void server::state::on_hello(session& s, const wire::frame& f) {
  auto [version, token, role, container, pid] = f.decode_header<wire::hello_header>();
  s.handshake_timer.reset();
  if (s.refuse_plain) {
    refuse(s,
           "this server takes connections from other hosts over TLS only, and this one is plain TCP: connect with a "
           "ferry of this release, which uses TLS to other hosts (with FERRY_SERVER_CERT, or an agent's "
           "--server-cert)");
    return;
  }
  if (version != wire::protocol_version) {
    refuse(s, "protocol version " + std::to_string(version) + " is not supported: this server speaks version " +
                  std::to_string(wire::protocol_version) + "; use a ferry library and server of the same release");
    return;
  }
  // A container presents its own credential, made for its launch (container_spec::credential); programs
  // and the CLI the server's token.
  const bool is_container = role == static_cast<std::uint8_t>(wire::peer_role::container);
  const bool is_agent = role == static_cast<std::uint8_t>(wire::peer_role::agent);
  if (is_agent) {
    if (options.agent_token.empty()) {
      refuse(s, "this server takes no agents (an embedded server runs containers itself; run `ferry server`)");
      return;
    }
    if (!constant_time_equal(token, options.agent_token)) {
      refuse(s,
             "invalid agent credential; give the agent the 'agent-token' file of the server's state directory "
             "(--token-file, or FERRY_AGENT_TOKEN)");
      return;
    }
  } else if (!is_container && !constant_time_equal(token, options.token)) {
    refuse(s, "invalid token; set FERRY_TOKEN to the token in the server's state directory (the 'token' file)");
    return;
  }
  if (stopping) {
    refuse(s, "the server is shutting down");
    return;
  }
  if (is_container) {
    container_record* c = sched->connected(ferry::server::container_id{container}, token);
    if (!c) {
      refuse(s, "no container " + std::to_string(container) +
                    " is expected to connect with this credential (one the server did not start, or started "
                    "before it restarted)");
      return;
    }
    s.role = session_role::container;
    s.container = c;
    s.app = c->function->app;
    c->session = &s;
    spdlog::debug("container {} for {}.{} connected (pid {})", c->id, c->function->app->name, c->function->name, pid);
  } else if (is_agent) {
    s.role = session_role::agent;  // (it joins the pool once it has said what it offers: agent_ready)
    s.connection->keep_alive(wire::heartbeat_interval, wire::heartbeat_timeout);
  } else if (role == static_cast<std::uint8_t>(wire::peer_role::client)) {
    s.role = session_role::client;
  } else {
    refuse(s, "unknown peer role " + std::to_string(role));
    return;
  }
  s.connection->set_max_frame_size(options.max_frame_size);
  s.connection->send(message_kind::welcome, wire::welcome_header{ferry::version(), options.max_frame_size});
  if (s.container) sched->dispatch(*s.container->function);
}

void server::state::on_agent_ready(session& s, const wire::frame& f) {
  if (agents->agents().contains(s.id)) throw wire::protocol_error("a second agent_ready");
  auto host = f.decode_header<wire::agent_ready_header>();
  spdlog::info("agent on {} joined from {}{}: {} CPUs, {} MiB, {} GPUs{}", host.name, s.connection->remote_address(),
               s.connection->is_tls() ? " over TLS" : "", host.cpus, host.memory_mb, host.gpus,
               host.slurm_job_id.empty() ? "" : " (Slurm job " + host.slurm_job_id + ")");
  if (slurm) slurm->joined(host.slurm_job_id, host.server_job);
  agents->joined(s.id, s.connection, std::move(host));
  dispatch_waiting_for_hosts();
}

void server::state::for_each_function(const std::function<void(function_state&)>& visit) {
  for (auto& [owner, app] : apps) {
    for (auto& [name, fn] : app->functions) visit(fn);
  }
  for (auto& [name, app] : control->deployed()) {
    for (auto& [fname, fn] : app->functions) visit(fn);
  }
}

void server::state::unplaced(function_state& fn, std::size_t was) {
  unplaced_containers = unplaced_containers + fn.unplaced_containers - was;
  if (!slurm) return;
  std::map<resources, std::size_t> by_need;
  for_each_function([&by_need](function_state& f) {
    if (f.unplaced_containers > 0) by_need[f.need] += f.unplaced_containers;
  });
  slurm->demand(std::move(by_need));
}

void server::state::no_host_will_fit(const resources& need, const std::string& why) {
  std::vector<function_state*> refused;
  for_each_function([&](function_state& fn) {
    if (fn.need == need && fn.unplaced_containers > 0) refused.push_back(&fn);
  });
  for (function_state* fn : refused) {
    sched->fail_queue(*fn, status::container_start_failed,
                      "'" + fn->name + "' cannot run: Slurm will not give an agent" +
                          (need.any() ? " with " + need.describe() : "") + " (" + why +
                          "); lower the function's cpu, memory_mb, gpus or placement options, or check "
                          "--slurm-partition and --slurm-args");
    sched->scale(*fn);  // (nothing queued: it wants no more containers)
  }
}

void server::state::dispatch_waiting_for_hosts() {
  for_each_function([this](function_state& fn) {
    if (!fn.queue.empty()) sched->dispatch(fn);
  });
}

void server::state::on_register_app(session& s, const wire::frame& f) {
  auto [name, executable, specs, arguments] = f.decode_header<wire::register_app_header>();
  auto reply_error = [&](const std::string& message) {
    s.connection->send(message_kind::app_registered, wire::app_registered_header{status::bad_arguments},
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
  if (!wire::valid_name(name)) return reply_error("'" + name + "' is not a valid app name: use " + wire::name_rule);
  auto app = std::make_unique<app_instance>();
  app->name = name;
  app->declared_name = name;
  app->executable = executable;
  app->arguments = std::move(arguments);
  app->owner_session = s.id;
  if (auto problem = add_functions(*app, specs, obs->metrics()); !problem.empty()) return reply_error(problem);
  s.app = app.get();
  spdlog::debug("app '{}' registered by {} with functions: {}", name, s.connection->remote_address(),
                join_names(app->functions));
  app_instance& registered = *app;
  apps.emplace(s.id, std::move(app));
  s.connection->send(message_kind::app_registered, wire::app_registered_header{status::ok});
  for (auto& [fname, fn] : registered.functions) sched->scale(fn);  // min_containers start now
}

void server::state::on_call(session& s, const wire::frame& f) {
  auto [caller_call_id, app_name, function_name, flags, deps, parent_attempt] = f.decode_header<wire::call_header>();
  if (s.open_calls.contains(caller_call_id)) {
    throw wire::protocol_error("call id " + std::to_string(caller_call_id) + " is already in use");
  }
  if (stopping) {
    return send_error(s.id, caller_call_id,
                      {status::server_shutdown, "", "the ferry server is shutting down; retry against a running server",
                       function_name, "", ""});
  }
  // A container's calls name its app as its binary does, which a deployment may have renamed.
  app_instance* target_app = s.app && (s.app->name == app_name || s.app->declared_name == app_name) ? s.app : nullptr;
  if (!target_app) {
    if (auto it = control->deployed().find(app_name); it != control->deployed().end()) target_app = it->second.get();
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
                       "app '" + app_name + "' has no function '" + function_name +
                           "' (it declares: " + join_names(target_app->functions) +
                           "); declare it with app.function(\"" + function_name + "\", ...) before app.main runs",
                       function_name, "", ""});
  }
  if (fn->second.queue.size() >= options.max_queued_inputs) {
    return send_error(s.id, caller_call_id,
                      {status::resource_exhausted, "",
                       "'" + function_name + "' already has " + std::to_string(fn->second.queue.size()) +
                           " inputs queued, the server's limit (ferry server --max-queued-inputs); retry later",
                       function_name, "", ""});
  }
  auto owned = std::make_unique<call_record>();
  call_record& in = *owned;
  std::tie(in.id, in.call_id) = numbers.next();
  in.caller_session = s.id;
  in.caller_call_id = caller_call_id;
  in.flags = flags;
  in.function = &fn->second;
  in.arguments = wire::payload::keep(f);
  in.created = std::chrono::steady_clock::now();
  in.created_at = unix_now();
  if (parent_attempt != 0 && s.container) {
    auto parent = s.container->in_flight.find(attempt_id{parent_attempt});
    if (parent != s.container->in_flight.end() && parent->second) {
      in.parent_call_id = parent->second->call_id;
      in.parent = parent->second->id;
    }
  }
  graph.add(std::move(owned));
  s.open_calls.emplace(caller_call_id, &in);

  for (const auto& [position, dep_call_id] : deps) {
    call_record* dep = open_call(s, dep_call_id);
    if (!dep) {
      return fail(in, {status::bad_arguments, "",
                       "argument " + std::to_string(position + 1) + " of '" + function_name + "' refers to call " +
                           std::to_string(dep_call_id) + ", which this program has not made or has released",
                       function_name, in.call_id, ""});
    }
    if (!graph.add_argument(in, position, *dep)) return;  // an argument that already failed
  }
  graph.start_when_ready(in);
}

call_record* server::state::open_call(session& s, std::uint64_t call_id) {
  auto it = s.open_calls.find(call_id);
  return it == s.open_calls.end() ? nullptr : it->second;
}

void server::state::ready(call_record& in) { sched->enqueue(in); }

void server::state::ended(call_record& in, call_state was) {
  sched->ended(in, was);
  obs->record_end(in);
  // A spawned call cut short by the server's shutdown stays unfinished in the store: it runs again later.
  if (in.durable && !(stopping && in.outcome == status::server_shutdown)) control->finished(in);
}

void server::state::deliver(call_record& in) {
  auto it = sessions.find(in.caller_session);
  if (it == sessions.end()) return;  // the caller has gone
  try {
    it->second->connection->send(message_kind::result, wire::result_header{in.caller_call_id, in.outcome}, in.result);
  } catch (const PayloadTooLargeError& e) {
    send_error(in.caller_session, in.caller_call_id,
               {status::payload_too_large, "", e.what(), in.function->name, in.call_id, ""});
  }
}

void server::state::forgetting(call_record& in) {
  auto caller = sessions.find(in.caller_session);
  if (caller == sessions.end()) return;
  auto open = caller->second->open_calls.find(in.caller_call_id);
  if (open != caller->second->open_calls.end() && open->second == &in) caller->second->open_calls.erase(open);
}

void server::state::trim_memory_when_idle() {
  if (trim_timer) return;
  trim_timer = std::make_unique<asio::steady_timer>(io, std::chrono::seconds(1));
  trim_timer->async_wait([this](boost::system::error_code ec) {
    trim_timer.reset();
    if (ec || !graph.empty()) return;
    graph.release_memory();
    control->release_memory();
    ::malloc_trim(0);
  });
}

void server::state::on_await(session& s, const wire::frame& f) {
  auto [call_id] = f.decode_header<wire::await_call_header>();
  call_record* in = open_call(s, call_id);
  if (!in) {
    return send_error(s.id, call_id,
                      {status::internal, "", "no open call " + std::to_string(call_id) + " to await", "", "", ""});
  }
  graph.await(*in);
}

void server::state::on_release(session& s, const wire::frame& f) {
  auto [call_id] = f.decode_header<wire::release_header>();
  if (call_record* in = open_call(s, call_id)) graph.release(*in);
}

void server::state::on_cancel(session& s, const wire::frame& f) {
  auto [caller_call_id] = f.decode_header<wire::cancel_header>();
  call_record* in = open_call(s, caller_call_id);
  if (in) cancel_input(*in);
}

void server::state::cancel_input(call_record& in) {
  if (in.state == call_state::done) return;  // answered already
  in.cancelled = true;
  if (in.state == call_state::running) {
    // The container cancels the body; its output (cancelled, or the value if it won the race) ends the call.
    // A body that ignores the cancellation past the grace period has its container replaced.
    sched->cancel_running(in);
    return;
  }
  fail(in,
       {status::cancelled, "", "'" + in.function->name + "' was cancelled before it started (call " + in.call_id + ")",
        in.function->name, in.call_id, ""});
}

void server::state::on_output(session& s, const wire::frame& f) {
  auto [attempt_id, outcome] = f.decode_header<wire::output_header>();
  if (!s.container) return;           // its process has exited; the exit already failed what it was running
  if (outcome > status::tail_call) {  // the statuses after it are the server's own
    s.connection->close(std::string("output with status ") + wire::to_string(outcome) + ", which only the server gives",
                        /*flush=*/true);
    return;
  }
  container_record& c = *s.container;
  if (c.process->output_comes_apart()) {
    // Its lines come over its agent's connection: the output waits until the agent has sent those written
    // before it. (Outputs that arrive while the agent is asked wait for the next round.)
    c.held_outputs.push_back({ferry::server::attempt_id{attempt_id}, outcome, wire::payload::keep(f)});
    if (!c.drain_pending) drain_then_take_outputs(c);
    return;
  }
  // The lines the body wrote before its output come first. Lines written before any frame of one read
  // are in the pipes when that read is handled, so one drain per read covers all of its outputs.
  if (c.drained_at_read != s.connection->reads_completed()) {
    c.process->drain_output();
    c.drained_at_read = s.connection->reads_completed();
  }
  take_output(s, c, ferry::server::attempt_id{attempt_id}, outcome, wire::payload::keep(f));
}

void server::state::drain_then_take_outputs(container_record& c) {
  c.drain_pending = true;
  const std::size_t covered = c.held_outputs.size();
  c.process->drain_output_then([this, id = c.id, covered] { take_held_outputs(id, covered); });
}

void server::state::take_held_outputs(container_id id, std::size_t count) {
  container_record* c = sched->find(id);
  if (c) c->drain_pending = false;
  // (Found again each time: taking an output may end calls, and what hangs on them.)
  for (std::size_t i = 0; i < count && (c = sched->find(id)) && c->session && !c->held_outputs.empty(); ++i) {
    container_record::held_output held = std::move(c->held_outputs.front());
    c->held_outputs.pop_front();
    take_output(*c->session, *c, held.attempt, held.outcome, std::move(held.payload));
  }
  c = sched->find(id);
  if (c && c->session && !c->held_outputs.empty() && !c->drain_pending) drain_then_take_outputs(*c);
}

void server::state::take_output(session& s, container_record& c, attempt_id attempt, status outcome,
                                wire::payload payload) {
  const auto answer = sched->answered(c, attempt, outcome);
  if (!answer.known) {
    s.connection->close("output for input " + std::to_string(number(attempt)) + ", which this container is not running",
                        /*flush=*/true);
    return;
  }
  function_state& fn = *c.function;
  if (!answer.call) return sched->dispatch(fn);  // a late answer: its slot is free again
  call_record& in = *answer.call;
  if (in.cancelled && outcome == status::ok) {
    // The body returned after it was cancelled (as a blocking body that polls ferry::cancelled() does): the
    // call was cancelled all the same.
    fail(in, {status::cancelled, "", "'" + fn.name + "' was cancelled while it ran (call " + in.call_id + ")", fn.name,
              in.call_id, ""});
    return sched->dispatch(fn);
  }
  if (retryable(outcome) && fn.retries.max_retries > 0) {  // (without retries the error goes on as it came)
    sched->retry_or_fail(in, wire::decode_error(payload.view()));
  } else if (outcome == status::tail_call) {
    detail::reader r{payload.view()};
    const auto target_id = ferry::decode<std::uint64_t>(r);
    call_record* target = open_call(s, target_id);
    if (!target) {
      s.connection->close("tail call to call " + std::to_string(target_id) + ", which this container has not made",
                          /*flush=*/true);
      return;
    }
    tail_call(in, *target);
  } else {
    complete(in, outcome, std::move(payload));
  }
  sched->dispatch(fn);
}

bool server::state::send_input(container_record& c, attempt_id attempt, const call_record& call) {
  if (!c.session) return false;
  return c.session->connection->send(message_kind::input, wire::input_header{number(attempt), call.call_id},
                                     call.arguments);
}

void server::state::send_cancel(container_record& c, attempt_id attempt) {
  if (c.session) c.session->connection->send(message_kind::cancel_input, wire::cancel_input_header{number(attempt)});
}

void server::state::disconnect(container_record& c, const std::string& why) {
  if (!c.session) return;
  session& s = *c.session;
  s.container = nullptr;
  c.session = nullptr;
  s.connection->close(why);
}

void server::state::tail_call(call_record& original, call_record& target) {
  // The target's maker (the container) no longer holds it; the original's caller holds the target instead.
  auto container_session = sessions.find(target.caller_session);
  if (container_session != sessions.end()) container_session->second->open_calls.erase(target.caller_call_id);
  auto caller = sessions.find(original.caller_session);
  if (caller != sessions.end()) caller->second->open_calls[original.caller_call_id] = &target;
  control->handed_over(original, target);
  if (!original.durable) obs->record_end(original, target.call_id);
  graph.hand_over(original, target);
}

void server::state::show(const call_record* call, const app_instance& app, const log_entry& line) {
  session* recipient = nullptr;
  if (call) {
    recipient = log_recipient(*call);
  } else if (auto owner = sessions.find(app.owner_session); owner != sessions.end()) {
    recipient = owner->second.get();  // a line of no call: the program whose app it is sees it
  }
  if (recipient) recipient->connection->send(message_kind::log, line.row());
}

session* server::state::log_recipient(const call_record& in) {
  // Up the calls' parents to the one a program made; the app's own program when its container made it.
  const call_record* root = &in;
  for (int depth = 0; root->parent != graph_id{} && depth < 64; ++depth) {
    const call_record* parent = graph.find(root->parent);
    if (!parent) break;
    root = parent;
  }
  auto it = sessions.find(root->caller_session);
  if (it == sessions.end() || it->second->role != session_role::client) {
    it = sessions.find(in.function->app->owner_session);
  }
  return it == sessions.end() || it->second->role != session_role::client ? nullptr : it->second.get();
}

void server::state::on_progress(session& s, const wire::frame& f) {
  auto [attempt, done, total, message] = f.decode_header<wire::progress_header>();
  if (!s.container) return;
  auto it = s.container->in_flight.find(attempt_id{attempt});
  if (it == s.container->in_flight.end() || !it->second) return;  // ended meanwhile
  call_record& in = *it->second;
  obs->progress(in, done, total, std::move(message));
}

void server::state::on_tail_hop(session& s, const wire::frame& f) {
  const auto [attempt] = f.decode_header<wire::tail_hop_header>();
  if (!s.container) return;
  auto it = s.container->in_flight.find(attempt_id{attempt});
  if (it == s.container->in_flight.end()) {
    s.connection->close("tail_hop for input " + std::to_string(attempt) + ", which this container is not running",
                        /*flush=*/true);
    return;
  }
  if (!it->second) return;  // given up on (timed out, cancelled): its answer no longer counts
  sched->tail_hopped(*it->second, f.payload);
}

void server::state::send_error(session_id id, std::uint64_t call_id, const wire::error_record& error) {
  auto it = sessions.find(id);
  if (it == sessions.end()) return;
  it->second->connection->send(message_kind::result, wire::result_header{call_id, error.code},
                               [&](detail::buffer& out) { wire::encode_error(out, error); });
}

void server::state::on_closed(session_id id, const std::string& reason) {
  auto it = sessions.find(id);
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
    // Outputs that came before the close are answers: taken now, whatever their agent has sent.
    if (!s.container->held_outputs.empty()) take_held_outputs(s.container->id, s.container->held_outputs.size());
    sched->disconnected(*s.container);
  }
  if (s.role == session_role::agent) {
    if (auto it = agents->agents().find(id); it != agents->agents().end() && !stopping) {
      const std::size_t running = it->second.containers.size();
      if (running > 0) {
        spdlog::warn("agent on {} left with {}: {}", it->second.host.name,
                     plural(static_cast<std::int64_t>(running), "container"), reason);
      } else {
        spdlog::info("agent on {} left: {}", it->second.host.name, reason);
      }
    }
    agents->left(id, reason);
  }
  obs->unsubscribe_session(id);
  // Nobody will await or pass this session's calls any more: they are forgotten once they end.
  const session_role role = s.role;
  auto open_calls = std::move(s.open_calls);
  sessions.erase(it);
  // (By id: letting go of one call may cancel and forget another among them.)
  std::vector<graph_id> let_go_of;
  for (auto& [caller_call_id, in] : open_calls) let_go_of.push_back(in->id);
  for (graph_id call : let_go_of) {
    if (call_record* in = graph.find(call)) graph.caller_gone(*in);
  }
  if (role == session_role::client) remove_app(id);
  finish_stop_if_done();
}

void server::state::remove_app(session_id owner) {
  auto it = apps.find(owner);
  if (it == apps.end()) return;
  app_instance& app = *it->second;
  app.stopped = true;
  bool containers_left = false;
  for (auto& [name, fn] : app.functions) {
    control->fail_backlog(fn, "app '" + app.name + "' stopped before '" + fn.name + "' started");
    sched->fail_queue(fn, status::cancelled, "app '" + app.name + "' stopped before '" + fn.name + "' started");
    containers_left |= !fn.containers.empty();
    sched->stop_containers(fn, /*idle_only=*/false);
  }
  // Calls still waiting for arguments will not be needed either.
  std::vector<graph_id> waiting;
  for (const auto& [id, in] : graph.calls()) {
    if (in->function->app == &app && (in->state == call_state::waiting || in->state == call_state::backoff)) {
      waiting.push_back(id);
    }
  }
  for (graph_id id : waiting) {
    call_record* in = graph.find(id);  // failing one may have failed (and forgotten) another
    if (in && (in->state == call_state::waiting || in->state == call_state::backoff)) {
      fail(*in, {status::cancelled, "", "app '" + app.name + "' stopped", in->function->name, in->call_id, ""});
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
  local_acceptor.close(ec);
  // Queued inputs will not start; spawned ones stay unfinished in the store and run after a restart.
  auto fail_all = [this](app_instance& app) {
    for (auto& [name, fn] : app.functions) {
      sched->fail_queue(fn, status::server_shutdown, "the ferry server shut down before '" + fn.name + "' started");
    }
  };
  for (auto& [id, app] : apps) fail_all(*app);
  for (auto& [name, app] : control->deployed()) fail_all(*app);
  // Running calls may finish within the drain period; idle containers stop now, busy ones once idle.
  sched->drain(options.drain_timeout);
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
  control->collect_retired();
  if (!stopping || !sched->containers().empty() || finishing) return;
  finishing = true;
  if (slurm) slurm->cancel_all();  // (its agents' containers have all exited)
  obs->flush_repeating_warnings();
  try {
    control->flush();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
  for (auto& [id, s] : sessions) s->connection->close("server stopped", /*flush=*/true);
  if (stop_timer) stop_timer->cancel();
  // Let the closing connections flush (bounded), then leave run().
  stop_timer = std::make_unique<asio::steady_timer>(io, std::chrono::milliseconds(200));
  stop_timer->async_wait([this](boost::system::error_code) { io.stop(); });
  if (stop_signals) stop_signals->cancel();
  asio::post(io, [this] {
    if (sessions.empty()) io.stop();
  });
}

}  // namespace ferry::server
