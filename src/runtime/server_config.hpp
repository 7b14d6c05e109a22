// Where a standalone server keeps its state, and the token that guards it.
#pragma once

#include <filesystem>
#include <string>

namespace ferry::runtime {

/// $FERRY_HOME, or ~/.ferry.
std::filesystem::path default_state_dir();
/// 32 random bytes as hex.
std::string random_token();
/// Reads `state_dir/token`; throws ferry::ConnectionError saying how to fix a missing or unreadable file.
std::string read_token(const std::filesystem::path& state_dir);
/// Reads `state_dir/token`, creating it (mode 0600) with a random token on first start.
std::string load_or_create_token(const std::filesystem::path& state_dir);

}  // namespace ferry::runtime
