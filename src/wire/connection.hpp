// A framed connection: length-prefixed MessagePack frames over a stream (TCP, or TLS to another host),
// with writes coalesced.
//
// Concurrency: reading, the handlers and the socket's asynchronous operations are confined to the
// connection's executor. send() and close() may be called from any thread. send() appends the frame to a
// buffer under mu_, and then:
//  - within a send_batch on this thread (every event loop ferry runs opens one around each sweep of the
//    handlers that are ready: run_batched), the frame waits for the end of the batch, so that, say, the
//    replies to one read leave in one write;
//  - otherwise, when no write is in progress, the calling thread becomes the writer: it writes what is
//    pending with non-blocking sends, outside the lock (a thread hand-off costs more than the call itself),
//    and keeps writing what other threads append meanwhile, so concurrent senders share its writes;
//  - otherwise the frame joins what the writer in progress writes next.
// What the socket does not take at once is written by the executor. A large payload kept from another
// frame (wire::payload) is written from where it is, by scatter-gather, not copied into the buffer. The socket's
// descriptor stays open until the connection is destroyed (close only shuts it down), so a writer never sends on a
// reused one. Over TLS every write is the executor's (the TLS state is confined to it): a sender only appends.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <ferry/detail/buffer.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "wire/frame.hpp"
#include "wire/payload.hpp"
#include "wire/stream.hpp"

namespace ferry::wire {

namespace asio = boost::asio;

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

  /// Over `s`, ready for frames (a TLS stream has been handshaken).
  connection(stream s, std::uint64_t max_frame_size);
  connection(socket_type socket, std::uint64_t max_frame_size)
      : connection(stream(std::move(socket)), max_frame_size) {}
  ~connection();

  /// Starts reading, after `already_received` (bytes read off the socket before it became a connection).
  /// Call once, from any thread.
  void start(frame_handler on_frame, close_handler on_close, std::string_view already_received = {});

  /// Appends one frame, written by `write` into the frame_writer it is given, to the outgoing buffer.
  /// Returns false when the connection is closed. Throws PayloadTooLargeError (and sends nothing) when
  /// the frame is larger than the peer accepts.
  template <class Header, class WritePayload>
  requires std::invocable<WritePayload&, detail::buffer&>
  bool send(message_kind kind, const Header& header, WritePayload&& write) {
    std::unique_lock lock(mu_);
    if (closed_ || close_after_flush_) return false;
    frame_writer writer(pending_.bytes, kind, header);
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
    if (!writing_) send_pending(lock);
    return true;
  }
  template <class Header>
  bool send(message_kind kind, const Header& header) {
    return send(kind, header, [](detail::buffer&) {});
  }
  /// Appends one frame whose payload is `p`: a large payload kept from a received frame is written from
  /// where it is (the connection holds it until then), a smaller one copied.
  template <class Header>
  bool send(message_kind kind, const Header& header, const payload& p) {
    if (!p.storage() || p.size() < by_reference_from) {
      return send(kind, header, [&](detail::buffer& out) { out.append(p.data(), p.size()); });
    }
    std::unique_lock lock(mu_);
    if (closed_ || close_after_flush_) return false;
    frame_writer writer(pending_.bytes, kind, header);
    const std::uint64_t size = writer.finish(p.size());
    if (size > peer_max_frame_size_) {
      writer.discard();
      lock.unlock();
      throw_too_large(kind, size);
    }
    pending_.references.push_back({pending_.bytes.size(), p.view(), p.storage()});
    if (!writing_) send_pending(lock);
    return true;
  }
  /// Payloads from this size up are sent by reference (below it a copy costs less than a scatter-gather entry).
  static constexpr std::size_t by_reference_from = std::size_t{64} << 10;

  /// Closes the connection; with `flush`, after writing what is already queued (send() refuses new frames
  /// from then on), or after flush_timeout if the peer does not take it; then the socket lingers until
  /// the peer closes its side too (or for flush_timeout), so that the peer reads all that was sent.
  /// The close handler runs once the connection stops sending. Thread-safe.
  void close(std::string reason, bool flush = false);
  /// How long a closing connection waits for its peer to take what is queued, and then to close.
  static constexpr std::chrono::seconds flush_timeout{10};

  /// Sends a `heartbeat` every `interval`, and closes the connection when nothing has been received for
  /// `timeout` (the peer, its host or the network between them is gone, though TCP has not said so).
  /// Heartbeats received are taken here, never handed to the frame handler. Both peers of a connection
  /// must use it (agents and the server do). Call on the executor, after start().
  void keep_alive(std::chrono::milliseconds interval, std::chrono::milliseconds timeout);

  /// The largest frame the peer accepts (from its welcome); sends above it throw.
  void set_peer_max_frame_size(std::uint64_t n);
  /// The largest frame this side accepts (plus header_allowance); a larger one closes the connection.
  /// Call on the executor.
  void set_max_frame_size(std::uint64_t n) { max_frame_size_ = n; }
  std::uint64_t peer_max_frame_size() const;

  const std::string& remote_address() const noexcept { return remote_address_; }
  bool is_tls() const noexcept { return stream_.is_tls(); }
  /// How many reads have been handled, counting the bytes given to start() as the first; a handler
  /// tells frames of one read from the next by it. Call on the executor.
  std::uint64_t reads_completed() const noexcept { return reads_completed_; }

  asio::any_io_executor executor() const;

 private:
  friend class send_batch;
  /// Frames to write: their bytes, and the payloads written by reference, each after a given number of them.
  struct outgoing {
    struct reference {
      std::size_t after;  // bytes of `bytes` written before it
      std::span<const char> data;
      std::shared_ptr<const detail::buffer> storage;  // keeps `data`
    };
    detail::buffer bytes;
    std::vector<reference> references;  // in order of `after`

    bool empty() const noexcept { return bytes.empty(); }  // (a reference follows a frame's header)
    std::size_t size() const noexcept;
    void clear() noexcept;
    /// Calls `piece(data, size)` for each piece of what follows the first `from` bytes, in order, while it
    /// returns true.
    template <class Piece>
    void for_each_piece(std::size_t from, Piece&& piece) const;
    /// Sends what follows the first `from` bytes on socket `fd` without blocking; returns what send(2) does.
    ssize_t send_some(int fd, std::size_t from) const;
  };
  /// With no write in progress: within a send_batch, joins the batch; otherwise write_directly().
  void send_pending(std::unique_lock<std::mutex>& lock);
  /// Makes the calling thread the writer: writes what is pending, and what is appended meanwhile, with
  /// non-blocking sends outside the lock; leaves what the socket does not take to flush().
  void write_directly(std::unique_lock<std::mutex>& lock);  // requires mu_ held, !writing_
  /// The end of the send_batch this connection joined: writes what is pending.
  void end_batch();
  void post_flush();
  void flush();
  void read_more();
  void on_read_end(boost::system::error_code ec);
  void process_received();
  /// Takes the frame of `length` bytes whose first `available` bytes are in received_ at consumed_ into
  /// large_, which the reads then fill with the rest of it alone.
  void start_large_frame(std::uint32_t length, std::size_t available);
  /// Hands one frame (its bytes after the length prefix; `storage`, the buffer they are in if it is the
  /// frame's own) to on_frame_; false when that closed the connection.
  bool handle_frame(std::span<const char> body, std::shared_ptr<const detail::buffer> storage = nullptr);
  bool is_closing() const;
  /// The reason close() was given, while the close flushes; otherwise `otherwise`. (A peer that goes
  /// while a close flushes fails the write or read in progress: the close's reason stands.)
  std::string closing_reason(const std::string& otherwise) const;
  /// Closes at once (what is queued is dropped) and reports the close. With `linger` (after a flush: the
  /// peer is to read all that was sent), reads until the peer closes too, or for flush_timeout.
  void close_now(const std::string& reason, bool linger);
  void arm_heartbeat();
  [[noreturn]] void throw_too_large(message_kind kind, std::uint64_t size) const;

  stream stream_;
  std::uint64_t max_frame_size_;  // executor-confined after start()
  std::string remote_address_;
  frame_handler on_frame_;
  close_handler on_close_;

  // Executor-confined.
  detail::buffer received_;
  std::size_t consumed_ = 0;
  bool shut_ = false;                  // close_now() has run
  bool peer_finished_ = false;         // a read ended (the peer's end, or a failure): no read is in progress
  asio::steady_timer close_deadline_;  // a closing connection's flush_timeout, then its lingering's
  std::uint64_t reads_completed_ = 1;
  bool close_reported_ = false;
  // keep_alive's: off while heartbeat_timeout_ is 0.
  asio::steady_timer heartbeat_timer_;
  std::chrono::milliseconds heartbeat_interval_{0};
  std::chrono::milliseconds heartbeat_timeout_{0};
  std::chrono::steady_clock::time_point last_received_;
  std::uint64_t heartbeats_sent_ = 0;
  // A frame larger than keep_capacity (connection.cpp) arrives in a buffer of its own, sized for it, which the reads
  // fill with its bytes alone: the small frames' buffer never grows for it, and nothing is moved to make room.
  // It is let go of after the frame; its memory, a large block, is kept for the next (detail/buffer.hpp).
  detail::buffer large_;
  std::size_t large_expected_ = 0;  // the length of the frame in large_, with its prefix; 0 with none

  // Owned by whoever set writing_: the direct writer, or the executor's flush().
  outgoing in_flight_;                 // the frames of the write in progress
  std::size_t in_flight_written_ = 0;  // how many of them a direct writer sent before leaving the rest to flush()

  mutable std::mutex mu_;
  outgoing pending_;                // guarded by mu_: frames waiting for the next write
  bool writing_ = false;            // guarded by mu_: a direct writer or the executor owns in_flight_
  bool in_batch_ = false;           // guarded by mu_: joined a send_batch that has not ended
  bool closed_ = false;             // guarded by mu_
  bool close_after_flush_ = false;  // guarded by mu_
  std::string close_reason_;        // guarded by mu_
  std::uint64_t peer_max_frame_size_ = default_max_frame_size;  // guarded by mu_
};

/// Defers the writes of the frames this thread sends to the end of the scope, when each connection that
/// has frames pending writes them in one go. Nests; the outermost scope writes.
class send_batch {
 public:
  send_batch();
  ~send_batch();  // NOLINT(bugprone-exception-escape): see its definition
  send_batch(const send_batch&) = delete;
  send_batch& operator=(const send_batch&) = delete;

  /// Writes what this thread's batch holds so far (the batch stays open). Every blocking wait for a reply
  /// calls it first, so that a thread never waits for the answer to a frame it has not sent.
  static void flush_this_thread();
};

/// Runs `io` like io.run(), with a send_batch around each sweep of the handlers that are ready (at most
/// 256 at a time): what they send, frames sent while handling a read, many calls started by one
/// coroutine, leaves in one write per connection once the sweep ends. (So a handler that holds the
/// thread also holds what the handlers before it in the sweep sent; the stall watchdog names such bodies.)
void run_batched(asio::io_context& io);

}  // namespace ferry::wire
