// HTTP on the server's port (Boost.Beast): the JSON API, server-sent event streams, /metrics and the
// dashboard. The server tells HTTP from its wire protocol by a connection's first bytes (a request line
// starts with an upper-case method; a wire frame with a small little-endian length). Routes and their
// handlers are http_api.cpp's; docs/http-api.md is the reference.
//
// Concurrency: confined to the server's thread, like the rest of its state.
#pragma once

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "wire/stream.hpp"

namespace ferry::server {

namespace http = boost::beast::http;
using http_request = http::request<http::string_body>;
using http_response = http::response<http::string_body>;

/// One HTTP connection: requests are read one at a time; each is answered with respond(), or turned into an
/// event stream with begin_events() and send_event() until end_events() or the client goes away.
class http_connection : public std::enable_shared_from_this<http_connection> {
 public:
  using request_handler = std::function<void(const http_request&, const std::shared_ptr<http_connection>&)>;

  /// A request's header must arrive within `idle_timeout` of the connection opening or of the previous
  /// request (keep-alive), and a client must take some of what is written to it within `idle_timeout`;
  /// otherwise the connection is closed. (Bodies, up to `body_limit` bytes, are not timed: a large upload
  /// on a slow link is legitimate.)
  http_connection(wire::stream stream, std::uint64_t body_limit, std::chrono::milliseconds idle_timeout,
                  request_handler handler);

  /// Starts reading requests, after `already_received` (the bytes the server sniffed).
  void start(std::string_view already_received);

  /// Answers the request being handled (keeping the connection open when the client asked for it).
  void respond(http_response response);

  /// Answers with an event stream (text/event-stream) that stays open.
  void begin_events();
  /// Sends one event; false once the stream has ended or the client has gone.
  bool send_event(std::string_view name, std::string_view data);
  /// Ends the stream and the connection.
  void end_events();

  /// Runs once when the connection closes (an event stream's subscription ends with it).
  void on_close(std::function<void()> handler) { on_close_ = std::move(handler); }
  bool open() const { return stream_.socket().is_open(); }

 private:
  void read_request();
  void read_body();
  void read_failed(boost::system::error_code ec);
  void write(std::string data);
  void write_next();
  /// Ends the connection once everything is written, without resetting it.
  void close_after_last_response();
  /// Reads what the client sends into `sink`, dropping it, until the client closes too.
  void drain(const std::shared_ptr<std::array<char, 4096>>& sink);
  void close();

  wire::stream stream_;  // plain, or TLS from another host
  std::uint64_t body_limit_;
  std::chrono::milliseconds idle_timeout_;
  boost::asio::steady_timer idle_timer_;
  boost::asio::steady_timer write_timer_;  // a write the client does not take within idle_timeout_
  request_handler handler_;
  boost::beast::flat_buffer buffer_;  // read but not yet parsed
  std::unique_ptr<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = false;
  bool streaming_ = false;
  bool event_stream_ = false;  // begin_events() was called (streaming_ ends with the stream)
  bool close_after_write_ = false;
  std::deque<std::string> outgoing_;
  std::size_t written_ = 0;  // of outgoing_.front()
  bool writing_ = false;
  std::function<void()> on_close_;
};

/// A JSON error reply: {"error": {"code", "message"[, "call_id"][, "type"]}}.
http_response json_error(http::status status, std::string_view code, std::string_view message,
                         std::string_view call_id = {}, std::string_view type = {});

}  // namespace ferry::server
