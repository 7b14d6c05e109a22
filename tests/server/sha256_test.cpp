// Deployed binaries are named by their SHA-256 digest: FIPS 180-4's test vectors.
#include "server/sha256.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "base/secrets.hpp"

namespace ferry::server {
namespace {

std::string digest(const std::string& text) { return sha256_hex(std::span<const char>(text.data(), text.size())); }

TEST(sha256, digests_the_fips_180_4_test_vectors) {
  EXPECT_EQ(digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(digest(std::string(1'000'000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(sha256, a_digest_taken_piece_by_piece_is_the_digest_of_the_whole) {
  std::string text(10'000, '\0');
  for (std::size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>(i * 7 + 3);
  // Pieces that end inside a block, on a block's end, and span several blocks; and empty ones.
  for (std::size_t piece : {1u, 7u, 55u, 56u, 63u, 64u, 65u, 1000u, 4096u}) {
    sha256 s;
    for (std::size_t at = 0; at < text.size(); at += piece) {
      s.update(std::span<const char>(text.data() + at, std::min(piece, text.size() - at)));
      s.update(std::span<const char>());
    }
    EXPECT_EQ(s.hex(), digest(text)) << "pieces of " << piece;
  }
}

TEST(sha256, the_cpus_sha_extensions_give_the_portable_codes_digests) {
  if (!sha256::uses_cpu_extensions()) GTEST_SKIP() << "this CPU has no SHA extensions: the portable code is used";
  std::string text(3 << 20, '\0');
  std::uint32_t x = 12345;
  for (auto& c : text) c = static_cast<char>((x = x * 1103515245 + 12345) >> 24);
  // Every length up to a few blocks (each tail shape), and a large input given in uneven pieces.
  for (std::size_t n = 0; n <= 300; ++n) {
    sha256 portable = sha256::portable();
    portable.update(std::span<const char>(text.data(), n));
    EXPECT_EQ(digest(text.substr(0, n)), portable.hex()) << n << " bytes";
  }
  sha256 fast;
  sha256 portable = sha256::portable();
  for (std::size_t at = 0, piece = 1; at < text.size(); at += piece, piece = piece * 3 % 100'003 + 1) {
    const std::span<const char> part(text.data() + at, std::min(piece, text.size() - at));
    fast.update(part);
    portable.update(part);
  }
  EXPECT_EQ(fast.hex(), portable.hex());
}

/// A file under the test's own temporary directory.
class digests_of_files : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() / ("ferry-sha256-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::filesystem::path write(const std::string& name, const std::string& content) {
    std::ofstream(dir / name, std::ios::binary | std::ios::trunc) << content;
    return dir / name;
  }
  /// What file_digests::of gives for `path`, and the threads it was hashed and answered on.
  std::string digest_of(file_digests& digests, const std::filesystem::path& path) {
    std::string result = "not answered";
    digests.of(path, [&](const std::string& d) {
      result = d;
      answered_on = std::this_thread::get_id();
    });
    EXPECT_EQ(result, "not answered") << "of() answered from within the call";
    io.restart();
    io.run();
    return result;
  }

  std::filesystem::path dir;
  boost::asio::io_context io;
  std::thread::id answered_on;
};

TEST_F(digests_of_files, a_file_is_hashed_off_the_event_loop_and_answered_on_it) {
  const std::string content(3 << 20, 'x');  // (more than one piece read)
  const auto path = write("binary", content);
  file_digests digests(io.get_executor());
  EXPECT_EQ(digests.known(path), "");
  // The loop runs other work while the file is hashed: a handler posted after the request runs before
  // the answer comes.
  std::vector<std::string> order;
  digests.of(path, [&](const std::string& d) { order.push_back(d); });
  boost::asio::post(io, [&] { order.push_back("the loop ran meanwhile"); });
  io.run();
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], "the loop ran meanwhile");
  EXPECT_EQ(order[1], digest(content));
  EXPECT_EQ(digests.known(path), digest(content));
  EXPECT_EQ(digest_of(digests, path), digest(content));
  EXPECT_EQ(answered_on, std::this_thread::get_id());
}

TEST_F(digests_of_files, a_changed_file_is_hashed_again_and_a_missing_one_has_no_digest) {
  const auto path = write("binary", "first");
  file_digests digests(io.get_executor());
  EXPECT_EQ(digest_of(digests, path), digest("first"));
  write("binary", "second, longer");
  EXPECT_EQ(digests.known(path), "");
  EXPECT_EQ(digest_of(digests, path), digest("second, longer"));
  std::filesystem::remove(path);
  EXPECT_EQ(digests.known(path), "");
  EXPECT_EQ(digest_of(digests, dir / "no such file"), "");
}

TEST_F(digests_of_files, several_asking_for_one_file_at_once_all_get_its_digest) {
  const auto path = write("binary", "shared");
  file_digests digests(io.get_executor());
  std::vector<std::string> answers;
  for (int i = 0; i < 3; ++i) digests.of(path, [&](const std::string& d) { answers.push_back(d); });
  io.run();
  EXPECT_EQ(answers, std::vector<std::string>(3, digest("shared")));
}

TEST(sha256, compares_secrets_by_content_and_length) {
  EXPECT_TRUE(constant_time_equal("token", "token"));
  EXPECT_FALSE(constant_time_equal("token", "tokeN"));
  EXPECT_FALSE(constant_time_equal("token", "token2"));
  EXPECT_FALSE(constant_time_equal("", "token"));
  EXPECT_TRUE(constant_time_equal("", ""));
}

}  // namespace
}  // namespace ferry::server
