// Hostile and broken peers on a raw socket: the server closes their connection with a logged reason
// and keeps serving everyone else.
#include "raw_socket.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string_view>
#include <vector>

#include "process.hpp"
#include "test_app.hpp"
#include "wire/frame.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;
using testing::Not;

/// The kinds of the frames in `bytes`, in order (up to the first that is incomplete or malformed).
std::vector<ferry::wire::message_kind> kinds_of(std::string_view bytes) {
  std::vector<ferry::wire::message_kind> kinds;
  while (bytes.size() >= ferry::wire::length_prefix_size) {
    const std::uint32_t length = ferry::wire::read_length_prefix(bytes.data());
    if (bytes.size() - ferry::wire::length_prefix_size < length) break;
    std::string error;
    const auto f = ferry::wire::parse_frame({bytes.data() + ferry::wire::length_prefix_size, length}, error);
    if (!f) break;
    kinds.push_back(f->kind);
    bytes.remove_prefix(ferry::wire::length_prefix_size + length);
  }
  return kinds;
}

/// A normal program still gets served.
void expect_server_serves(const ferry_server& server) {
  const auto r = run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "42\n");
}

TEST(raw_socket, a_malformed_frame_closes_that_connection_only) {
  ferry_server server;
  raw_socket s(server.address());
  s.send(hello(server.token()));
  s.send(std::string("\x05\x00\x00\x00hello", 9));  // a length prefix, then bytes that are not MessagePack
  s.read_until_closed();
  EXPECT_TRUE(server.proc().wait_for_output("malformed frame"));
  expect_server_serves(server);
}

TEST(raw_socket, an_oversized_frame_closes_that_connection_only) {
  ferry_server server({"--max-frame-size", "1048576"});
  raw_socket s(server.address());
  s.send(hello(server.token()));
  s.send(std::string("\x00\x00\x00\x7f", 4));  // announces 2 GiB
  s.read_until_closed();
  EXPECT_TRUE(server.proc().wait_for_output("exceeds the limit of 1048576 bytes"));
  expect_server_serves(server);
}

TEST(raw_socket, a_peer_that_closes_its_sending_side_after_its_hello_still_gets_the_welcome) {
  ferry_server server;
  raw_socket s(server.address());
  s.send(hello(server.token()));
  s.finish_sending();
  EXPECT_THAT(kinds_of(s.read_until_closed()), testing::ElementsAre(ferry::wire::message_kind::welcome));
  expect_server_serves(server);
}

TEST(raw_socket, the_replies_to_the_frames_before_a_malformed_one_arrive_before_the_connection_closes) {
  ferry_server server;
  raw_socket s(server.address());
  // One write: the hello, a request for the deployed apps, then bytes that are not a frame.
  s.send(hello(server.token()) +
         frame_bytes(ferry::wire::message_kind::request, ferry::wire::request_header{1, "apps", ""}) +
         std::string("\x05\x00\x00\x00hello", 9));
  EXPECT_THAT(kinds_of(s.read_until_closed()),
              testing::ElementsAre(ferry::wire::message_kind::welcome, ferry::wire::message_kind::reply));
  EXPECT_TRUE(server.proc().wait_for_output("malformed frame"));
  expect_server_serves(server);
}

TEST(raw_socket, replies_before_a_malformed_frame_arrive_though_the_peer_sent_more) {
  ferry_server server;
  // 20,000 pipelined requests, a frame that is not MessagePack, then 1 MiB the server never handles, read
  // through a small window. Closing a socket with unread bytes resets the connection, which would discard
  // the replies the peer has not read yet: the server must stop sending, read what the peer still sends,
  // and only then close.
  raw_socket s(server.address(), 4096);
  std::string frames = hello(server.token());
  for (std::uint64_t id = 1; id <= 20000; ++id) {
    frames += frame_bytes(ferry::wire::message_kind::request, ferry::wire::request_header{id, "apps", ""});
  }
  frames += std::string("\x05\x00\x00\x00hello", 9);
  frames += std::string(1024 * 1024, 'x');
  s.send(frames);
  const auto kinds = kinds_of(s.read_until_closed());
  ASSERT_EQ(kinds.size(), 20001u);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), ferry::wire::message_kind::reply), 20000);
  EXPECT_TRUE(server.proc().wait_for_output("malformed frame"));
  expect_server_serves(server);
}

TEST(raw_socket, a_frame_larger_than_a_hello_before_the_hello_closes_the_connection) {
  ferry_server server;  // accepts frames of up to 256 MiB, but only from a peer that has shown the token
  raw_socket s(server.address());
  s.send(std::string("\x00\x00\x10\x00", 4));  // announces 1 MiB as the first frame
  s.read_until_closed();
  EXPECT_TRUE(server.proc().wait_for_output("exceeds the limit of 65536 bytes"));
  expect_server_serves(server);
}

TEST(raw_socket, a_connection_without_the_token_is_refused) {
  ferry_server server;
  raw_socket s(server.address());
  s.send(hello(""));
  const std::string reply = s.read_until_closed();
  EXPECT_THAT(reply, HasSubstr("invalid token"));
  EXPECT_TRUE(server.proc().wait_for_output("refused connection from"));
  expect_server_serves(server);
}

TEST(raw_socket, a_wrong_protocol_version_is_refused_naming_both_versions) {
  ferry_server server;
  raw_socket s(server.address());
  s.send(hello(server.token(), 99));
  const std::string reply = s.read_until_closed();
  EXPECT_THAT(reply, HasSubstr("protocol version 99 is not supported"));
  expect_server_serves(server);
}

TEST(raw_socket, a_call_before_hello_closes_the_connection) {
  ferry_server server;
  raw_socket s(server.address());
  s.send(frame_bytes(ferry::wire::message_kind::call,
                     ferry::wire::call_header{1, "hello", "blocking_function", ferry::wire::deliver_result, {}, 0}));
  EXPECT_EQ(s.read_until_closed(), "");
  EXPECT_TRUE(server.proc().wait_for_output("expected hello as the first frame"));
  expect_server_serves(server);
}

TEST(raw_socket, a_header_that_does_not_match_its_kind_closes_the_connection) {
  ferry_server server;
  raw_socket s(server.address());
  s.send(hello(server.token()));
  s.send(frame_bytes(ferry::wire::message_kind::call, std::tuple<std::string>{"not a call header"}));
  s.read_until_closed();
  EXPECT_TRUE(server.proc().wait_for_output("malformed call message"));
  expect_server_serves(server);
}

TEST(raw_socket, a_server_out_of_descriptors_pauses_accepting_says_so_once_and_serves_again) {
  ferry_server server({}, {"prlimit", "--nofile=48:48"});
  {
    // More connections than the server has descriptors for; the kernel queues those it cannot accept.
    std::vector<std::unique_ptr<raw_socket>> flood;
    for (int i = 0; i < 64; ++i) flood.push_back(std::make_unique<raw_socket>(server.address()));
    EXPECT_TRUE(server.proc().wait_for_output("cannot accept connections: Too many open files"));
  }  // all closed: the server closes its ends and accepts again
  expect_server_serves(server);
  const std::string log = server.proc().err();
  EXPECT_EQ(log.find("cannot accept connections"), log.rfind("cannot accept connections")) << "said once: " << log;
}

// The idle timeout: a peer may not hold a connection (and its descriptor) by saying nothing.
TEST(raw_socket, a_connection_silent_before_its_hello_is_closed_after_the_idle_timeout) {
  ferry_server server({"--idle-timeout", "500"});
  raw_socket silent(server.address());
  EXPECT_EQ(silent.read_until_closed(), "");
  EXPECT_TRUE(server.proc().wait_for_output("it sent nothing within the idle timeout"));
  raw_socket half_a_hello(server.address());
  half_a_hello.send(std::string("\x40\x00\x00\x00\x01", 5));  // announces 64 bytes, sends one
  EXPECT_EQ(half_a_hello.read_until_closed(), "");
  EXPECT_TRUE(server.proc().wait_for_output("no hello within the idle timeout"));
  expect_server_serves(server);
}

// A server that other hosts can reach speaks TLS (also from loopback): a handshake begun and left is closed
// too, as is one that a server on loopback alone, which has no certificate, is offered.
TEST(raw_socket, a_tls_handshake_left_unfinished_is_closed_after_the_idle_timeout) {
  ferry_server server({"--idle-timeout", "500", "--host", "0.0.0.0"});
  raw_socket stalled(server.address());
  stalled.send(std::string("\x16\x03\x01\x00", 4));  // a TLS record's header, and no more
  EXPECT_EQ(stalled.read_until_closed(), "");
  EXPECT_TRUE(server.proc().wait_for_output("its TLS handshake did not end within the idle timeout"));
  expect_server_serves(server);
  ferry_server local;
  raw_socket offered(local.address());
  offered.send(std::string("\x16\x03\x01\x00", 4));
  EXPECT_EQ(offered.read_until_closed(), "");
  EXPECT_TRUE(local.proc().wait_for_output("it began TLS, which this server, listening on loopback only"));
}

TEST(raw_socket, an_http_client_stopping_mid_header_or_idling_after_a_reply_is_closed_after_the_idle_timeout) {
  ferry_server server({"--idle-timeout", "500"});
  raw_socket slow(server.address());
  slow.send("GET / HTTP/1.1\r\nHost: ferry\r\n");  // the header never ends
  EXPECT_EQ(slow.read_until_closed(), "");
  raw_socket idle(server.address());
  idle.send("GET / HTTP/1.1\r\nHost: ferry\r\n\r\n");  // HTTP/1.1: keep-alive
  const std::string reply = idle.read_until_closed();  // the page, then the close
  EXPECT_THAT(reply, testing::StartsWith("HTTP/1.1 200 OK"));
  EXPECT_THAT(reply, Not(HasSubstr("Connection: close")));
  expect_server_serves(server);
}

/// Splits an HTTP answer into its responses' status lines, checking that each has its whole body.
std::vector<std::string> http_status_lines(std::string_view answer) {
  std::vector<std::string> statuses;
  while (!answer.empty()) {
    const std::size_t line_end = answer.find("\r\n");
    const std::size_t head_end = answer.find("\r\n\r\n");
    const std::size_t length_at = answer.find("Content-Length: ");
    if (head_end == std::string_view::npos || length_at > head_end) {
      statuses.push_back("(not a whole response: " + std::string(answer.substr(0, 40)) + ")");
      break;
    }
    const std::size_t length = std::stoul(std::string(answer.substr(length_at + 16, 12)));
    if (head_end + 4 + length > answer.size()) {
      statuses.push_back("(cut off: " + std::string(answer.substr(0, line_end)) + ")");
      break;
    }
    statuses.emplace_back(answer.substr(0, line_end));
    answer.remove_prefix(head_end + 4 + length);
  }
  return statuses;
}

TEST(raw_socket, an_http_client_that_closes_its_sending_side_still_gets_every_response_whole) {
  ferry_server server;
  // 400 pipelined requests for the dashboard's script (about 19 KiB each: 7.5 MiB, more than a socket's
  // send buffer takes, 4 MiB at most here), then the end of what the client sends, read through a small
  // window: the server still has responses to write when it reads that end. (It used to close the
  // connection there, cutting them off.)
  raw_socket s(server.address(), 4096);
  std::string requests;
  for (int i = 0; i < 400; ++i) requests += "GET /assets/app.js HTTP/1.1\r\nHost: ferry\r\n\r\n";
  s.send(requests);
  s.finish_sending();
  const std::vector<std::string> statuses = http_status_lines(s.read_until_closed());
  ASSERT_EQ(statuses.size(), 400u) << (statuses.empty() ? "no response" : statuses.back());
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), "HTTP/1.1 200 OK"), 400);
  expect_server_serves(server);
}

TEST(raw_socket, responses_before_a_malformed_http_request_arrive_whole_though_the_client_sent_more) {
  ferry_server server;
  // 50 pipelined requests for the dashboard's script (about 1 MiB of responses), a request the server
  // cannot parse, then 64 KiB it never reads. Closing a socket with unread bytes resets the connection,
  // which would discard what the client has not read yet: the server must stop sending, read what the
  // client still sends, and only then close.
  raw_socket s(server.address(), 4096);
  std::string requests;
  for (int i = 0; i < 50; ++i) requests += "GET /assets/app.js HTTP/1.1\r\nHost: ferry\r\n\r\n";
  requests += "GET / HTTP/1.1\r\nHost\r\n\r\n";  // a header line without a colon
  requests += std::string(64 * 1024, 'x');
  s.send(requests);
  const std::vector<std::string> statuses = http_status_lines(s.read_until_closed());
  ASSERT_EQ(statuses.size(), 51u) << (statuses.empty() ? "no response" : statuses.back());
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), "HTTP/1.1 200 OK"), 50);
  EXPECT_EQ(statuses.back(), "HTTP/1.1 400 Bad Request");
  expect_server_serves(server);
}

}  // namespace
}  // namespace e2e
