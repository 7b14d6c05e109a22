#include "server_harness.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "fuzz_target.hpp"
#include "runtime/logging.hpp"
#include "server/server.hpp"

namespace fuzz {
namespace {

namespace wire = ferry::wire;

class refusing_launcher final : public ferry::server::container_launcher {
 public:
  std::unique_ptr<ferry::server::container_process> launch(const ferry::server::container_spec&, exit_handler,
                                                           output_handler) override {
    throw std::runtime_error("the fuzzing harness starts no containers");
  }
};

wire::function_spec function(std::string name, std::string signature) {
  return {std::move(name), std::move(signature), 1, 1, 0, wire::retry_spec{0, 0, 1.0, 0}, 0, 0, 60'000, ""};
}

struct running_server {
  std::filesystem::path state_dir;
  std::unique_ptr<ferry::server::server> server;
  std::thread thread;  // runs it
  std::uint16_t port = 0;

  running_server() {
    ferry::runtime::init_logging("off");
    char dir[] = "/tmp/ferry-fuzz-XXXXXX";
    FUZZ_CHECK(::mkdtemp(dir) != nullptr, "cannot create a state directory under /tmp");
    state_dir = dir;
    ferry::server::server_options options;
    options.token = token;
    options.state_dir = state_dir;
    options.max_frame_size = 1 << 20;  // small, so that "too large" is within a fuzzer's reach
    server = std::make_unique<ferry::server::server>(std::move(options), std::make_unique<refusing_launcher>());
    const std::string address = server->address();
    port = static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
    thread = std::thread([this] { server->run(); });
    deploy();
    // The fuzzer ends with exit(): stop the server before the statics it logs through are destroyed.
    std::atexit([] { instance().shut_down(); });
  }

  static running_server& instance() {
    static running_server* s = new running_server;  // (shut down at exit, not destroyed)
    return *s;
  }

  void shut_down() {
    server->stop();
    thread.join();
    server.reset();
    std::error_code ec;
    std::filesystem::remove_all(state_dir, ec);
  }

  /// Deploys app "fuzz" through the wire protocol, as `ferry deploy` does. Its "binary" is never run.
  void deploy() {
    ferry::client::connect_options options;
    options.server = {"127.0.0.1", port};
    options.token = token;
    auto client = ferry::client::client::connect(options);
    const std::vector<wire::function_spec> specs = {
        function("square", "int64(int64)"),
        function("greet", "string(string,vector<int64>,map<string,float64>)"),
        function("nearest", "point(point,optional<bool>,tuple<uint8,bytes>)"),
        function("nothing", "void()"),
    };
    const std::string image = "#!/bin/false\n";
    client->request(ferry::detail::control_verb::deploy, deployed_app, [&](ferry::detail::buffer& out) {
      out.commit(mp_encode_array(out.reserve(5), 4));
      ferry::encode(out, specs);
      out.commit(mp_encode_binl(out.reserve(5), static_cast<std::uint32_t>(image.size())));
      out.append(image.data(), image.size());
      ferry::encode(out, std::string(deployed_app));
      ferry::encode(out, std::vector<std::string>{});  // the app's arguments
    });
    client->close();
  }
};

}  // namespace

void deploy_app() { running_server::instance().deploy(); }

std::string exchange(std::span<const char> bytes) {
  const running_server& server = running_server::instance();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FUZZ_CHECK(fd >= 0, "socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(server.port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    // libFuzzer's timeout alarm may interrupt connect, which then goes on by itself: wait for its outcome.
    int error = errno;
    if (error == EINTR) {
      pollfd p{fd, POLLOUT, 0};
      while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
      }
      socklen_t length = sizeof error;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    }
    if (error != 0) fuzz_fail(std::string("the server no longer accepts connections: ") + std::strerror(error));
  }
  // The server may close before it has read everything (a refused hello, a malformed frame): then the
  // rest cannot be sent, which is what a client would see too.
  for (std::size_t sent = 0; sent < bytes.size();) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string answer;
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // closed (or reset) by the server
    answer.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return answer;
}

}  // namespace fuzz
