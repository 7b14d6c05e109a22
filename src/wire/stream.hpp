// A byte stream between two hosts' processes: a TCP socket, or TLS over one. Connections to another host
// are TLS (tls.hpp); those on one host (loopback) stay plain TCP, which costs less and is as private.
// It is an Asio AsyncStream, so wire::connection and the server's HTTP read and write it alike.
//
// Concurrency: like the socket under it, confined to its executor; only socket() may be used elsewhere,
// and only while the stream is plain (TLS keeps state of its own around each read and write).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <utility>

namespace ferry::wire {

class stream {
 public:
  using tcp = boost::asio::ip::tcp;
  using tls_stream = boost::asio::ssl::stream<tcp::socket>;
  using executor_type = tcp::socket::executor_type;

  /// Plain TCP.
  explicit stream(tcp::socket socket) : plain_(std::move(socket)) {}
  /// TLS over `socket`, set up by `context` (which the stream keeps); handshaken (tls.hpp) before any use.
  stream(tcp::socket socket, std::shared_ptr<boost::asio::ssl::context> context)
      : plain_(socket.get_executor()),
        context_(std::move(context)),
        tls_(std::make_unique<tls_stream>(std::move(socket), *context_)) {}

  bool is_tls() const noexcept { return tls_ != nullptr; }
  /// The TCP socket under it (for its addresses, options and shutdown).
  tcp::socket& socket() noexcept { return tls_ ? tls_->next_layer() : plain_; }
  const tcp::socket& socket() const noexcept { return tls_ ? tls_->next_layer() : plain_; }
  /// The TLS stream; only when is_tls().
  tls_stream& tls() noexcept { return *tls_; }
  executor_type get_executor() noexcept { return plain_.get_executor(); }

  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_.async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

 private:
  tcp::socket plain_;  // the socket, when plain; otherwise closed (it keeps the executor)
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::unique_ptr<tls_stream> tls_;
};

}  // namespace ferry::wire
