// Deployed binaries are named by their SHA-256 digest: FIPS 180-4's test vectors.
#include "server/sha256.hpp"

#include <gtest/gtest.h>

#include <string>

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

TEST(sha256, compares_secrets_by_content_and_length) {
  EXPECT_TRUE(constant_time_equal("token", "token"));
  EXPECT_FALSE(constant_time_equal("token", "tokeN"));
  EXPECT_FALSE(constant_time_equal("token", "token2"));
  EXPECT_FALSE(constant_time_equal("", "token"));
  EXPECT_TRUE(constant_time_equal("", ""));
}

}  // namespace
}  // namespace ferry::server
