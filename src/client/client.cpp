#include "client/client.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <climits>
#include <cstdlib>
#include <ferry/errors.hpp>
#include <string_view>

#include "base/check.hpp"
#include "client/terminal.hpp"
#include "wire/connection.hpp"

namespace ferry::client {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

endpoint endpoint::parse(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw ConnectionError("'" + text + "' is not a server address; write host:port, e.g. 127.0.0.1:7700");
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

std::shared_ptr<client> client::connect(const connect_options& options, container_handlers handlers) {
  // The last reference may go on the I/O thread itself (a future's completion holds one), where the
  // destructor could not join that thread: destroy it from a thread of its own then.
  std::shared_ptr<client> c(new client(), [](client* p) {
    if (std::this_thread::get_id() == p->io_thread_.get_id()) {
      std::thread([p] { delete p; }).detach();
    } else {
      delete p;
    }
  });
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
  tcp::socket socket(c->io_);
  boost::system::error_code ec;
  bool timed_out = false;
  try {
    tcp::resolver resolver(c->io_);
    // Through the event loop, which resumes what a signal interrupts (a program's SIGALRM timer, a
    // profiler's SIGPROF), where a blocking connect() fails with EINTR; and bounded, for a host that drops
    // the connection attempt without an answer.
    asio::steady_timer deadline(c->io_, options.timeout);
    deadline.async_wait([&](boost::system::error_code timer_ec) {
      if (timer_ec) return;
      timed_out = true;
      boost::system::error_code ignored;
      socket.close(ignored);
    });
    asio::async_connect(socket, resolver.resolve(options.server.host, std::to_string(options.server.port)),
                        [&](boost::system::error_code connect_ec, const tcp::endpoint&) {
                          ec = connect_ec;
                          deadline.cancel();
                        });
    c->io_.run();
    c->io_.restart();
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
  const std::string token = options.token.empty() && options.read_token ? options.read_token() : options.token;
  c->connection_ = std::make_shared<wire::connection>(std::move(socket), wire::default_max_frame_size);
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
  pending_call& welcome = c->wait(c->handshake_);
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
  io_.stop();
  if (io_thread_.joinable()) io_thread_.join();
}

client::pending_call& client::wait(pending_call& call) {
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
  pending_call& reply = wait(handshake_);
  if (!reply.connection_error.empty()) {
    throw ConnectionError("the ferry server at " + server_.to_string() +
                          " closed the connection while registering app '" + app + "': " + reply.connection_error);
  }
  if (reply.status != wire::status::ok) throw_call_error(reply.status, wire::decode_error(reply.payload.view()));
}

std::uint64_t client::add_pending(pending_call* call) {
  std::lock_guard lock(mu_);
  if (!closed_reason_.empty()) {
    throw ConnectionError("cannot call '" + call->function + "': the connection to the ferry server at " +
                          server_.to_string() + " is closed (" + closed_reason_ + ")");
  }
  const std::uint64_t id = next_call_id_++;
  pending_.emplace(id, call);
  return id;
}

std::uint64_t client::next_id() {
  std::lock_guard lock(mu_);
  return next_call_id_++;
}

void client::send_call(std::uint64_t id, const call_request& request) {
  try {
    connection_->send(wire::message_kind::call,
                      wire::call_header{id, request.function.app, request.function.name, request.flags, request.deps,
                                        request.parent_input},
                      request.encode_args);
  } catch (...) {
    std::lock_guard lock(mu_);
    pending_.erase(id);
    throw;
  }
}

detail::buffer client::call(const call_request& request) {
  pending_call call;
  call.function = request.function.name;
  const std::uint64_t id = add_pending(&call);
  send_call(id, request);
  wait(call);
  if (std::exception_ptr error = error_of(call)) std::rethrow_exception(error);
  return std::move(call.payload);
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
          f.structs};
}

detail::buffer client::request(detail::control_verb verb, const std::string& subject,
                               const std::function<void(detail::buffer&)>& write) {
  pending_call call;
  call.function = std::string(name(verb)) + " " + subject;
  const std::uint64_t id = add_pending(&call);
  send_request(id, verb, subject, write);
  wait(call);
  if (std::exception_ptr error = error_of(call)) std::rethrow_exception(error);
  return std::move(call.payload);
}

std::uint64_t client::request_async(detail::control_verb verb, const std::string& subject,
                                    const std::function<void(detail::buffer&)>& write, call_callback done) {
  auto call = std::make_unique<pending_call>();
  call->function = std::string(name(verb)) + " " + subject;
  call->callback = std::move(done);
  const std::uint64_t id = add_pending(call.get());
  pending_call* raw = call.release();  // owned by pending_ until completed
  try {
    send_request(id, verb, subject, write);
  } catch (...) {
    delete raw;  // send_request took it out of pending_
    throw;
  }
  return id;
}

void client::abandon(std::uint64_t id) {
  std::unique_ptr<pending_call> call;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // answered (or being answered) already
    call.reset(it->second);
    pending_.erase(it);
  }
}

void client::send_request(std::uint64_t id, detail::control_verb verb, const std::string& subject,
                          const std::function<void(detail::buffer&)>& write) {
  // When the connection has closed, on_close fails every pending call, this one included.
  try {
    connection_->send(wire::message_kind::request, wire::request_header{id, std::string(name(verb)), subject},
                      [&](detail::buffer& out) {
                        if (write) write(out);
                      });
  } catch (...) {
    std::lock_guard lock(mu_);
    pending_.erase(id);
    throw;
  }
}

void client::start_call(const call_request& request, call_handler handler) {
  auto call = std::make_unique<pending_call>();
  call->function = request.function.name;
  auto slot = asio::get_associated_cancellation_slot(handler);
  call->handler.emplace(std::move(handler));
  const std::uint64_t id = add_pending(call.get());
  pending_call* raw = call.release();  // owned by pending_ until completed
  if (slot.is_connected()) slot.assign([this, id](asio::cancellation_type) { cancel_call(id); });
  try {
    send_call(id, request);
  } catch (...) {
    if (slot.is_connected()) slot.clear();
    std::unique_ptr<pending_call> owned(raw);
    std::move (*owned->handler)(std::current_exception(), detail::buffer{});
  }
}

std::uint64_t client::submit(const call_request& request, call_callback done) {
  if (!(request.flags & wire::deliver_result)) {
    const std::uint64_t id = next_id();
    send_call(id, request);
    return id;
  }
  auto call = std::make_unique<pending_call>();
  call->function = request.function.name;
  call->callback = std::move(done);
  call->group = request.group;
  const std::uint64_t id = add_pending(call.get());
  call.release();  // owned by pending_ until completed
  send_call(id, request);
  return id;
}

void client::cancel_group(const void* group) {
  std::vector<std::uint64_t> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, call] : pending_) {
      if (call->group == group) ids.push_back(id);
    }
  }
  for (std::uint64_t id : ids) cancel_call(id);
}

void client::await_call(std::uint64_t call_id, const std::string& function, call_callback done) {
  auto call = std::make_unique<pending_call>();
  call->function = function;
  call->callback = std::move(done);
  {
    std::lock_guard lock(mu_);
    if (!closed_reason_.empty()) {
      throw ConnectionError("cannot await '" + function + "': the connection to the ferry server at " +
                            server_.to_string() + " is closed (" + closed_reason_ + ")");
    }
    pending_.emplace(call_id, call.get());
  }
  call.release();
  connection_->send(wire::message_kind::await_call, wire::await_call_header{call_id});
}

void client::release(std::uint64_t call_id) {
  connection_->send(wire::message_kind::release, wire::release_header{call_id});
}

void client::cancel_call(std::uint64_t id) {
  pending_call* call = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // already completing
    call = it->second;
    pending_.erase(it);
  }
  connection_->send(wire::message_kind::cancel, wire::cancel_header{id});
  call->status = wire::status::cancelled;
  call->payload.clear();
  wire::encode_error(call->payload, {wire::status::cancelled, "", "the call of '" + call->function + "' was cancelled",
                                     call->function, "", ""});
  complete(call);
}

std::exception_ptr client::error_of(const pending_call& call) const {
  if (!call.connection_error.empty()) {
    return std::make_exception_ptr(ConnectionError(
        "lost the connection to the ferry server at " + server_.to_string() + " while calling '" + call.function +
        "' (" + call.connection_error +
        "); the call may or may not have run: call it again if that is safe, and use .spawn() for calls that must "
        "survive a server restart"));
  }
  if (call.status != wire::status::ok) {
    try {
      return call_error(call.status, wire::decode_error(call.payload.view()));
    } catch (const DecodeError& e) {
      return std::make_exception_ptr(Error("the error of '" + call.function + "' does not decode: " + e.what()));
    }
  }
  return nullptr;
}

namespace {
std::mutex completion_posts;
}  // namespace

completion_post::completion_post() : lock_(completion_posts) {}

void wait_for_completion_posts() { std::lock_guard lock(completion_posts); }

void client::complete(pending_call* call) {
  if (call->callback) {
    std::unique_ptr<pending_call> owned(call);
    std::exception_ptr error = error_of(*owned);
    owned->callback(error, error ? detail::buffer{} : std::move(owned->payload));
    return;
  }
  if (!call->handler) {
    call->done.store(true, std::memory_order_release);
    call->done.notify_one();
    return;
  }
  // An async caller: complete on its own executor, after detaching its cancellation slot there.
  std::unique_ptr<pending_call> owned(call);
  std::exception_ptr error = error_of(*owned);
  // From the I/O thread (which never runs the caller's executor, so this never resumes the caller inline),
  // a hand-off to another thread's loop: under completion_post. From cancel_call, on the caller's own
  // thread, the handler may run inline, and must not run holding completion_post.
  auto executor = asio::get_associated_executor(*owned->handler, io_.get_executor());
  std::optional<completion_post> posting;
  if (std::this_thread::get_id() == io_thread_.get_id()) posting.emplace();
  executor.execute([owned = std::move(owned), error]() mutable {
    auto slot = asio::get_associated_cancellation_slot(*owned->handler);
    if (slot.is_connected()) slot.clear();
    std::move (*owned->handler)(error, error ? detail::buffer{} : std::move(owned->payload));
  });
}

void client::send_output(std::uint64_t input_id, wire::status status,
                         const std::function<void(detail::buffer&)>& write) {
  connection_->send(wire::message_kind::output, wire::output_header{input_id, static_cast<std::uint8_t>(status)},
                    write);
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
  const int fd = stream == static_cast<std::uint8_t>(wire::log_stream::stderr_stream) ? STDERR_FILENO : STDOUT_FILENO;
  print_lines(fd, out);
}

void client::answer(std::uint64_t id, wire::status status, std::span<const char> payload) {
  pending_call* call = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // a call whose caller gave up; nothing waits for it
    call = it->second;
    pending_.erase(it);
  }
  call->status = status;
  call->payload.append(payload.data(), payload.size());
  complete(call);
}

void client::on_frame(const wire::frame& f) {
  switch (f.kind) {
    case wire::message_kind::result: {
      auto [id, status] = f.decode_header<wire::result_header>();
      return answer(id, static_cast<wire::status>(status), f.payload);
    }
    case wire::message_kind::reply: {
      auto [id, status] = f.decode_header<wire::reply_header>();
      return answer(id, static_cast<wire::status>(status), f.payload);
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
      if (handshake_deadline_) handshake_deadline_->cancel();
      auto [version, max_frame_size] = f.decode_header<wire::welcome_header>();
      connection_->set_peer_max_frame_size(max_frame_size);
      connection_->set_max_frame_size(max_frame_size);
      handshake_.status = wire::status::ok;
      handshake_.done.store(true, std::memory_order_release);
      handshake_.done.notify_one();
      return;
    }
    case wire::message_kind::refused: {
      if (handshake_deadline_) handshake_deadline_->cancel();
      auto [reason] = f.decode_header<wire::refused_header>();
      handshake_.status = wire::status::internal;
      handshake_.payload.clear();
      handshake_.payload.append(reason.data(), reason.size());
      handshake_.done.store(true, std::memory_order_release);
      handshake_.done.notify_one();
      return;
    }
    case wire::message_kind::app_registered: {
      auto [status] = f.decode_header<wire::app_registered_header>();
      handshake_.status = static_cast<wire::status>(status);
      handshake_.payload.clear();
      handshake_.payload.append(f.payload.data(), f.payload.size());
      handshake_.done.store(true, std::memory_order_release);
      handshake_.done.notify_one();
      return;
    }
    default:
      throw DecodeError("a message a client receives", wire::to_string(f.kind));
  }
}

void client::on_close(const std::string& reason) {
  std::unordered_map<std::uint64_t, pending_call*> failed;
  {
    std::lock_guard lock(mu_);
    closed_reason_ = reason.empty() ? "closed" : reason;
    failed.swap(pending_);
  }
  for (auto& [id, call] : failed) {
    call->connection_error = closed_reason_;
    complete(call);
  }
  if (!handshake_.done.load()) {
    handshake_.connection_error = closed_reason_;
    handshake_.done.store(true, std::memory_order_release);
    handshake_.done.notify_one();
  }
  closed_.store(true);
  closed_.notify_all();
}

void client::close() {
  if (connection_) connection_->close("closed by this program");
}

std::string client::wait_closed() {
  closed_.wait(false);
  std::lock_guard lock(mu_);
  return closed_reason_;
}

}  // namespace ferry::client
