#include "wire/connection.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/container/small_vector.hpp>
#include <cstring>
#include <ferry/errors.hpp>
#include <limits>
#include <utility>

namespace ferry::wire {

namespace {
constexpr std::size_t read_chunk = std::size_t{64} * 1024;
// Buffers that grew for a large payload give their memory back once they are empty again.
constexpr std::size_t keep_capacity = 1 << 20;

// async_write's completion condition: all of it, in as few writes as the socket allows (asio's default,
// transfer_all, writes 64 KiB at a time: a thousand system calls for a 64 MiB frame).
std::size_t transfer_all_at_once(const boost::system::error_code& ec, std::size_t /*written*/) {
  return ec ? 0 : std::numeric_limits<std::size_t>::max();
}

}  // namespace

std::size_t connection::outgoing::size() const noexcept {
  std::size_t n = bytes.size();
  for (const reference& r : references) n += r.data.size();
  return n;
}

void connection::outgoing::clear() noexcept {
  bytes.clear();
  references.clear();
}

template <class Piece>
void connection::outgoing::for_each_piece(std::size_t from, Piece&& piece) const {
  std::size_t at = 0;     // where the next piece starts in what is to be written
  std::size_t taken = 0;  // bytes of `bytes` passed
  auto next = [&](const char* data, std::size_t n) {
    const std::size_t skip = from > at ? std::min(from - at, n) : 0;
    at += n;
    return n == skip || piece(data + skip, n - skip);
  };
  for (const reference& r : references) {
    if (!next(bytes.data() + taken, r.after - taken)) return;
    taken = r.after;
    if (!next(r.data.data(), r.data.size())) return;
  }
  next(bytes.data() + taken, bytes.size() - taken);
}

ssize_t connection::outgoing::send_some(int fd, std::size_t from) const {
  constexpr int flags = MSG_DONTWAIT | MSG_NOSIGNAL;
  if (references.empty()) return ::send(fd, bytes.data() + from, bytes.size() - from, flags);
  constexpr std::size_t max_pieces = 64;  // (sendmsg takes up to IOV_MAX, 1024; the rest goes in the next call)
  std::array<iovec, max_pieces> pieces{};
  std::size_t count = 0;
  for_each_piece(from, [&](const char* data, std::size_t n) {
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): iovec's pointer is not const; sendmsg only reads it
    pieces[count++] = {const_cast<char*>(data), n};
    return count < max_pieces;
  });
  msghdr message{};
  message.msg_iov = pieces.data();
  message.msg_iovlen = count;
  return ::sendmsg(fd, &message, flags);
}

connection::connection(stream s, std::uint64_t max_frame_size)
    : stream_(std::move(s)),
      max_frame_size_(max_frame_size),
      remote_address_(peer_of(stream_.socket()).description),
      close_deadline_(stream_.get_executor()),
      heartbeat_timer_(stream_.get_executor()) {
  boost::system::error_code ec;
  stream_.socket().set_option(asio::ip::tcp::no_delay(true), ec);  // (a Unix socket has no such option)
}

connection::~connection() = default;

void connection::keep_alive(std::chrono::milliseconds interval, std::chrono::milliseconds timeout) {
  heartbeat_interval_ = interval;
  heartbeat_timeout_ = timeout;
  last_received_ = std::chrono::steady_clock::now();
  arm_heartbeat();
}

void connection::arm_heartbeat() {
  heartbeat_timer_.expires_after(heartbeat_interval_);
  heartbeat_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->shut_ || self->is_closing()) return;
    const auto silent = std::chrono::steady_clock::now() - self->last_received_;
    if (silent >= self->heartbeat_timeout_) {
      const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(self->heartbeat_timeout_).count();
      self->close("no frame from the peer for " + std::to_string(seconds) + " s (heartbeats)");
      return;
    }
    self->send(message_kind::heartbeat, heartbeat_header{++self->heartbeats_sent_});
    self->arm_heartbeat();
  });
}

asio::any_io_executor connection::executor() const { return const_cast<stream&>(stream_).get_executor(); }

void connection::start(frame_handler on_frame, close_handler on_close, std::string_view already_received) {
  on_frame_ = std::move(on_frame);
  on_close_ = std::move(on_close);
  received_.append(already_received.data(), already_received.size());
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    self->process_received();
    self->read_more();
  });
}

void connection::set_peer_max_frame_size(std::uint64_t n) {
  std::lock_guard lock(mu_);
  peer_max_frame_size_ = n;
}

std::uint64_t connection::peer_max_frame_size() const {
  std::lock_guard lock(mu_);
  return peer_max_frame_size_;
}

void connection::throw_too_large(message_kind kind, std::uint64_t size) const {
  throw PayloadTooLargeError("a " + std::string(to_string(kind)) + " frame of " + std::to_string(size) +
                             " bytes is larger than the server accepts (" + std::to_string(peer_max_frame_size()) +
                             " bytes); send less per call, or raise the server's --max-frame-size");
}

namespace {
/// This thread's open send_batch scopes, and the connections that joined them.
struct batch_state {
  int depth = 0;
  std::vector<std::shared_ptr<connection>> joined;
};
thread_local batch_state this_thread_batch;
}  // namespace

send_batch::send_batch() { ++this_thread_batch.depth; }

// NOLINTNEXTLINE(bugprone-exception-escape): only a failing mutex throws here, and terminating is right then
send_batch::~send_batch() {
  if (--this_thread_batch.depth == 0) flush_this_thread();
}

void send_batch::flush_this_thread() {
  auto joined = std::move(this_thread_batch.joined);
  this_thread_batch.joined.clear();
  for (const auto& c : joined) c->end_batch();
}

void run_batched(asio::io_context& io) {
  constexpr int max_sweep = 256;  // bounds how long a frame waits behind other handlers
  for (;;) {
    send_batch batch;
    if (io.run_one() == 0) return;  // stopped, or out of work
    for (int i = 1; i < max_sweep && io.poll_one() > 0; ++i) {
    }
  }
}

void connection::send_pending(std::unique_lock<std::mutex>& lock) {
  if (this_thread_batch.depth == 0) {
    write_directly(lock);
  } else if (!in_batch_) {
    in_batch_ = true;
    this_thread_batch.joined.push_back(shared_from_this());
  }
}

void connection::end_batch() {
  std::unique_lock lock(mu_);
  in_batch_ = false;
  if (!writing_ && !closed_ && !pending_.empty()) write_directly(lock);
}

void connection::write_directly(std::unique_lock<std::mutex>& lock) {
  writing_ = true;
  if (stream_.is_tls()) {
    post_flush();
    return;
  }
  while (!pending_.empty() && !closed_) {
    std::swap(pending_, in_flight_);
    lock.unlock();
    const std::size_t size = in_flight_.size();
    std::size_t written = 0;
    while (written < size) {
      const ssize_t n = in_flight_.send_some(stream_.socket().native_handle(), written);
      if (n <= 0) break;  // would block, or an error the executor's write will report
      written += static_cast<std::size_t>(n);
    }
    lock.lock();
    if (written < size) {  // the executor writes the rest, then what is pending
      in_flight_written_ = written;
      post_flush();
      return;
    }
    in_flight_.clear();
  }
  in_flight_.bytes.shrink_if_empty(keep_capacity);
  pending_.bytes.shrink_if_empty(keep_capacity);
  if (close_after_flush_) {
    post_flush();  // flush() closes, now that everything is written
    return;
  }
  writing_ = false;
}

void connection::post_flush() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] { self->flush(); });
}

void connection::flush() {
  {
    std::lock_guard lock(mu_);
    if (shut_) {
      in_flight_.clear();
      in_flight_written_ = 0;
      writing_ = false;
      return;
    }
    if (in_flight_.empty()) {  // (not empty: the rest of a direct write)
      if (pending_.empty()) {
        writing_ = false;
        if (!close_after_flush_) return;
        closed_ = true;
      } else {
        std::swap(pending_, in_flight_);
      }
    }
  }
  if (in_flight_.empty()) {  // close requested after the last write: everything queued is written
    close_now(closing_reason(""), /*linger=*/true);
    return;
  }
  boost::container::small_vector<asio::const_buffer, 4> pieces;
  in_flight_.for_each_piece(std::exchange(in_flight_written_, 0), [&](const char* data, std::size_t n) {
    pieces.emplace_back(data, n);
    return true;
  });
  asio::async_write(stream_, pieces, transfer_all_at_once,
                    [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                      self->in_flight_.clear();
                      self->in_flight_.bytes.shrink_if_empty(keep_capacity);
                      if (ec) {
                        self->close_now(self->closing_reason("write failed: " + ec.message()), /*linger=*/false);
                        return;
                      }
                      self->flush();
                    });
}

// Reads until the peer has finished sending, also while the connection closes: what arrives after a close
// is dropped unhandled, and reading it keeps the peer from blocking on its writes, and the close from
// resetting the connection (see close_now).
void connection::read_more() {
  if (peer_finished_) return;
  const bool into_large = large_expected_ > 0;  // (large_ holds room for the whole frame)
  char* at = into_large ? large_.data() + large_.size() : received_.reserve(read_chunk);
  const std::size_t room = into_large ? large_expected_ - large_.size() : received_.capacity() - received_.size();
  stream_.async_read_some(
      asio::buffer(at, room), [self = shared_from_this(), into_large](boost::system::error_code ec, std::size_t n) {
        if (ec) {
          self->peer_finished_ = true;
          self->on_read_end(ec);
          return;
        }
        if (self->shut_ || self->is_closing()) {  // nothing read after a close is handled
          self->received_.clear();
          self->received_.shrink_if_empty(keep_capacity);  // (it may have grown for a frame that did not come)
          self->consumed_ = 0;
          self->large_ = {};
          self->large_expected_ = 0;
          self->read_more();
          return;
        }
        ++self->reads_completed_;
        if (self->heartbeat_timeout_.count() > 0) self->last_received_ = std::chrono::steady_clock::now();
        if (into_large) {
          self->large_.resize(self->large_.size() + n);
          if (self->large_.size() < self->large_expected_) {
            self->read_more();
            return;
          }
          self->large_expected_ = 0;
          // The frame's buffer is shared with the handler, which may keep the payload (wire::payload). Its
          // block goes back to be reused once the last holder lets go (detail::buffer's large blocks).
          // (A close it causes stops process_received below.)
          auto storage = std::make_shared<const detail::buffer>(std::exchange(self->large_, {}));
          const std::span<const char> body(storage->data() + length_prefix_size, storage->size() - length_prefix_size);
          self->handle_frame(body, std::move(storage));
        } else {
          self->received_.resize(self->received_.size() + n);
        }
        self->process_received();
        self->read_more();
      });
}

void connection::on_read_end(boost::system::error_code ec) {
  if (shut_) {  // lingering after the close: the peer has closed its side too
    close_deadline_.cancel();
    boost::system::error_code ignored;
    stream_.socket().shutdown(socket_type::shutdown_both, ignored);
    return;
  }
  // (TLS without its close_notify: ferry's peers end TLS by closing the socket, and a frame cut short
  // is incomplete anyway.)
  if (is_end_of_stream(ec)) {
    // The peer has finished sending; it may still be reading (a half-close): what was sent in answer to
    // its last frames, and waits in this sweep's batch, goes out before the connection closes.
    close("peer closed the connection", /*flush=*/true);
    return;
  }
  close_now(closing_reason("read failed: " + ec.message()), /*linger=*/false);
}

// A frame that breaks the protocol closes the connection; the answers to the frames before it still go out.
void connection::process_received() {
  if (is_closing()) return;  // (a read completed after a close from elsewhere)
  while (!shut_) {
    const std::size_t available = received_.size() - consumed_;
    if (available < length_prefix_size) break;
    const std::uint32_t length = read_length_prefix(received_.data() + consumed_);
    if (length > max_frame_size_ + header_allowance) {
      close("frame of " + std::to_string(length) + " bytes exceeds the limit of " + std::to_string(max_frame_size_) +
                " bytes",
            /*flush=*/true);
      return;
    }
    if (available < length_prefix_size + length) {
      if (length_prefix_size + length > keep_capacity) {
        start_large_frame(length, available);
        break;
      }
      // Make room for the whole frame now, so the next reads complete it without regrowing.
      const std::size_t needed = consumed_ + length_prefix_size + length;
      if (received_.capacity() < needed) received_.reserve(needed - received_.size());
      break;
    }
    const char* body = received_.data() + consumed_ + length_prefix_size;
    consumed_ += length_prefix_size + length;
    if (!handle_frame({body, length})) return;
  }
  // Move the unprocessed tail to the front.
  const std::size_t rest = received_.size() - consumed_;
  if (consumed_ > 0) {
    if (rest > 0) std::memmove(received_.data(), received_.data() + consumed_, rest);
    received_.resize(rest);
    consumed_ = 0;
  }
  received_.shrink_if_empty(keep_capacity);  // (a read's leftovers never make it grow by much)
}

void connection::start_large_frame(std::uint32_t length, std::size_t available) {
  large_expected_ = length_prefix_size + length;
  large_.reserve(large_expected_);
  large_.append(received_.data() + consumed_, available);
  consumed_ += available;  // (all of it is this frame's: it is incomplete)
}

bool connection::handle_frame(std::span<const char> body, std::shared_ptr<const detail::buffer> storage) {
  std::string error;
  auto f = parse_frame(body, error);
  if (!f) {
    close("malformed frame: " + error, /*flush=*/true);
    return false;
  }
  f->storage = std::move(storage);
  if (f->kind == message_kind::heartbeat && heartbeat_timeout_.count() > 0) return true;  // (its bytes were news)
  try {
    on_frame_(*f);
  } catch (const DecodeError& e) {
    close(std::string("malformed ") + to_string(f->kind) + " message: " + e.what(), /*flush=*/true);
    return false;
  } catch (const std::exception& e) {
    close(std::string("cannot handle ") + to_string(f->kind) + " message: " + e.what(), /*flush=*/true);
    return false;
  }
  return !is_closing();  // the handler closed the connection: frames after that are not handled
}

std::string connection::closing_reason(const std::string& otherwise) const {
  std::lock_guard lock(mu_);
  return close_after_flush_ ? close_reason_ : otherwise;
}

bool connection::is_closing() const {
  std::lock_guard lock(mu_);
  return closed_ || close_after_flush_;
}

void connection::close(std::string reason, bool flush_first) {
  std::unique_lock lock(mu_);
  if (closed_ || close_after_flush_) return;
  close_reason_ = reason;
  if (flush_first) {
    close_after_flush_ = true;
    const bool start = !writing_;
    writing_ = true;
    lock.unlock();
    if (start) post_flush();
    // A peer that does not read what is flushed to it must not keep the connection for ever.
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->shut_) return;
      self->close_deadline_.expires_after(flush_timeout);
      self->close_deadline_.async_wait([self](boost::system::error_code ec) {
        if (ec) return;
        self->close_now(self->closing_reason("") + " (the peer did not take what was left to send within " +
                            std::to_string(flush_timeout.count()) + " s)",
                        /*linger=*/false);
      });
    });
    return;
  }
  closed_ = true;
  lock.unlock();
  asio::post(stream_.get_executor(),
             [self = shared_from_this(), reason = std::move(reason)] { self->close_now(reason, /*linger=*/false); });
}

void connection::close_now(const std::string& reason, bool linger) {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    pending_.clear();
  }
  // Shut down, not closed: a direct writer may be sending on the descriptor. It is released with the
  // connection, once the read in progress has ended.
  shut_ = true;
  close_deadline_.cancel();
  heartbeat_timer_.cancel();
  boost::system::error_code ec;
  if (peer_finished_ || !linger) {
    stream_.socket().shutdown(socket_type::shutdown_both, ec);
  } else {
    // Lingering: releasing a descriptor with unread bytes resets the connection, and a reset discards
    // what the peer has not read yet (a refusal, the replies before a malformed frame). So stop sending
    // only, and read and drop what the peer still sends until it closes too, or for flush_timeout.
    stream_.socket().shutdown(socket_type::shutdown_send, ec);
    close_deadline_.expires_after(flush_timeout);
    close_deadline_.async_wait([self = shared_from_this()](boost::system::error_code wait_ec) {
      if (wait_ec) return;
      boost::system::error_code ignored;
      self->stream_.socket().shutdown(socket_type::shutdown_both, ignored);  // ends the read
    });
  }
  if (!close_reported_) {
    close_reported_ = true;
    if (on_close_) {
      auto handler = std::move(on_close_);
      on_frame_ = nullptr;
      handler(reason);
    }
  }
}

}  // namespace ferry::wire
