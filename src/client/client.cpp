#include "client/client.hpp"

#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <climits>
#include <cstdlib>
#include <ferry/errors.hpp>
#include <iterator>
#include <mutex>
#include <string_view>
#include <vector>

#include "base/check.hpp"
#include "client/terminal.hpp"
#include "wire/connection.hpp"
#include "wire/tls.hpp"

namespace ferry::client {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

endpoint endpoint::parse(const std::string& text) {
  if (text.starts_with("unix:")) {
    endpoint e;
    e.path = text.substr(5);
    if (e.path.size() < 2 || (e.path.front() != '/' && e.path.front() != '@')) {
      throw ConnectionError("'" + text +
                            "' is not a Unix socket address; write unix: and an absolute path, or unix:@NAME for a "
                            "name in the abstract namespace (what `ferry server` prints)");
    }
    if (e.path.size() >= sizeof(sockaddr_un::sun_path)) {
      throw ConnectionError("'" + text + "': a Unix socket's path may have at most " +
                            std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " characters");
    }
    return e;
  }
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw ConnectionError("'" + text +
                          "' is not a server address; write host:port, e.g. 127.0.0.1:7700, or unix:PATH for a Unix "
                          "socket");
  }
  endpoint e;
  e.host = text.substr(0, colon);
  if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);
  try {
    std::size_t used = 0;
    const int port = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || port <= 0 || port > 65535) throw std::out_of_range("port");
    e.port = static_cast<std::uint16_t>(port);
  } catch (const std::exception&) {
    throw ConnectionError("'" + text + "' has no valid port; write host:port with a port from 1 to 65535");
  }
  return e;
}

std::chrono::milliseconds connect_options::default_connect_timeout() {
  static const std::chrono::milliseconds timeout = [] {
    const char* text = std::getenv("FERRY_CONNECT_TIMEOUT");
    if (text && *text) {
      char* end = nullptr;
      const double seconds = std::strtod(text, &end);
      if (end && *end == '\0' && seconds > 0 && seconds < 1e6) {
        return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
      }
    }
    return std::chrono::milliseconds(10'000);
  }();
  return timeout;
}

client::client() = default;

namespace {

/// Clients whose last reference went on their own I/O thread (a future's completion can hold it): that thread
/// can neither join itself nor destroy the io_context it runs. It closes the connection, stops once the close
/// has failed what was still pending, and leaves the client here, to be destroyed (its thread joined) on a
/// thread that can: by the next connect(), or at exit. Touched only then, never per call.
class orphanage {
 public:
  /// Keeps `c`. Returns false when the process is exiting and the orphans have been destroyed already: then
  /// nothing will destroy `c`, which stays here (reachable) and whose thread its caller detaches.
  bool adopt(client* c, std::thread::id io_thread) {
    std::lock_guard lock(mu_);
    orphans_.push_back({io_thread, std::unique_ptr<client>(c)});
    return !exited_;
  }
  /// Destroys the clients adopted so far, on the calling thread (but one whose I/O thread this is).
  void destroy_orphans() {
    std::vector<orphan> destroyed;
    {
      std::lock_guard lock(mu_);
      const auto mine = std::partition(orphans_.begin(), orphans_.end(),
                                       [](const orphan& o) { return o.io_thread == std::this_thread::get_id(); });
      std::move(mine, orphans_.end(), std::back_inserter(destroyed));
      orphans_.erase(mine, orphans_.end());
    }
  }
  /// At exit: destroys the orphans, and marks that later ones will not be.
  void destroy_at_exit() {
    destroy_orphans();
    std::lock_guard lock(mu_);
    exited_ = true;
  }

 private:
  struct orphan {
    std::thread::id io_thread;
    std::unique_ptr<client> owned;
  };
  std::mutex mu_;
  std::vector<orphan> orphans_;  // guarded by mu_
  bool exited_ = false;          // guarded by mu_
};

/// Never destroyed, so that a client orphaned while the process exits still finds it; the clients in it are
/// destroyed at exit by `at_exit` below (connect() makes both exist before the first client).
orphanage& orphans() {
  static orphanage& o = *new orphanage;
  return o;
}

struct destroy_orphans_at_exit {
  ~destroy_orphans_at_exit() { orphans().destroy_at_exit(); }
};

}  // namespace

void client::drop_last_reference(client* c) {
  if (std::this_thread::get_id() != c->io_thread_.get_id()) {
    delete c;
    return;
  }
  // A client orphaned while the process exits, after the orphans were destroyed, is not joined by anyone:
  // its thread is detached (it ends with the process; a thread neither joined nor detached is a leak).
  if (!orphans().adopt(c, c->io_thread_.get_id())) c->io_thread_.detach();
  c->orphaned_ = true;
  c->close();
  if (c->closed_.load()) c->io_.stop();  // otherwise on_close stops it, once it has failed what is pending
}

std::shared_ptr<client> client::connect(const connect_options& options, container_handlers handlers) {
  static destroy_orphans_at_exit at_exit;
  orphans().destroy_orphans();
  std::shared_ptr<client> c(new client(), drop_last_reference);
  c->handlers_ = std::move(handlers);
  c->server_ = options.server;
  // Containers' lines for this program's calls go to its terminal, unless FERRY_STREAM_LOGS=0.
  const char* stream_logs = std::getenv("FERRY_STREAM_LOGS");
  if (!(stream_logs && std::string_view(stream_logs) == "0")) c->on_log_ = print_log_line;

  const std::string where = options.server.to_string();
  const auto seconds = [&] {
    return std::to_string(options.timeout.count() / 1000) +
           (options.timeout.count() % 1000 ? "." + std::to_string(options.timeout.count() % 1000 / 100) : "") + " s";
  };
  wire::socket_type socket(c->io_);
  boost::system::error_code ec;
  bool timed_out = false;
  // Runs the loop until what `start` starts calls the `done` it is given, or for the timeout; then closes
  // `closing`, which ends what is in progress with an error.
  const auto run_with_deadline = [&](wire::socket_type& closing,
                                     const std::function<void(std::function<void()>)>& start) {
    asio::steady_timer deadline(c->io_, options.timeout);
    deadline.async_wait([&](boost::system::error_code timer_ec) {
      if (timer_ec) return;
      timed_out = true;
      boost::system::error_code ignored;
      closing.close(ignored);
    });
    start([&] { deadline.cancel(); });
    c->io_.run();
    c->io_.restart();
  };
  try {
    // Through the event loop, which resumes what a signal interrupts (a program's SIGALRM timer, a
    // profiler's SIGPROF), where a blocking connect() fails with EINTR; and bounded, for a host that drops
    // the connection attempt without an answer.
    std::vector<wire::socket_type::endpoint_type> endpoints;
    if (!options.server.path.empty()) {
      endpoints.emplace_back(wire::unix_endpoint(options.server.path));
    } else {
      tcp::resolver resolver(c->io_);
      for (const auto& entry : resolver.resolve(options.server.host, std::to_string(options.server.port))) {
        endpoints.emplace_back(entry.endpoint());
      }
    }
    run_with_deadline(socket, [&](const std::function<void()>& done) {
      asio::async_connect(socket, endpoints,
                          [&, done](boost::system::error_code connect_ec, const wire::socket_type::endpoint_type&) {
                            ec = connect_ec;
                            done();
                          });
    });
  } catch (const boost::system::system_error& e) {
    ec = e.code();
  }
  if (timed_out) {
    throw ConnectionError("cannot connect to the ferry server at " + where + ": no answer within " + seconds() +
                          "; check the address (FERRY_SERVER or --server) and that the host is reachable");
  }
  if (ec) {
    throw ConnectionError("cannot connect to the ferry server at " + where + ": " + ec.message() +
                          "; start one with `ferry server`, or set FERRY_SERVER to a running one's address (a "
                          "program's app.main uses an embedded server when FERRY_SERVER is unset)");
  }
  auto stream = wire::tls::client_stream(std::move(socket));
  if (stream->is_tls()) {
    if (options.server_cert.empty()) {
      throw ConnectionError("the ferry server at " + where +
                            " is on another host, and ferry talks to other hosts over TLS, accepting only the "
                            "server's own certificate: set FERRY_SERVER_CERT to its fingerprint (sha256:..., "
                            "which `ferry server` prints at start) or to a copy of its tls-cert.pem (in its "
                            "state directory)");
    }
    std::string error;
    run_with_deadline(stream->socket(), [&](const std::function<void()>& done) {
      wire::tls::async_client_handshake(stream, options.server_cert, [&, done](const std::string& e, bool) {
        error = e;
        done();
      });
    });
    if (timed_out) {
      throw ConnectionError("the server at " + where + " did not finish a TLS handshake within " + seconds() + ": is " +
                            where + " a ferry server? Check FERRY_SERVER or --server");
    }
    if (!error.empty()) throw ConnectionError("cannot connect to the ferry server at " + where + ": " + error);
  }
  const std::string token = options.token.empty() && options.read_token ? options.read_token() : options.token;
  c->connection_ = std::make_shared<wire::connection>(std::move(*stream), wire::default_max_frame_size);
  c->connection_->start([raw = c.get()](const wire::frame& f) { raw->on_frame(f); },
                        [raw = c.get()](const std::string& reason) { raw->on_close(reason); });
  c->io_thread_ = std::thread([raw = c.get()] {
    auto guard = asio::make_work_guard(raw->io_);
    wire::run_batched(raw->io_);
  });

  // A peer that accepts and then says nothing (or waits for an HTTP request that never comes) is not a ferry
  // server: past the deadline the connection closes, failing the handshake.
  static const std::string no_welcome = "no welcome";
  asio::post(c->io_, [raw = c.get(), timeout = options.timeout] {
    raw->handshake_deadline_.emplace(raw->io_, timeout);
    raw->handshake_deadline_->async_wait([raw](boost::system::error_code ec) {
      if (!ec && !raw->handshake_.done.load()) raw->connection_->close(no_welcome);
    });
  });
  c->connection_->send(wire::message_kind::hello,
                       wire::hello_header{wire::protocol_version, token, static_cast<std::uint8_t>(options.role),
                                          options.container_id, static_cast<std::int64_t>(::getpid())});
  handshake_wait& welcome = c->wait(c->handshake_);
  if (welcome.connection_error == no_welcome) {
    throw ConnectionError("the server at " + where +
                          " accepted the connection but did not answer ferry's handshake "
                          "within " +
                          seconds() + ": is " + where +
                          " a ferry server (and not another service, or an HTTP proxy)? Check FERRY_SERVER or "
                          "--server; FERRY_CONNECT_TIMEOUT sets the wait in seconds");
  }
  if (!welcome.connection_error.empty()) {
    throw ConnectionError("the server at " + where + " closed the connection during ferry's handshake (" +
                          welcome.connection_error + "): is " + where +
                          " a ferry server of this version? Check FERRY_SERVER or --server");
  }
  if (welcome.status != wire::status::ok) {
    throw ConnectionError("the ferry server at " + options.server.to_string() +
                          " refused the connection: " + std::string(welcome.payload.data(), welcome.payload.size()));
  }
  return c;
}

client::~client() {
  close();
  if (io_thread_.joinable()) {
    // on_close first: it fails what is still pending, so that no completion is destroyed unrun. The I/O
    // thread is running (an orphan's stops only after on_close), so it comes.
    closed_.wait(false);
    io_.stop();
    io_thread_.join();
  }
}

template <class Wait>
Wait& client::wait(Wait& call) {
  FERRY_CHECK(std::this_thread::get_id() != io_thread_.get_id(), "a blocking ferry call on the client's I/O thread");
  wire::send_batch::flush_this_thread();
  call.done.wait(false, std::memory_order_acquire);
  return call;
}

void client::register_app(const std::string& app, const std::string& executable,
                          const std::vector<std::shared_ptr<const detail::function_entry>>& functions,
                          const std::vector<std::string>& arguments) {
  std::vector<wire::function_spec> specs;
  specs.reserve(functions.size());
  for (const auto& f : functions) specs.push_back(spec_of(*f));
  handshake_.done.store(false);
  if (!connection_->send(wire::message_kind::register_app,
                         wire::register_app_header{app, executable, specs, arguments})) {
    throw ConnectionError("lost the connection to the ferry server at " + server_.to_string());
  }
  handshake_wait& reply = wait(handshake_);
  if (!reply.connection_error.empty()) {
    throw ConnectionError("the ferry server at " + server_.to_string() +
                          " closed the connection while registering app '" + app + "': " + reply.connection_error);
  }
  if (reply.status != wire::status::ok) throw_call_error(reply.status, wire::decode_error(reply.payload.view()));
}

void client::add_pending(std::uint64_t id, pending_call& call, std::string_view verb) {
  if (pending_.add(id, call)) return;
  throw ConnectionError("cannot " + std::string(verb) + " '" + call.function +
                        "': the connection to the ferry server at " + server_.to_string() + " is closed (" +
                        pending_.closed_reason() + ")");
}

void client::send_call(std::uint64_t id, const call_request& request) {
  connection_->send(wire::message_kind::call,
                    wire::call_header{id, request.function.app, request.function.name, request.flags, request.deps,
                                      request.parent_input},
                    request.encode_args);
}

void client::send_request(std::uint64_t id, detail::control_verb verb, const std::string& subject,
                          const std::function<void(detail::buffer&)>& write) {
  connection_->send(wire::message_kind::request, wire::request_header{id, std::string(name(verb)), subject},
                    [&](detail::buffer& out) {
                      if (write) write(out);
                    });
}

template <class Send>
detail::buffer client::call_and_wait(std::string function, const Send& send) {
  blocking_wait slot;
  pending_call call{[&slot](std::exception_ptr error, detail::buffer result) {
                      slot.error = std::move(error);
                      slot.result = std::move(result);
                      slot.done.store(true, std::memory_order_release);
                      slot.done.notify_one();
                    },
                    std::move(function)};
  const std::uint64_t id = next_id();
  add_pending(id, call, "call");
  try {
    // When the connection has closed meanwhile (send returns false), on_close fails the call.
    send(id);
  } catch (...) {
    if (pending_.take(id)) throw;  // not sent: nothing will answer it
    // Taken already: the connection closed, and the completion has filled the slot (or is filling it).
  }
  wait(slot);
  if (slot.error) std::rethrow_exception(slot.error);
  return std::move(slot.result);
}

detail::buffer client::call(const call_request& request) {
  return call_and_wait(request.function.name, [&](std::uint64_t id) { send_call(id, request); });
}

wire::function_spec spec_of(const detail::function_entry& f) {
  const FunctionOptions& o = f.options;
  const auto ms = [](std::chrono::milliseconds d) {
    return static_cast<std::uint32_t>(std::clamp<std::int64_t>(d.count(), 0, UINT32_MAX));
  };
  return {f.name,
          f.signature,
          o.max_inputs,
          o.max_containers,
          ms(o.timeout),
          wire::retry_spec{o.retries.max_retries, ms(o.retries.initial_delay), o.retries.backoff_coefficient,
                           ms(o.retries.max_delay)},
          o.min_containers,
          o.buffer_containers,
          ms(o.scaledown_window),
          f.structs,
          o.cpu,
          static_cast<std::uint64_t>(o.memory_mb),
          static_cast<std::uint32_t>(o.gpus),
          o.placement};
}

detail::buffer client::request(detail::control_verb verb, const std::string& subject,
                               const std::function<void(detail::buffer&)>& write) {
  return call_and_wait(std::string(name(verb)) + " " + subject,
                       [&](std::uint64_t id) { send_request(id, verb, subject, write); });
}

std::uint64_t client::request_async(detail::control_verb verb, const std::string& subject,
                                    const std::function<void(detail::buffer&)>& write, call_callback done) {
  pending_call call{std::move(done), std::string(name(verb)) + " " + subject};
  const std::uint64_t id = next_id();
  add_pending(id, call, "call");
  try {
    send_request(id, verb, subject, write);
  } catch (...) {
    if (pending_.take(id)) throw;
  }
  return id;
}

void client::abandon(std::uint64_t id) { pending_.take(id); }

void client::start_call(const call_request& request, call_handler handler) {
  // The handler's executor counts this call as work until the completion has been handed to it: its loop
  // cannot run out of work, end and be destroyed while the I/O thread is still waking it.
  auto work = asio::prefer(asio::get_associated_executor(handler, io_.get_executor()),
                           asio::execution::outstanding_work.tracked);
  auto slot = asio::get_associated_cancellation_slot(handler);
  struct hand_to_executor {
    call_handler handler;
    decltype(work) executor;
    void operator()(std::exception_ptr error, detail::buffer result) {
      // Off the I/O thread (a cancel on the caller's own thread), the handler may run inline.
      const auto held = std::move(executor);
      held.execute([handler = std::move(handler), error, result = std::move(result)]() mutable {
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (slot.is_connected()) slot.clear();
        std::move(handler)(error, std::move(result));
      });
    }  // (the work ends here, after execute has returned)
  };
  pending_call call{hand_to_executor{std::move(handler), std::move(work)}, request.function.name};
  const std::uint64_t id = next_id();
  if (!pending_.add(id, call)) {
    std::move(call.complete)(std::make_exception_ptr(ConnectionError(
                                 "cannot call '" + call.function + "': the connection to the ferry server at " +
                                 server_.to_string() + " is closed (" + pending_.closed_reason() + ")")),
                             {});
    return;
  }
  if (slot.is_connected()) slot.assign([this, id](asio::cancellation_type) { cancel_call(id); });
  try {
    send_call(id, request);
  } catch (...) {
    if (auto taken = pending_.take(id)) {
      if (slot.is_connected()) slot.clear();
      std::move(taken->complete)(std::current_exception(), {});
    }
  }
}

std::uint64_t client::submit(const call_request& request, call_callback done) {
  const std::uint64_t id = next_id();
  if (!(request.flags & wire::deliver_result)) {
    send_call(id, request);
    return id;
  }
  if (!done)
    done = [](std::exception_ptr, const detail::buffer&) {};  // nobody reads the result, but the call is cancellable
  pending_call call{std::move(done), request.function.name, request.group};
  add_pending(id, call, "call");
  try {
    send_call(id, request);
  } catch (...) {
    if (pending_.take(id)) throw;
  }
  return id;
}

void client::cancel_group(const void* group) {
  for (std::uint64_t id : pending_.ids_in_group(group)) cancel_call(id);
}

void client::await_call(std::uint64_t call_id, const std::string& function, call_callback done) {
  pending_call call{std::move(done), function};
  add_pending(call_id, call, "await");
  connection_->send(wire::message_kind::await_call, wire::await_call_header{call_id});
}

void client::release(std::uint64_t call_id) {
  connection_->send(wire::message_kind::release, wire::release_header{call_id});
}

void client::cancel_call(std::uint64_t id) {
  std::optional<pending_call> call = pending_.take(id);
  if (!call) return;  // ended already, or ending
  connection_->send(wire::message_kind::cancel, wire::cancel_header{id});
  detail::buffer record;
  wire::encode_error(record, {wire::status::cancelled, "", "the call of '" + call->function + "' was cancelled",
                              call->function, "", ""});
  finish(std::move(*call), wire::status::cancelled, std::move(record), {});
}

std::exception_ptr client::error_of(const std::string& function, wire::status status, const detail::buffer& payload,
                                    const std::string& connection_error) const {
  if (!connection_error.empty()) {
    return std::make_exception_ptr(ConnectionError(
        "lost the connection to the ferry server at " + server_.to_string() + " while calling '" + function + "' (" +
        connection_error +
        "); the call may or may not have run: call it again if that is safe, and use .spawn() for calls that must "
        "survive a server restart"));
  }
  if (status != wire::status::ok) {
    try {
      return call_error(status, wire::decode_error(payload.view()));
    } catch (const DecodeError& e) {
      return std::make_exception_ptr(Error("the error of '" + function + "' does not decode: " + e.what()));
    }
  }
  return nullptr;
}

void client::finish(pending_call call, wire::status status, detail::buffer payload,
                    const std::string& connection_error) {
  std::exception_ptr error = error_of(call.function, status, payload, connection_error);
  if (error) payload.clear();
  std::move(call.complete)(std::move(error), std::move(payload));
}

void client::send_output(std::uint64_t input_id, wire::status status,
                         const std::function<void(detail::buffer&)>& write) {
  connection_->send(wire::message_kind::output, wire::output_header{input_id, status}, write);
}

void client::send_tail_hop(std::uint64_t input_id, const detail::buffer& arguments) {
  connection_->send(wire::message_kind::tail_hop, wire::tail_hop_header{input_id},
                    [&](detail::buffer& out) { out.append(arguments.data(), arguments.size()); });
}

void client::send_progress(std::uint64_t input_id, double done, double total, const std::string& message) {
  connection_->send(wire::message_kind::progress, wire::progress_header{input_id, done, total, message});
}

void client::set_log_handler(log_handler handler) {
  asio::post(io_, [this, handler = std::move(handler)]() mutable { on_log_ = std::move(handler); });
}

void print_log_line(const wire::log_row& line) {
  const auto& [seq, time, app, function, call_id, stream, text] = line;
  std::string out;
  out.reserve(function.size() + call_id.size() + text.size() + 5);
  out += '[';
  out += function;
  if (!call_id.empty()) out += ' ' + call_id;
  out += "] ";
  out += text;
  out += '\n';
  const int fd = stream == wire::log_stream::stderr_stream ? STDERR_FILENO : STDOUT_FILENO;
  print_lines(fd, out);
}

void client::answer(std::uint64_t id, wire::status status, std::span<const char> payload) {
  std::optional<pending_call> call = pending_.take(id);
  if (!call) return;  // a call whose caller gave up; nothing waits for it
  detail::buffer result;
  result.append(payload.data(), payload.size());
  finish(std::move(*call), status, std::move(result), {});
}

void client::end_handshake(wire::status status, std::span<const char> payload) {
  if (handshake_deadline_) handshake_deadline_->cancel();
  handshake_.status = status;
  handshake_.payload.clear();
  handshake_.payload.append(payload.data(), payload.size());
  handshake_.done.store(true, std::memory_order_release);
  handshake_.done.notify_one();
}

void client::on_frame(const wire::frame& f) {
  switch (f.kind) {
    case wire::message_kind::result: {
      auto [id, status] = f.decode_header<wire::result_header>();
      return answer(id, status, f.payload);
    }
    case wire::message_kind::reply: {
      auto [id, status] = f.decode_header<wire::reply_header>();
      return answer(id, status, f.payload);
    }
    case wire::message_kind::input: {
      auto [id, call_id] = f.decode_header<wire::input_header>();
      if (!handlers_.on_input)
        throw wire::protocol_error("the server sent an input to a program that is not a container");
      input in{id, std::move(call_id), {}};
      in.arguments.append(f.payload.data(), f.payload.size());
      handlers_.on_input(std::move(in));
      return;
    }
    case wire::message_kind::cancel_input: {
      auto [id] = f.decode_header<wire::cancel_input_header>();
      if (!handlers_.on_cancel)
        throw wire::protocol_error("the server sent a cancellation to a program that is not a container");
      handlers_.on_cancel(id);
      return;
    }
    case wire::message_kind::log: {
      if (on_log_) on_log_(f.decode_header<wire::log_row>());
      return;
    }
    case wire::message_kind::welcome: {
      auto [version, max_frame_size] = f.decode_header<wire::welcome_header>();
      connection_->set_peer_max_frame_size(max_frame_size);
      connection_->set_max_frame_size(max_frame_size);
      return end_handshake(wire::status::ok, {});
    }
    case wire::message_kind::refused: {
      auto [reason] = f.decode_header<wire::refused_header>();
      return end_handshake(wire::status::internal, reason);
    }
    case wire::message_kind::app_registered: {
      auto [status] = f.decode_header<wire::app_registered_header>();
      return end_handshake(status, f.payload);
    }
    default:
      throw DecodeError("a message a client receives", wire::to_string(f.kind));
  }
}

void client::on_close(const std::string& reason) {
  const std::string why = reason.empty() ? "closed" : reason;
  for (pending_call& call : pending_.close(why)) finish(std::move(call), wire::status::ok, {}, why);
  if (!handshake_.done.load()) {
    handshake_.connection_error = why;
    handshake_.done.store(true, std::memory_order_release);
    handshake_.done.notify_one();
  }
  closed_.store(true);
  closed_.notify_all();
  if (orphaned_) io_.stop();  // see drop_last_reference
}

void client::close() {
  if (connection_) connection_->close("closed by this program");
}

std::string client::wait_closed() {
  closed_.wait(false);
  return pending_.closed_reason();
}

}  // namespace ferry::client
