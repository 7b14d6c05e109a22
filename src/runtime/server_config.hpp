// Where a standalone server keeps its state, and the token that guards it.
#pragma once

#include <filesystem>
#include <string>

namespace ferry::runtime {

/// $FERRY_HOME, or ~/.ferry.
std::filesystem::path default_state_dir();
/// Reads `state_dir/file` (the token, or with "agent-token" the agents' credential); throws
/// ferry::ConnectionError saying how to fix a missing or unreadable file.
std::string read_token(const std::filesystem::path& state_dir, const std::string& file = "token");
/// Makes sure `state_dir` is the server's alone before it keeps a token or a database there: creates it
/// (mode 0700) when missing; throws std::runtime_error naming the fix when it is not a directory, is owned
/// by another user, or lets other users in (any group or other permission bit: the database holds every
/// stored call's arguments and results).
void check_state_dir(const std::filesystem::path& state_dir);
/// Reads `state_dir/file` ("token", or "agent-token", the agents' credential), creating it (mode 0600) with
/// a random token on first start. Throws when an existing token file is another user's or readable by
/// others: the token may have leaked.
std::string load_or_create_token(const std::filesystem::path& state_dir, const std::string& file = "token");

}  // namespace ferry::runtime
