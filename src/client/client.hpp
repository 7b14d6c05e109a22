// The process's one connection to the server, shared by every call the process makes and, in a container,
// by the inputs it serves. Calls are multiplexed by id.
//
// Concurrency: thread-safe. The connection and its handlers run on the client's own I/O thread. The calls
// waited on are in one pending_calls table (sharded; see pending_calls.hpp), each with one call_completion,
// run by whichever thread ends the call, never under a lock: blocking callers wait on their own slot, async
// callers' completions are handed to their own executors, callbacks run on the I/O thread.
//
// Lifetime: shared. Whoever drops the last reference closes the connection (failing the calls still waiting
// with ConnectionError) and joins the I/O thread; when that is the I/O thread itself (a completion held the
// last reference), see orphans in client.cpp.
#pragma once

#include <atomic>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <ferry/detail/buffer.hpp>
#include <ferry/detail/control_verb.hpp>
#include <ferry/detail/function_entry.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "client/pending_calls.hpp"
#include "wire/connection.hpp"
#include "wire/protocol.hpp"

namespace ferry::client {

/// Where a server is: host and port (TCP), or the path of a Unix socket on this host.
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string path;  // set: a Unix socket's path, or @NAME in the abstract namespace (host and port unused)
  /// Parses "host:port", "unix:PATH" (an absolute path) or "unix:@NAME"; throws ConnectionError naming the
  /// bad value.
  static endpoint parse(const std::string& text);
  std::string to_string() const { return path.empty() ? host + ":" + std::to_string(port) : "unix:" + path; }
};

struct connect_options {
  endpoint server;
  /// The server's token; when empty, read_token gives it once the connection is made (so that a server that
  /// cannot be reached is reported before a token file that cannot be read).
  std::string token;
  std::function<std::string()> read_token;
  wire::peer_role role = wire::peer_role::client;
  std::uint64_t container_id = 0;
  /// The fingerprint of the server's TLS certificate ("sha256:…", wire::tls::parse_pin), which a server on
  /// another host must present (connections to it are TLS); unused for one on this host. FERRY_SERVER_CERT.
  std::string server_cert;
  /// How long connecting and the handshake may take together: a port that accepts and stays silent (or
  /// answers in another protocol) is not a ferry server. FERRY_CONNECT_TIMEOUT (seconds) overrides it.
  std::chrono::milliseconds timeout = default_connect_timeout();

  /// 10 s, or FERRY_CONNECT_TIMEOUT.
  static std::chrono::milliseconds default_connect_timeout();
};

/// An input the server hands a container.
struct input {
  std::uint64_t id;
  std::string call_id;
  detail::buffer arguments;
};

/// What a container does with the inputs and cancellations the server sends it. Called on the I/O thread.
struct container_handlers {
  std::function<void(input)> on_input;
  std::function<void(std::uint64_t input_id)> on_cancel;
};

/// What a program does with the lines the server streams to it (`log` messages). Called on the I/O thread.
using log_handler = std::function<void(const wire::log_row&)>;

/// Completes an async call: the error (nullptr on success) and the encoded result.
using call_handler = boost::asio::any_completion_handler<void(std::exception_ptr, detail::buffer)>;

/// Completes a call on the client's I/O thread: the error (nullptr on success) and the encoded result.
using call_callback = std::function<void(std::exception_ptr, detail::buffer)>;

/// A call as the client sends it.
struct call_request {
  const detail::function_entry& function;
  const std::function<void(detail::buffer&)>& encode_args;  // nil placeholders where `deps` go
  std::vector<wire::dependency> deps = {};
  std::uint8_t flags = wire::deliver_result;
  std::uint64_t parent_input = 0;  // in a container: the input whose body makes the call (its input id)
  const void* group = nullptr;     // calls made together (a map's), which cancel_group cancels at once
};

/// How a function is registered with the server: name, signature and options.
wire::function_spec spec_of(const detail::function_entry& function);

class client {
 public:
  /// Connects and completes the handshake; throws ConnectionError when the server cannot be reached or
  /// refuses. A container passes its handlers; a program passes none.
  static std::shared_ptr<client> connect(const connect_options& options, container_handlers handlers = {});
  ~client();

  /// Registers this program's app and its functions; blocks until the server confirms. Its containers run
  /// `executable` with `arguments`.
  void register_app(const std::string& app, const std::string& executable,
                    const std::vector<std::shared_ptr<const detail::function_entry>>& functions,
                    const std::vector<std::string>& arguments);

  /// Makes a call and blocks for its encoded result; throws the error the call ended with.
  detail::buffer call(const call_request& request);

  /// Starts a call whose completion `handler` receives on its associated executor (ConnectionError when the
  /// connection has closed). The handler's cancellation slot, when connected, cancels the call: the server is
  /// told to cancel the input and the handler completes at once with CancelledError. Until the handler has
  /// been handed to its executor, that executor counts it as outstanding work, so that its event loop does not
  /// end (and go) while the I/O thread still hands it the completion.
  void start_call(const call_request& request, call_handler handler);

  /// Submits a call and returns its id. With wire::deliver_result in the flags, `done` runs on the I/O
  /// thread when it ends; otherwise the server keeps the result for await_call (wire::keep_result) or for
  /// the calls that take it as an argument.
  std::uint64_t submit(const call_request& request, call_callback done = {});

  /// Sends a control request (see wire::request_header) and blocks for the encoded answer; throws the
  /// error the server answers with. `write` appends the request's payload (nothing when empty).
  detail::buffer request(detail::control_verb verb, const std::string& subject,
                         const std::function<void(detail::buffer&)>& write = {});
  /// The same, completing `done` on the I/O thread. Returns the request's id (for abandon).
  std::uint64_t request_async(detail::control_verb verb, const std::string& subject,
                              const std::function<void(detail::buffer&)>& write, call_callback done);

  /// Stops waiting for request `id`: its answer, if one comes, is dropped, and its `done` never runs (unless it
  /// is running already: the answer came first), and is destroyed on this thread.
  void abandon(std::uint64_t id);

  /// Cancels call `call_id` (one this program submitted with deliver_result, or awaits): the server is told
  /// to cancel it, and whoever waits for it gets CancelledError at once. Nothing happens when it has ended.
  void cancel(std::uint64_t call_id) { cancel_call(call_id); }
  /// Cancels every call submitted with `group` (call_request::group) that has not ended.
  void cancel_group(const void* group);

  /// Asks for the result of a call submitted without deliver_result; `done` runs on the I/O thread.
  void await_call(std::uint64_t call_id, const std::string& function, call_callback done);

  /// Tells the server this program will not await or pass the call any more.
  void release(std::uint64_t call_id);

  /// Sends a container's output for an input. `write` appends the payload (the result, or an error record).
  void send_output(std::uint64_t input_id, wire::status status, const std::function<void(detail::buffer&)>& write);

  /// Tells the server that input `input_id` goes on in this container with a tail call of its own function,
  /// whose encoded arguments are `arguments` (a container's input runner).
  void send_tail_hop(std::uint64_t input_id, const detail::buffer& arguments);

  /// Sends how far input `input_id` has got (a container's ferry::progress).
  void send_progress(std::uint64_t input_id, double done, double total, const std::string& message);

  /// Replaces what is done with streamed log lines (by default: print_log_line).
  void set_log_handler(log_handler handler);

  /// The I/O thread's executor: for timers whose handlers, like call callbacks, run on the I/O thread.
  boost::asio::any_io_executor executor() { return io_.get_executor(); }

  /// Closes the connection and fails the calls still waiting with ConnectionError. Idempotent.
  void close();

  /// Blocks until the connection has closed (containers wait on this), and returns why.
  std::string wait_closed();

  /// Whether the connection has closed (the server went away, or close()).
  bool closed() const { return closed_.load(); }

  /// Where this client is connected: host:port.
  std::string server_address() const { return server_.to_string(); }

 private:
  /// A blocked caller's slot, which its call's completion fills.
  struct blocking_wait {
    std::atomic<bool> done{false};
    std::exception_ptr error;
    detail::buffer result;
  };
  /// The handshake's (and register_app's) answer, which is not a call.
  struct handshake_wait {
    std::atomic<bool> done{false};
    wire::status status = wire::status::ok;
    detail::buffer payload;
    std::string connection_error;  // set when the connection closed first
  };

  client();
  std::uint64_t next_id() { return next_call_id_.fetch_add(1, std::memory_order_relaxed); }
  /// Adds `call` under `id`; once the connection has closed, throws ConnectionError saying that it cannot
  /// `verb` (e.g. "call") its function, and leaves `call` as it was.
  void add_pending(std::uint64_t id, pending_call& call, std::string_view verb);
  /// Waits on the calling thread (never the I/O thread) until `call` is done, after sending what it batched.
  template <class Wait>
  Wait& wait(Wait& call);
  /// A blocking call or request: adds it under a new id, sends it with `send(id)`, and waits for its result.
  template <class Send>
  detail::buffer call_and_wait(std::string function, const Send& send);
  void send_call(std::uint64_t id, const call_request& request);
  void send_request(std::uint64_t id, detail::control_verb verb, const std::string& subject,
                    const std::function<void(detail::buffer&)>& write);
  /// Runs `call`'s completion with what it ended with: an error (`status`, its error record in `payload`, or the
  /// connection's end) or the encoded result.
  void finish(pending_call call, wire::status status, detail::buffer payload, const std::string& connection_error);
  void cancel_call(std::uint64_t id);
  std::exception_ptr error_of(const std::string& function, wire::status status, const detail::buffer& payload,
                              const std::string& connection_error) const;
  void on_frame(const wire::frame& f);
  /// Completes pending call (or request) `id` with what the server answered.
  void answer(std::uint64_t id, wire::status status, std::span<const char> payload);
  void end_handshake(wire::status status, std::span<const char> payload);
  void on_close(const std::string& reason);
  /// The shared_ptr's deleter: the destructor, or when on the I/O thread, see orphans in client.cpp.
  static void drop_last_reference(client* c);

  boost::asio::io_context io_;
  std::shared_ptr<wire::connection> connection_;
  std::thread io_thread_;
  container_handlers handlers_;
  log_handler on_log_;  // I/O thread only, once connected
  endpoint server_;

  std::atomic<std::uint64_t> next_call_id_{1};
  pending_calls pending_;
  handshake_wait handshake_;                                     // the welcome or app_registered being awaited
  std::optional<boost::asio::steady_timer> handshake_deadline_;  // I/O thread only
  bool orphaned_ = false;  // I/O thread only: the last reference went there; stop once closed
  std::atomic<bool> closed_{false};
};

/// Prints a streamed line on this program's terminal, tagged with its function and call: stdout lines to
/// stdout, stderr lines to stderr, each with one write.
void print_log_line(const wire::log_row& line);

/// The exception the public API throws for a failed call's status and error record.
std::exception_ptr call_error(wire::status status, const wire::error_record& error);
[[noreturn]] void throw_call_error(wire::status status, const wire::error_record& error);

}  // namespace ferry::client
