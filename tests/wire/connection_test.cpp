// Tests of wire::connection's writing over real TCP sockets on 127.0.0.1: frames sent by many threads at once
// (which share each other's writes), frames larger than the socket takes at once, payloads kept from received
// frames and sent on by reference, sends racing a close, and send_batch deferring writes to its end.
#include "wire/connection.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "wire/payload.hpp"
#include "wire/protocol.hpp"
#include "wire/tls.hpp"

namespace {

namespace asio = boost::asio;
using ferry::wire::connection;
using ferry::wire::message_kind;
using tcp = asio::ip::tcp;

/// Two connected sockets on 127.0.0.1.
std::pair<tcp::socket, tcp::socket> socket_pair(asio::io_context& io_a, asio::io_context& io_b) {
  tcp::acceptor acceptor(io_b, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket a(io_a);
  a.connect(acceptor.local_endpoint());
  tcp::socket b = acceptor.accept();
  return {std::move(a), std::move(b)};
}

/// The payload of frame `id`: its size and bytes follow from the id, so the receiver can check them.
std::string payload_of(std::uint64_t id, std::size_t big_every = 0) {
  const std::size_t size = big_every != 0 && id % big_every == 0 ? (8u << 20) : (id % 7) * 100;
  std::string p(size, '\0');
  for (std::size_t i = 0; i < size; ++i) p[i] = static_cast<char>((id * 31 + i) & 0xff);
  return p;
}

/// `a` and `b` as the two ends of TLS, handshaken (`a` the client, pinning `b`'s new certificate).
std::pair<ferry::wire::stream, ferry::wire::stream> over_tls(tcp::socket a, tcp::socket b) {
  namespace tls = ferry::wire::tls;
  const tls::identity id = tls::create_identity();
  auto client = tls::stream_over(std::move(a), tls::client_context());
  auto server = tls::stream_over(std::move(b), tls::server_context(id));
  std::promise<std::string> client_done, server_done;
  tls::async_client_handshake(client, id.fingerprint,
                              [&](const std::string& error, bool) { client_done.set_value(error); });
  tls::async_server_handshake(server, "", [&](const std::string& error, bool) { server_done.set_value(error); });
  EXPECT_EQ(client_done.get_future().get(), "");
  EXPECT_EQ(server_done.get_future().get(), "");
  return {std::move(*client), std::move(*server)};
}

/// A sending connection and a receiving one, each on its own event loop thread (run as ferry runs them),
/// over plain TCP, or TLS (connected_pair_over_tls), or a Unix socket (connected_pair_over_a_unix_socket).
class connected_pair : public ::testing::Test {
 public:
  enum class transport { tcp, tls, unix_socket };
  virtual transport over() const { return transport::tcp; }
  void SetUp() override {
    threads.emplace_back([this] { ferry::wire::run_batched(io_sender); });
    threads.emplace_back([this] { ferry::wire::run_batched(io_receiver); });
    if (over() == transport::unix_socket) {
      asio::local::stream_protocol::socket a(io_sender), b(io_receiver);
      asio::local::connect_pair(a, b);
      sender = std::make_shared<connection>(std::move(a), ferry::wire::default_max_frame_size);
      receiver = std::make_shared<connection>(std::move(b), ferry::wire::default_max_frame_size);
    } else if (auto [a, b] = socket_pair(io_sender, io_receiver); over() == transport::tls) {
      auto [sa, sb] = over_tls(std::move(a), std::move(b));
      ASSERT_TRUE(sa.is_tls() && sb.is_tls());
      sender = std::make_shared<connection>(std::move(sa), ferry::wire::default_max_frame_size);
      receiver = std::make_shared<connection>(std::move(sb), ferry::wire::default_max_frame_size);
    } else {
      sender = std::make_shared<connection>(std::move(a), ferry::wire::default_max_frame_size);
      receiver = std::make_shared<connection>(std::move(b), ferry::wire::default_max_frame_size);
    }
    sender->start([](const ferry::wire::frame&) {}, [](const std::string&) {});
    receiver->start(
        [this](const ferry::wire::frame& f) {
          auto [id] = f.decode_header<ferry::wire::cancel_header>();
          std::lock_guard lock(mu);
          if (std::string(f.payload.data(), f.payload.size()) != payload_of(id, big_every)) corrupted.push_back(id);
          if (keep_large && f.storage) {  // a large frame: kept past the handler, sharing its buffer
            kept.emplace(id, ferry::wire::payload::keep(f));
            if (kept.at(id).data() != f.payload.data()) copied.push_back(id);
          }
          received[id >> 32].push_back(id & 0xffffffff);
          ++count;
          changed.notify_all();
        },
        [](const std::string&) {});
  }
  void TearDown() override {
    sender->close("test over");
    receiver->close("test over");
    io_sender.stop();
    io_receiver.stop();
    for (auto& t : threads) t.join();
  }

  bool send(std::uint64_t id) {
    const std::string p = payload_of(id, big_every);
    if (by_reference && p.size() >= connection::by_reference_from) {
      return sender->send(message_kind::cancel, ferry::wire::cancel_header{id}, kept_from_a_frame(p));
    }
    return sender->send(message_kind::cancel, ferry::wire::cancel_header{id},
                        [&](ferry::detail::buffer& out) { out.append(p.data(), p.size()); });
  }

  /// `bytes` as a payload kept from a received frame that had a buffer of its own: it shares that buffer.
  static ferry::wire::payload kept_from_a_frame(const std::string& bytes) {
    ferry::detail::buffer b;
    b.append(bytes.data(), bytes.size());
    auto storage = std::make_shared<const ferry::detail::buffer>(std::move(b));
    const ferry::wire::frame f{message_kind::cancel, ferry::detail::reader{storage->view()}, 0, storage->view(),
                               storage};
    return ferry::wire::payload::keep(f);
  }

  void wait_for(std::size_t n) {
    std::unique_lock lock(mu);
    ASSERT_TRUE(changed.wait_for(lock, std::chrono::seconds(60), [&] { return count >= n; }))
        << "received " << count << " of " << n << " frames";
  }

  asio::io_context io_sender{1}, io_receiver{1};
  asio::executor_work_guard<asio::io_context::executor_type> keep_sender{io_sender.get_executor()};
  asio::executor_work_guard<asio::io_context::executor_type> keep_receiver{io_receiver.get_executor()};
  std::shared_ptr<connection> sender, receiver;
  std::vector<std::thread> threads;
  std::size_t big_every = 0;  // every Nth frame is 8 MiB, more than the socket takes at once
  bool by_reference = false;  // the sender sends the 8 MiB payloads as kept payloads, by reference
  bool keep_large = false;    // the receiver keeps the large frames' payloads (in `kept`)

  std::mutex mu;
  std::condition_variable changed;
  std::map<std::uint64_t, std::vector<std::uint64_t>> received;  // by sending thread: sequence numbers
  std::vector<std::uint64_t> corrupted;
  std::size_t count = 0;
  std::map<std::uint64_t, ferry::wire::payload> kept;  // by frame id
  std::vector<std::uint64_t> copied;                   // frames whose kept payload was a copy
};

/// Four threads send at once; each thread's frames arrive whole and in the order it sent them.
void send_from_threads(connected_pair& t, int per_thread) {
  std::vector<std::thread> senders;
  for (std::uint64_t thread = 0; thread < 4; ++thread) {
    senders.emplace_back([&t, thread, per_thread] {
      for (std::uint64_t seq = 0; seq < static_cast<std::uint64_t>(per_thread); ++seq) t.send(thread << 32 | seq);
    });
  }
  for (auto& s : senders) s.join();
}

/// Four threads sent `per_thread` frames each: every one arrived whole, and each thread's in its order.
void expect_every_threads_frames_whole_and_in_order(connected_pair& t, int per_thread) {
  t.wait_for(4 * per_thread);
  std::lock_guard lock(t.mu);
  EXPECT_TRUE(t.corrupted.empty()) << t.corrupted.size() << " frames arrived with the wrong payload";
  ASSERT_EQ(t.received.size(), 4u);
  for (const auto& [thread, seqs] : t.received) {
    ASSERT_EQ(seqs.size(), static_cast<std::size_t>(per_thread)) << "thread " << thread;
    for (std::size_t i = 0; i < seqs.size(); ++i) ASSERT_EQ(seqs[i], i) << "thread " << thread;
  }
}

/// Large payloads sent by reference among small frames from four threads: all arrive whole and in order;
/// the receiver keeps each large one without a copy, and it stays intact after later frames have arrived.
void expect_kept_payloads_sent_by_reference_to_arrive_whole(connected_pair& t) {
  t.big_every = 97;
  t.by_reference = true;
  t.keep_large = true;
  send_from_threads(t, 400);
  expect_every_threads_frames_whole_and_in_order(t, 400);
  std::lock_guard lock(t.mu);
  std::size_t large = 0;
  for (std::uint64_t thread = 0; thread < 4; ++thread) {
    for (std::uint64_t seq = 0; seq < 400; ++seq) large += (thread << 32 | seq) % t.big_every == 0;
  }
  EXPECT_EQ(t.kept.size(), large);
  EXPECT_TRUE(t.copied.empty()) << t.copied.size() << " large payloads were copied to be kept";
  for (const auto& [id, p] : t.kept) {
    EXPECT_EQ(std::string(p.data(), p.size()), payload_of(id, t.big_every)) << "frame " << id << ", kept";
  }
}

TEST_F(connected_pair, frames_sent_by_many_threads_at_once_all_arrive_whole_and_in_each_threads_order) {
  send_from_threads(*this, 5000);
  expect_every_threads_frames_whole_and_in_order(*this, 5000);
}

TEST_F(connected_pair, frames_larger_than_the_socket_takes_at_once_arrive_whole_among_small_ones) {
  big_every = 97;  // the sender's rest goes to its event loop while other threads keep sending
  send_from_threads(*this, 400);
  expect_every_threads_frames_whole_and_in_order(*this, 400);
}

TEST_F(connected_pair, payloads_kept_from_received_frames_are_sent_on_by_reference_whole_among_small_frames) {
  expect_kept_payloads_sent_by_reference_to_arrive_whole(*this);
}

// Over TLS every write is the event loop's: senders on other threads only append.
class connected_pair_over_tls : public connected_pair {
 public:
  transport over() const override { return transport::tls; }
};

TEST_F(connected_pair_over_tls, frames_sent_by_many_threads_at_once_all_arrive_whole_and_in_each_threads_order) {
  send_from_threads(*this, 5000);
  expect_every_threads_frames_whole_and_in_order(*this, 5000);
}

TEST_F(connected_pair_over_tls, frames_larger_than_a_tls_record_arrive_whole_among_small_ones) {
  big_every = 97;
  send_from_threads(*this, 400);
  expect_every_threads_frames_whole_and_in_order(*this, 400);
}

TEST_F(connected_pair_over_tls, payloads_kept_from_received_frames_are_sent_on_by_reference_whole_among_small_frames) {
  expect_kept_payloads_sent_by_reference_to_arrive_whole(*this);
}

// How a container reaches a server on its own host.
class connected_pair_over_a_unix_socket : public connected_pair {
 public:
  transport over() const override { return transport::unix_socket; }
};

TEST_F(connected_pair_over_a_unix_socket,
       frames_sent_by_many_threads_at_once_all_arrive_whole_and_in_each_threads_order) {
  send_from_threads(*this, 5000);
  expect_every_threads_frames_whole_and_in_order(*this, 5000);
}

TEST_F(connected_pair_over_a_unix_socket, frames_larger_than_the_socket_takes_at_once_arrive_whole_among_small_ones) {
  big_every = 97;
  send_from_threads(*this, 400);
  expect_every_threads_frames_whole_and_in_order(*this, 400);
}

TEST_F(connected_pair_over_a_unix_socket,
       payloads_kept_from_received_frames_are_sent_on_by_reference_whole_among_small_frames) {
  expect_kept_payloads_sent_by_reference_to_arrive_whole(*this);
}

TEST_F(connected_pair, sends_racing_a_close_return_false_from_the_close_on) {
  // Four threads send until the connection refuses; it is closed while they are at it.
  std::vector<std::thread> senders;
  std::atomic<int> refused{0};
  for (std::uint64_t thread = 0; thread < 4; ++thread) {
    senders.emplace_back([&, thread] {
      for (std::uint64_t seq = 0; send(thread << 32 | seq); ++seq) {
      }
      ++refused;
    });
  }
  wait_for(1000);
  sender->close("closed while sending");
  for (auto& s : senders) s.join();  // each thread returns once a send after the close was refused
  EXPECT_EQ(refused.load(), 4);
  EXPECT_FALSE(send(99)) << "a closed connection takes no more frames";
  std::lock_guard lock(mu);
  EXPECT_TRUE(corrupted.empty()) << "what arrived before the close arrived whole";
}

/// The bytes waiting on `s` right now, without waiting for more.
std::size_t bytes_waiting(tcp::socket& s) {
  char chunk[65536];
  std::size_t total = 0;
  for (;;) {
    const ssize_t n = ::recv(s.native_handle(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n <= 0) return total;
    total += static_cast<std::size_t>(n);
  }
}

TEST(send_batch, holds_the_frames_a_thread_sends_until_it_ends_or_the_thread_flushes) {
  asio::io_context io_sender{1}, io_peer{1};
  auto [a, peer] = socket_pair(io_sender, io_peer);
  auto sender = std::make_shared<connection>(std::move(a), ferry::wire::default_max_frame_size);
  sender->start([](const ferry::wire::frame&) {}, [](const std::string&) {});
  std::thread loop([&] {
    auto keep = asio::make_work_guard(io_sender);
    ferry::wire::run_batched(io_sender);
  });
  const auto send = [&](std::uint64_t id) { sender->send(message_kind::cancel, ferry::wire::cancel_header{id}); };
  {
    ferry::wire::send_batch outer;
    {
      ferry::wire::send_batch inner;
      send(1);
      send(2);
    }
    // (On loopback a write is in the peer's receive queue when send() returns, so "nothing yet" is exact.)
    EXPECT_EQ(bytes_waiting(peer), 0u) << "a nested batch's end must not write";
    send(3);
    ferry::wire::send_batch::flush_this_thread();
    const std::size_t flushed = bytes_waiting(peer);
    EXPECT_GT(flushed, 0u) << "flush_this_thread writes what the batch holds";
    send(4);
    EXPECT_EQ(bytes_waiting(peer), 0u);
  }
  EXPECT_GT(bytes_waiting(peer), 0u) << "the outermost batch's end writes";
  sender->close("test over");
  io_sender.stop();
  loop.join();
}

}  // namespace
