#include "client/terminal.hpp"

#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <string>

namespace ferry::client {

namespace {
/// The terminal's state. Leaked on purpose: threads may print until the process's very end, after static
/// destructors have run.
struct terminal_state {
  std::mutex mu;
  std::string drawn_bar;  // guarded by mu; empty: no bar
};
terminal_state& terminal() {
  static auto* state = new terminal_state;
  return *state;
}

/// Whether `fd` writes where the bar is (stderr's terminal): stderr itself, or stdout on the same terminal.
bool shares_the_bar(int fd) { return fd == STDERR_FILENO || ::isatty(fd) == 1; }
}  // namespace

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void print_lines(int fd, std::string_view text) {
  terminal_state& t = terminal();
  std::lock_guard lock(t.mu);
  if (t.drawn_bar.empty() || !shares_the_bar(fd)) {
    write_all(fd, text);
    return;
  }
  write_all(STDERR_FILENO, "\r\x1b[K");  // back to the line's start, erasing the bar
  write_all(fd, text);
  write_all(STDERR_FILENO, t.drawn_bar);
}

void draw_bar(std::string_view bar) {
  terminal_state& t = terminal();
  std::lock_guard lock(t.mu);
  t.drawn_bar = bar;
  write_all(STDERR_FILENO, "\r" + t.drawn_bar + "\x1b[K");
}

void end_bar() {
  terminal_state& t = terminal();
  std::lock_guard lock(t.mu);
  if (t.drawn_bar.empty()) return;
  t.drawn_bar.clear();
  write_all(STDERR_FILENO, "\n");
}

}  // namespace ferry::client
