#pragma once

#include <unistd.h>

#include <cerrno>
#include <string_view>

namespace ferry::runtime {

/// Writes all of `data` to `fd` (a terminal, a pipe), through short writes and writes a signal
/// interrupts; false if the descriptor fails (its reader has gone, say).
inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace ferry::runtime
