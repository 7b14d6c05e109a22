#include "server/http.hpp"

#include <array>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cstring>
#include <sstream>

namespace ferry::server {

namespace asio = boost::asio;

http_connection::http_connection(wire::stream stream, std::uint64_t body_limit, std::chrono::milliseconds idle_timeout,
                                 request_handler handler)
    : stream_(std::move(stream)),
      body_limit_(body_limit),
      idle_timeout_(idle_timeout),
      idle_timer_(stream_.get_executor()),
      write_timer_(stream_.get_executor()),
      handler_(std::move(handler)) {}

void http_connection::start(std::string_view already_received) {
  auto room = buffer_.prepare(already_received.size());
  std::memcpy(room.data(), already_received.data(), already_received.size());
  buffer_.commit(already_received.size());
  read_request();
}

void http_connection::read_request() {
  parser_ = std::make_unique<http::request_parser<http::string_body>>();
  parser_->body_limit(body_limit_);
  parser_->header_limit(64 * 1024);
  idle_timer_.expires_after(idle_timeout_);
  idle_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->close();  // no request header within the idle timeout: a gone or a slow client
  });
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                            self->idle_timer_.cancel();
                            if (ec) return self->read_failed(ec);
                            self->read_body();
                          });
}

void http_connection::read_body() {
  http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
    if (ec) return self->read_failed(ec);
    http_request request = self->parser_->release();
    self->keep_alive_ = request.keep_alive();
    self->handler_(request, self);
  });
}

void http_connection::read_failed(boost::system::error_code ec) {
  if ((ec == http::error::end_of_stream || ec == asio::error::eof) && writing_) {
    // The client has finished sending (a half-close); what is being written to it still goes out.
    close_after_write_ = true;
    return;
  }
  if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted ||
      !stream_.socket().is_open()) {
    return close();
  }
  const bool too_large = ec == http::error::body_limit;
  close_after_write_ = true;
  respond(json_error(too_large ? http::status::payload_too_large : http::status::bad_request,
                     too_large ? "payload_too_large" : "bad_request",
                     too_large ? "the request body is larger than the server accepts (ferry server --max-frame-size)"
                               : "malformed HTTP request: " + ec.message()));
}

void http_connection::respond(http_response response) {
  if (!stream_.socket().is_open()) return;
  response.set(http::field::server, "ferry");
  response.keep_alive(keep_alive_ && !close_after_write_);
  response.prepare_payload();
  std::ostringstream text;
  text << response;
  if (!response.keep_alive()) close_after_write_ = true;
  write(std::move(text).str());
  if (!close_after_write_) read_request();
}

void http_connection::begin_events() {
  streaming_ = true;
  event_stream_ = true;
  close_after_write_ = false;
  write(
      "HTTP/1.1 200 OK\r\nServer: ferry\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
      "Connection: close\r\n\r\n");
  // A client says nothing more on an event stream: a read that ends means it has gone.
  auto sink = std::make_shared<char>();
  stream_.async_read_some(asio::buffer(sink.get(), 1),
                          [self = shared_from_this(), sink](boost::system::error_code, std::size_t) {
                            if (self->streaming_) self->close();
                          });
}

bool http_connection::send_event(std::string_view name, std::string_view data) {
  if (!streaming_ || !stream_.socket().is_open()) return false;
  std::string event;
  event.reserve(name.size() + data.size() + 16);
  event += "event: ";
  event += name;
  event += "\ndata: ";
  event += data;  // JSON: one line
  event += "\n\n";
  write(std::move(event));
  return true;
}

void http_connection::end_events() {
  if (!streaming_) return;
  streaming_ = false;
  close_after_write_ = true;
  if (!writing_) close();
}

void http_connection::write(std::string data) {
  outgoing_.push_back(std::move(data));
  if (!writing_) write_next();
}

void http_connection::write_next() {
  if (outgoing_.empty()) {
    writing_ = false;
    // (An event stream's client sends nothing more, and begin_events' read is still pending: no lingering.)
    if (close_after_write_) event_stream_ ? close() : close_after_last_response();
    return;
  }
  writing_ = true;
  // A client that takes nothing for idle_timeout_ must not hold the connection for ever (one that reads
  // slowly keeps it: the wait starts again with every part written).
  write_timer_.expires_after(idle_timeout_);
  write_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->close();
  });
  const std::string& next = outgoing_.front();
  stream_.async_write_some(asio::buffer(next.data() + written_, next.size() - written_),
                           [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                             self->write_timer_.cancel();
                             if (ec) return self->close();
                             self->written_ += n;
                             if (self->written_ == self->outgoing_.front().size()) {
                               self->outgoing_.pop_front();
                               self->written_ = 0;
                             }
                             self->write_next();
                           });
}

void http_connection::close_after_last_response() {
  // Closing a socket with bytes it has not read resets the connection, and a reset discards what the
  // client has not read yet: the end of the responses. So stop sending (the client reads them, then the
  // end), and read and drop what the client still sends until it closes too, or for idle_timeout_.
  streaming_ = false;
  idle_timer_.expires_after(idle_timeout_);
  idle_timer_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
    if (!wait_ec) self->close();
  });
  if (stream_.is_tls()) {  // TLS ends with its close_notify, each way (a client may take a bare close for a cut)
    stream_.tls().async_shutdown([self = shared_from_this()](boost::system::error_code) { self->close(); });
    return;
  }
  boost::system::error_code ec;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (ec) return close();
  drain(std::make_shared<std::array<char, 4096>>());
}

void http_connection::drain(const std::shared_ptr<std::array<char, 4096>>& sink) {
  stream_.async_read_some(asio::buffer(*sink),
                          [self = shared_from_this(), sink](boost::system::error_code ec, std::size_t) {
                            if (ec) return self->close();  // the client's end (or a failure): done
                            self->drain(sink);
                          });
}

void http_connection::close() {
  streaming_ = false;
  idle_timer_.cancel();
  write_timer_.cancel();
  if (stream_.socket().is_open()) {
    boost::system::error_code ec;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }
  if (auto handler = std::move(on_close_)) {
    on_close_ = nullptr;
    handler();
  }
}

http_response json_error(http::status status, std::string_view code, std::string_view message, std::string_view call_id,
                         std::string_view type) {
  boost::json::object error{{"code", code}, {"message", message}};
  if (!call_id.empty()) error["call_id"] = call_id;
  if (!type.empty()) error["type"] = type;
  http_response response{status, 11};
  response.set(http::field::content_type, "application/json");
  response.body() = boost::json::serialize(boost::json::object{{"error", std::move(error)}}) + "\n";
  return response;
}

}  // namespace ferry::server
