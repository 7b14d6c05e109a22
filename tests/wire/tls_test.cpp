// The server's TLS identity (made once, kept in its state directory, its key private) and the pins that
// programs and agents give for it.
#include "wire/tls.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdlib>
#include <ferry/errors.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

namespace {

namespace tls = ferry::wire::tls;
namespace asio = boost::asio;
using testing::HasSubstr;

std::filesystem::path fresh_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("ferry-tls-test-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(tls_identity, is_made_once_and_kept_with_its_key_private) {
  const auto dir = fresh_dir("kept");
  const tls::identity made = tls::load_or_create_identity(dir);
  EXPECT_EQ(made.fingerprint, tls::fingerprint_of_pem(made.certificate_pem));
  struct stat st {};
  ASSERT_EQ(::stat((dir / "tls-key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  EXPECT_EQ(tls::load_or_create_identity(dir).fingerprint, made.fingerprint);  // a restart keeps it
  EXPECT_NE(tls::create_identity().fingerprint, made.fingerprint);             // another server has its own
  std::filesystem::remove_all(dir);
}

TEST(tls_identity, a_key_others_may_read_is_refused_naming_the_fix) {
  const auto dir = fresh_dir("open");
  tls::load_or_create_identity(dir);
  std::filesystem::permissions(dir / "tls-key.pem", std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  try {
    tls::load_or_create_identity(dir);
    ADD_FAILURE() << "a key open to its group was taken";
  } catch (const ferry::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is not private to you"));
    EXPECT_THAT(e.what(), HasSubstr("chmod 600"));
  }
  std::filesystem::remove_all(dir);
}

TEST(tls_pin, is_a_fingerprint_in_either_case_with_or_without_colons_or_a_certificate_file) {
  const auto dir = fresh_dir("pin");
  const tls::identity id = tls::load_or_create_identity(dir);
  const std::string hex = id.fingerprint.substr(7);
  EXPECT_EQ(tls::parse_pin(id.fingerprint), id.fingerprint);
  std::string openssl_style;  // as `openssl x509 -fingerprint -sha256` prints it
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    openssl_style += (i ? ":" : "") +
                     std::string{static_cast<char>(std::toupper(hex[i])), static_cast<char>(std::toupper(hex[i + 1]))};
  }
  EXPECT_EQ(tls::parse_pin(openssl_style), id.fingerprint);
  EXPECT_EQ(tls::parse_pin((dir / "tls-cert.pem").string()), id.fingerprint);
  std::filesystem::remove_all(dir);
}

TEST(tls_pin, anything_else_is_an_error_saying_what_to_give) {
  for (const std::string& bad :
       {std::string("nonsense"), std::string("sha256:abcd"), std::string(63, 'a'), std::string("/etc/hostname")}) {
    try {
      tls::parse_pin(bad);
      ADD_FAILURE() << bad << " was taken for a pin";
    } catch (const ferry::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("tls-cert.pem")) << bad;
    }
  }
}

// A client pinning another certificate than the server's fails its handshake, told which it was shown.
TEST(tls_handshake, with_another_certificate_than_the_pinned_one_fails_naming_both) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket a(io);
  a.connect(acceptor.local_endpoint());
  auto b = acceptor.accept();
  const tls::identity id = tls::create_identity();
  const std::string other = tls::create_identity().fingerprint;
  auto client = tls::stream_over(std::move(a), tls::client_context());
  auto server = tls::stream_over(std::move(b), tls::server_context(id));
  std::string client_error, server_error;
  bool wrong = false;
  tls::async_client_handshake(client, other, [&](const std::string& e, bool w) {
    client_error = e;
    wrong = w;
    boost::system::error_code ignored;
    client->socket().close(ignored);  // (as the client does: the server's handshake then ends)
  });
  tls::async_server_handshake(server, "", [&](const std::string& e, bool) { server_error = e; });
  io.run();
  EXPECT_TRUE(wrong);
  EXPECT_THAT(client_error,
              HasSubstr("it presents the TLS certificate " + id.fingerprint + ", not the pinned " + other));
  EXPECT_NE(server_error, "");
}

}  // namespace
