// A framed connection: length-prefixed MessagePack frames over a TCP socket, with writes coalesced.
//
// Concurrency: reading, the handlers and the socket are confined to the connection's executor. send()
// and close() may be called from any thread. send() appends the frame to a buffer under mu_; when no write is
// in progress it writes at once with a non-blocking send from the calling thread (a thread hand-off costs
// more than the call itself), otherwise the frame joins the buffer that the executor writes next, so frames
// sent while a write is in flight go out together in one write.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <ferry/detail/buffer.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "wire/frame.hpp"

namespace ferry::wire {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

/// A message that breaks the protocol's rules for its sender (a role's forbidden message, say).
class protocol_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  /// Called on the executor for each frame, in order. Throwing (DecodeError for a header that does not
  /// match its kind, protocol_error for a message out of place) closes the connection with that reason.
  using frame_handler = std::function<void(const frame&)>;
  /// Called once on the executor when the connection closes, with why.
  using close_handler = std::function<void(const std::string& reason)>;

  connection(tcp::socket socket, std::uint64_t max_frame_size);
  ~connection();

  /// Starts reading, after `already_received` (bytes read off the socket before it became a connection).
  /// Call once, from any thread.
  void start(frame_handler on_frame, close_handler on_close, std::string_view already_received = {});

  /// Appends one frame, written by `write` into the frame_writer it is given, to the outgoing buffer.
  /// Returns false when the connection is closed. Throws PayloadTooLargeError (and sends nothing) when
  /// the frame is larger than the peer accepts.
  template <class Header, class WritePayload>
  bool send(message_kind kind, const Header& header, WritePayload&& write) {
    std::unique_lock lock(mu_);
    if (closed_) return false;
    frame_writer writer(pending_, kind, header);
    try {
      write(writer.payload());
    } catch (...) {
      writer.discard();
      throw;
    }
    const std::uint64_t size = writer.finish();
    if (size > peer_max_frame_size_) {
      writer.discard();
      lock.unlock();
      throw_too_large(kind, size);
    }
    if (!writing_) write_directly();
    return true;
  }
  template <class Header>
  bool send(message_kind kind, const Header& header) {
    return send(kind, header, [](detail::buffer&) {});
  }

  /// Closes the connection (after writing what is already queued, when `flush` is set). Thread-safe.
  void close(std::string reason, bool flush = false);

  /// The largest frame the peer accepts (from its welcome); sends above it throw.
  void set_peer_max_frame_size(std::uint64_t n);
  /// The largest frame this side accepts (plus header_allowance); a larger one closes the connection.
  /// Call on the executor.
  void set_max_frame_size(std::uint64_t n) { max_frame_size_ = n; }
  std::uint64_t peer_max_frame_size() const;

  const std::string& remote_address() const noexcept { return remote_address_; }
  asio::any_io_executor executor() const;

 private:
  /// With no write in progress, writes what is pending from the calling thread (a non-blocking send),
  /// saving the wake-up of the executor's thread; what the socket does not take is left to flush().
  void write_directly();  // requires mu_
  void post_flush();
  void flush();
  void read_more();
  void process_received();
  bool is_closing() const;
  void close_now(const std::string& reason);
  [[noreturn]] void throw_too_large(message_kind kind, std::uint64_t size) const;

  tcp::socket socket_;
  std::uint64_t max_frame_size_;  // executor-confined after start()
  std::string remote_address_;
  frame_handler on_frame_;
  close_handler on_close_;

  // Executor-confined.
  detail::buffer received_;
  std::size_t consumed_ = 0;
  detail::buffer in_flight_;  // the bytes of the write in progress
  bool close_reported_ = false;

  mutable std::mutex mu_;
  detail::buffer pending_;          // guarded by mu_: frames waiting for the next write
  bool writing_ = false;            // guarded by mu_: a flush is posted or a write is in progress
  bool closed_ = false;             // guarded by mu_
  bool close_after_flush_ = false;  // guarded by mu_
  std::string close_reason_;        // guarded by mu_
  std::uint64_t peer_max_frame_size_ = default_max_frame_size;  // guarded by mu_
};

}  // namespace ferry::wire
