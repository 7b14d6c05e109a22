#include "wire/stream.hpp"

#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <cstring>

namespace ferry::wire {

namespace asio = boost::asio;

bool is_local(const asio::ip::address& address) {
  if (address.is_loopback()) return true;
  return address.is_v6() && address.to_v6().is_v4_mapped() &&
         asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).is_loopback();
}

asio::local::stream_protocol::endpoint unix_endpoint(const std::string& path) {
  if (!path.empty() && path.front() == '@') return {std::string(1, '\0') + path.substr(1)};
  return {path};
}

peer peer_of(const socket_type& socket) {
  boost::system::error_code ec;
  const socket_type::endpoint_type endpoint = socket.remote_endpoint(ec);
  if (ec) return {false, false, "an unknown peer"};
  if (endpoint.protocol().family() == AF_UNIX) return {true, true, "a Unix socket"};
  // An IP endpoint's bytes are a sockaddr_in or sockaddr_in6, which Asio's TCP endpoint reads.
  asio::ip::tcp::endpoint ip;
  if (endpoint.size() > ip.capacity()) return {false, false, "an unknown peer"};
  std::memcpy(ip.data(), endpoint.data(), endpoint.size());
  ip.resize(endpoint.size());
  return {true, is_local(ip.address()), ip.address().to_string() + ":" + std::to_string(ip.port())};
}

}  // namespace ferry::wire
