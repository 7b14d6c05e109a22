// Secrets: tokens made from the kernel's randomness, and comparing them without telling by timing where they
// differ. Thread-safe.
#pragma once

#include <string>

namespace ferry {

/// 32 random bytes (getrandom) as 64 hex digits. Throws std::system_error when the kernel gives none.
std::string random_token();
/// Compares two secrets in time that depends only on their lengths.
bool constant_time_equal(const std::string& a, const std::string& b);

}  // namespace ferry
