// A byte stream between two processes: a Unix socket (both on one host), a TCP socket, or TLS over TCP.
// Connections to another host are TLS (tls.hpp); those on one host stay plain (a Unix socket where the
// server offers one, else loopback TCP), which costs less and is as private. The socket is Asio's generic
// stream socket, so one type carries all three. It is an Asio AsyncStream, so wire::connection and the
// server's HTTP read and write it alike.
//
// TLS sits behind tls_layer, which wire/tls.cpp implements with Asio's OpenSSL stream: OpenSSL's and Asio's
// SSL headers stay in that one file instead of every file that reads or writes a stream.
//
// Concurrency: like the socket under it, confined to its executor; only socket() may be used elsewhere,
// and only while the stream is plain (TLS keeps state of its own around each read and write).
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

namespace ferry::wire {

/// Any stream socket: TCP or Unix.
using socket_type = boost::asio::generic::stream_protocol::socket;

/// TLS over a TCP socket, as a stream needs it. Reads and writes take one buffer: a partial read or write
/// is what their `_some` contract allows, and the composed operations above ask again for the rest.
class tls_layer {
 public:
  using io_handler = boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;
  using shutdown_handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

  virtual ~tls_layer() = default;
  virtual socket_type& socket() noexcept = 0;
  virtual void async_read_some(boost::asio::mutable_buffer buffer, io_handler handler) = 0;
  virtual void async_write_some(boost::asio::const_buffer buffer, io_handler handler) = 0;
  /// Sends TLS's close_notify and waits for the peer's.
  virtual void async_shutdown(shutdown_handler handler) = 0;
};

/// Whether a read's error means the peer finished sending: a TCP end of stream, or a TLS peer that closed
/// without its close_notify.
bool is_end_of_stream(const boost::system::error_code& ec);

/// Whether an IP address is this host's loopback (IPv4, IPv6, or IPv4 mapped into IPv6).
bool is_local(const boost::asio::ip::address& address);

/// The Unix socket at `path`: a file's path, or "@NAME" for NAME in Linux's abstract namespace (no file;
/// reachable from this network namespace, as loopback TCP is).
boost::asio::local::stream_protocol::endpoint unix_endpoint(const std::string& path);

/// A connected socket's peer, for choosing TLS and for messages.
struct peer {
  bool known = false;         // false: the socket is not connected (closed, or the peer left)
  bool on_this_host = false;  // a Unix socket's peer, or one at a loopback address
  std::string description;    // "10.0.0.2:43122", "a Unix socket", or "an unknown peer"
};
peer peer_of(const socket_type& socket);

class stream {
 public:
  using executor_type = socket_type::executor_type;

  /// Plain: a Unix or TCP socket (any Asio stream socket converts to socket_type).
  explicit stream(socket_type socket) : plain_(std::move(socket)) {}
  /// TLS (tls.hpp makes it), handshaken before any use; `executor` is its socket's.
  stream(const executor_type& executor, std::unique_ptr<tls_layer> tls) : plain_(executor), tls_(std::move(tls)) {}

  bool is_tls() const noexcept { return tls_ != nullptr; }
  /// The socket under it (for its peer, options and shutdown).
  socket_type& socket() noexcept { return tls_ ? tls_->socket() : plain_; }
  const socket_type& socket() const noexcept { return tls_ ? tls_->socket() : plain_; }
  /// The TLS layer; only when is_tls().
  tls_layer& tls() noexcept { return *tls_; }
  executor_type get_executor() noexcept { return plain_.get_executor(); }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(first_of<boost::asio::mutable_buffer>(buffers),
                            tls_layer::io_handler(std::forward<Handler>(handler)));
    } else {
      plain_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(first_of<boost::asio::const_buffer>(buffers),
                             tls_layer::io_handler(std::forward<Handler>(handler)));
    } else {
      plain_.async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

 private:
  /// The first non-empty buffer of a sequence (or an empty one).
  template <class Buffer, class Buffers>
  static Buffer first_of(const Buffers& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
      Buffer b(*it);
      if (b.size() > 0) return b;
    }
    return Buffer();
  }

  socket_type plain_;  // the socket, when plain; otherwise closed (it keeps the executor)
  std::unique_ptr<tls_layer> tls_;
};

}  // namespace ferry::wire
