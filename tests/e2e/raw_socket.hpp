// A peer that speaks bytes, not ferry's client: for tests of what the server does with hostile, broken or
// foreign connections.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/detail/buffer.hpp>
#include <stdexcept>
#include <string>

#include "wire/frame.hpp"
#include "wire/protocol.hpp"

namespace e2e {

/// A blocking TCP connection to the server, with a receive timeout so a broken server fails the test.
class raw_socket {
 public:
  /// `receive_buffer`: the socket's receive buffer in bytes (0: the system's), set before connecting so
  /// that the window the server may fill is that small.
  explicit raw_socket(const std::string& address, int receive_buffer = 0) {
    const auto colon = address.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{30, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (receive_buffer > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) throw std::runtime_error("connect");
  }
  ~raw_socket() { ::close(fd_); }
  void send(const std::string& bytes) {
    // (MSG_NOSIGNAL: a server that resets the connection fails the test rather than killing it.)
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  /// Closes the sending side (a half-close): the server sees the end of what this peer sends.
  void finish_sending() { ::shutdown(fd_, SHUT_WR); }
  /// Everything the server sends until it closes the connection.
  std::string read_until_closed() {
    std::string all;
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n <= 0) return n == 0 ? all : all + "<read error>";
      all.append(chunk, static_cast<std::size_t>(n));
    }
  }

 private:
  int fd_ = -1;
};

inline std::string frame_bytes(ferry::wire::message_kind kind, const auto& header) {
  ferry::detail::buffer b;
  ferry::wire::frame_writer w(b, kind, header);
  w.finish();
  return {b.data(), b.size()};
}

inline std::string hello(const std::string& token, std::uint32_t version = ferry::wire::protocol_version) {
  return frame_bytes(ferry::wire::message_kind::hello, ferry::wire::hello_header{version, token, 0, 0, 42});
}

}  // namespace e2e
