// The same calls against a standalone `ferry server`, and the CLI around it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <filesystem>
#include <regex>
#include <thread>

#include "process.hpp"
#include "test_app.hpp"
#include "wire/protocol.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;

TEST(standalone, ferry_run_runs_the_example_against_the_server) {
  ferry_server server;
  const auto r =
      run({FERRY_CLI_PATH, "run", "--server", server.address(), "--state-dir", server.state_dir(), FERRY_HELLO_PATH});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "42\n");
}

TEST(standalone, FERRY_SERVER_points_app_main_at_the_server) {
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  EXPECT_EQ(run_app([] {
              EXPECT_EQ(add.remote(20, 22), 42);
              EXPECT_EQ(sum_of_squares.remote(3), 14);
              EXPECT_THROW(crash.remote(), ferry::ContainerCrashedError);
              EXPECT_EQ(add.remote(1, 1), 2);
            }),
            0);
  // The server outlives the program and serves the next one.
  EXPECT_EQ(run_app([] { EXPECT_EQ(square.remote(9), 81); }), 0);
}

// The Unix socket `ferry server` prints: its containers use it, a program on the host may too, and it goes
// with the server (an abstract name: no file is left behind).
TEST(standalone, programs_and_containers_on_the_servers_host_reach_it_over_its_unix_socket) {
  std::string address;
  {
    ferry_server server;
    std::smatch m;
    const std::string err = server.proc().err();
    ASSERT_TRUE(std::regex_search(err, m, std::regex(R"(containers on this host connect at (unix:@\S+),)"))) << err;
    address = m[1];
    scoped_env env({{"FERRY_SERVER", address}, {"FERRY_TOKEN", server.token()}});
    EXPECT_EQ(run_app([&] {
                EXPECT_EQ(add.remote(20, 22), 42);
                const auto [container_server, peers] = server_connection.remote();
                EXPECT_EQ(container_server, address);
                EXPECT_EQ(peers, std::vector<std::string>{address});
                const auto here = connected_sockets();
                EXPECT_EQ(std::count(here.begin(), here.end(), address), 1) << testing::PrintToString(here);
              }),
              0);
  }
  const auto after = run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", address}, {"FERRY_TOKEN", "x"}});
  EXPECT_EQ(after.code, 1);
  EXPECT_THAT(after.err, HasSubstr("cannot connect to the ferry server at " + address + ": Connection refused"));
}

// A server on loopback, its containers and the programs on its host speak no TLS, and do not load OpenSSL
// (docs/benchmarks.md, W6); a server that other hosts reach does, at its start (its certificate).
TEST(standalone, a_server_on_loopback_does_not_load_openssl_and_one_other_hosts_reach_does) {
  ferry_server loopback;
  scoped_env env({{"FERRY_SERVER", loopback.address()}, {"FERRY_TOKEN", loopback.token()}});
  EXPECT_EQ(run_app([] {
              EXPECT_EQ(add.remote(20, 22), 42);
              EXPECT_FALSE(library_mapped.remote("libssl.so"));
            }),
            0);
  const std::string maps = "/proc/" + std::to_string(loopback.proc().pid()) + "/maps";
  EXPECT_TRUE(maps_library(maps, "libc.so"));
  EXPECT_FALSE(maps_library(maps, "libssl.so"));
  EXPECT_FALSE(maps_library(maps, "libcrypto.so"));
  ferry_server everywhere({"--host", "0.0.0.0"});
  EXPECT_TRUE(maps_library("/proc/" + std::to_string(everywhere.proc().pid()) + "/maps", "libssl.so"));
}

TEST(standalone, containers_start_with_no_signal_blocked_and_sigint_and_sigterm_at_their_defaults) {
  // `ferry server` handles SIGINT and SIGTERM itself; its containers must not inherit how (blocked, the
  // server would stop them with a SIGTERM they never see), whatever thread starts them.
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  std::string state;
  EXPECT_EQ(run_app([&] { state = signal_state.remote(); }), 0);
  EXPECT_THAT(state, HasSubstr("SigBlk:\t0000000000000000\n"));
  const auto ignored = state.substr(state.find("SigIgn:\t") + 8, 16);
  const unsigned long long mask = std::stoull(ignored, nullptr, 16);
  EXPECT_EQ(mask & (1ULL << (SIGINT - 1)), 0u) << state;
  EXPECT_EQ(mask & (1ULL << (SIGTERM - 1)), 0u) << state;
}

TEST(standalone, a_second_server_on_the_same_state_dir_is_refused_and_the_first_keeps_serving) {
  ferry_server server;
  const auto second = run({FERRY_CLI_PATH, "server", "--port", "0", "--state-dir", server.state_dir()});
  EXPECT_EQ(second.code, 1);
  EXPECT_THAT(second.err, HasSubstr("another ferry server is using " + server.state_dir()));
  EXPECT_THAT(second.err, HasSubstr("--state-dir"));
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  EXPECT_EQ(run_app([] { EXPECT_EQ(add.remote(20, 22), 42); }), 0);
}

TEST(standalone, a_program_with_the_wrong_token_is_refused_with_a_fix) {
  ferry_server server;
  const auto r = run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", "not-the-token"}});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("refused the connection: invalid token"));
  EXPECT_THAT(r.err, HasSubstr("FERRY_TOKEN"));
  EXPECT_TRUE(server.proc().wait_for_output("refused connection from"));
}

TEST(standalone, a_call_in_flight_when_the_server_dies_fails_with_a_connection_error_that_says_what_to_do) {
  ferry_server server;
  const std::string never_opened = scratch_dir() + "/gate";
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  EXPECT_EQ(run_app([&] {
              std::thread killer([&] {
                // Until a container holds the call: then the server dies under it.
                const std::regex holding(R"(\be2e\s+hold\s+\S+\s+1\b)");
                for (auto deadline = std::chrono::steady_clock::now() + 30s;
                     std::chrono::steady_clock::now() < deadline;) {
                  if (std::regex_search(server.cli({"ps"}).out, holding)) break;
                }
                server.proc().signal(SIGKILL);
              });
              try {
                hold.remote(never_opened);
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ConnectionError& e) {
                EXPECT_THAT(e.what(), HasSubstr("lost the connection to the ferry server at " + server.address() +
                                                " while calling 'hold'"));
                EXPECT_THAT(e.what(), HasSubstr("may or may not have run"));
                EXPECT_THAT(e.what(), HasSubstr(".spawn()"));
              }
              killer.join();
              try {
                add.remote(1, 2);
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ConnectionError& e) {
                EXPECT_THAT(e.what(), HasSubstr("cannot call 'add': the connection to the ferry server at " +
                                                server.address() + " is closed"));
              }
            }),
            0);
}

TEST(standalone, an_unreachable_server_is_a_clear_error) {
  const auto r = run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", "127.0.0.1:1"}, {"FERRY_TOKEN", "x"}});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot connect to the ferry server at 127.0.0.1:1"));
}

TEST(standalone, an_oversized_payload_is_refused_and_the_server_keeps_serving) {
  ferry_server server({"--max-frame-size", "65536"});
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  EXPECT_EQ(run_app([] {
              EXPECT_EQ(length_of.remote(ferry::bytes(1000)), 1000u);
              try {
                length_of.remote(ferry::bytes(100'000));
                ADD_FAILURE() << "no exception";
              } catch (const ferry::PayloadTooLargeError& e) {
                EXPECT_THAT(e.what(), HasSubstr("larger than the server accepts (65536 bytes)"));
              }
              EXPECT_EQ(length_of.remote(ferry::bytes(10)), 10u);
            }),
            0);
}

// Payloads of many huge pages each (detail::huge_payload), through the server to a container and back: every
// byte as sent, whatever their size's remainder in pages, and again on the same connections.
TEST(standalone, payloads_of_tens_of_mib_go_to_a_container_and_back_whole) {
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  EXPECT_EQ(run_app([] {
              for (const std::size_t size : {std::size_t{24 << 20} + 5, std::size_t{9 << 20}}) {
                ferry::bytes data(size);
                std::string text(size / 3, ' ');
                for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::byte>(i ^ (i >> 12));
                for (std::size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>('a' + (i ^ (i >> 16)) % 26);
                const auto [data_back, text_back] = echo_payloads.remote(data, text);
                EXPECT_EQ(data_back.size(), data.size());
                EXPECT_TRUE(data_back == data) << "the bytes came back changed (" << size << " bytes)";
                EXPECT_TRUE(text_back == text) << "the string came back changed (" << text.size() << " bytes)";
              }
            }),
            0);
}

TEST(standalone, sigterm_stops_the_server_and_its_containers) {
  ferry_server server;
  {
    scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
    EXPECT_EQ(run_app([] { EXPECT_EQ(add.remote(1, 2), 3); }), 0);
  }
  server.proc().signal(SIGTERM);
  // The streams close only when the server and every container it started (they share its stdout) exit.
  EXPECT_EQ(server.proc().wait(), 0);
}

TEST(standalone, containers_run_main_with_the_programs_arguments) {
  // argv_app reads argv[1] before app.main, and its function uses it: in its containers too.
  auto r = run({FERRY_ARGV_APP_PATH, "Hello"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Hello, world\n");
  ferry_server server;
  r = run({FERRY_ARGV_APP_PATH, "Bonjour"}, {{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Bonjour, world\n");
  // Deployed: `ferry deploy BINARY -- ARGS` gives them to its containers.
  r = run({FERRY_CLI_PATH, "deploy", "--server", server.address(), "--state-dir", server.state_dir(),
           FERRY_ARGV_APP_PATH, "--", "Hola"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = server.cli({"call", "argv_app.greet", "[\"world\"]"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "\"Hola, world\"\n");
}

TEST(standalone, a_container_that_fails_in_main_before_app_main_says_so) {
  EXPECT_EQ(run_app([] {
              try {
                never_starts.remote();  // the e2e binary's main exits with code 3 for it, before app.main
                ADD_FAILURE() << "no exception";
              } catch (const ferry::ContainerStartError& e) {
                EXPECT_THAT(e.what(), HasSubstr("exited with code 3 before it reached app.main"));
                EXPECT_THAT(e.what(), HasSubstr("never_starts: failing on purpose before serving"));
              }
            }),
            0);
}

TEST(standalone, a_malformed_server_address_or_an_unreadable_token_is_a_clear_error) {
  const auto nonsense = run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", "nonsense"}, {"FERRY_TOKEN", "x"}});
  EXPECT_EQ(nonsense.code, 1);
  EXPECT_THAT(nonsense.err, HasSubstr("'nonsense' is not a server address; write host:port, e.g. 127.0.0.1:7700"));
  const auto relative = run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", "unix:server.sock"}, {"FERRY_TOKEN", "x"}});
  EXPECT_EQ(relative.code, 1);
  EXPECT_THAT(relative.err,
              HasSubstr("'unix:server.sock' is not a Unix socket address; write unix: and an absolute path, or "
                        "unix:@NAME"));
  const auto missing =
      run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", "unix:/nonexistent/server.sock"}, {"FERRY_TOKEN", "x"}});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err,
              HasSubstr("cannot connect to the ferry server at unix:/nonexistent/server.sock: No such file"));
  ferry_server server;  // (reached first: with no server, "Connection refused" is the problem to report)
  const std::string empty_home = scratch_dir();
  const auto no_token =
      run({FERRY_HELLO_PATH}, {{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", ""}, {"FERRY_HOME", empty_home}});
  EXPECT_EQ(no_token.code, 1);
  EXPECT_THAT(no_token.err, HasSubstr("cannot read the server's token from " + empty_home +
                                      "/token (No such file or directory); set FERRY_TOKEN"));
}

TEST(cli, a_server_that_cannot_listen_exits_1_naming_the_fix) {
  ferry_server first;
  const std::string port = first.address().substr(first.address().rfind(':') + 1);
  const std::string state_dir = scratch_dir();
  const auto taken = run({FERRY_CLI_PATH, "server", "--port", port, "--state-dir", state_dir});
  EXPECT_EQ(taken.code, 1);
  EXPECT_THAT(taken.err, HasSubstr("cannot listen on 127.0.0.1:" + port + ": Address already in use"));
  EXPECT_THAT(taken.err, HasSubstr("choose another --port"));
  const auto bad_host = run({FERRY_CLI_PATH, "server", "--host", "no-such-host", "--state-dir", state_dir});
  EXPECT_EQ(bad_host.code, 1);
  EXPECT_THAT(bad_host.err, HasSubstr("'no-such-host' is not an IP address to listen on"));
}

TEST(cli, deploying_under_a_name_that_breaks_the_rule_is_refused_naming_it) {
  ferry_server server;
  const auto r = server.cli({"deploy", "--name", "my.app", FERRY_HELLO_PATH});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("'my.app' is not a valid app name: use 1 to 128 letters, digits, '-' and '_'"));
}

TEST(cli, deploying_a_binary_that_is_not_a_ferry_app_is_refused_saying_what_an_app_is) {
  ferry_server server;
  const auto r = server.cli({"deploy", "/bin/true"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("/bin/true is not a ferry app"));
  EXPECT_THAT(r.err, HasSubstr("app.main(argc, argv, entry)"));
  EXPECT_THAT(server.cli({"apps"}).out, testing::Not(HasSubstr("true")));
}

TEST(cli, deploying_a_program_that_never_describes_its_app_stops_it_after_the_deadline) {
  ferry_server server;
  // /bin/sleep 600 never reaches an app.main: deploy gives up on it after --describe-timeout.
  const auto r = run({FERRY_CLI_PATH, "deploy", "--server", server.address(), "--state-dir", server.state_dir(),
                      "--describe-timeout", "0.5", "/bin/sleep", "--", "600"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("/bin/sleep did not describe its app within 0.5 s, and was stopped"));
}

/// Waits (up to 30 s) until GET /v1/calls lists a call of `function` in `status`; its id, or "".
std::string wait_for_call(const ferry_server& server, const std::string& function, const std::string& status) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < give_up) {
    const auto listing = boost::json::parse(server.http_get("/v1/calls?limit=10000"));
    for (const auto& c : listing.at("calls").as_array()) {
      if (c.at("function").as_string() == function && c.at("status").as_string() == status) {
        return c.at("call_id").as_string().c_str();
      }
    }
    std::this_thread::sleep_for(10ms);  // (polling the server's state, with a deadline)
  }
  return "";
}

TEST(cli, ctrl_c_on_ferry_call_cancels_the_call_and_says_so) {
  ferry_server server;
  ASSERT_EQ(server.cli({"deploy", "--name", "demo", E2E_BINARY}).code, 0);
  const std::string never = scratch_dir() + "/never";
  process call({FERRY_CLI_PATH, "call", "--server", server.address(), "--state-dir", server.state_dir(), "demo.hold",
                "[\"" + never + "\"]"});
  ASSERT_NE(wait_for_call(server, "hold", "running"), "");
  call.signal(SIGINT);
  EXPECT_EQ(call.wait(), 128 + SIGINT);
  EXPECT_THAT(call.err(), HasSubstr("ferry call: interrupted; the call of demo.hold was cancelled"));
  EXPECT_NE(wait_for_call(server, "hold", "cancelled"), "");
}

TEST(cli, a_call_whose_caller_is_killed_is_cancelled_on_the_server) {
  ferry_server server;
  ASSERT_EQ(server.cli({"deploy", "--name", "demo", E2E_BINARY}).code, 0);
  const std::string never = scratch_dir() + "/never";
  process call({FERRY_CLI_PATH, "call", "--server", server.address(), "--state-dir", server.state_dir(), "demo.hold",
                "[\"" + never + "\"]"});
  ASSERT_NE(wait_for_call(server, "hold", "running"), "");
  call.signal(SIGKILL);  // nobody can take its result any more: the server cancels it
  call.wait();
  EXPECT_NE(wait_for_call(server, "hold", "cancelled"), "");
}

TEST(cli, ferry_calls_filters_by_app_function_and_status_and_limits_the_count) {
  ferry_server server;
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", server.token()}});
  ASSERT_EQ(server.cli({"deploy", "--name", "demo", E2E_BINARY}).code, 0);
  using Square = ferry::Function<std::int64_t(std::int64_t)>;
  const auto square_of = Square::from_name("demo", "square");
  for (std::int64_t i = 0; i < 3; ++i) EXPECT_EQ(square_of.spawn(i).get(30s), i * i);
  EXPECT_THROW(ferry::Function<void()>::from_name("demo", "raise_test_error").spawn().get(30s), ferry::RemoteError);
  auto lines = [](const std::string& out) { return std::count(out.begin(), out.end(), '\n') - 1; };  // (a header)
  auto r = server.cli({"calls", "--app", "demo"});
  EXPECT_EQ(lines(r.out), 4) << r.out;
  r = server.cli({"calls", "--function", "square", "--status", "ok"});
  EXPECT_EQ(lines(r.out), 3) << r.out;
  r = server.cli({"calls", "--status", "failed"});
  EXPECT_EQ(lines(r.out), 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("demo.raise_test_error"));
  r = server.cli({"calls", "--status", "remote_exception", "-n", "1"});
  EXPECT_EQ(lines(r.out), 1) << r.out;
  r = server.cli({"calls", "--limit", "2"});
  EXPECT_EQ(lines(r.out), 2) << r.out;
  r = server.cli({"calls", "--app", "nope"});
  EXPECT_EQ(lines(r.out), 0) << r.out;
  r = server.cli({"calls", "--status", "finished"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("no call status 'finished': use one of pending, failed, ok, remote_exception"));
}

TEST(cli, version_help_and_usage_errors_follow_conventions) {
  const std::string version_line = std::string("ferry ") + ferry::version() + " (wire protocol " +
                                   std::to_string(ferry::wire::protocol_version) + ")\n";
  for (const char* flag : {"version", "--version"}) {
    const auto version = run({FERRY_CLI_PATH, flag});
    EXPECT_EQ(version.code, 0) << flag;
    EXPECT_EQ(version.out, version_line) << flag;
  }
  for (const char* command : {"server", "run", "version"}) {
    const auto help = run({FERRY_CLI_PATH, command, "--help"});
    EXPECT_EQ(help.code, 0) << command;
    EXPECT_THAT(help.out, HasSubstr("Usage")) << command;
  }
  const auto top = run({FERRY_CLI_PATH, "--help"});
  EXPECT_EQ(top.code, 0);
  EXPECT_THAT(top.out, HasSubstr("server"));
  const auto bad = run({FERRY_CLI_PATH, "frobnicate"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.err, HasSubstr("'frobnicate' is not a ferry command (commands: server, "));
  const auto missing = run({FERRY_CLI_PATH, "run"});
  EXPECT_EQ(missing.code, 2);
}

}  // namespace
}  // namespace e2e
