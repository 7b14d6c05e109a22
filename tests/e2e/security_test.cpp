// Security defaults: a server's state directory and token are its user's alone, it listens on loopback
// unless told otherwise (and then says what that exposes), and a container gets the token only where no
// other user, and not even its own body, can see it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "process.hpp"
#include "test_app.hpp"

namespace e2e {
namespace {

using testing::HasSubstr;
using testing::Not;

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

run_result start_server_on(const std::string& state_dir) {
  return run({FERRY_CLI_PATH, "server", "--port", "0", "--state-dir", state_dir});
}

TEST(security, a_new_state_directory_and_its_token_are_private_to_the_user) {
  const std::string parent = scratch_dir();
  const std::string state_dir = parent + "/nested/state";
  {
    process server({FERRY_CLI_PATH, "server", "--port", "0", "--state-dir", state_dir});
    ASSERT_TRUE(server.wait_for_output(" listening on ")) << server.err();
    EXPECT_EQ(mode_of(state_dir), 0700u);
    EXPECT_EQ(mode_of(state_dir + "/token"), 0600u);
    std::ifstream in(state_dir + "/token");
    std::string token;
    std::getline(in, token);
    EXPECT_EQ(token.size(), 64u);
  }
  std::filesystem::remove_all(parent);
}

TEST(security, a_state_directory_open_to_other_users_is_refused_with_the_fix) {
  const std::string state_dir = scratch_dir();
  ASSERT_EQ(::chmod(state_dir.c_str(), 0755), 0);
  const auto r = start_server_on(state_dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("state directory " + state_dir + " is open to other users (mode 0755)"));
  EXPECT_THAT(r.err, HasSubstr("chmod 700 " + state_dir));
  EXPECT_EQ(mode_of(state_dir), 0755u) << "the server must not change a directory it was given";
  EXPECT_FALSE(std::filesystem::exists(state_dir + "/token"));
  std::filesystem::remove_all(state_dir);
}

TEST(security, a_token_file_others_can_read_is_refused_as_possibly_leaked) {
  const std::string state_dir = scratch_dir();
  const std::string token_file = state_dir + "/token";
  std::ofstream(token_file) << "0123456789abcdef\n";
  ASSERT_EQ(::chmod(token_file.c_str(), 0644), 0);
  const auto r = start_server_on(state_dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(token_file + " is not private to you (mode 0644"));
  EXPECT_THAT(r.err, HasSubstr("the token may have leaked"));
  EXPECT_THAT(r.err, HasSubstr("chmod 600 " + token_file));
  std::filesystem::remove_all(state_dir);
}

TEST(security, the_server_listens_on_loopback_by_default_and_serves_other_hosts_over_tls_only_when_told_to) {
  ferry_server local;
  EXPECT_THAT(local.address(), testing::StartsWith("127.0.0.1:"));
  // The line comes before the "listening" line the constructor waited for.
  EXPECT_THAT(local.proc().err(), Not(HasSubstr("other hosts connect over TLS")));
  EXPECT_FALSE(std::filesystem::exists(local.state_dir() + "/tls-key.pem"));

  ferry_server everywhere({"--host", "0.0.0.0"});
  EXPECT_THAT(everywhere.proc().err(), HasSubstr("other hosts connect over TLS, and pin this server's certificate"));
  EXPECT_EQ(std::filesystem::status(everywhere.state_dir() + "/tls-key.pem").permissions(),
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  // Containers still reach it on loopback.
  scoped_env env({{"FERRY_SERVER", everywhere.address()}, {"FERRY_TOKEN", everywhere.token()}});
  EXPECT_EQ(run_app([] { EXPECT_EQ(add.remote(40, 2), 42); }), 0);
}

// A container connects with a credential of its own, made for its launch: the server's token is not in its
// environment at all, not even in the block it started with (/proc/PID/environ, which unsetenv leaves as is).
TEST(security, a_container_has_the_token_neither_on_its_command_line_nor_in_its_bodys_environment) {
  ferry_server server;
  const std::string token = server.token();
  scoped_env env({{"FERRY_SERVER", server.address()}, {"FERRY_TOKEN", token}});
  EXPECT_EQ(run_app([&] {
              const container_view seen = container_exposure.remote();
              EXPECT_THAT(seen.command_line, Not(HasSubstr(token)));
              EXPECT_THAT(seen.command_line, HasSubstr("e2e_test"));
              EXPECT_EQ(seen.token_in_environment, "") << "a body, and what it starts, has no use for the token";
              // What `ps` shows of the container, read from outside it.
              std::ifstream in("/proc/" + std::to_string(seen.pid) + "/cmdline");
              const std::string from_outside((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
              EXPECT_FALSE(from_outside.empty());
              EXPECT_THAT(from_outside, Not(HasSubstr(token)));
              std::ifstream env_in("/proc/" + std::to_string(seen.pid) + "/environ");
              const std::string environment((std::istreambuf_iterator<char>(env_in)), std::istreambuf_iterator<char>());
              EXPECT_THAT(environment, HasSubstr("FERRY_CONTAINER_ID="));
              EXPECT_THAT(environment, Not(HasSubstr(token))) << "the container started with the server's token";
            }),
            0);
}

}  // namespace
}  // namespace e2e
