// A program's side of the connection: reaching a server (or something that is not one), and programs that
// only call deployed functions, without an App or app.main.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;
using testing::Not;
using Square = ferry::Function<std::int64_t(std::int64_t)>;

/// A TCP listener on loopback that is not a ferry server: it accepts connections and then says nothing
/// (`http_reply` empty), or answers the first bytes it reads with `http_reply` and closes, as an HTTP server
/// answers a request it cannot parse.
class foreign_listener {
 public:
  explicit foreign_listener(std::string http_reply = {}) : reply_(std::move(http_reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      throw std::runtime_error("cannot listen");
    }
    address_ = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
    acceptor_ = std::thread([this] {
      for (;;) {
        const int peer = ::accept(fd_, nullptr, nullptr);
        if (peer < 0) return;  // closed: the test is over
        peers_.push_back(peer);
        if (reply_.empty()) continue;  // silent: keep it open, read nothing
        char request[512];
        if (::read(peer, request, sizeof request) > 0) {
          (void)!::write(peer, reply_.data(), reply_.size());
        }
        ::shutdown(peer, SHUT_RDWR);
      }
    });
  }
  ~foreign_listener() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    acceptor_.join();
    for (int peer : peers_) ::close(peer);
  }
  const std::string& address() const { return address_; }

 private:
  std::string reply_;
  int fd_ = -1;
  std::string address_;
  std::vector<int> peers_;  // acceptor thread only, until joined
  std::thread acceptor_;
};

TEST(client, a_program_pointed_at_a_silent_port_fails_after_the_handshake_deadline_naming_the_address) {
  foreign_listener silent;
  const auto r = run({FERRY_HELLO_PATH},
                     {{"FERRY_SERVER", silent.address()}, {"FERRY_TOKEN", "t"}, {"FERRY_CONNECT_TIMEOUT", "0.5"}});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(silent.address() + " accepted the connection but did not answer ferry's handshake"));
  EXPECT_THAT(r.err, HasSubstr("FERRY_SERVER"));
}

TEST(client, every_cli_command_pointed_at_a_silent_port_fails_instead_of_waiting) {
  foreign_listener silent;
  for (std::vector<std::string> command : std::vector<std::vector<std::string>>{
           {"apps"}, {"ps"}, {"calls"}, {"call", "hello.blocking_function"}, {"stop", "hello"}, {"logs", "hello"}}) {
    command.insert(command.begin(), FERRY_CLI_PATH);
    command.insert(command.end(), {"--server", silent.address()});
    const auto r = run(command, {{"FERRY_TOKEN", "t"}, {"FERRY_CONNECT_TIMEOUT", "0.5"}});
    EXPECT_EQ(r.code, 1) << command[1];
    EXPECT_THAT(r.err, HasSubstr("did not answer ferry's handshake")) << command[1];
  }
}

TEST(client, a_program_pointed_at_an_http_server_is_told_it_is_not_a_ferry_server) {
  foreign_listener http("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  const auto r = run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", http.address()}, {"FERRY_TOKEN", "t"}});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("the server at " + http.address() + " closed the connection during ferry's handshake"));
  EXPECT_THAT(r.err, HasSubstr("is " + http.address() + " a ferry server"));
}

/// host:port of a loopback port nobody listens on.
std::string closed_port_address() { return "127.0.0.1:" + free_port(); }

TEST(client, an_unreachable_server_is_reported_before_a_missing_token_file) {
  const std::string no_token = scratch_dir();  // a state directory without a token file
  const std::string nowhere = closed_port_address();
  auto r = run({FERRY_CLI_PATH, "apps", "--server", nowhere, "--state-dir", no_token}, {{"FERRY_TOKEN", ""}});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot connect to the ferry server at " + nowhere + ": Connection refused"));
  EXPECT_THAT(r.err, Not(HasSubstr("token")));
  r = run({FERRY_CLI_PATH, "run", "--server", nowhere, "--state-dir", no_token, FERRY_HELLO_PATH},
          {{"FERRY_TOKEN", ""}});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("Connection refused"));
  // With the server there, the missing file is the problem, and says so.
  ferry_server server;
  r = run({FERRY_CLI_PATH, "apps", "--server", server.address(), "--state-dir", no_token}, {{"FERRY_TOKEN", ""}});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err,
              HasSubstr("cannot read the server's token from " + no_token + "/token (No such file or directory)"));
}

TEST(client, a_program_without_app_main_looks_up_calls_spawns_maps_and_fetches_deployed_functions) {
  deployed_server d("plain");
  // No run_app: this is a plain program (a web server, a script) that connects on first use.
  const auto square_of = Square::from_name("plain", "square");
  EXPECT_EQ(square_of.remote(7), 49);
  EXPECT_EQ(square_of.map(std::vector<std::int64_t>{1, 2, 3}), (std::vector<std::int64_t>{1, 4, 9}));
  auto call = square_of.spawn(9);
  EXPECT_EQ(ferry::FunctionCall<std::int64_t>::from_id(call.id()).get(30s), 81);
  EXPECT_EQ(square_of.future(5).result(), 25);
  EXPECT_EQ(ferry::run(square_of.remote.aio(6)), 36);
  EXPECT_THROW(Square::from_name("plain", "no_such_function"), ferry::UnknownFunctionError);
}

TEST(client, local_on_a_function_looked_up_by_name_is_a_clear_error) {
  deployed_server d("plain");
  const auto square_of = Square::from_name("plain", "square");
  try {
    square_of.local(3);  // (it used to dereference a null body)
    ADD_FAILURE() << "no exception";
  } catch (const ferry::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("'plain.square' was looked up with from_name"));
    EXPECT_THAT(e.what(), HasSubstr(".remote()"));
  }
}

TEST(client, a_program_without_app_main_reconnects_after_the_server_restarts) {
  deployed_server d("plain");
  const auto square_of = Square::from_name("plain", "square");
  EXPECT_EQ(square_of.remote(3), 9);
  d.server.kill_and_restart();  // the deployment survives; this program's connection does not
  EXPECT_EQ(square_of.remote(4), 16);
  EXPECT_EQ(square_of.spawn(5).get(30s), 25);
}

TEST(client, a_program_without_app_main_and_no_server_gets_a_connection_error_naming_the_address) {
  const std::string nowhere = closed_port_address();
  scoped_env env({{"FERRY_SERVER", nowhere}, {"FERRY_TOKEN", "t"}});
  try {
    (void)Square::from_name("plain", "square");
    ADD_FAILURE() << "no exception";
  } catch (const ferry::ConnectionError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot connect to the ferry server at " + nowhere));
    EXPECT_THAT(e.what(), HasSubstr("ferry server"));
  }
}

}  // namespace
}  // namespace e2e
